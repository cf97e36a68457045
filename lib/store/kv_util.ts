/**
 * Small helpers shared by the store modules: bounded optimistic-concurrency retries, reads of many
 * keys at once, and tolerant reads of stored records.
 */
import type * as z from "zod";

/** The largest value KV stores, in bytes of V8's serialization (what `Deno.Kv` measures). */
export const KV_VALUE_LIMIT = 65_536;

/**
 * About the bytes of V8's serialization of `value`, which `Deno.Kv` measures against its 64 KiB
 * limit, and at least as many for values made by `JSON.parse` and zod: strings take a byte per
 * character when every character fits one (Latin-1), else two, plus a tag and a length; numbers
 * nine; objects and arrays their entries plus a few bytes. (A Latin-1 string cut from a wider
 * one may be stored two bytes a character: a few bytes more than counted.)
 * (`node:v8`'s `serialize` would give it exactly, but importing it breaks the type check of the
 * admin UI's JSX on Deno 2.5, Deno Deploy's runtime.)
 */
export function kvValueSize(value: unknown): number {
  return 2 + sizeOf(value);
}

function sizeOf(value: unknown): number {
  if (typeof value === "string") {
    // deno-lint-ignore no-control-regex
    return 6 + (/^[\u0000-\u00ff]*$/.test(value) ? value.length : 2 * value.length + 1);
  }
  if (typeof value === "number" || typeof value === "bigint") return 9;
  if (value === null || typeof value !== "object") return 1;
  if (value instanceof Uint8Array) return 32 + value.byteLength;
  if (Array.isArray(value)) return 17 + value.reduce((n: number, v) => n + sizeOf(v), 0);
  let n = 7;
  for (const [k, v] of Object.entries(value)) n += sizeOf(k) + sizeOf(v);
  return n;
}

/** How many times a read-check-write loop retries before giving up. */
export const MAX_OCC_ATTEMPTS = 12;

/** Thrown when an optimistic update kept conflicting with other writers. */
export class ConflictError extends Error {
  constructor(what: string) {
    super(`Too much contention updating ${what}; try again`);
    this.name = "ConflictError";
  }
}

/** Keys one `getMany` may read (Deno KV's limit). */
const GET_MANY_LIMIT = 10;

/**
 * Reads `keys` with `getMany` in batches of KV's limit, all batches at once (one round trip of
 * latency, not one per batch); the entries come back in the order of `keys`.
 */
export async function getManyBatched<T>(
  kv: Deno.Kv,
  keys: readonly Deno.KvKey[],
): Promise<Deno.KvEntryMaybe<T>[]> {
  const batches: Deno.KvKey[][] = [];
  for (let i = 0; i < keys.length; i += GET_MANY_LIMIT) {
    batches.push(keys.slice(i, i + GET_MANY_LIMIT));
  }
  const read = await Promise.all(batches.map((batch) => kv.getMany<T[]>(batch)));
  return read.flat();
}

/** At least the bytes KV counts for `key` (a UTF-16 unit is at most 3 bytes of UTF-8). */
export function keyBytes(key: Deno.KvKey): number {
  let n = 4;
  for (const part of key) n += typeof part === "string" ? part.length * 3 + 2 : 10;
  return n;
}

/** Most key bytes (estimated by `keyBytes`) put in one atomic operation (KV allows 81,920). */
export const MAX_ATOMIC_KEY_BYTES = 64 * 1024;
/** Most deletes put in one atomic operation by `deleteListed`. */
const DELETE_BATCH = 500;

/**
 * Deletes the entries `selector` lists that `which` picks (all by default), in atomic operations
 * of at most 500 keys and `MAX_ATOMIC_KEY_BYTES`; returns how many.
 */
export async function deleteListed(
  kv: Deno.Kv,
  selector: Deno.KvListSelector,
  which: (key: Deno.KvKey) => boolean = () => true,
): Promise<number> {
  let deleted = 0;
  let batch: Deno.KvKey[] = [];
  let bytes = 0;
  const flush = async () => {
    if (!batch.length) return;
    let op = kv.atomic();
    for (const key of batch) op = op.delete(key);
    await op.commit();
    deleted += batch.length;
    batch = [];
    bytes = 0;
  };
  for await (const e of kv.list(selector, { batchSize: 1000 })) {
    if (!which(e.key)) continue;
    const size = keyBytes(e.key);
    if (bytes + size > MAX_ATOMIC_KEY_BYTES) await flush();
    batch.push(e.key);
    bytes += size;
    if (batch.length >= DELETE_BATCH) await flush();
  }
  await flush();
  return deleted;
}

