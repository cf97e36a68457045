/**
 * Admin sessions for the web UI: an HttpOnly cookie naming a session stored in KV with its own
 * deadline, a CSRF token per session for every state change, and a lockout of clients that keep
 * failing to log in. The admin API accepts the same session (see `adminAuth`).
 */
import { isSecureRequest } from "../forwarded.ts";
import type { Gateway } from "../gateway.ts";
import { OpenAiError } from "../openai/errors.ts";
import { randomBytes, sha256Hex, timingSafeEqual, toBase64Url } from "../secrets.ts";
import {
  type AdminSession,
  clearLoginFailures,
  deleteAdminSession,
  getAdminSession,
  getLoginFailures,
  type LoginFailures,
  putAdminSession,
  renewAdminSession,
  updateLoginFailures,
} from "../store/admin_sessions.ts";
import { ConflictError } from "../store/kv_util.ts";

/** How long a session lasts without use; page loads renew it once half of it has passed. */
export const SESSION_TTL_MS = 24 * 3_600_000;
/** No session is renewed past this age: the operator logs in again. */
export const SESSION_MAX_AGE_MS = 30 * 24 * 3_600_000;
/** Failed logins from one client within `FAILURE_WINDOW_MS` that lock it out. */
export const MAX_LOGIN_FAILURES = 5;
/** The window in which failed logins are counted. */
export const FAILURE_WINDOW_MS = 15 * 60_000;
/** How long a locked-out client is refused. */
export const LOCKOUT_MS = 15 * 60_000;
/** The header the UI sends the session's CSRF token in. */
export const CSRF_HEADER = "x-csrf-token";
/** The form field that carries a CSRF token in plain HTML forms. */
export const CSRF_FIELD = "_csrf";

const SESSION_COOKIE = "gw_session";
const LOGIN_COOKIE = "gw_login";
const LOGIN_COOKIE_MAX_AGE_S = 3600;
const UNSAFE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** A session found for a request, with the hash it is stored under. */
export interface ActiveSession {
  hash: string;
  session: AdminSession;
}

/** The cookie name to use: `__Host-` prefixed (pinned to this host and https) when secure. */
export function cookieName(base: string, secure: boolean): string {
  return secure ? `__Host-${base}` : base;
}

/** The value of cookie `name` in the request, or null. */
export function readCookie(req: Request, name: string): string | null {
  const header = req.headers.get("cookie");
  if (!header) return null;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      const raw = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(raw);
      } catch {
        return raw;
      }
    }
  }
  return null;
}

/** Options of `serializeCookie`. */
export interface CookieOptions {
  /** Seconds until the browser drops it; 0 deletes it; undefined makes a browser-session cookie. */
  maxAge?: number;
  secure: boolean;
  httpOnly?: boolean;
  sameSite?: "Strict" | "Lax";
}

/** A `Set-Cookie` value; always `Path=/` (required by `__Host-`). */
export function serializeCookie(name: string, value: string, options: CookieOptions): string {
  const parts = [`${name}=${encodeURIComponent(value)}`, "Path=/"];
  if (options.maxAge !== undefined) {
    parts.push(`Max-Age=${Math.max(0, Math.floor(options.maxAge))}`);
  }
  if (options.httpOnly ?? true) parts.push("HttpOnly");
  parts.push(`SameSite=${options.sameSite ?? "Lax"}`);
  if (options.secure) parts.push("Secure");
  return parts.join("; ");
}

function sessionToken(req: Request, secure: boolean): string | null {
  return readCookie(req, cookieName(SESSION_COOKIE, secure));
}

/** Whether the request carries a session cookie at all (live or not), in either spelling. */
export function hasSessionCookie(req: Request): boolean {
  return sessionToken(req, false) !== null || sessionToken(req, true) !== null;
}

/** Creates a session and returns the `Set-Cookie` value that hands it to the browser. */
export async function createSession(
  gw: Gateway,
  req: Request,
): Promise<{ cookie: string; active: ActiveSession }> {
  const token = toBase64Url(randomBytes(32));
  const now = gw.now();
  const credential = await gw.admin.credentialId();
  const session: AdminSession = {
    csrf: toBase64Url(randomBytes(24)),
    createdAt: now,
    expiresAt: now + SESSION_TTL_MS,
    ...(credential ? { credential } : {}),
  };
  const hash = await sha256Hex(token);
  await putAdminSession(gw.kv, { hash, session });
  const secure = isSecureRequest(req, gw.config);
  const cookie = serializeCookie(cookieName(SESSION_COOKIE, secure), token, {
    maxAge: SESSION_TTL_MS / 1000,
    secure,
  });
  return { cookie, active: { hash, session } };
}

