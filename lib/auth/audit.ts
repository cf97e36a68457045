/**
 * What goes into the audit log (`lib/store/audit_log.ts`): every admin API request that changes
 * something (any unsafe method, whatever its outcome) from a caller with a credential (the admin
 * password, right or wrong, or a session cookie, live or not), and the UI's logins, failed
 * logins, lockouts and logouts. A visitor with no credential at all is not recorded. Wrong
 * passwords are all recorded (the lockout bounds them: 5 per client in 15 minutes); other refusals
 * (a locked-out client, a cookie of no live session) at most once a minute per address on each
 * isolate, so nobody can flood the log. Entries are written in the background: the admin's answer
 * never waits for them.
 */
import { shownId } from "../secrets.ts";
import type { MiddlewareHandler } from "hono";
import type { AppEnv, Gateway } from "../gateway.ts";
import { type AuditAction, recordAudit } from "../store/audit_log.ts";
import { urlPath } from "../url_path.ts";
import { hasSessionCookie, isUnsafeMethod, peerAddress } from "./sessions.ts";

/** Longest path kept in an entry. */
const MAX_PATH = 200;
/** Refusals from one address are recorded at most this often (per isolate). */
const REFUSALS_EVERY_MS = 60_000;
/** Addresses whose last refusal is remembered, at most. */
const MAX_REFUSERS = 10_000;
/** Each gateway's last recorded refusal per address. */
const lastRefusals = new WeakMap<Gateway, Map<string, number>>();

/** Whether a refusal from `ip` at `now` is recorded (not one recorded in the last minute). */
function refusalRecorded(gw: Gateway, ip: string, now: number): boolean {
  let last = lastRefusals.get(gw);
  if (!last) lastRefusals.set(gw, last = new Map());
  const at = last.get(ip);
  if (at !== undefined && now - at < REFUSALS_EVERY_MS) return false;
  if (last.size >= MAX_REFUSERS) last.clear();
  last.set(ip, now);
  return true;
}

/** Records one event of `req` (with the server's connection info `env`) in the audit log. */
export function auditEvent(
  gw: Gateway,
  req: Request,
  event: {
    env: unknown;
    action: AuditAction;
    actor: string;
    status: number;
    /** A refusal the lockout does not bound: recorded at most once a minute per address. */
    throttle?: boolean;
  },
): void {
  const now = gw.now();
  const ip = peerAddress(event.env);
  if (event.throttle && !refusalRecorded(gw, ip, now)) return;
  const entry = {
    t: now,
    action: event.action,
    actor: event.actor,
    ip,
    method: req.method,
    // A secret passed by mistake as a path segment is not kept.
    path: urlPath(req.url).split("/").map(shownId).join("/").slice(0, MAX_PATH),
    status: event.status,
    requestId: gw.requestIdOf(req),
  };
  gw.background.run("Writing the audit log", () => recordAudit(gw.kv, entry));
}

/**
 * Audits the admin API (mount before the admin authentication, so that its refusals are seen):
 * changes, and requests a wrong password was refused for.
 */
export function auditAdminApi(gw: Gateway): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await next();
    const status = c.res.status;
    const actor = c.get("adminActor");
    // A credential was presented and not accepted (a wrong password, or a locked-out client).
    const presented = !!c.req.header("authorization") || hasSessionCookie(c.req.raw);
    const refused = actor === undefined && presented;
    if (actor === undefined && !presented) return;
    if (!isUnsafeMethod(c.req.method) && !refused) return;
    // A wrong password is bounded by the lockout; other refusals are throttled.
    const wrongPassword = status === 401 && !!c.req.header("authorization");
    auditEvent(gw, c.req.raw, {
      env: c.env,
      action: "api",
      actor: actor ?? "none",
      status,
      throttle: refused && !wrongPassword,
    });
  };
}
