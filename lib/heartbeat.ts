/**
 * Heartbeats of a stream whose upstream is slow to start: a thinking model may take a minute or
 * more before its first event, and proxies in front of the gateway or a client's own timeout give
 * up on a connection that stays silent that long (Cloudflare's 524 after 100 s, for one). Past a
 * delay the response starts at once with heartbeats that SSE clients skip (a comment, or a blank
 * line where a client cannot take a comment), one per interval, and then carries the answer. An
 * answer that comes sooner is sent as it would be without heartbeats: checking costs a deadline on
 * a shared timer, not a timer each.
 */
import { type Deadline, Deadlines } from "./deadlines.ts";

/** What `SlowStarts.race` resolves with when the delay passed first. */
export const SLOW = Symbol("slow");

const encoder = new TextEncoder();

/** One SSE comment: what OpenAI-style streams get. */
export const KEEP_ALIVE_COMMENT = encoder.encode(": keep-alive\n\n");

/**
 * One blank line: what Gemini-native streams get. `@google/genai` before 3.x (the one gemini-cli
 * 0.61 bundles) reads a stream with `/^\s*data: (.*)(?:\n\n|\r\r|\r\n\r\n)/` from the start of
 * its buffer: a comment there is never consumed and ends the stream in "Incomplete JSON segment at
 * the end", while leading whitespace is skipped. SSE parsers ignore an empty event.
 */
export const KEEP_ALIVE_BLANK = encoder.encode("\n\n");

/** Races stream openings against a delay, on one shared timer per delay length. */
export class SlowStarts {
  #deadlines: Deadlines | null = null;

  /**
   * `opening`'s value, or `SLOW` once `afterMs` have passed without it (`opening` goes on: wait
   * for it again). An `afterMs` of 0 or less waits for `opening` alone.
   */
  race<T>(opening: Promise<T>, afterMs: number): Promise<T | typeof SLOW> {
    if (!(afterMs > 0)) return opening;
    const deadlines = this.#deadlinesOf(afterMs);
    return new Promise((resolve, reject) => {
      const deadline: Deadline = deadlines.start(() => resolve(SLOW));
      opening.then((value) => {
        deadlines.clear(deadline);
        resolve(value);
      }, (err) => {
        deadlines.clear(deadline);
        reject(err);
      });
    });
  }

  /** Stops the shared timer when nothing is pending (shutdown). */
  stop(): void {
    this.#deadlines?.stop();
  }

  #deadlinesOf(ms: number): Deadlines {
    if (this.#deadlines?.timeoutMs !== ms) {
      // The delay was changed: deadlines still pending on the old timer fire there.
      this.#deadlines = new Deadlines(ms);
    }
    return this.#deadlines;
  }
}

/**
 * A streamed response that sends a heartbeat (`beat`, default the SSE comment) now and one every
 * `everyMs` until `answer` is ready, then `answer`'s body. `cancel` runs when the client goes away
 * first (stop the upstream).
 */
export function heartbeatResponse(
  answer: Promise<Response>,
  options: { everyMs: number; headers: HeadersInit; cancel: () => void; beat?: Uint8Array },
): Response {
  const keepAlive = options.beat ?? KEEP_ALIVE_COMMENT;
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let cancelled = false;
  const beat = Symbol("beat");
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(keepAlive);
    },
    async pull(controller) {
      if (reader === null) {
        const next = await Promise.race([
          answer,
          new Promise<typeof beat>((
            resolve,
          ) => (timer = setTimeout(resolve, options.everyMs, beat))),
        ]);
        clearTimeout(timer);
        if (cancelled) {
          if (next !== beat) await next.body?.cancel();
          return;
        }
        if (next === beat) return controller.enqueue(keepAlive);
        if (!next.body) return controller.close();
        reader = next.body.getReader();
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      cancelled = true;
      clearTimeout(timer);
      options.cancel();
      if (reader) await reader.cancel(reason);
      else answer.then((res) => res.body?.cancel(reason), () => {});
    },
  });
  return new Response(body, { headers: options.headers });
}