/**
 * The live session of the request, or null (no cookie, unknown, past its deadline, or made under
 * an admin password that has changed since).
 */
export async function readSession(gw: Gateway, req: Request): Promise<ActiveSession | null> {
  const secure = isSecureRequest(req, gw.config);
  const token = sessionToken(req, secure);
  if (!token || token.length > 200) return null;
  const hash = await sha256Hex(token);
  const [session, credential] = await Promise.all([
    getAdminSession(gw.kv, hash),
    gw.admin.credentialId(),
  ]);
  if (!session || session.expiresAt <= gw.now()) return null;
  if (!session.credential || session.credential !== credential) return null;
  return { hash, session };
}

/**
 * Moves a session's deadline forward once half of its lifetime has passed (never past
 * `SESSION_MAX_AGE_MS` from login); returns the new `Set-Cookie` value, or null when unchanged.
 */
export async function renewSession(
  gw: Gateway,
  req: Request,
  options: { active: ActiveSession },
): Promise<string | null> {
  const now = gw.now();
  const { active } = options;
  const { session } = active;
  if (session.expiresAt - now > SESSION_TTL_MS / 2) return null;
  const expiresAt = Math.min(now + SESSION_TTL_MS, session.createdAt + SESSION_MAX_AGE_MS);
  if (expiresAt <= session.expiresAt) return null;
  const secure = isSecureRequest(req, gw.config);
  const token = sessionToken(req, secure);
  if (!token) return null;
  const renewed = { ...session, expiresAt };
  if (!await renewAdminSession(gw.kv, { hash: active.hash, session: renewed })) return null;
  active.session = renewed;
  return serializeCookie(cookieName(SESSION_COOKIE, secure), token, {
    maxAge: (expiresAt - now) / 1000,
    secure,
  });
}

/** Ends the request's session (if any) and returns the `Set-Cookie` value that clears the cookie. */
export async function endSession(gw: Gateway, req: Request): Promise<string> {
  const active = await readSession(gw, req);
  if (active) await deleteAdminSession(gw.kv, active.hash);
  const secure = isSecureRequest(req, gw.config);
  return serializeCookie(cookieName(SESSION_COOKIE, secure), "", { maxAge: 0, secure });
}

/** Whether `presented` is the session's CSRF token (constant time). */
export function csrfMatches(session: AdminSession, presented: string | null | undefined): boolean {
  return typeof presented === "string" && presented.length > 0 &&
    timingSafeEqual(session.csrf, presented);
}

/** Whether the browser says the request was started by another site (`Sec-Fetch-Site`). */
export function isCrossSite(req: Request): boolean {
  return req.headers.get("sec-fetch-site") === "cross-site";
}

/** Whether the method changes state and so needs a CSRF token. */
export function isUnsafeMethod(method: string): boolean {
  return UNSAFE_METHODS.has(method.toUpperCase());
}

/**
 * Authenticates an admin API request by its session cookie: the live session (whose CSRF token
 * matches, for state changes), or null when there is none. A state change with a session but
 * without the right token, or started by another site, is refused with a 403.
 */
export async function authenticateSession(
  gw: Gateway,
  req: Request,
): Promise<ActiveSession | null> {
  const active = await readSession(gw, req);
  if (!active) return null;
  if (isUnsafeMethod(req.method)) {
    if (isCrossSite(req) || !csrfMatches(active.session, req.headers.get(CSRF_HEADER))) {
      throw new OpenAiError(
        403,
        `This change was refused: it did not carry this session's CSRF token in the '${CSRF_HEADER}' header`,
        { code: "csrf_failed" },
      );
    }
  }
  return active;
}

