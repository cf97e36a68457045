/**
 * generateContent and streamGenerateContent across the key pool: one JSON answer, or a stream that
 * counts as opened only once its first event has been read (so every failure before the first
 * byte reaches the client can still move to another key). Shared by the OpenAI chat route and its
 * anti-truncation rounds.
 */
import { parseGoogleError } from "./errors.ts";
import type { Gateway } from "../gateway.ts";
import type { Deadline, Deadlines } from "../deadlines.ts";
import { estimateRequestTokens } from "../pool/estimate.ts";
import {
  type AttemptResult,
  EMPTY_ANSWER_BODY,
  type FailoverOptions,
  type FailoverResult,
  runWithFailover,
} from "../pool/failover.ts";
import { readSseData, type SseReader } from "./sse.ts";
import { type GenerateContentResponse, readGenerateContentResponse } from "./types.ts";

/** What a call targets. */
export interface CallTarget {
  /** The upstream model (pool bookkeeping and the path). */
  model: string;
  /** The client's abort signal. */
  signal?: AbortSignal;
  /** Only this key may serve (files uploaded with it). */
  pinnedKeyId?: string;
  /** Estimated input tokens, for the pool's TPM checks. */
  estimatedTokens?: number;
}

/** The failover options of a call, from the current settings. */
export async function failoverOptions(gw: Gateway, target: CallTarget): Promise<FailoverOptions> {
  const settings = gw.settings.current() ?? await gw.settings.get();
  return {
    model: target.model,
    maxAttempts: settings.maxAttempts,
    defaultCooldownMs: settings.defaultCooldownSeconds * 1000,
    now: gw.now,
    signal: target.signal,
    estimatedTokens: target.estimatedTokens,
    pinnedKeyId: target.pinnedKeyId,
  };
}

/** One parsed upstream payload, or why it is a failure. */
export type ParsedChunk =
  | { ok: true; value: GenerateContentResponse }
  | { ok: false; status: number; body: string };

/** Parses one upstream JSON payload; an `{"error": …}` payload or a bad shape is a failure. */
export function parseChunk(data: string): ParsedChunk {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return { ok: false, status: 502, body: `Upstream sent invalid JSON: ${data.slice(0, 100)}` };
  }
  if (Array.isArray(json) && json.length === 1) json = json[0];
  if (json && typeof json === "object" && "error" in json) {
    const code = Number((json as { error: { code?: unknown } }).error?.code);
    return { ok: false, status: Number.isFinite(code) && code >= 400 ? code : 500, body: data };
  }
  const parsed = readGenerateContentResponse(json);
  if (!parsed.success) return { ok: false, status: 502, body: "Upstream sent an unexpected shape" };
  return { ok: true, value: parsed.data };
}

/**
 * Whether an answer came back empty: it ended normally (`STOP`, or no reason) without a single
 * part, and nothing was blocked. Gemini 2.5 Pro sometimes answers so; asked again, it answers.
 */
export function isEmptyAnswer(res: GenerateContentResponse): boolean {
  if (res.promptFeedback?.blockReason) return false;
  return (res.candidates ?? []).every((c) =>
    (c.content?.parts ?? []).length === 0 &&
    (c.finishReason === undefined || c.finishReason === "STOP")
  );
}

/** Whether the first event of a stream ends it (`STOP`) as an empty answer. */
export function isEmptyStream(first: GenerateContentResponse): boolean {
  return isEmptyAnswer(first) && (first.candidates ?? []).some((c) => c.finishReason === "STOP");
}

/** What an empty answer counts as: upstream trouble, tried again with another key. */
export const EMPTY_ANSWER = {
  ok: false,
  status: 502,
  body: EMPTY_ANSWER_BODY,
} as const;

function modelPath(model: string, method: string): string {
  return `/v1beta/models/${encodeURIComponent(model)}:${method}`;
}

/** One generate call: where it goes and the Gemini request body. */
export interface GenerateCall extends CallTarget {
  body: unknown;
  /**
   * An empty answer is an answer (a continuation round with nothing left to add); otherwise it is
   * tried again with another key.
   */
  emptyIsAnswer?: boolean;
}

/**
 * Whether a 400 refuses the request's thinking configuration: a model that does not think, a level
 * or budget it does not take ("Thinking is not enabled for models/…", "Thinking level MEDIUM is
 * not supported for this model", "Budget 0 is invalid…"). Google changes these rules per model
 * without notice.
 */
export function refusesThinking(status: number, text: string): boolean {
  if (status !== 400) return false;
  // Google's message only: the body's status ("INVALID_ARGUMENT") must not count as a match.
  const message = parseGoogleError(text)?.error.message ?? text.slice(0, 500);
  return /thinking/i.test(message) &&
    /not enabled|not supported|is invalid|only works in thinking mode/i.test(message);
}

/** `body` without its `thinkingConfig`, as JSON, or null when it has none (pure). */
export function withoutThinking(body: unknown): string | null {
  const config = (body as { generationConfig?: Record<string, unknown> } | null)?.generationConfig;
  if (!config || !("thinkingConfig" in config)) return null;
  const { thinkingConfig: _dropped, ...rest } = config;
  return JSON.stringify({ ...(body as Record<string, unknown>), generationConfig: rest });
}

/**
 * A generate call's JSON body, which drops its thinking configuration for good once Gemini refuses
 * it (so the model's own default applies), and says whether it can still do so.
 */
