/**
 * One answer from one or more upstream rounds. Without anti-truncation that is a single call (or
 * stream). With it, an answer that stops at the model's output limit, or a stream cut before its
 * end, is continued: the partial answer goes back as a model turn, the next round's repeated start
 * is trimmed, and the client sees one answer (streams stay live; only the overlap window of each new
 * round is held back). Usage is summed over rounds.
 */
import type { Gateway } from "../gateway.ts";
import type { GatewayFailure } from "../pool/failover.ts";
import type { SseReader } from "./sse.ts";
import type { Attempt } from "../store/usage.ts";
import { addUsage, hasFunctionCalls, splitText } from "../translate/chat_response.ts";
import { continuationRequest, overlapLength, OverlapTrimmer } from "../translate/continuation.ts";
import {
  type CallTarget,
  generateOnce,
  IdleTimeout,
  type OpenedStream,
  openStream,
  parseChunk,
} from "./generate.ts";
import type {
  GenerateContentRequest,
  GenerateContentResponse,
  Part,
  UsageMetadata,
} from "./types.ts";

/** Anti-truncation settings of one request (null: off). */
export interface ContinueOptions {
  /** Continuation rounds at most. */
  rounds: number;
  /** Whether a stop at MAX_TOKENS is continued (not when the client chose the limit). */
  onMaxTokens: boolean;
}

/** A finished non-stream answer. */
export type RoundsResult =
  | { ok: true; value: GenerateContentResponse; attempts: Attempt[]; rounds: number }
  | { ok: false; failure: GatewayFailure; attempts: Attempt[] };

function continuable(res: GenerateContentResponse, options: ContinueOptions | null): boolean {
  const candidates = res.candidates ?? [];
  return !!options && options.onMaxTokens && candidates.length === 1 &&
    candidates[0].finishReason === "MAX_TOKENS" && !hasFunctionCalls(res);
}

/** Generates one whole answer, continuing it while it stops at the output limit. */
export async function generateWithRounds(
  gw: Gateway,
  call: CallTarget & { body: GenerateContentRequest },
  options: ContinueOptions | null,
): Promise<RoundsResult> {
  const { body, ...target } = call;
  const first = await generateOnce(gw, { ...target, body });
  if (!first.ok) return first;
  const attempts = [...first.attempts];
  let res = first.value;
  let rounds = 1;
  if (!continuable(res, options)) return { ok: true, value: res, attempts, rounds };
  const candidate = res.candidates![0];
  const parts = candidate.content?.parts ?? [];
  let { text, thoughts } = splitText(parts);
  // What the later rounds give besides text (pictures, function calls), in order.
  const later: Part[] = [];
  let usage: UsageMetadata | undefined = res.usageMetadata;
  let finishReason = candidate.finishReason;
  while (rounds <= options!.rounds && finishReason === "MAX_TOKENS") {
    const next = await generateOnce(gw, {
      ...target,
      body: continuationRequest(body, text, outputTokens(usage)),
      emptyIsAnswer: true,
    });
    if (!next.ok) {
      attempts.push(...next.attempts);
      break;
    }
    attempts.push(...next.attempts);
    rounds++;
    res = next.value;
    const c = res.candidates?.[0];
    const more = splitText(c?.content?.parts ?? []);
    text += more.text.slice(overlapLength(text, more.text));
    thoughts += more.thoughts;
    later.push(...(c?.content?.parts ?? []).filter((p) => typeof p.text !== "string"));
    usage = addUsage(usage, res.usageMetadata);
    finishReason = c?.finishReason;
    if (!c || hasFunctionCalls(res)) break;
  }
  // The rounds' text becomes one part where the first round's text was; the first round's other
  // parts keep their places, and the later rounds' follow.
  const merged: Part[] = [];
  if (thoughts) merged.push({ text: thoughts, thought: true });
  let placed = false;
  for (const p of parts) {
    if (typeof p.text !== "string") merged.push(p);
    else if (!placed && !p.thought) {
      placed = true;
      merged.push({ text });
    }
  }
  if (!placed) merged.push({ text });
  merged.push(...later);
  return {
    ok: true,
    attempts,
    rounds,
    value: {
      ...res,
      candidates: [{ ...candidate, content: { role: "model", parts: merged }, finishReason }],
      usageMetadata: usage,
    },
  };
}

/** The output tokens (thoughts included) of `usage`. */
function outputTokens(usage: UsageMetadata | undefined): number {
  return (usage?.candidatesTokenCount ?? 0) + (usage?.thoughtsTokenCount ?? 0);
}

/** What the next step of a stream is. */
export type StreamStep =
  | { kind: "chunk"; value: GenerateContentResponse }
  | { kind: "end" }
  | { kind: "error"; message: string };

/** What an upstream event makes of the stream: a step, or a round that broke off or goes on. */
type Turn =
  | { kind: "chunk"; value: GenerateContentResponse }
  | { kind: "end" }
  | { kind: "broken"; message: string }
  | { kind: "continue" };

