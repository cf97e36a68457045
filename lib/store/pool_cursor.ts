/**
 * The round-robin rotation shared by every isolate: one counter `["pool", "rr"]` from which
 * isolates lease blocks of consecutive positions, so the rotation costs one KV commit per block
 * rather than per request.
 */
import { backoff, ConflictError, MAX_OCC_ATTEMPTS } from "./kv_util.ts";

const KEY: Deno.KvKey = ["pool", "rr"];

/** Leases `size` consecutive positions; returns the first. */
export async function leasePositions(kv: Deno.Kv, size: number): Promise<number> {
  for (let attempt = 0; attempt < MAX_OCC_ATTEMPTS; attempt++) {
    const entry = await kv.get<Deno.KvU64>(KEY);
    const start = entry.value instanceof Deno.KvU64 ? Number(entry.value.value) : 0;
    // Wrap long before the precision of a double runs out.
    const next = start + size > Number.MAX_SAFE_INTEGER / 2 ? size : start + size;
    const res = await kv.atomic().check(entry).set(KEY, new Deno.KvU64(BigInt(next))).commit();
    if (res.ok) return next === size ? 0 : start;
    await backoff(attempt);
  }
  throw new ConflictError("the round-robin cursor");
}

/** The next position the rotation would lease (for the admin view and tests). */
export async function readCursor(kv: Deno.Kv): Promise<number> {
  const entry = await kv.get(KEY);
  return entry.value instanceof Deno.KvU64 ? Number(entry.value.value) : 0;
}
