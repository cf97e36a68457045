/**
 * Stored Responses API answers, for `previous_response_id`, `GET` and `DELETE /v1/responses/{id}`:
 * `["response", userKeyId, responseId, part]` -> bytes of one JSON record (the response object, the
 * input items of its own turn and the ids of the earlier answers it continues), split in parts
 * under KV's 64 KiB value limit and written in
 * one atomic commit, kept for the retention the settings give (30 days by default, as OpenAI keeps
 * them). One `list` reads a record back.
 *
 * What each user key keeps is counted by the day its answers expire, in `["response_usage",
 * userId, "stored" | "freed", day]` (bytes stored, and bytes of those answers deleted since), for
 * the settings' cap on stored bytes per key: an answer counts until KV removes it, whatever the
 * retention setting says since.
 */
import * as z from "zod";
import { concatBytes } from "../bytes.ts";
import { deleteListed } from "./kv_util.ts";

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
/**
 * The most bytes a conversation's stored answers may hold together and still be continued (more
 * than Gemini takes inline in one request, media moved to its Files API aside): each read of a
 * conversation loads all of it, so this also bounds the memory one request takes.
 */
export const MAX_CONVERSATION_BYTES = 32 * 1024 * 1024;

/** A stored record: what the answer was, and the conversation that led to it. */
export const StoredResponseSchema = z.object({
  /** The response object as the client got it. */
  response: z.looseObject({ id: z.string(), created_at: z.number(), output: z.array(z.unknown()) }),
  /** The input items of its own turn. */
  input: z.array(z.unknown()),
  /** The earlier answers of its conversation, oldest first (each holds its own turn). */
  ancestors: z.array(z.string()).default([]),
  /** Bytes of this record and of every earlier one of its conversation (0: stored before). */
  chainBytes: z.number().default(0),
  /** When KV removes it (epoch ms; 0: stored before this was kept). */
  expiresAt: z.number().default(0),
});

/** A stored response. */
export type StoredResponse = z.infer<typeof StoredResponseSchema>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const USAGE = "response_usage";

function prefixOf(userId: string, id: string): Deno.KvKey {
  return [PREFIX, userId, id];
}

/** The day (since the epoch) of the moment `ms`. */
function dayOf(ms: number): number {
  return Math.floor(ms / DAY_MS);
}

/**
 * Bytes of answers `userId` has stored, not deleted, and KV has not removed at `now`: one `list`
 * of at most two counters per day of the longest retention.
 */
export async function storedBytes(kv: Deno.Kv, userId: string, now: number): Promise<number> {
  // Answers expiring today may be gone already: that day counts whole.
  const first = dayOf(now);
  let bytes = 0n;
  for await (const entry of kv.list<Deno.KvU64>({ prefix: [USAGE, userId] })) {
    const [, , kind, day] = entry.key;
    if (typeof day !== "number" || day < first || !(entry.value instanceof Deno.KvU64)) continue;
    bytes += kind === "stored" ? entry.value.value : -entry.value.value;
  }
  return Math.max(0, Number(bytes));
}

/**
 * Counts `bytes` on the `kind` counter of the expiry `day` for `userId`. KV sums take no expiry:
 * the cleanup job deletes the counters of days past, and reads skip them.
 */
function count(
  op: Deno.AtomicOperation,
  userId: string,
  kind: "stored" | "freed",
  day: number,
  bytes: number,
): void {
  op.sum([USAGE, userId, kind, day], BigInt(bytes));
}

/**
 * Stores `record` for `userId` for `ttlMs` (`earlierBytes`: what the answers it continues hold,
 * their `chainBytes`); false when it is too large to store, or larger than `roomBytes` (what the
 * key's cap leaves): nothing is written then.
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
  options: { roomBytes?: number; earlierBytes?: number } = {},
): Promise<boolean> {
  const text = JSON.stringify(record);
  // The conversation's bytes and the expiry go last; the bytes are counted with this record's own
  // (its text is ASCII-heavy: the length is close to the bytes; the few digits added are not).
  const chainBytes = (options.earlierBytes ?? 0) + text.length;
  const expiresAt = record.response.created_at * 1000 + ttlMs;
  const bytes = encoder.encode(
    `${text.slice(0, -1)},"chainBytes":${chainBytes},"expiresAt":${expiresAt}}`,
  );
  if (bytes.length > Math.min(MAX_STORED_BYTES, options.roomBytes ?? Infinity)) return false;
  const prefix = prefixOf(userId, record.response.id);
  const op = kv.atomic();
  for (let i = 0, at = 0; at < bytes.length || i === 0; i++, at += PART_BYTES) {
    op.set([...prefix, i], bytes.subarray(at, at + PART_BYTES), { expireIn: ttlMs });
  }
  count(op, userId, "stored", dayOf(expiresAt), bytes.length);
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
  for await (const entry of kv.list<Uint8Array>({ prefix: prefixOf(userId, id) })) {
    if (entry.key.at(-1) !== parts.length || !(entry.value instanceof Uint8Array)) return null;
    parts.push(entry.value);
  }
  if (!parts.length) return null;
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(concatBytes(parts)));
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

/**
 * A conversation read back (with the bytes its stored answers hold), or the first of its answers
 * no longer stored.
 */
export type Conversation =
  | { ok: true; turns: Turn[]; bytes: number }
  | { ok: false; missing: string };

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
  return { ok: true, turns, bytes: last.chainBytes };
}

/**
 * Deletes the stored response `id` of `userId`; false when there was none (or another request
 * deleted it first: only one delete frees its bytes).
 */
export async function deleteResponse(kv: Deno.Kv, userId: string, id: string): Promise<boolean> {
  const op = kv.atomic();
  const parts: Uint8Array[] = [];
  for await (const entry of kv.list({ prefix: prefixOf(userId, id) })) {
    op.check(entry).delete(entry.key);
    if (entry.value instanceof Uint8Array) parts.push(entry.value);
  }
  if (!parts.length) return false;
  // Its bytes no longer count against the key's cap (on the day they were counted on).
  const expiresAt = expiresAtOf(parts);
  if (expiresAt !== null) {
    count(op, userId, "freed", dayOf(expiresAt), parts.reduce((n, p) => n + p.length, 0));
  }
  return (await op.commit()).ok;
}

/** When a stored record's parts expire, or null when they do not make a record that says. */
function expiresAtOf(parts: Uint8Array[]): number | null {
  try {
    const expiresAt = JSON.parse(decoder.decode(concatBytes(parts)))?.expiresAt;
    return typeof expiresAt === "number" && expiresAt > 0 ? expiresAt : null;
  } catch {
    return null;
  }
}

/** Deletes every stored response of `userId` (its key was deleted); returns how many values. */
export async function deleteUserResponses(kv: Deno.Kv, userId: string): Promise<number> {
  const [answers, counters] = await Promise.all([
    deleteListed(kv, { prefix: [PREFIX, userId] }),
    deleteListed(kv, { prefix: [USAGE, userId] }),
  ]);
  return answers + counters;
}

/** Deletes the storage counters of days whose answers have all expired at `now`; returns how many. */
export function deleteStaleResponseUsage(kv: Deno.Kv, now: number): Promise<number> {
  const first = dayOf(now);
  return deleteListed(
    kv,
    { prefix: [USAGE] },
    (key) => !(typeof key[3] === "number" && key[3] >= first),
  );
}