/** A fresh token for the login form, and the `Set-Cookie` value that pairs it with the browser. */
export function loginFormToken(
  gw: Gateway,
  req: Request,
): { token: string; cookie: string } {
  const token = toBase64Url(randomBytes(18));
  const secure = isSecureRequest(req, gw.config);
  const cookie = serializeCookie(cookieName(LOGIN_COOKIE, secure), token, {
    maxAge: LOGIN_COOKIE_MAX_AGE_S,
    secure,
    sameSite: "Strict",
  });
  return { token, cookie };
}

/** Whether a posted login form carries the token its own page was given (double submit). */
export function loginFormTokenMatches(
  gw: Gateway,
  req: Request,
  options: { presented: string | null },
): boolean {
  const { presented } = options;
  const secure = isSecureRequest(req, gw.config);
  const expected = readCookie(req, cookieName(LOGIN_COOKIE, secure));
  return !!expected && !!presented && timingSafeEqual(expected, presented);
}

/**
 * The client a request comes from, for counting failed logins: the peer address (IPv6 grouped by
 * its /64, which one subscriber usually holds whole), or "unknown".
 */
export function clientAddress(env: unknown): string {
  const host = peerAddress(env);
  return host === "unknown" ? host : addressBucket(host);
}

/** The peer address of a request as the server saw it, or "unknown" (for the audit log). */
export function peerAddress(env: unknown): string {
  const info = env as { remoteAddr?: { hostname?: unknown } } | undefined;
  const host = info?.remoteAddr?.hostname;
  return typeof host === "string" && host ? host : "unknown";
}

/** The audit log's name of a session: its first hash characters (never the cookie's token). */
export function sessionActor(active: ActiveSession): string {
  return `session ${active.hash.slice(0, 8)}`;
}

/** Groups an address for lockout: IPv4 as is, IPv6 by its first four groups. */
export function addressBucket(address: string): string {
  if (!address.includes(":")) return address;
  const v4mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4mapped) return v4mapped[1];
  const [head, tail = ""] = address.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = address.includes("::")
    ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right]
    : left;
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, "")).join(":") +
    "::/64";
}

/** How long a client waits when the attempts reserved in its window are all still being checked. */
const ATTEMPTS_BUSY_MS = 1_000;
/** Failed and running password checks of one client in one window, at the most. */
export const MAX_CHECKS_IN_FLIGHT = 2 * MAX_LOGIN_FAILURES;

/** What reserving one password check found: go ahead, or refused for this long. */
export type LoginAttempt = { allowed: true } | { allowed: false; refusedForMs: number };

/** Whether a stored counter starts over at `now`: its window has passed, or its lockout has. */
function startsOver(current: LoginFailures | null, now: number): boolean {
  return !current || now - current.firstAt > FAILURE_WINDOW_MS ||
    (current.lockedUntil !== 0 && current.lockedUntil <= now);
}

/**
 * The counter after reserving one password check at `now`, or how long the client is refused
 * (pure): failed and still running checks together never exceed `MAX_CHECKS_IN_FLIGHT` per window,
 * however many arrive at once.
 */
function reserveAttempt(
  current: LoginFailures | null,
  now: number,
): { next: LoginFailures } | { refusedForMs: number } {
  if (startsOver(current, now)) {
    return { next: { count: 0, pending: 1, firstAt: now, lockedUntil: 0 } };
  }
  const c = current!;
  if (c.lockedUntil > now) return { refusedForMs: c.lockedUntil - now };
  // Failed checks and checks still running together stay within `MAX_CHECKS_IN_FLIGHT`: a burst
  // of guesses gets that many checks at most before the lockout, and an admin's own parallel calls
  // (on an isolate that has not checked the password yet) are not held up by a few typos.
  if (c.count + c.pending >= MAX_CHECKS_IN_FLIGHT) return { refusedForMs: ATTEMPTS_BUSY_MS };
  return { next: { ...c, pending: c.pending + 1 } };
}

/**
 * The counter after a reserved check settled at `now` (pure): a failure is counted (and locks the
 * client out at `MAX_LOGIN_FAILURES`); a right password only gives its reservation back (earlier
 * failures stay counted). Null: nothing to write.
 */
