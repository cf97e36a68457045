/**
 * `GET /admin/api/audit-log`: admin changes, logins and refused admin credentials, newest first
 * (time, action, credential, address, method, path, status, request id). `?cursor=` pages on.
 */
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { parseWith } from "../../../lib/openai/request.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { type AuditEntry, listAudit } from "../../../lib/store/audit_log.ts";

const QuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  /** The `next_cursor` of the page before. */
  cursor: z.string().min(1).max(1000).optional(),
});

/** The API view of an audit entry. */
export function auditView(e: AuditEntry) {
  return {
    time: new Date(e.t).toISOString(),
    action: e.action,
    actor: e.actor,
    ip: e.ip,
    method: e.method,
    path: e.path,
    status: e.status,
    request_id: e.requestId,
  };
}

/** Builds the audit-log route. */
export function auditLogRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const q = parseWith(QuerySchema, c.req.query());
    // This isolate's entries still being written first, so a change shows at once.
    await gw.background.drain();
    let page;
    try {
      page = await listAudit(gw.kv, { limit: q.limit, cursor: q.cursor });
    } catch (err) {
      if (q.cursor === undefined) throw err;
      throw new OpenAiError(400, "The cursor is not one this endpoint gave out", {
        code: "invalid_value",
        param: "cursor",
      });
    }
    return c.json({ data: page.entries.map(auditView), next_cursor: page.cursor });
  });

  return app;
}
