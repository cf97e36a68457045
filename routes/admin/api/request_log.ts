/**
 * `GET /admin/api/request-log`: the last requests, newest first (time, user key name, model, key
 * masked, status, latency, tokens, error class, request id, API); redacted: no prompt, answer or secret
 * is stored. `?request_id=` finds the entries of one `X-Request-Id`; `?format=csv` answers a CSV
 * file for export.
 */
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { parseWith } from "../../../lib/openai/request.ts";
import { readRequestLog } from "../../../lib/store/request_log.ts";
import { listUserKeys } from "../../../lib/store/user_keys.ts";

const QuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  /** Only entries that started before this time (ISO 8601), for paging. */
  before: z.iso.datetime({ offset: true }).optional(),
  /**
   * With `before`, the id of the last entry already shown: the entries of that same millisecond
   * that come after it are listed too (the next page's cursor is the last entry's time and id).
   */
  before_id: z.string().min(1).max(64).optional(),
  /** Only the entries of this `X-Request-Id` (the one a user quotes when reporting a problem). */
  request_id: z.string().trim().min(1).max(255).optional(),
  /** `csv`: the same entries as a CSV file (a spreadsheet's), for export. */
  format: z.enum(["json", "csv"]).default("json"),
});

/** The columns of the CSV export, in order (the JSON fields' names). */
const CSV_COLUMNS = [
  "time",
  "request_id",
  "user_key_name",
  "user_key_id",
  "model",
  "key",
  "key_id",
  "status",
  "latency_ms",
  "input_tokens",
  "output_tokens",
  "attempts",
  "error_class",
  "api",
] as const;

/** One CSV field (RFC 4180), with formula-looking text defused for spreadsheets. */
export function csvField(value: unknown): string {
  if (value === null || value === undefined) return "";
  let text = String(value);
  // A cell starting with = + - @ (or their full-width forms, after any spaces) would run as a
  // formula when the file is opened.
  if (
    typeof value === "string" && /^[\s\u3000]*[=+\-@\uFF1D\uFF0B\uFF0D\uFF20]|^[\t\r\n]/.test(text)
  ) {
    text = `'${text}`;
  }
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Builds the request-log route. */
export function requestLogRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const q = parseWith(QuerySchema, c.req.query());
    // This isolate's batched entries first, so the log includes its own requests.
    await gw.usage.flush();
    const [entries, users] = await Promise.all([
      readRequestLog(gw.kv, {
        limit: q.limit + 1,
        before: q.before === undefined ? undefined : Date.parse(q.before),
        beforeId: q.before_id,
        requestId: q.request_id,
      }),
      listUserKeys(gw.kv),
    ]);
    const names = new Map(users.map((u) => [u.id, u.name]));
    const page = entries.slice(0, q.limit);
    const rows = page.map((e) => ({
      id: e.id,
      time: new Date(e.t).toISOString(),
      user_key_id: e.userId,
      user_key_name: e.userId ? names.get(e.userId) ?? null : null,
      model: e.model,
      key_id: e.keyId,
      key: e.key,
      status: e.status,
      latency_ms: e.latencyMs,
      input_tokens: e.inputTokens,
      output_tokens: e.outputTokens,
      attempts: e.attempts,
      error_class: e.errorClass,
      request_id: e.requestId,
      api: e.api,
    }));
    if (q.format === "csv") {
      const lines = [CSV_COLUMNS.join(",")];
      for (const row of rows) lines.push(CSV_COLUMNS.map((k) => csvField(row[k])).join(","));
      // A byte-order mark first: Excel then reads the file as UTF-8 (names in Chinese, say).
      return c.body("\uFEFF" + lines.join("\r\n") + "\r\n", 200, {
        "content-type": "text/csv; charset=utf-8",
        "content-disposition": `attachment; filename="request-log-${
          new Date(gw.now()).toISOString().slice(0, 10)
        }.csv"`,
      });
    }
    return c.json({ data: rows, has_more: entries.length > q.limit });
  });

  return app;
}