/** What a stream of rounds is opened with. */
export interface StreamRoundsInit {
  target: CallTarget;
  body: GenerateContentRequest;
  options: ContinueOptions | null;
  /** Aborts every round's upstream request (the client went away, or the stream is over). */
  upstream: AbortController;
  /** Work to do while the first round's upstream works on the request (see `JsonPost.sent`). */
  sent?: () => void;
}

/** A stream of one answer over one or more upstream rounds. */
export class StreamRounds {
  #gw: Gateway;
  #target: CallTarget;
  #body: GenerateContentRequest;
  #options: ContinueOptions | null;
  #upstream: AbortController;
  #events: SseReader;
  #queue: GenerateContentResponse[] = [];
  #attempts: Attempt[];
  #round = 1;
  #answer = "";
  #trimmer: OverlapTrimmer | null = null;
  #finished = false;
  #continueNext = false;
  #sawCalls = false;
  #done = false;
  #usageBefore: UsageMetadata | undefined;
  #roundUsage: UsageMetadata | undefined;
  /** The wait for the next event, made when the stream first has to wait. */
  #idle: IdleTimeout | null = null;
  /** The upstream answer ended normally: nothing is left to abort. */
  #ended = false;
  /** What `poll` found but left to `next`: a round that broke off or goes on. */
  #held: Turn | null = null;

  private constructor(
    gw: Gateway,
    init: StreamRoundsInit & { opened: OpenedStream; attempts: Attempt[] },
  ) {
    this.#gw = gw;
    this.#target = init.target;
    this.#body = init.body;
    this.#options = init.options;
    this.#upstream = init.upstream;
    this.#events = init.opened.rest;
    this.#attempts = [...init.attempts];
    this.#queue.push(this.#process(init.opened.first));
  }

  /** Opens the first round (with failover); fails like a normal upstream call would. */
  static async open(
    gw: Gateway,
    init: StreamRoundsInit,
  ): Promise<
    | { ok: true; value: StreamRounds }
    | { ok: false; failure: GatewayFailure; attempts: Attempt[] }
  > {
    const opened = await openStream(gw, {
      ...init.target,
      body: init.body,
      upstream: init.upstream.signal,
      sent: init.sent,
    });
    if (!opened.ok) return opened;
    return {
      ok: true,
      value: new StreamRounds(gw, { ...init, opened: opened.value, attempts: opened.attempts }),
    };
  }

  /** Every upstream attempt so far. */
  get attempts(): Attempt[] {
    return this.#attempts;
  }

  /** Usage of every round so far. */
  get usage(): UsageMetadata | undefined {
    return addUsage(this.#usageBefore, this.#roundUsage);
  }

  /** Whether the answer's output so far fills the request's output limit, when it has one. */
  #limitReached(): boolean {
    const limit = this.#body.generationConfig?.maxOutputTokens;
    return typeof limit === "number" && outputTokens(this.usage) >= limit;
  }

