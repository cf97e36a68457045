/**
 * Fixed-window request counters shared by every isolate through KV, for per-user-key RPM limits.
 */
import { backoff, MAX_OCC_ATTEMPTS } from "./kv_util.ts";

const WINDOW_MS = 60_000;

/** The outcome of taking one request from a window. */
export interface TakeResult {
  allowed: boolean;
  /** Requests counted in the current window after this call. */
  count: number;
  /** Milliseconds until the window resets. */
  resetInMs: number;
}

/**
 * Counts one request against `limit` per minute for `subject`, exactly: the increment is committed
 * only if the counter did not change since it was read, so concurrent requests cannot overshoot.
 */
export async function takeMinuteToken(
  kv: Deno.Kv,
  subject: string,
  options: { limit: number; now: number },
): Promise<TakeResult> {
  const window = Math.floor(options.now / WINDOW_MS);
  const key: Deno.KvKey = ["rl", subject, window];
  const resetInMs = (window + 1) * WINDOW_MS - options.now;
  for (let attempt = 0; attempt < MAX_OCC_ATTEMPTS * 4; attempt++) {
    const entry = await kv.get<number>(key);
    const count = entry.value ?? 0;
    if (count >= options.limit) return { allowed: false, count, resetInMs };
    const res = await kv.atomic().check(entry).set(key, count + 1, { expireIn: WINDOW_MS * 2 })
      .commit();
    if (res.ok) return { allowed: true, count: count + 1, resetInMs };
    await backoff(attempt);
  }
  // Under extreme contention refuse rather than risk exceeding the limit.
  return { allowed: false, count: options.limit, resetInMs };
}