/** Waits a short, jittered, growing time between OCC attempts. */
export function backoff(attempt: number): Promise<void> {
  const ms = Math.min(50, 2 ** attempt) * (0.5 + Math.random());
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs `update` on the current value of `key` and commits the result only if the key did not change
 * meanwhile; retries with backoff. `update` returns the new value, or `undefined` to write nothing.
 */
export async function updateWithRetry<T>(
  kv: Deno.Kv,
  key: Deno.KvKey,
  update: (current: T | null) => T | undefined,
  options: { expireIn?: number } = {},
): Promise<T | null> {
  for (let attempt = 0; attempt < MAX_OCC_ATTEMPTS; attempt++) {
    const entry = await kv.get<T>(key);
    const next = update(entry.value);
    if (next === undefined) return entry.value;
    const res = await kv.atomic().check(entry).set(key, next, options).commit();
    if (res.ok) return next;
    await backoff(attempt);
  }
  throw new ConflictError(JSON.stringify(key));
}

/** A stored value read through its schema: the record, and why it needed repair (or was unreadable). */
export type RecordRead<T> =
  | { data: T; problem: string | null }
  | { data: null; problem: string };

/**
 * Reads a stored `value` with `schema`; when it does not match, tries again on what `repair` makes
 * of it (drop or null the parts that may safely be forgotten). `problem` says what did not match.
 */
export function readRecord<T>(
  schema: z.ZodType<T>,
  value: unknown,
  repair?: (value: Record<string, unknown>) => Record<string, unknown>,
): RecordRead<T> {
  const first = schema.safeParse(value);
  if (first.success) return { data: first.data, problem: null };
  const issue = first.error.issues[0];
  const problem = `${issue?.path.join(".") || "(record)"}: ${issue?.message ?? "invalid"}`;
  if (repair && value !== null && typeof value === "object" && !Array.isArray(value)) {
    const second = schema.safeParse(repair(value as Record<string, unknown>));
    if (second.success) return { data: second.data, problem };
  }
  return { data: null, problem };
}

/** The record of a stored `value` (repaired as `readRecord` does), or the schema's error. */
export function parseRecord<T>(
  schema: z.ZodType<T>,
  value: unknown,
  repair?: (value: Record<string, unknown>) => Record<string, unknown>,
): T {
  return readRecord(schema, value, repair).data ?? schema.parse(value);
}

/**
 * Every record under `prefix`, read with `read`: a bad one is repaired in memory or skipped, and
 * logged either way (one bad record must not stop a list from loading).
 */
export async function listRecords<T>(
  kv: Deno.Kv,
  prefix: Deno.KvKey,
  read: (value: unknown) => RecordRead<T>,
): Promise<T[]> {
  const out: T[] = [];
  for await (const entry of kv.list<unknown>({ prefix }, { batchSize: 1000 })) {
    const record = read(entry.value);
    reportBadRecord(entry, record);
    if (record.data) out.push(record.data);
  }
  return out;
}

/** Bad stored versions already reported on this isolate (key and versionstamp), at most 1,000. */
const reported = new Set<string>();

/**
 * Logs a stored record that did not match its schema (once per stored version on this isolate:
 * list readers run every few seconds), saying whether it was repaired in memory or skipped.
 */
export function reportBadRecord(
  entry: { key: Deno.KvKey; versionstamp: string },
  read: RecordRead<unknown>,
): void {
  if (read.problem === null) return;
  const id = `${JSON.stringify(entry.key)}@${entry.versionstamp}`;
  if (reported.has(id)) return;
  if (reported.size >= 1000) reported.clear();
  reported.add(id);
  const outcome = read.data === null
    ? "skipped"
    : "read with the bad values dropped (the next update stores the repair)";
  console.error(
    `Stored record ${
      JSON.stringify(entry.key)
    } does not match its schema (${read.problem}); ${outcome}`,
  );
}