class Payload {
  text: string;
  #body: unknown;
  #stripped = false;

  constructor(body: unknown) {
    this.#body = body;
    this.text = JSON.stringify(body);
  }

  /** Drops the thinking configuration after a refusal of it; false when there is nothing to drop. */
  dropThinking(status: number, answer: string): boolean {
    if (this.#stripped || !refusesThinking(status, answer)) return false;
    const stripped = withoutThinking(this.#body);
    this.#stripped = true;
    if (stripped === null) return false;
    this.text = stripped;
    return true;
  }
}

/** Calls generateContent with failover. */
export async function generateOnce(
  gw: Gateway,
  call: GenerateCall,
): Promise<FailoverResult<GenerateContentResponse>> {
  const { body, emptyIsAnswer, ...target } = call;
  const payload = new Payload(body);
  const options = await failoverOptions(gw, {
    ...target,
    estimatedTokens: target.estimatedTokens ?? estimateRequestTokens(body),
  });
  return await runWithFailover(gw.pool, options, async (key) => {
    const post = () =>
      gw.client.post(key.secret, {
        path: modelPath(target.model, "generateContent"),
        body: payload.text,
      }, target.signal);
    let res = await post();
    let text = await res.text();
    // Gemini refused the thinking settings: the same key once more, with the model's default.
    if (!res.ok && payload.dropThinking(res.status, text)) {
      res = await post();
      text = await res.text();
    }
    if (!res.ok) return { ok: false, status: res.status, body: text };
    const parsed = parseChunk(text);
    return parsed.ok && !emptyIsAnswer && isEmptyAnswer(parsed.value) ? EMPTY_ANSWER : parsed;
  });
}

/** An upstream stream whose first event has arrived. */
export interface OpenedStream {
  first: GenerateContentResponse;
  rest: SseReader;
}

/**
 * Opens streamGenerateContent with failover; `upstream` aborts the upstream request (the client
 * went away, or the stream is being abandoned).
 */
export async function openStream(
  gw: Gateway,
  call: GenerateCall & {
    upstream: AbortSignal;
    /** Work to do while the upstream works on the request (see `JsonPost.sent`). */
    sent?: () => void;
  },
): Promise<FailoverResult<OpenedStream>> {
  const { body, upstream, sent, emptyIsAnswer, ...target } = call;
  const payload = new Payload(body);
  const options = await failoverOptions(gw, {
    ...target,
    estimatedTokens: target.estimatedTokens ?? estimateRequestTokens(body),
  });
  return await runWithFailover(
    gw.pool,
    options,
    async (key): Promise<AttemptResult<OpenedStream>> => {
      const post = () =>
        gw.client.post(key.secret, {
          path: modelPath(target.model, "streamGenerateContent"),
          query: "alt=sse",
          body: payload.text,
          sent,
        }, upstream);
      let res = await post();
      if (!res.ok) {
        const text = await res.text();
        // Gemini refused the thinking settings: the same key once more, with the model's default.
        if (!payload.dropThinking(res.status, text)) {
          return { ok: false, status: res.status, body: text };
        }
        res = await post();
        if (!res.ok) return { ok: false, status: res.status, body: await res.text() };
      }
      const events = readSseData(res.body);
      const first = await events.next();
      if (first.done) {
        return { ok: false, status: 502, body: "Upstream stream ended with no data" };
      }
      const parsed = parseChunk(first.value);
      if (!parsed.ok) {
        await events.return();
        return parsed;
      }
      // A stream whose first event ends it with nothing in it is an empty answer.
      if (!emptyIsAnswer && isEmptyStream(parsed.value)) {
        await events.return();
        return EMPTY_ANSWER;
      }
      return { ok: true, value: { first: parsed.value, rest: events } };
    },
  );
}

/**
 * The next item of a stream, or `"timeout"` when none arrives within the upstream timeout of
 * asking, on the client's shared deadline timer (no timer of its own per stream or per item).
 */
export class IdleTimeout {
  #deadlines: Deadlines;
  #deadline: Deadline | null = null;
  #timeout: ((value: "timeout") => void) | null = null;

  constructor(deadlines: Deadlines) {
    this.#deadlines = deadlines;
  }

  /** The next item of `events`, or `"timeout"`. */
  next<T>(events: AsyncIterator<T>): Promise<IteratorResult<T> | "timeout"> {
    return new Promise((resolve, reject) => {
      const timeout = (value: "timeout") => resolve(value);
      this.#timeout = timeout;
      if (this.#deadline === null) this.#deadline = this.#deadlines.start(this.#fire);
      else this.#deadlines.restart(this.#deadline);
      events.next().then((item) => {
        if (this.#timeout !== timeout) return;
        this.#timeout = null;
        resolve(item);
      }, (err) => {
        if (this.#timeout !== timeout) return;
        this.#timeout = null;
        reject(err);
      });
    });
  }

  #fire = () => {
    this.#deadline = null;
    // Between items (the consumer has not asked again yet) nothing is waiting to time out.
    const timeout = this.#timeout;
    if (!timeout) return;
    this.#timeout = null;
    timeout("timeout");
  };

  /** Stops the timeout (the stream is over); an item still awaited resolves as it arrives. */
  close(): void {
    if (this.#deadline !== null) this.#deadlines.clear(this.#deadline);
    this.#deadline = null;
  }
}
