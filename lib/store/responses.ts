/**
 * Stored Responses API answers, for `previous_response_id`, `GET` and `DELETE /v1/responses/{id}`:
 * `["response", userKeyId, responseId, part]` -> bytes of one JSON record (the response object, the
 * input items of its own turn and the ids of the earlier answers it continues), split in parts
 * under KV's 64 KiB value limit and written in
 * one atomic commit, kept for the retention the settings give (30 days by default, as OpenAI keeps
 * them). One `list` reads a record back.
 */
import * as z from "zod";

const PREFIX = "response";
/** One day, the unit of the retention setting. */
export const DAY_MS = 24 * 3_600_000;
/** Bytes per KV value (the limit is 64 KiB). */
const PART_BYTES = 60_000;
/**
 * The largest record stored: a commit's mutations may total at most 800 KiB, so a conversation
 * with more inline media than this is answered but not stored.
 */
export const MAX_STORED_BYTES = 12 * PART_BYTES;
/** Earlier answers a conversation continued by `previous_response_id` may have, at the most. */
export const MAX_CHAIN = 200;

/** A stored record: what the answer was, and the conversation that led to it. */
export const StoredResponseSchema = z.object({
  /** The response object as the client got it. */
  response: z.looseObject({ id: z.string(), created_at: z.number(), output: z.array(z.unknown()) }),
  /** The input items of its own turn. */
  input: z.array(z.unknown()),
  /** The earlier answers of its conversation, oldest first (each holds its own turn). */
  ancestors: z.array(z.string()).default([]),
});

/** A stored response. */
export type StoredResponse = z.infer<typeof StoredResponseSchema>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function prefixOf(userId: string, id: string): Deno.KvKey {
  return [PREFIX, userId, id];
}

/**
 * Stores `record` for `userId` for `ttlMs`; false when it is too large to store (nothing is
 * written then).
 */
export async function storeResponse(
  kv: Deno.Kv,
  userId: string,
  record: {
    response: { id: string; created_at: number; output: unknown[] };
    input: unknown[];
    ancestors: string[];
  },
  ttlMs: number,
): Promise<boolean> {
  const bytes = encoder.encode(JSON.stringify(record));
  if (bytes.length > MAX_STORED_BYTES) return false;
  const prefix = prefixOf(userId, record.response.id);
  const op = kv.atomic();
  for (let i = 0, at = 0; at < bytes.length || i === 0; i++, at += PART_BYTES) {
    op.set([...prefix, i], bytes.subarray(at, at + PART_BYTES), { expireIn: ttlMs });
  }
  await op.commit();
  return true;
}

/**
 * The stored response `id` of `userId`, or null when there is none, or when it is older than
 * `ttlMs` (the retention now, which may be shorter than when it was stored).
 */
export async function loadResponse(
  kv: Deno.Kv,
  userId: string,
  id: string,
  options: { now: number; ttlMs: number },
): Promise<StoredResponse | null> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const entry of kv.list<Uint8Array>({ prefix: prefixOf(userId, id) })) {
    if (entry.key.at(-1) !== parts.length || !(entry.value instanceof Uint8Array)) return null;
    parts.push(entry.value);
    size += entry.value.length;
  }
  if (!parts.length) return null;
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(bytes));
  } catch {
    // Parts of an expired record, some already removed.
    return null;
  }
  const parsed = StoredResponseSchema.safeParse(json);
  if (!parsed.success) return null;
  // KV removes expired values some time after their expiry: a record past it is gone already.
  if (parsed.data.response.created_at * 1000 + options.ttlMs <= options.now) return null;
  return parsed.data;
}

/** One turn of a conversation: the answer's id, its turn's input items and its output items. */
export interface Turn {
  id: string;
  input: unknown[];
  output: unknown[];
}

/** A conversation read back, or the first of its answers no longer stored. */
export type Conversation = { ok: true; turns: Turn[] } | { ok: false; missing: string };

/**
 * The conversation up to and including the stored response `id`, oldest turn first. Two round
 * trips of waiting: the answer, then all earlier ones at once.
 */
export async function loadConversation(
  kv: Deno.Kv,
  userId: string,
  id: string,
  kept: { now: number; ttlMs: number },
): Promise<Conversation> {
  const last = await loadResponse(kv, userId, id, kept);
  if (!last) return { ok: false, missing: id };
  const earlier = await Promise.all(
    last.ancestors.map((a) => loadResponse(kv, userId, a, kept)),
  );
  const turns: Turn[] = [];
  for (const [i, record] of [...earlier, last].entries()) {
    if (!record) return { ok: false, missing: last.ancestors[i] };
    turns.push({ id: record.response.id, input: record.input, output: record.response.output });
  }
  return { ok: true, turns };
}

/** Deletes the stored response `id` of `userId`; false when there was none. */
export async function deleteResponse(kv: Deno.Kv, userId: string, id: string): Promise<boolean> {
  const op = kv.atomic();
  let found = false;
  for await (const entry of kv.list({ prefix: prefixOf(userId, id) })) {
    op.delete(entry.key);
    found = true;
  }
  if (found) await op.commit();
  return found;
}

/** Deletes every stored response of `userId` (its key was deleted); returns how many values. */
export async function deleteUserResponses(kv: Deno.Kv, userId: string): Promise<number> {
  let deleted = 0;
  let op = kv.atomic();
  let pending = 0;
  for await (const entry of kv.list({ prefix: [PREFIX, userId] })) {
    op.delete(entry.key);
    if (++pending === 500) {
      await op.commit();
      deleted += pending;
      op = kv.atomic();
      pending = 0;
    }
  }
  if (pending) await op.commit();
  return deleted + pending;
}
