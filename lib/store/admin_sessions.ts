/**
 * Admin sessions and failed-login counters in KV. A session lives under `["admin_session", hash]`
 * (the SHA-256 of the cookie value, never the value itself); failures under
 * `["admin_login_failure", client]`. Both carry `expireIn` for cleanup, and a deadline in the value
 * that callers must check, because KV deletes expired keys late.
 */
import * as z from "zod";
import { updateWithRetry } from "./kv_util.ts";

const SESSION = "admin_session";
const FAILURE = "admin_login_failure";

/** One admin session as stored. */
export const AdminSessionSchema = z.object({
  /** The CSRF token pages send back with every state-changing request. */
  csrf: z.string(),
  createdAt: z.number(),
  /** The session is void from this moment on, whatever KV still holds. */
  expiresAt: z.number(),
  /**
   * The fingerprint of the admin credential it was made under (`AdminAuthenticator.credentialId`):
   * void once the password changes. Sessions made before it existed have none, and are void.
   */
  credential: z.string().optional(),
});

/** One admin session. */
export type AdminSession = z.infer<typeof AdminSessionSchema>;

/** Failed logins of one client. */
export const LoginFailuresSchema = z.object({
  /** Failed password checks in the window. */
  count: z.number().int(),
  /** Password checks reserved and still running (each is settled as a failure or taken back). */
  pending: z.number().int().min(0).default(0),
  /** Start of the window in which `count` failures were seen. */
  firstAt: z.number(),
  /** Logins from this client are refused until then; 0 when not locked. */
  lockedUntil: z.number(),
});

/** Failed logins of one client. */
export type LoginFailures = z.infer<typeof LoginFailuresSchema>;

/** How long KV keeps `session`: a day past its deadline, so KV's late sweep never removes it live. */
function sessionExpireIn(session: AdminSession): number {
  return Math.max(1, session.expiresAt - session.createdAt) + 86_400_000;
}

/** Stores a session under the hash of its cookie value. */
export async function putAdminSession(
  kv: Deno.Kv,
  entry: { hash: string; session: AdminSession },
): Promise<void> {
  const { hash, session } = entry;
  await kv.set([SESSION, hash], session, { expireIn: sessionExpireIn(session) });
}

/**
 * Writes a renewed `session` only while the stored one is still there (a logout in another tab
 * between the read and this write is not undone); false when it is gone.
 */
export async function renewAdminSession(
  kv: Deno.Kv,
  entry: { hash: string; session: AdminSession },
): Promise<boolean> {
  const { hash, session } = entry;
  const current = await kv.get([SESSION, hash]);
  if (current.value === null) return false;
  const res = await kv.atomic().check(current)
    .set([SESSION, hash], session, { expireIn: sessionExpireIn(session) })
    .commit();
  return res.ok;
}

/** Reads a session by the hash of its cookie value (expired or not: callers check the deadline). */
export async function getAdminSession(kv: Deno.Kv, hash: string): Promise<AdminSession | null> {
  const entry = await kv.get([SESSION, hash]);
  const parsed = AdminSessionSchema.safeParse(entry.value);
  return parsed.success ? parsed.data : null;
}

/** Deletes a session. */
export async function deleteAdminSession(kv: Deno.Kv, hash: string): Promise<void> {
  await kv.delete([SESSION, hash]);
}

/** Reads the failed-login counter of a client. */
export async function getLoginFailures(kv: Deno.Kv, client: string): Promise<LoginFailures | null> {
  const entry = await kv.get([FAILURE, client]);
  const parsed = LoginFailuresSchema.safeParse(entry.value);
  return parsed.success ? parsed.data : null;
}

/**
 * Applies `change` to a client's failure counter atomically (`change` returns undefined to write
 * nothing) and returns the stored result, null when there is none.
 */
export async function updateLoginFailures(
  kv: Deno.Kv,
  client: string,
  options: {
    change: (current: LoginFailures | null) => LoginFailures | undefined;
    expireIn: number;
  },
): Promise<LoginFailures | null> {
  const next = await updateWithRetry<unknown>(
    kv,
    [FAILURE, client],
    (current) => {
      const parsed = LoginFailuresSchema.safeParse(current);
      return options.change(parsed.success ? parsed.data : null);
    },
    { expireIn: options.expireIn },
  );
  const parsed = LoginFailuresSchema.safeParse(next);
  return parsed.success ? parsed.data : null;
}

/** Forgets a client's failed logins (after a successful one). */
export async function clearLoginFailures(kv: Deno.Kv, client: string): Promise<void> {
  await kv.delete([FAILURE, client]);
}
