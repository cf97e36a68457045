/**
 * Gemini generateContent response -> OpenAI chat completion (pure), with the finish-reason and
 * usage mappings shared by the streaming translator.
 */
import type { GenerateContentResponse, Part, UsageMetadata } from "../gemini/types.ts";

/** OpenAI's finish reasons. */
export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter";

/** OpenAI's usage object. */
export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens_details: { reasoning_tokens: number };
}

/** An assistant message of a chat completion. */
export interface ChatMessage {
  role: "assistant";
  content: string | null;
  refusal: null;
  reasoning_content?: string;
}

/** A non-streamed chat completion. */
export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: number; message: ChatMessage; logprobs: null; finish_reason: FinishReason }[];
  usage: ChatUsage;
}

/** Identity of one completion, shared by all its chunks. */
export interface CompletionContext {
  id: string;
  created: number;
  model: string;
}

const FILTER_REASONS = new Set([
  "SAFETY",
  "RECITATION",
  "BLOCKLIST",
  "PROHIBITED_CONTENT",
  "SPII",
  "IMAGE_SAFETY",
  "IMAGE_PROHIBITED_CONTENT",
  "IMAGE_RECITATION",
  "LANGUAGE",
]);

/** Maps a Gemini `finishReason` to OpenAI's. */
export function mapFinishReason(reason: string | undefined, hasToolCalls = false): FinishReason {
  if (hasToolCalls) return "tool_calls";
  if (reason === "MAX_TOKENS") return "length";
  if (reason && FILTER_REASONS.has(reason)) return "content_filter";
  return "stop";
}

/** Maps Gemini `usageMetadata` to OpenAI usage; reasoning tokens are part of completion tokens. */
export function mapUsage(u: UsageMetadata | undefined): ChatUsage {
  const prompt = (u?.promptTokenCount ?? 0) + (u?.toolUsePromptTokenCount ?? 0);
  const thoughts = u?.thoughtsTokenCount ?? 0;
  const completion = (u?.candidatesTokenCount ?? 0) + thoughts;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: u?.totalTokenCount ?? prompt + completion,
    prompt_tokens_details: { cached_tokens: u?.cachedContentTokenCount ?? 0 },
    completion_tokens_details: { reasoning_tokens: thoughts },
  };
}

/** Splits parts into answer text and thought-summary text. */
export function splitText(parts: readonly Part[]): { text: string; thoughts: string } {
  let text = "";
  let thoughts = "";
  for (const p of parts) {
    if (typeof p.text !== "string") continue;
    if (p.thought) thoughts += p.text;
    else text += p.text;
  }
  return { text, thoughts };
}

/** Translates a whole generateContent response. */
export function toChatCompletion(
  res: GenerateContentResponse,
  ctx: CompletionContext,
): ChatCompletion {
  const candidates = [...(res.candidates ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
  const choices: ChatCompletion["choices"] = candidates.map((c, i) => {
    const { text, thoughts } = splitText(c.content?.parts ?? []);
    const message: ChatMessage = { role: "assistant", content: text, refusal: null };
    if (thoughts) message.reasoning_content = thoughts;
    return {
      index: c.index ?? i,
      message,
      logprobs: null,
      finish_reason: mapFinishReason(c.finishReason),
    };
  });
  if (choices.length === 0) {
    // The prompt was blocked (promptFeedback.blockReason) or nothing came back.
    choices.push({
      index: 0,
      message: { role: "assistant", content: null, refusal: null },
      logprobs: null,
      finish_reason: res.promptFeedback?.blockReason ? "content_filter" : "stop",
    });
  }
  return {
    id: ctx.id,
    object: "chat.completion",
    created: ctx.created,
    model: ctx.model,
    choices,
    usage: mapUsage(res.usageMetadata),
  };
}
