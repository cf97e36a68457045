/**
 * Responses whose body is complete when they are made (a string or bytes in memory), marked so
 * that code wrapping a response can tell without reading `response.body`: on a `Deno.serve`
 * response that getter makes a `ReadableStream`, and a `ReadableStream` made per request, even
 * one never read, makes Deno keep the request's young objects through a garbage collection (see
 * the chat route). Unmarked responses are treated as streams, which is always correct.
 */

const whole = new WeakSet<Response>();

/** Marks `res`, whose body is a string or bytes, as complete; returns it. */
export function markWhole(res: Response): Response {
  whole.add(res);
  return res;
}

/** Whether `res` was marked as having a complete body. */
export function isWhole(res: Response): boolean {
  return whole.has(res);
}
