/**
 * The request log in KV: one small, redacted entry per completed client request under
 * `["rlog", time, id]` (no prompt, no answer, no secret: the Gemini key only masked, the user key
 * only by id). Written in the same atomic operation as the usage counters, expiring after a week,
 * and trimmed to the newest N entries by the cleanup job.
 */
import * as z from "zod";
import { randomId } from "../secrets.ts";

const PREFIX = "rlog";
/** How long an entry lives at most, whatever N is. */
export const REQUEST_LOG_TTL_MS = 7 * 86_400_000;

/** One logged request. */
export const RequestLogEntrySchema = z.object({
  id: z.string(),
  /** When the request started (epoch ms). */
  t: z.number(),
  userId: z.string().nullable(),
  model: z.string(),
  /** The key that served it (or the last one tried), masked; null when none was tried. */
  keyId: z.string().nullable(),
  key: z.string().nullable(),
  status: z.number(),
  latencyMs: z.number(),
  inputTokens: z.number(),
  outputTokens: z.number(),
  /** Upstream attempts made. */
  attempts: z.number(),
  /** Failure class (`client`, `no_key`, `upstream`, `stream_error`, `client_closed`...) or null. */
  errorClass: z.string().nullable(),
});

/** A request log entry. */
export type RequestLogEntry = z.infer<typeof RequestLogEntrySchema>;

/** The KV mutation that stores `entry` (without the id, which is made here). */
export function requestLogMutation(entry: Omit<RequestLogEntry, "id">): Deno.KvMutation {
  const id = randomId("r", 6);
  return {
    type: "set",
    key: [PREFIX, entry.t, id],
    value: { ...entry, id },
    expireIn: REQUEST_LOG_TTL_MS,
  };
}

/** The newest entries first, at most `limit`, optionally older than `before` (epoch ms). */
export async function readRequestLog(
  kv: Deno.Kv,
  options: { limit: number; before?: number },
): Promise<RequestLogEntry[]> {
  const selector: Deno.KvListSelector = options.before === undefined
    ? { prefix: [PREFIX] }
    : { prefix: [PREFIX], end: [PREFIX, options.before] };
  const out: RequestLogEntry[] = [];
  const iter = kv.list(selector, { reverse: true, limit: options.limit, batchSize: 500 });
  for await (const e of iter) {
    const parsed = RequestLogEntrySchema.safeParse(e.value);
    if (parsed.success) out.push(parsed.data);
  }
  return out;
}

/** Deletes every entry but the newest `keep`; returns how many were deleted. */
export async function trimRequestLog(kv: Deno.Kv, keep: number): Promise<number> {
  let seen = 0;
  let batch: Deno.KvKey[] = [];
  let deleted = 0;
  const flush = async () => {
    let op = kv.atomic();
    for (const key of batch) op = op.delete(key);
    await op.commit();
    deleted += batch.length;
    batch = [];
  };
  for await (const e of kv.list({ prefix: [PREFIX] }, { reverse: true, batchSize: 1000 })) {
    if (++seen <= keep) continue;
    batch.push(e.key);
    if (batch.length >= 500) await flush();
  }
  if (batch.length) await flush();
  return deleted;
}
