/**
 * Gemini stream chunks -> OpenAI `chat.completion.chunk` objects (pure and incremental: it holds
 * only what it needs to finish the stream correctly, never the whole answer).
 */
import type { GenerateContentResponse, UsageMetadata } from "../gemini/types.ts";
import {
  type ChatToolCall,
  type ChatUsage,
  type ChoiceLogprobs,
  type CompletionContext,
  type FinishReason,
  functionCalls,
  mapFinishReason,
  mapLogprobs,
  mapUsage,
  sourcesFooter,
  splitText,
  THINK_CLOSE,
  THINK_OPEN,
  toToolCall,
  type UrlCitation,
  webSources,
} from "./chat_response.ts";

/** A tool call in a stream delta: `index` is its position within the message. */
export interface ToolCallDelta extends ChatToolCall {
  index: number;
}

/** The delta of one streamed choice. */
export interface ChunkDelta {
  role?: "assistant";
  content?: string;
  reasoning_content?: string;
  tool_calls?: ToolCallDelta[];
  annotations?: UrlCitation[];
}

/** One OpenAI stream chunk. */
export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: {
    index: number;
    delta: ChunkDelta;
    logprobs: ChoiceLogprobs | null;
    finish_reason: FinishReason | null;
  }[];
  usage?: ChatUsage | null;
}

/** OpenAI-shaped error event payload sent inside a stream. */
export interface StreamErrorEvent {
  error: { message: string; type: string; param: null; code: string };
}

/** Translates one Gemini stream into OpenAI chunks. */
export class ChatStreamTranslator {
  #ctx: CompletionContext;
  #includeUsage: boolean;
  #usage: UsageMetadata | undefined;
  #finished = new Set<number>();
  /** Tool calls emitted so far, per choice (their count is the next call's `index`). */
  #calls = new Map<number, number>();
  /** Content sent so far per choice, in UTF-16 units (where a sources footer starts). */
  #sent = new Map<number, number>();
  /** Choices whose thoughts are being sent in `content`, their `<think>` open (`thinkTags`). */
  #thinking = new Set<number>();
  /** The latest Google Search grounding per choice, sent as sources when the choice ends. */
  #grounding = new Map<number, unknown>();
  #started = false;
  /** The SSE text every chunk of this stream starts with (see `sse`). */
  #prefix: string;
  /** The stream's first chunk (the assistant's role) and its SSE text. */
  #opening: ChatCompletionChunk;
  #openingSse: string;

