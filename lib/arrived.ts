/**
 * Tells a read whose data is already in hand from one that waits for the network, without a
 * timer: Deno polls an op once when it is called, so a read of bytes that have reached the runtime
 * settles within a few microtask turns, while one that waits for the network settles only after
 * the event loop has turned. A stream that sends what arrived together as one write (as a pipe in
 * Rust does: hyper writes every frame it has before it flushes) uses it to keep going while data is
 * there and to send as soon as it is not, so no answer waits for data that has not come.
 */

/** Microtask turns a read of data in hand takes through the gateway's stream layers, with room. */
export const ARRIVAL_TURNS = 40;

/** The outcome of a promise that settled in time. */
export type Arrived<T> = { value: T };

/**
 * `promise`'s value if it settles within `turns` microtask turns, else null (the promise goes on:
 * await it later, its rejection is handled here meanwhile). Rejects if it rejects in time.
 */
export async function arrived<T>(
  promise: Promise<T>,
  turns: number = ARRIVAL_TURNS,
): Promise<Arrived<T> | null> {
  const box: { settled?: { value: T } | { error: unknown } } = {};
  promise.then((value) => (box.settled = { value }), (error) => (box.settled = { error }));
  for (let i = 0; i < turns && box.settled === undefined; i++) await undefined;
  const settled = box.settled;
  if (settled === undefined) return null;
  if ("error" in settled) throw settled.error;
  return settled;
}
