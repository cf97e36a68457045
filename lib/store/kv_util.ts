/**
 * Small helpers shared by the store modules: bounded optimistic-concurrency retries, and reads of
 * many keys at once.
 */

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
