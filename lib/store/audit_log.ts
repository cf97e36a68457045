/**
 * The audit log in KV: who changed what through the admin API or the admin UI, and every failed
 * admin login. One row per event under `["audit", time, sequence, id]`, expiring after `AUDIT_TTL_MS`.
 * Never a request body, a password or a key: the method, the path (ids only), the outcome, the
 * client's address and which credential was used.
 */
import * as z from "zod";
import { randomId } from "../secrets.ts";

const PREFIX = "audit";
/** How long an audit entry is kept. */
export const AUDIT_TTL_MS = 90 * 86_400_000;

/** What kind of event an entry records. */
export const AuditActionSchema = z.enum(["api", "login", "login_failed", "locked_out", "logout"]);
/** One kind of audit event. */
export type AuditAction = z.infer<typeof AuditActionSchema>;

/** One audit entry. */
export const AuditEntrySchema = z.object({
  /** When it happened (epoch ms). */
  t: z.number(),
  action: AuditActionSchema,
  /**
   * The credential: `password` (the admin password as a bearer token), `session <tag>` (an admin
   * UI session, tagged by the first characters of its hash), or `none` (no valid credential).
   */
  actor: z.string(),
  /** The client's address as the server saw it ("unknown" when it had none). */
  ip: z.string(),
  method: z.string(),
  path: z.string(),
  status: z.number(),
  requestId: z.string().nullable(),
});

/** An audit entry. */
export type AuditEntry = z.infer<typeof AuditEntrySchema>;

/** Orders this isolate's entries of one millisecond as they were made. */
let sequence = 0;

/** Writes one audit entry. */
export async function recordAudit(kv: Deno.Kv, entry: AuditEntry): Promise<void> {
  const key = [PREFIX, entry.t, sequence++, randomId("a", 8)];
  await kv.set(key, entry, { expireIn: AUDIT_TTL_MS });
}

/** A page of the audit log, newest first, and the cursor of the next (older) page, if any. */
export async function listAudit(
  kv: Deno.Kv,
  options: { limit: number; cursor?: string },
): Promise<{ entries: AuditEntry[]; cursor: string | null }> {
  // One entry more than a page: another page follows only if it exists (else a cursor after a
  // full last page would lead nowhere).
  const iter = kv.list({ prefix: [PREFIX] }, {
    reverse: true,
    limit: options.limit + 1,
    cursor: options.cursor,
  });
  const entries: AuditEntry[] = [];
  let seen = 0;
  let pageEnd = "";
  for await (const e of iter) {
    if (seen === options.limit) return { entries, cursor: pageEnd };
    seen++;
    const parsed = AuditEntrySchema.safeParse(e.value);
    if (parsed.success) entries.push(parsed.data);
    pageEnd = iter.cursor;
  }
  return { entries, cursor: null };
}
