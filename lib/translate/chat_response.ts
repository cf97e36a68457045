/**
 * Gemini generateContent response -> OpenAI chat completion (pure), with the finish-reason, usage,
 * tool-call and log-probability mappings shared by the streaming translator.
 */
import {
  type Candidate,
  type GenerateContentResponse,
  isObject,
  type LogprobsResult,
  type Part,
  USAGE_FIELDS,
  type UsageMetadata,
} from "../gemini/types.ts";
import { makeToolCallId, randomIdPart } from "./tool_ids.ts";

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

/** One tool call of an assistant message. */
export interface ChatToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
  /** The thought signature as Google's OpenAI layer carries it, for clients that keep it. */
  extra_content?: { google: { thought_signature: string } };
}

/** A web source cited in an answer, as OpenAI's search models report one. */
export interface UrlCitation {
  type: "url_citation";
  url_citation: { url: string; title: string; start_index: number; end_index: number };
}

/** An assistant message of a chat completion. */
export interface ChatMessage {
  role: "assistant";
  content: string | null;
  refusal: null;
  reasoning_content?: string;
  tool_calls?: ChatToolCall[];
  annotations?: UrlCitation[];
}

/** One token's log probability, as OpenAI reports it. */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** `choices[].logprobs`. */
export interface ChoiceLogprobs {
  content: TokenLogprob[];
  refusal: null;
}

/** A non-streamed chat completion. */
export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    index: number;
    message: ChatMessage;
    logprobs: ChoiceLogprobs | null;
    finish_reason: FinishReason;
  }[];
  usage: ChatUsage;
}

/** A function call the model made, before it gets an OpenAI id. */
export interface FunctionCallInfo {
  name: string;
  args: unknown;
  /** Gemini's own call id, when it sent one. */
  geminiId?: string;
  /** The thought signature on this part, when there is one. */
  signature?: string;
  /** The part's `functionCall` object (identity used to look up a precomputed id). */
  source: object;
}

/** Names function calls with OpenAI tool-call ids (the route stores signatures behind them). */
export type ToolCallNamer = (call: FunctionCallInfo) => string;

/** Identity of one completion, shared by all its chunks. */
export interface CompletionContext {
  id: string;
  created: number;
  model: string;
  /** Ids for function calls; default: fresh random ids. */
  nameCall?: ToolCallNamer;
  /** Whether the client asked for log probabilities. */
  logprobs?: boolean;
  /**
   * Thought summaries go into `content` between `<think>` tags (for apps that show only content)
   * instead of `reasoning_content`.
   */
  thinkTags?: boolean;
}

/** What opens and closes thoughts put into `content`. */
export const THINK_OPEN = "<think>\n";
export const THINK_CLOSE = "\n</think>\n\n";

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

