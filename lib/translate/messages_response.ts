/**
 * Chat completion (whole or streamed) -> Anthropic Messages answer (pure).
 *
 * One builder makes the answer's content blocks and the stream events that announce them, so a
 * whole answer and a streamed one are made the same way: a whole answer keeps the blocks.
 */
import type { ChatCompletion, ChatToolCall, ChatUsage } from "./chat_response.ts";
import type { ChatCompletionChunk } from "./chat_stream.ts";

/** A content block of an answer. */
export type AnswerBlock =
  | { type: "thinking"; thinking: string; signature: string }
  | { type: "text"; text: string }
  | { type: "tool_use"; id: string; name: string; input: unknown };

/** Anthropic's usage object. */
export interface MessageUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

/** Why an answer ended, in Anthropic's words. */
export type StopReason = "end_turn" | "max_tokens" | "tool_use" | "refusal";

/** An Anthropic message (the answer). */
export interface AnswerMessage {
  id: string;
  type: "message";
  role: "assistant";
  model: string;
  content: AnswerBlock[];
  stop_reason: StopReason | null;
  stop_sequence: null;
  usage: MessageUsage;
}

/** One stream event. */
export interface MessageEvent {
  type: string;
  [field: string]: unknown;
}

/** The identity of an answer. */
export interface MessageContext {
  id: string;
  /** The model as the client named it. */
  model: string;
}

/** Chat's usage in Anthropic's words (cached tokens are read from the cache, not input). */
export function messageUsage(u: ChatUsage | null): MessageUsage {
  const cached = u?.prompt_tokens_details.cached_tokens ?? 0;
  return {
    input_tokens: (u?.prompt_tokens ?? 0) - cached,
    output_tokens: u?.completion_tokens ?? 0,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: cached,
  };
}

/** A chat finish reason in Anthropic's words. */
export function stopReason(reason: string | null): StopReason {
  if (reason === "length") return "max_tokens";
  if (reason === "tool_calls") return "tool_use";
  if (reason === "content_filter") return "refusal";
  return "end_turn";
}

function toolInput(args: string): unknown {
  try {
    return JSON.parse(args);
  } catch {
    return {};
  }
}

/** Builds an answer's blocks in order, and the events that announce them. */
export class MessageBuilder {
  readonly #ctx: MessageContext;
  readonly content: AnswerBlock[] = [];
  /** The block being streamed (thinking or text), open until another kind starts. */
  #open: Extract<AnswerBlock, { type: "thinking" | "text" }> | null = null;
  #finish: string | null = null;
  #usage: ChatUsage | null = null;
  #started = false;

  constructor(ctx: MessageContext) {
    this.#ctx = ctx;
  }