  /**
   * Serializes what every stream starts with at once: a stream's translator is made while the
   * upstream works on the request (see the chat route), so this work is off the answer's path.
   */
  constructor(ctx: CompletionContext, options: { includeUsage: boolean }) {
    this.#ctx = ctx;
    this.#includeUsage = options.includeUsage;
    this.#prefix = `data: ${
      JSON.stringify({
        id: ctx.id,
        object: "chat.completion.chunk",
        created: ctx.created,
        model: ctx.model,
      }).slice(0, -1)
    },"choices":`;
    this.#opening = this.#chunk(0, { role: "assistant", content: "" });
    this.#openingSse = this.#serialize(this.#opening);
  }

  #chunk(
    index: number,
    delta: ChunkDelta,
    finish: FinishReason | null = null,
    logprobs: ChoiceLogprobs | null = null,
  ): ChatCompletionChunk {
    const chunk: ChatCompletionChunk = {
      id: this.#ctx.id,
      object: "chat.completion.chunk",
      created: this.#ctx.created,
      model: this.#ctx.model,
      choices: [{ index, delta, logprobs, finish_reason: finish }],
    };
    if (this.#includeUsage) chunk.usage = null;
    return chunk;
  }

  /** A content chunk, counted (a sources footer is placed after what was sent). */
  #content(index: number, content: string, logprobs: ChoiceLogprobs | null): ChatCompletionChunk {
    this.#sent.set(index, (this.#sent.get(index) ?? 0) + content.length);
    return this.#chunk(index, { content }, null, logprobs);
  }

  /** What closes a choice's thoughts sent in `content` ("" when none are open). */
  #closeThinking(index: number): string {
    return this.#thinking.delete(index) ? THINK_CLOSE : "";
  }

  /** The last usage the upstream reported. */
  get usage(): UsageMetadata | undefined {
    return this.#usage;
  }

  /** Whether the upstream reported a finish reason (the answer is complete). */
  get complete(): boolean {
    return this.#finished.size > 0;
  }

  /** Whether anything (even the role chunk) has been produced. */
  get started(): boolean {
    return this.#started;
  }

  /** Translates one upstream chunk into zero or more OpenAI chunks. */
  push(res: GenerateContentResponse): ChatCompletionChunk[] {
    if (res.usageMetadata) this.#usage = res.usageMetadata;
    const out: ChatCompletionChunk[] = [];
    if (!this.#started) {
      this.#started = true;
      out.push(this.#opening);
    }
    const candidates = res.candidates ?? [];
    if (candidates.length === 0 && res.promptFeedback?.blockReason) {
      this.#finished.add(0);
      out.push(this.#chunk(0, {}, "content_filter"));
      return out;
    }
    for (const c of candidates) {
      const index = c.index ?? 0;
      const parts = c.content?.parts ?? [];
      const { text, thoughts } = splitText(parts, { images: true });
      if (thoughts && this.#ctx.thinkTags) {
        const open = this.#thinking.has(index) ? "" : THINK_OPEN;
        this.#thinking.add(index);
        out.push(this.#content(index, open + thoughts, null));
      } else if (thoughts) {
        out.push(this.#chunk(index, { reasoning_content: thoughts }));
      }
      if (text) {
        const logprobs = this.#ctx.logprobs
          ? { content: mapLogprobs(c.logprobsResult), refusal: null }
          : null;
        out.push(this.#content(index, this.#closeThinking(index) + text, logprobs));
      }
      if (c.groundingMetadata !== undefined) this.#grounding.set(index, c.groundingMetadata);
      const calls = functionCalls(parts);
      if (calls.length) {
        const first = this.#calls.get(index) ?? 0;
        const deltas = calls.map((call, i) => ({
          index: first + i,
          ...toToolCall(call, this.#ctx.nameCall),
        }));
        this.#calls.set(index, first + calls.length);
        out.push(this.#chunk(index, { tool_calls: deltas }));
      }
      if (c.finishReason && !this.#finished.has(index)) {
        this.#finished.add(index);
        const close = this.#closeThinking(index);
        if (close) out.push(this.#content(index, close, null));
        const sources = webSources(this.#grounding.get(index));
        if (sources.length) {
          const footer = sourcesFooter(sources, this.#sent.get(index) ?? 0);
          out.push(this.#chunk(index, { content: footer.text, annotations: footer.annotations }));
        }
        const hasCalls = (this.#calls.get(index) ?? 0) > 0;
        out.push(this.#chunk(index, {}, mapFinishReason(c.finishReason, hasCalls)));
      }
    }
    return out;
  }

  /**
   * `chunk` as an SSE event (`data: …` and a blank line). The fields every chunk of this stream
   * shares (id, object, created, model) are serialized once per stream, not once per chunk: the
   * same JSON as `JSON.stringify(chunk)`, with about half of the work.
   */
  sse(chunk: ChatCompletionChunk): string {
    return chunk === this.#opening ? this.#openingSse : this.#serialize(chunk);
  }

  #serialize(chunk: ChatCompletionChunk): string {
    const ctx = this.#ctx;
    if (chunk.id !== ctx.id || chunk.created !== ctx.created || chunk.model !== ctx.model) {
      return `data: ${JSON.stringify(chunk)}\n\n`;
    }
    const usage = chunk.usage === undefined ? "" : `,"usage":${JSON.stringify(chunk.usage)}`;
    return `${this.#prefix}${JSON.stringify(chunk.choices)}${usage}}\n\n`;
  }

  /** The closing chunks after a complete stream: the usage chunk when asked for. */
  end(): ChatCompletionChunk[] {
    if (!this.#includeUsage) return [];
    return [{
      id: this.#ctx.id,
      object: "chat.completion.chunk",
      created: this.#ctx.created,
      model: this.#ctx.model,
      choices: [],
      usage: mapUsage(this.#usage),
    }];
  }
}

/** The error event that ends a stream the upstream broke off. */
export function streamErrorEvent(message: string, code: string): StreamErrorEvent {
  return { error: { message, type: "server_error", param: null, code } };
}
