/**
 * Admin sessions for the web UI: an HttpOnly cookie naming a session stored in KV with its own
 * deadline, a CSRF token per session for every state change, and a lockout of clients that keep
 * failing to log in. The admin API accepts the same session (see `adminAuth`).
 */
import type { Gateway } from "../gateway.ts";
import { OpenAiError } from "../openai/errors.ts";
import { randomBytes, sha256Hex, timingSafeEqual, toBase64Url } from "../secrets.ts";
import {
  type AdminSession,
  clearLoginFailures,
  deleteAdminSession,
  getAdminSession,
  getLoginFailures,
  putAdminSession,
  updateLoginFailures,
} from "../store/admin_sessions.ts";

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

/** Whether the request reached us over https (behind Deno Deploy's proxy, as it says). */
export function isSecureRequest(req: Request, options: { onDeploy: boolean }): boolean {
  if (new URL(req.url).protocol === "https:") return true;
  // Only Deploy's own proxy is trusted to tell the original scheme; elsewhere anyone could send it.
  return options.onDeploy && req.headers.get("x-forwarded-proto") === "https";
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
  const session: AdminSession = {
    csrf: toBase64Url(randomBytes(24)),
    createdAt: now,
    expiresAt: now + SESSION_TTL_MS,
  };
  const hash = await sha256Hex(token);
  await putAdminSession(gw.kv, { hash, session });
  const secure = isSecureRequest(req, { onDeploy: gw.config.onDeploy });
  const cookie = serializeCookie(cookieName(SESSION_COOKIE, secure), token, {
    maxAge: SESSION_TTL_MS / 1000,
    secure,
  });
  return { cookie, active: { hash, session } };
}

/** The live session of the request, or null (no cookie, unknown, or past its deadline). */
export async function readSession(gw: Gateway, req: Request): Promise<ActiveSession | null> {
  const secure = isSecureRequest(req, { onDeploy: gw.config.onDeploy });
  const token = sessionToken(req, secure);
  if (!token || token.length > 200) return null;
  const hash = await sha256Hex(token);
  const session = await getAdminSession(gw.kv, hash);
  if (!session || session.expiresAt <= gw.now()) return null;
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
  const secure = isSecureRequest(req, { onDeploy: gw.config.onDeploy });
  const token = sessionToken(req, secure);
  if (!token) return null;
  await putAdminSession(gw.kv, { hash: active.hash, session: { ...session, expiresAt } });
  active.session = { ...session, expiresAt };
  return serializeCookie(cookieName(SESSION_COOKIE, secure), token, {
    maxAge: (expiresAt - now) / 1000,
    secure,
  });
}

/** Ends the request's session (if any) and returns the `Set-Cookie` value that clears the cookie. */
export async function endSession(gw: Gateway, req: Request): Promise<string> {
  const active = await readSession(gw, req);
  if (active) await deleteAdminSession(gw.kv, active.hash);
  const secure = isSecureRequest(req, { onDeploy: gw.config.onDeploy });
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
  const secure = isSecureRequest(req, { onDeploy: gw.config.onDeploy });
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
  const secure = isSecureRequest(req, { onDeploy: gw.config.onDeploy });
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

/** Milliseconds the client stays locked out, or 0. */
export async function lockoutRemaining(gw: Gateway, client: string): Promise<number> {
  const failures = await getLoginFailures(gw.kv, client);
  if (!failures) return 0;
  return Math.max(0, failures.lockedUntil - gw.now());
}

/** What counting one failed login led to. */
export interface FailureOutcome {
  /** Attempts left before the lockout starts (0 once locked). */
  attemptsLeft: number;
  /** Milliseconds the client is now locked out, or 0. */
  lockedForMs: number;
}

/** Counts a failed login of `client`; locks it out after `MAX_LOGIN_FAILURES` in the window. */
export async function recordLoginFailure(gw: Gateway, client: string): Promise<FailureOutcome> {
  const now = gw.now();
  const next = await updateLoginFailures(gw.kv, client, {
    change: (current) => {
      const fresh = !current || now - current.firstAt > FAILURE_WINDOW_MS ||
        (current.lockedUntil !== 0 && current.lockedUntil <= now);
      const count = fresh ? 1 : current.count + 1;
      return {
        count,
        firstAt: fresh ? now : current.firstAt,
        lockedUntil: count >= MAX_LOGIN_FAILURES ? now + LOCKOUT_MS : 0,
      };
    },
    expireIn: FAILURE_WINDOW_MS + LOCKOUT_MS,
  });
  return {
    attemptsLeft: Math.max(0, MAX_LOGIN_FAILURES - next.count),
    lockedForMs: Math.max(0, next.lockedUntil - now),
  };
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
