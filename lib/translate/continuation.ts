/**
 * Anti-truncation (pure): when an answer stops at the model's output limit or its stream is cut
 * before the end, the gateway asks again with the partial answer sent back as a model turn and a
 * short "continue" turn, then joins the parts without the overlap models tend to repeat.
 */
import type { GenerateContentRequest } from "../gemini/types.ts";

/** The user turn that asks the model to go on. */
export const CONTINUE_PROMPT =
  "Continue exactly where your previous answer stopped, mid-sentence if needed. Do not repeat " +
  "anything you already wrote and do not add any preamble.";

/** Shortest repeated text treated as an overlap (shorter matches are likely coincidence). */
export const MIN_OVERLAP = 8;
/** Longest overlap looked for, in characters. */
export const OVERLAP_WINDOW = 400;

/**
 * The request for the next round: the original one plus the partial answer and "continue"; the
 * original one again when no text came yet (the model was still thinking: an empty model turn
 * would only be refused). With an output limit, the round may only write what the earlier rounds
 * left of it (`used`: their output tokens, thoughts included), so the answer stays within it.
 */
export function continuationRequest(
  body: GenerateContentRequest,
  partial: string,
  used = 0,
): GenerateContentRequest {
  const limit = body.generationConfig?.maxOutputTokens;
  const limited = typeof limit === "number" && used > 0
    ? {
      ...body,
      generationConfig: { ...body.generationConfig, maxOutputTokens: Math.max(1, limit - used) },
    }
    : body;
  if (partial === "") return limited;
  return {
    ...limited,
    contents: [
      ...body.contents,
      { role: "model", parts: [{ text: partial }] },
      { role: "user", parts: [{ text: CONTINUE_PROMPT }] },
    ],
  };
}

/**
 * How many leading characters of `next` repeat the end of `previous` (0 when less than
 * `MIN_OVERLAP` match, or when `next` is shorter than that and may still grow).
 */
export function overlapLength(previous: string, next: string): number {
  const max = Math.min(previous.length, next.length, OVERLAP_WINDOW);
  for (let n = max; n >= MIN_OVERLAP; n--) {
    if (previous.endsWith(next.slice(0, n))) return n;
  }
  return 0;
}

/**
 * Trims the repeated start of a continuation as it streams: text is held back until enough has
 * arrived to decide (or the round ends), then everything flows through at once.
 */
export class OverlapTrimmer {
  #previousTail: string;
  #held = "";
  #decided = false;

  constructor(previous: string) {
    this.#previousTail = previous.slice(-OVERLAP_WINDOW);
  }

  /** Text of the continuation as it arrives; returns what may be shown now. */
  push(text: string): string {
    if (this.#decided) return text;
    this.#held += text;
    if (this.#held.length < OVERLAP_WINDOW && !this.#couldNeverOverlap()) return "";
    return this.#decide();
  }

  /** The round ended: whatever is still held back, trimmed. */
  end(): string {
    return this.#decided ? "" : this.#decide();
  }

  #couldNeverOverlap(): boolean {
    // Once the held text is long enough and appears nowhere in the tail, nothing will be trimmed.
    return this.#held.length >= MIN_OVERLAP &&
      !this.#previousTail.includes(this.#held.slice(0, MIN_OVERLAP));
  }

  #decide(): string {
    this.#decided = true;
    const n = overlapLength(this.#previousTail, this.#held);
    const out = this.#held.slice(n);
    this.#held = "";
    return out;
  }
}
