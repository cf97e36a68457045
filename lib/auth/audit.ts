/**
 * What goes into the audit log (`lib/store/audit_log.ts`): every admin API request that changes
 * something (any unsafe method, whatever its outcome), every admin API request refused for a
 * wrong password, and the UI's logins, failed logins, lockouts and logouts. Entries are written in
 * the background: the admin's answer never waits for them.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv, Gateway } from "../gateway.ts";
import { type AuditAction, recordAudit } from "../store/audit_log.ts";
import { isUnsafeMethod, peerAddress } from "./sessions.ts";

/** Records one event of `req` (with the server's connection info `env`) in the audit log. */
export function auditEvent(
  gw: Gateway,
  req: Request,
  event: { env: unknown; action: AuditAction; actor: string; status: number },
): void {
  const entry = {
    t: gw.now(),
    action: event.action,
    actor: event.actor,
    ip: peerAddress(event.env),
    method: req.method,
    path: new URL(req.url).pathname,
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
    const refused = actor === undefined && !!c.req.header("authorization");
    if (!isUnsafeMethod(c.req.method) && !refused) return;
    auditEvent(gw, c.req.raw, {
      env: c.env,
      action: "api",
      actor: actor ?? "none",
      status,
    });
  };
}