  #roundsLeft(): boolean {
    return !!this.#options && this.#round <= this.#options.rounds && !this.#sawCalls;
  }

  #process(res: GenerateContentResponse): GenerateContentResponse {
    if (res.usageMetadata) this.#roundUsage = res.usageMetadata;
    if (hasFunctionCalls(res)) this.#sawCalls = true;
    const candidates = res.candidates ?? [];
    const out: GenerateContentResponse = { ...res, usageMetadata: this.usage };
    if (!this.#options || candidates.length !== 1) {
      if (candidates.some((c) => c.finishReason) || res.promptFeedback?.blockReason) {
        this.#finished = true;
      }
      return out;
    }
    const c = candidates[0];
    const parts = c.content?.parts ?? [];
    let text = splitText(parts).text;
    if (this.#trimmer) text = this.#trimmer.push(text);
    const finishing = !!c.finishReason;
    if (finishing && this.#trimmer) text += this.#trimmer.end();
    this.#answer += text;
    // The answer's text parts become the one trimmed text, where the first of them was (pictures
    // and thoughts keep their places).
    const rebuilt: Part[] = [];
    let placed = false;
    for (const p of parts) {
      // A continuation's thoughts are about going on, and would open a second block of thoughts
      // in the middle of the answer's text: they are left out.
      if (p.thought && this.#round > 1) continue;
      if (typeof p.text !== "string" || p.thought) rebuilt.push(p);
      else if (!placed) {
        placed = true;
        if (text) rebuilt.push({ text });
      }
    }
    if (!placed && text) rebuilt.push({ text });
    const candidate = { ...c, content: { role: "model", parts: rebuilt } };
    if (finishing) {
      if (c.finishReason === "MAX_TOKENS" && this.#options.onMaxTokens && this.#roundsLeft()) {
        this.#continueNext = true;
        delete candidate.finishReason;
      } else this.#finished = true;
    }
    out.candidates = [candidate];
    return out;
  }

  async #nextRound(): Promise<string | null> {
    await this.#events.return().catch(() => {});
    if (this.#trimmer) {
      const held = this.#trimmer.end();
      if (held) {
        this.#answer += held;
        this.#queue.push({
          candidates: [{ index: 0, content: { role: "model", parts: [{ text: held }] } }],
        });
      }
    }
    this.#round++;
    this.#continueNext = false;
    this.#usageBefore = this.usage;
    this.#roundUsage = undefined;
    const opened = await openStream(this.#gw, {
      ...this.#target,
      body: continuationRequest(this.#body, this.#answer, outputTokens(this.#usageBefore)),
      upstream: this.#upstream.signal,
      emptyIsAnswer: true,
    });
    this.#attempts.push(...opened.attempts);
    if (!opened.ok) return opened.failure.message;
    this.#events = opened.value.rest;
    this.#trimmer = new OverlapTrimmer(this.#answer);
    this.#queue.push(this.#process(opened.value.first));
    return null;
  }

  /**
   * The upstream has sent the last chunk of the answer (none is queued): only the end of its body
   * is left to come (or, against the protocol, more chunks).
   */
  get finishing(): boolean {
    return this.#finished && this.#queue.length === 0 && !this.#done;
  }

  /**
   * The next step when it is in hand (a chunk already received, or the end of an upstream body
   * that has ended): no promise and no turn of the event loop. Null when it must be waited for
   * (`next`).
   */
  poll(): StreamStep | null {
    const queued = this.#queue.shift();
    if (queued) return { kind: "chunk", value: queued };
    if (this.#done) return { kind: "end" };
    if (this.#held !== null) return null;
    const item = this.#events.poll();
    if (item === null) return null;
    const turn = this.#turn(item);
    if (turn.kind === "chunk" || turn.kind === "end") return turn;
    // A round that broke off or goes on is left to `next`: it may have to open a new one.
    this.#held = turn;
    return null;
  }

  /** The next step: a chunk to send, the end, or an error that ends the stream. */
  async next(): Promise<StreamStep> {
    while (true) {
      const polled = this.poll();
      if (polled !== null) return polled;
      let turn = this.#held;
      this.#held = null;
      if (turn === null) turn = await this.#wait();
      if (turn.kind === "chunk" || turn.kind === "end") return turn;
      if (turn.kind === "broken" && !(this.#options && this.#roundsLeft())) {
        this.close();
        return { kind: "error", message: turn.message };
      }
      if (this.#limitReached()) {
        // The rounds so far wrote all the output the request allows: it ends there, cut at its
        // limit (with the text a trimmer still held), rather than with a round of one token.
        const held = this.#trimmer?.end() ?? "";
        this.close();
        return {
          kind: "chunk",
          value: {
            candidates: [{
              index: 0,
              content: { role: "model", parts: held ? [{ text: held }] : [] },
              finishReason: "MAX_TOKENS",
            }],
            usageMetadata: this.usage,
          },
        };
      }
      const failed = await this.#nextRound();
      if (failed !== null) {
        this.close();
        return { kind: "error", message: `The answer could not be continued: ${failed}` };
      }
    }
  }

  /**
   * Waits for the next upstream event. A silence past the timeout or a failed read breaks the
   * round off, unless the answer had finished already: then only the end of the body was missing,
   * and the stream ends cleanly.
   */
  async #wait(): Promise<Turn> {
    this.#idle ??= new IdleTimeout(this.#gw.client.deadlines);
    let item: IteratorResult<string> | "timeout";
    try {
      item = await this.#idle.next(this.#events);
    } catch (err) {
      // The client went away (the upstream was aborted): nothing is continued for it.
      if (this.#upstream.signal.aborted) throw err;
      if (this.#finished) return this.#endEarly();
      const detail = err instanceof Error ? err.message : String(err);
      return { kind: "broken", message: `Upstream stream failed: ${detail}` };
    }
    if (item !== "timeout") return this.#turn(item);
    if (this.#finished) return this.#endEarly();
    return {
      kind: "broken",
      message: `Upstream sent nothing for ${this.#gw.client.deadlines.timeoutMs} ms; ` +
        "the answer is incomplete",
    };
  }

  /** The end of an answer whose last chunk came but whose body did not end: let it go. */
  #endEarly(): Turn {
    this.close();
    return { kind: "end" };
  }

  /** What an upstream event (or the end of its body) makes of the stream. */
  #turn(item: IteratorResult<string>): Turn {
    if (item.done) {
      if (this.#finished) {
        this.#done = true;
        this.#ended = true;
        this.#idle?.close();
        return { kind: "end" };
      }
      if (this.#continueNext) return { kind: "continue" };
      return {
        kind: "broken",
        message: "Upstream ended the stream before the answer was complete",
      };
    }
    const parsed = parseChunk(item.value);
    if (parsed.ok) return { kind: "chunk", value: this.#process(parsed.value) };
    // Garbage after the answer's last chunk does not spoil the answer.
    if (this.#finished) return this.#endEarly();
    return {
      kind: "broken",
      message: `Upstream failed during the stream: ${parsed.body.slice(0, 300)}`,
    };
  }

  /** Stops the upstream (the client went away, or the stream is over). */
  close(): void {
    this.#done = true;
    this.#idle?.close();
    // An answer that ended normally has released its connection and read its events to the end:
    // aborting and cancelling would only cost.
    if (this.#ended) return;
    this.#upstream.abort();
    this.#events.return().catch(() => {});
  }
}
