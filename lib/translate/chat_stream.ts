/**
 * Gemini stream chunks -> OpenAI `chat.completion.chunk` objects (pure and incremental: it holds
 * only what it needs to finish the stream correctly, never the whole answer).
 */
import type { GenerateContentResponse, UsageMetadata } from "../gemini/types.ts";
import {
  type ChatUsage,
  type CompletionContext,
  type FinishReason,
  mapFinishReason,
  mapUsage,
  splitText,
} from "./chat_response.ts";

/** The delta of one streamed choice. */
export interface ChunkDelta {
  role?: "assistant";
  content?: string;
  reasoning_content?: string;
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
    logprobs: null;
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
  #started = false;

  constructor(ctx: CompletionContext, options: { includeUsage: boolean }) {
    this.#ctx = ctx;
    this.#includeUsage = options.includeUsage;
  }

  #chunk(
    index: number,
    delta: ChunkDelta,
    finish: FinishReason | null = null,
  ): ChatCompletionChunk {
    const chunk: ChatCompletionChunk = {
      id: this.#ctx.id,
      object: "chat.completion.chunk",
      created: this.#ctx.created,
      model: this.#ctx.model,
      choices: [{ index, delta, logprobs: null, finish_reason: finish }],
    };
    if (this.#includeUsage) chunk.usage = null;
    return chunk;
  }

  /** The last usage the upstream reported. */
  get usage(): UsageMetadata | undefined {
    return this.#usage;
  }

  /** Whether the upstream reported a finish reason (the answer is complete). */
  get complete(): boolean {
    return this.#finished.size > 0;
  }

  /** Translates one upstream chunk into zero or more OpenAI chunks. */
  push(res: GenerateContentResponse): ChatCompletionChunk[] {
    if (res.usageMetadata) this.#usage = res.usageMetadata;
    const out: ChatCompletionChunk[] = [];
    if (!this.#started) {
      this.#started = true;
      out.push(this.#chunk(0, { role: "assistant", content: "" }));
    }
    const candidates = res.candidates ?? [];
    if (candidates.length === 0 && res.promptFeedback?.blockReason) {
      this.#finished.add(0);
      out.push(this.#chunk(0, {}, "content_filter"));
      return out;
    }
    for (const c of candidates) {
      const index = c.index ?? 0;
      const { text, thoughts } = splitText(c.content?.parts ?? []);
      if (thoughts) out.push(this.#chunk(index, { reasoning_content: thoughts }));
      if (text) out.push(this.#chunk(index, { content: text }));
      if (c.finishReason && !this.#finished.has(index)) {
        this.#finished.add(index);
        out.push(this.#chunk(index, {}, mapFinishReason(c.finishReason)));
      }
    }
    return out;
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