/** Adds two usage records field by field (for answers assembled from several upstream calls). */
export function addUsage(a: UsageMetadata | undefined, b: UsageMetadata | undefined) {
  if (!a) return b;
  if (!b) return a;
  const sum = (x?: number, y?: number) =>
    x === undefined && y === undefined ? undefined : (x ?? 0) + (y ?? 0);
  const out: UsageMetadata = {};
  for (const k of USAGE_FIELDS) {
    const v = sum(a[k], b[k]);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/**
 * An image Gemini drew, as Markdown every chat app shows: `![image](data:<mime>;base64,...)`, on a
 * paragraph of its own after `before` (the answer text so far).
 */
export function imageMarkdown(image: { mimeType: string; data: string }, before: string): string {
  const gap = before === "" || before.endsWith("\n\n") ? "" : before.endsWith("\n") ? "\n" : "\n\n";
  return `${gap}![image](data:${image.mimeType};base64,${image.data})\n\n`;
}

/**
 * Splits parts into answer text and thought-summary text. With `images` (what a client is shown),
 * the answer's pictures (an image model's output) become Markdown images in the text; images among
 * the thoughts are left out.
 */
export function splitText(
  parts: readonly Part[],
  options: { images?: boolean } = {},
): { text: string; thoughts: string } {
  let text = "";
  let thoughts = "";
  for (const p of parts) {
    if (typeof p.text === "string") {
      if (p.thought) thoughts += p.text;
      else text += p.text;
    } else if (options.images && p.inlineData?.mimeType.startsWith("image/") && !p.thought) {
      text += imageMarkdown(p.inlineData, text);
    }
  }
  return { text, thoughts };
}

/** Whether any candidate of `res` calls a function. */
export function hasFunctionCalls(res: GenerateContentResponse): boolean {
  for (const c of res.candidates ?? []) {
    for (const part of c.content?.parts ?? []) if (part.functionCall) return true;
  }
  return false;
}

/** The function calls among `parts`, in order. */
export function functionCalls(parts: readonly Part[]): FunctionCallInfo[] {
  const out: FunctionCallInfo[] = [];
  for (const p of parts) {
    if (!p.functionCall) continue;
    const call: FunctionCallInfo = {
      name: p.functionCall.name,
      args: p.functionCall.args ?? {},
      source: p.functionCall,
    };
    if (p.functionCall.id) call.geminiId = p.functionCall.id;
    if (p.thoughtSignature) call.signature = p.thoughtSignature;
    out.push(call);
  }
  return out;
}

/** A fresh tool-call id that points at nothing stored. */
export function plainToolCallId(): string {
  return makeToolCallId(randomIdPart());
}

/** The OpenAI tool call of a Gemini function call. */
export function toToolCall(call: FunctionCallInfo, namer: ToolCallNamer | undefined): ChatToolCall {
  const out: ChatToolCall = {
    id: namer ? namer(call) : plainToolCallId(),
    type: "function",
    function: { name: call.name, arguments: JSON.stringify(call.args ?? {}) },
  };
  if (call.signature) out.extra_content = { google: { thought_signature: call.signature } };
  return out;
}

const utf8 = new TextEncoder();

/** Maps Gemini's `logprobsResult` to OpenAI's `logprobs.content`. */
export function mapLogprobs(result: LogprobsResult | undefined): TokenLogprob[] {
  const chosen = result?.chosenCandidates ?? [];
  const tops = result?.topCandidates ?? [];
  return chosen.map((c, i) => {
    const token = c.token ?? "";
    return {
      token,
      logprob: c.logProbability ?? 0,
      bytes: [...utf8.encode(token)],
      top_logprobs: (tops[i]?.candidates ?? []).map((t) => ({
        token: t.token ?? "",
        logprob: t.logProbability ?? 0,
        bytes: [...utf8.encode(t.token ?? "")],
      })),
    };
  });
}

/** The OpenAI message of one candidate. */
export function candidateMessage(
  candidate: Candidate,
  namer: ToolCallNamer | undefined,
  options: { thinkTags?: boolean } = {},
): { message: ChatMessage; hasToolCalls: boolean } {
  const parts = candidate.content?.parts ?? [];
  let { text, thoughts } = splitText(parts, { images: true });
  if (options.thinkTags && thoughts) {
    text = THINK_OPEN + thoughts + THINK_CLOSE + text;
    thoughts = "";
  }
  const calls = functionCalls(parts).map((c) => toToolCall(c, namer));
  const message: ChatMessage = {
    role: "assistant",
    content: text || (calls.length ? null : text),
    refusal: null,
  };
  if (thoughts) message.reasoning_content = thoughts;
  if (calls.length) message.tool_calls = calls;
  const sources = webSources(candidate.groundingMetadata);
  if (sources.length) {
    const footer = sourcesFooter(sources, text.length);
    message.content = text + footer.text;
    message.annotations = footer.annotations;
  }
  return { message, hasToolCalls: calls.length > 0 };
}

/** A web page Gemini grounded an answer on (Google Search). */
export interface WebSource {
  url: string;
  title: string;
}

/** The web pages of a candidate's `groundingMetadata`, in order, each once. */
export function webSources(grounding: unknown): WebSource[] {
  if (!isObject(grounding) || !Array.isArray(grounding.groundingChunks)) return [];
  const out: WebSource[] = [];
  const seen = new Set<string>();
  for (const chunk of grounding.groundingChunks) {
    const web = isObject(chunk) && isObject(chunk.web) ? chunk.web : null;
    const url = web?.uri;
    if (typeof url !== "string" || !/^https?:\/\//.test(url) || seen.has(url)) continue;
    seen.add(url);
    const title = typeof web!.title === "string" && web!.title.trim() ? web!.title.trim() : url;
    out.push({ url, title });
  }
  return out;
}

/**
 * What an answer grounded on web pages ends with: a rule and one numbered Markdown link per page
 * (every chat app shows it), and each link as an OpenAI `url_citation` annotation over its own
 * text, counted from `offset` (the length of the answer before it).
 */
export function sourcesFooter(
  sources: readonly WebSource[],
  offset: number,
): { text: string; annotations: UrlCitation[] } {
  let text = "\n\n---\n";
  const annotations: UrlCitation[] = [];
  sources.forEach((s, i) => {
    const label = `[${s.title.replace(/[[\]\s]+/g, " ").trim()}](${
      s.url.replace(/[()\s]/g, (c) =>
        `%${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`)
    })`;
    text += `${i ? "\n" : ""}${i + 1}. `;
    const start = offset + text.length;
    text += label;
    annotations.push({
      type: "url_citation",
      url_citation: {
        url: s.url,
        title: s.title,
        start_index: start,
        end_index: start + label.length,
      },
    });
  });
  return { text, annotations };
}

/** Translates a whole generateContent response. */
export function toChatCompletion(
  res: GenerateContentResponse,
  ctx: CompletionContext,
): ChatCompletion {
  const candidates = [...(res.candidates ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
  const choices: ChatCompletion["choices"] = candidates.map((c, i) => {
    const { message, hasToolCalls } = candidateMessage(c, ctx.nameCall, ctx);
    return {
      index: c.index ?? i,
      message,
      logprobs: ctx.logprobs ? { content: mapLogprobs(c.logprobsResult), refusal: null } : null,
      finish_reason: mapFinishReason(c.finishReason, hasToolCalls),
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