function settleAttempt(
  current: LoginFailures | null,
  options: { failed: boolean; now: number },
): LoginFailures | null {
  const { now } = options;
  if (!options.failed) {
    if (!current || current.pending === 0) return null;
    return { ...current, pending: current.pending - 1 };
  }
  // A login of the same client cleared the counter meanwhile (or its window passed): this failure
  // starts a new one.
  const base = startsOver(current, now)
    ? { count: 0, pending: 0, firstAt: now, lockedUntil: 0 }
    : { ...current!, pending: Math.max(0, current!.pending - 1) };
  const count = base.count + 1;
  const lock = count >= MAX_LOGIN_FAILURES && base.lockedUntil <= now;
  return { ...base, count, lockedUntil: lock ? now + LOCKOUT_MS : base.lockedUntil };
}

/**
 * Reserves one password check for `client` before it is made, in one atomic KV step (read,
 * check, write): refused while the client is locked out, or while its failed and running checks
 * fill `MAX_CHECKS_IN_FLIGHT`. Settle it with `recordLoginFailure`, `forgetLoginFailures` (a login)
 * or `releaseLoginAttempt` (a right password on the API). Too much contention on the counter
 * refuses too: a check that cannot be counted is not made.
 */
export async function reserveLoginAttempt(gw: Gateway, client: string): Promise<LoginAttempt> {
  const now = gw.now();
  let refusedForMs = 0;
  try {
    await updateLoginFailures(gw.kv, client, {
      change: (current) => {
        const step = reserveAttempt(current, now);
        refusedForMs = "refusedForMs" in step ? step.refusedForMs : 0;
        return "next" in step ? step.next : undefined;
      },
      expireIn: FAILURE_WINDOW_MS + LOCKOUT_MS,
    });
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
    return { allowed: false, refusedForMs: ATTEMPTS_BUSY_MS };
  }
  return refusedForMs > 0 ? { allowed: false, refusedForMs } : { allowed: true };
}

/** How long `client` is still locked out (0 when it is not): one read, nothing reserved. */
export async function lockoutRemaining(gw: Gateway, client: string): Promise<number> {
  const current = await getLoginFailures(gw.kv, client);
  return Math.max(0, (current?.lockedUntil ?? 0) - gw.now());
}

/** What counting one failed login led to. */
export interface FailureOutcome {
  /** Attempts left before the lockout starts (0 once locked). */
  attemptsLeft: number;
  /** Milliseconds the client is now locked out, or 0. */
  lockedForMs: number;
}

/** Settles a reserved check in KV; a counter too contended to update keeps the reservation. */
async function settle(
  gw: Gateway,
  client: string,
  failed: boolean,
): Promise<LoginFailures | null> {
  const now = gw.now();
  try {
    return await updateLoginFailures(gw.kv, client, {
      change: (current) => settleAttempt(current, { failed, now }) ?? undefined,
      expireIn: FAILURE_WINDOW_MS + LOCKOUT_MS,
    });
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
    // The reservation stays counted until the window ends: no check is lost, only delayed.
    console.error("Settling an admin login attempt failed:", err.message);
    return await getLoginFailures(gw.kv, client);
  }
}

/**
 * Settles a reserved check of `client` as a failure; the client is locked out once
 * `MAX_LOGIN_FAILURES` have failed in the window.
 */
export async function recordLoginFailure(gw: Gateway, client: string): Promise<FailureOutcome> {
  const next = await settle(gw, client, true);
  const now = gw.now();
  const used = (next?.count ?? 0) + (next?.pending ?? 0);
  return {
    attemptsLeft: Math.max(0, MAX_LOGIN_FAILURES - used),
    lockedForMs: Math.max(0, (next?.lockedUntil ?? 0) - now),
  };
}

/**
 * Gives back the reservation of a check that could not be made: it was no failure (earlier
 * failures stay counted).
 */
export async function releaseLoginAttempt(gw: Gateway, client: string): Promise<void> {
  await settle(gw, client, false);
}

/** Forgets the failed logins of a client that just logged in. */
export async function forgetLoginFailures(gw: Gateway, client: string): Promise<void> {
  await clearLoginFailures(gw.kv, client);
}

/** The 429 the admin API answers a locked-out client with. */
export function lockedOutError(remainingMs: number): OpenAiError {
  const seconds = Math.max(1, Math.ceil(remainingMs / 1000));
  return new OpenAiError(
    429,
    `Too many failed admin logins from this address; try again in ${seconds} s`,
    { code: "admin_locked_out", headers: { "retry-after": String(seconds) } },
  );
}