  /** The message as it stands. */
  message(): AnswerMessage {
    return {
      id: this.#ctx.id,
      type: "message",
      role: "assistant",
      model: this.#ctx.model,
      content: structuredClone(this.content),
      stop_reason: this.#started && this.#finish !== null ? stopReason(this.#finish) : null,
      stop_sequence: null,
      usage: messageUsage(this.#usage),
    };
  }

  /** The event that opens a streamed answer. */
  start(): MessageEvent[] {
    if (this.#started) return [];
    this.#started = true;
    const message = { ...this.message(), content: [], stop_reason: null };
    return [{ type: "message_start", message }];
  }

  #close(): MessageEvent[] {
    const block = this.#open;
    if (!block) return [];
    this.#open = null;
    const index = this.content.indexOf(block);
    return block.type === "thinking"
      ? [
        // Gemini's signatures travel in the tool ids: the thought's own is empty.
        { type: "content_block_delta", index, delta: { type: "signature_delta", signature: "" } },
        { type: "content_block_stop", index },
      ]
      : [{ type: "content_block_stop", index }];
  }

  #stream(kind: "thinking" | "text", delta: string): MessageEvent[] {
    const out = this.start();
    if (!delta) return out;
    if (this.#open?.type !== kind) {
      out.push(...this.#close());
      const block: Extract<AnswerBlock, { type: "thinking" | "text" }> = kind === "thinking"
        ? { type: "thinking", thinking: "", signature: "" }
        : { type: "text", text: "" };
      this.content.push(block);
      this.#open = block;
      out.push({
        type: "content_block_start",
        index: this.content.length - 1,
        content_block: { ...block },
      });
    }
    const block = this.#open!;
    const index = this.content.length - 1;
    if (block.type === "thinking") {
      block.thinking += delta;
      out.push({
        type: "content_block_delta",
        index,
        delta: { type: "thinking_delta", thinking: delta },
      });
    } else {
      block.text += delta;
      out.push({ type: "content_block_delta", index, delta: { type: "text_delta", text: delta } });
    }
    return out;
  }

  /** A piece of the model's thought summary. */
  thinking(delta: string): MessageEvent[] {
    return this.#stream("thinking", delta);
  }

  /** A piece of the answer's text. */
  text(delta: string): MessageEvent[] {
    return this.#stream("text", delta);
  }

  /** One whole tool call of the model. */
  call(call: ChatToolCall): MessageEvent[] {
    const out = [...this.start(), ...this.#close()];
    const block: AnswerBlock = {
      type: "tool_use",
      id: call.id,
      name: call.function.name,
      input: toolInput(call.function.arguments),
    };
    this.content.push(block);
    const index = this.content.length - 1;
    out.push(
      { type: "content_block_start", index, content_block: { ...block, input: {} } },
      {
        type: "content_block_delta",
        index,
        delta: { type: "input_json_delta", partial_json: JSON.stringify(block.input) },
      },
      { type: "content_block_stop", index },
    );
    return out;
  }

  /** Notes how the answer ended (a chat finish reason) and what it used. */
  finish(reason: string | null, usage?: ChatUsage | null): void {
    if (reason) this.#finish = reason;
    if (usage) this.#usage = usage;
  }

  /** The events that close the answer. */
  end(): MessageEvent[] {
    const out = [...this.start(), ...this.#close()];
    this.#finish ??= "stop";
    out.push(
      {
        type: "message_delta",
        delta: { stop_reason: stopReason(this.#finish), stop_sequence: null },
        usage: messageUsage(this.#usage),
      },
      { type: "message_stop" },
    );
    return out;
  }

  /** The event of an answer that failed part way (the SDKs raise it). */
  fail(error: { type: string; message: string }): MessageEvent[] {
    return [{ type: "error", error }];
  }
}

/** A whole chat completion as an Anthropic message. */
export function toMessage(completion: ChatCompletion, ctx: MessageContext): AnswerMessage {
  const builder = new MessageBuilder(ctx);
  const choice = completion.choices[0];
  const message = choice?.message;
  if (message?.reasoning_content) builder.thinking(message.reasoning_content);
  if (message?.content) builder.text(message.content);
  for (const call of message?.tool_calls ?? []) builder.call(call);
  builder.finish(choice?.finish_reason ?? "stop", completion.usage);
  builder.end();
  return builder.message();
}

/** Feeds one streamed chat chunk to `builder`; returns the events it makes. */
export function pushChunk(builder: MessageBuilder, chunk: ChatCompletionChunk): MessageEvent[] {
  const out: MessageEvent[] = [];
  for (const choice of chunk.choices) {
    if (choice.index !== 0) continue;
    const d = choice.delta;
    if (d.reasoning_content) out.push(...builder.thinking(d.reasoning_content));
    if (d.content) out.push(...builder.text(d.content));
    for (const call of d.tool_calls ?? []) out.push(...builder.call(call));
    if (choice.finish_reason) builder.finish(choice.finish_reason);
  }
  if (chunk.usage) builder.finish(null, chunk.usage);
  return out;
}

/** One event as an SSE event (named by its type, as Anthropic sends them). */
export function messageSse(event: MessageEvent): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}
