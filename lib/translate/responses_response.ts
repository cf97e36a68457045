/**
 * Chat completion (whole or streamed) -> OpenAI Responses API answer (pure).
 *
 * One builder makes the answer's output items and the stream events that announce them, so a
 * whole answer and a streamed one are made the same way: a whole answer keeps the items and drops
 * the events.
 */
import type { ChatCompletion, ChatToolCall, ChatUsage, UrlCitation } from "./chat_response.ts";
import type { ChatCompletionChunk } from "./chat_stream.ts";
import { CUSTOM_TOOL_INPUT, type ToolOrigin } from "./responses_request.ts";

/** A citation of a web source in an answer's text. */
export interface ResponseAnnotation {
  type: "url_citation";
  url: string;
  title: string;
  start_index: number;
  end_index: number;
}

/** The text of an answer message. */
export interface OutputText {
  type: "output_text";
  text: string;
  annotations: ResponseAnnotation[];
  logprobs: never[];
}

/** One summary of the model's thoughts. */
export interface SummaryText {
  type: "summary_text";
  text: string;
}

/** An output item of an answer. */
export type OutputItem =
  | {
    type: "message";
    id: string;
    status: ItemStatus;
    role: "assistant";
    content: OutputText[];
  }
  | { type: "reasoning"; id: string; summary: SummaryText[] }
  | {
    type: "function_call";
    id: string;
    call_id: string;
    name: string;
    namespace?: string;
    arguments: string;
    status: ItemStatus;
  }
  | {
    type: "custom_tool_call";
    id: string;
    call_id: string;
    name: string;
    namespace?: string;
    input: string;
    status: ItemStatus;
  };

type ItemStatus = "in_progress" | "completed" | "incomplete";

/** The Responses API's usage object. */
export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/** What the answer echoes of its request (OpenAI's response object carries the settings). */
export interface ResponseEcho {
  instructions: string | null;
  max_output_tokens: number | null;
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  reasoning: { effort: string | null; summary: string | null };
  store: boolean;
  temperature: number | null;
  text: { format: Record<string, unknown> };
  tool_choice: unknown;
  tools: unknown[];
  top_p: number | null;
  truncation: string;
  user: string | null;
  metadata: Record<string, string>;
}

/** A Responses API response object. */
export interface ResponseObject extends ResponseEcho {
  id: string;
  object: "response";
  created_at: number;
  status: "in_progress" | "completed" | "incomplete" | "failed";
  background: false;
  error: { code: string; message: string } | null;
  incomplete_details: { reason: "max_output_tokens" | "content_filter" } | null;
  model: string;
  output: OutputItem[];
  usage: ResponseUsage | null;
}

/** One stream event (its fields follow its `type`, as OpenAI documents them). */
export interface ResponseEvent {
  type: string;
  sequence_number: number;
  [field: string]: unknown;
}

/** The identity of an answer and what it echoes. */
export interface ResponseContext {
  id: string;
  createdAt: number;
  /** The model as the client named it. */
  model: string;
  echo: ResponseEcho;
  /** Tools declared as custom or in a namespace, by the name Gemini calls them. */
  toolOrigins: ReadonlyMap<string, ToolOrigin>;
  /** Makes an item id with the given prefix (`msg_`, `fc_`, `rs_`, `ctc_`). */
  itemId: (prefix: string) => string;
}

/** Chat's usage in the Responses API's words. */
export function responseUsage(u: ChatUsage): ResponseUsage {
  return {
    input_tokens: u.prompt_tokens,
    input_tokens_details: { cached_tokens: u.prompt_tokens_details.cached_tokens },
    output_tokens: u.completion_tokens,
    output_tokens_details: { reasoning_tokens: u.completion_tokens_details.reasoning_tokens },
    total_tokens: u.total_tokens,
  };
}

function annotation(a: UrlCitation): ResponseAnnotation {
  return { type: "url_citation", ...a.url_citation };
}

/** The free text of a custom tool's call, from the function call it was spelled as. */
function customInput(args: string): string {
  try {
    const parsed: unknown = JSON.parse(args);
    if (typeof parsed === "object" && parsed !== null && CUSTOM_TOOL_INPUT in parsed) {
      const input = (parsed as Record<string, unknown>)[CUSTOM_TOOL_INPUT];
      if (typeof input === "string") return input;
    }
  } catch {
    // Not JSON: the arguments are the input.
  }
  return args;
}

/**
 * Builds an answer's output items in order, and the events that announce them: a reasoning item,
 * then the message's text, then the calls (an item closes when a later kind starts).
 */
export class ResponseBuilder {
  readonly #ctx: ResponseContext;
  readonly output: OutputItem[] = [];
  #seq = 0;
  #reasoning: Extract<OutputItem, { type: "reasoning" }> | null = null;
  #message: Extract<OutputItem, { type: "message" }> | null = null;
  #finish: string | null = null;
  #usage: ResponseUsage | null = null;
  #started = false;

  constructor(ctx: ResponseContext) {
    this.#ctx = ctx;
  }

  #event(type: string, fields: Record<string, unknown>): ResponseEvent {
    return { type, sequence_number: this.#seq++, ...fields };
  }

  /** The response object as it stands (`status` given). */
  response(status: ResponseObject["status"], error?: ResponseObject["error"]): ResponseObject {
    const reason = this.#finish === "length"
      ? "max_output_tokens" as const
      : this.#finish === "content_filter"
      ? "content_filter" as const
      : null;
    return {
      id: this.#ctx.id,
      object: "response",
      created_at: this.#ctx.createdAt,
      status,
      background: false,
      error: error ?? null,
      incomplete_details: status === "incomplete" && reason ? { reason } : null,
      model: this.#ctx.model,
      output: status === "in_progress" ? [] : structuredClone(this.output),
      usage: this.#usage,
      ...this.#ctx.echo,
      // A failed answer is never stored.
      ...(status === "failed" ? { store: false } : {}),
    };
  }

  /** The events that open a streamed answer. */
  start(): ResponseEvent[] {
    if (this.#started) return [];
    this.#started = true;
    const response = this.response("in_progress");
    return [
      this.#event("response.created", { response }),
      this.#event("response.in_progress", { response }),
    ];
  }

  #add(item: OutputItem): ResponseEvent {
    this.output.push(item);
    return this.#event("response.output_item.added", {
      output_index: this.output.length - 1,
      item: structuredClone(item),
    });
  }

  #closeReasoning(): ResponseEvent[] {
    const item = this.#reasoning;
    if (!item) return [];
    this.#reasoning = null;
    const at = { item_id: item.id, output_index: this.output.indexOf(item), summary_index: 0 };
    const part = item.summary[0];
    return [
      this.#event("response.reasoning_summary_text.done", { ...at, text: part.text }),
      this.#event("response.reasoning_summary_part.done", { ...at, part: { ...part } }),
      this.#event("response.output_item.done", {
        output_index: at.output_index,
        item: structuredClone(item),
      }),
    ];
  }

  #closeMessage(status: ItemStatus): ResponseEvent[] {
    const item = this.#message;
    if (!item) return [];
    this.#message = null;
    item.status = status;
    const at = { item_id: item.id, output_index: this.output.indexOf(item), content_index: 0 };
    const part = item.content[0];
    return [
      this.#event("response.output_text.done", { ...at, text: part.text, logprobs: [] }),
      this.#event("response.content_part.done", { ...at, part: structuredClone(part) }),
      this.#event("response.output_item.done", {
        output_index: at.output_index,
        item: structuredClone(item),
      }),
    ];
  }

  /** A piece of the model's thought summary. */
  reasoning(delta: string): ResponseEvent[] {
    const out = [...this.start(), ...this.#closeMessage("completed")];
    let item = this.#reasoning;
    if (!item) {
      item = { type: "reasoning", id: this.#ctx.itemId("rs_"), summary: [] };
      this.#reasoning = item;
      out.push(this.#add(item));
      item.summary.push({ type: "summary_text", text: "" });
      out.push(
        this.#event("response.reasoning_summary_part.added", {
          item_id: item.id,
          output_index: this.output.length - 1,
          summary_index: 0,
          part: { type: "summary_text", text: "" },
        }),
      );
    }
    item.summary[0].text += delta;
    out.push(this.#event("response.reasoning_summary_text.delta", {
      item_id: item.id,
      output_index: this.output.indexOf(item),
      summary_index: 0,
      delta,
    }));
    return out;
  }

  #openMessage(out: ResponseEvent[]): Extract<OutputItem, { type: "message" }> {
    if (this.#message) return this.#message;
    const item: Extract<OutputItem, { type: "message" }> = {
      type: "message",
      id: this.#ctx.itemId("msg_"),
      status: "in_progress",
      role: "assistant",
      content: [],
    };
    this.#message = item;
    out.push(this.#add(item));
    const part: OutputText = { type: "output_text", text: "", annotations: [], logprobs: [] };
    item.content.push(part);
    out.push(this.#event("response.content_part.added", {
      item_id: item.id,
      output_index: this.output.length - 1,
      content_index: 0,
      part: structuredClone(part),
    }));
    return item;
  }

  /** A piece of the answer's text, with the web sources it cites. */
  text(delta: string, citations: UrlCitation[] = []): ResponseEvent[] {
    const out = [...this.start(), ...this.#closeReasoning()];
    if (!delta && !citations.length) return out;
    const item = this.#openMessage(out);
    const part = item.content[0];
    const at = { item_id: item.id, output_index: this.output.indexOf(item), content_index: 0 };
    if (delta) {
      part.text += delta;
      out.push(this.#event("response.output_text.delta", { ...at, delta, logprobs: [] }));
    }
    for (const c of citations) {
      const a = annotation(c);
      part.annotations.push(a);
      out.push(this.#event("response.output_text.annotation.added", {
        ...at,
        annotation_index: part.annotations.length - 1,
        annotation: { ...a },
      }));
    }
    return out;
  }

  /** One whole tool call of the model. */
  call(call: ChatToolCall): ResponseEvent[] {
    const out = [
      ...this.start(),
      ...this.#closeReasoning(),
      ...this.#closeMessage("completed"),
    ];
    const { arguments: args } = call.function;
    const origin = this.#ctx.toolOrigins.get(call.function.name);
    const name = origin?.name ?? call.function.name;
    const namespace = origin?.namespace ? { namespace: origin.namespace } : {};
    // A custom tool's call carries free text (`input`), a function's JSON (`arguments`); both
    // are announced as added (empty), one delta of all of it, done.
    const custom = origin?.custom === true;
    const field = custom ? "input" : "arguments";
    const value = custom ? customInput(args) : args;
    const item = {
      type: custom ? "custom_tool_call" : "function_call",
      id: this.#ctx.itemId(custom ? "ctc_" : "fc_"),
      call_id: call.id,
      name,
      ...namespace,
      [field]: "",
      status: "in_progress",
    } as OutputItem & { [field: string]: unknown };
    out.push(this.#add(item));
    const at = { item_id: item.id, output_index: this.output.length - 1 };
    item[field] = value;
    item.status = "completed";
    const events = custom ? "response.custom_tool_call_input" : "response.function_call_arguments";
    out.push(
      this.#event(`${events}.delta`, { ...at, delta: value }),
      this.#event(`${events}.done`, { ...at, ...(custom ? {} : { name }), [field]: value }),
      this.#event("response.output_item.done", {
        output_index: at.output_index,
        item: structuredClone(item),
      }),
    );
    return out;
  }

  /** Notes how the answer ended (a chat finish reason) and what it used. */
  finish(reason: string | null, usage?: ChatUsage | null): void {
    if (reason) this.#finish = reason;
    if (usage) this.#usage = responseUsage(usage);
  }

  /** Whether the answer was cut short (by the token limit or a filter). */
  get incomplete(): boolean {
    return this.#finish === "length" || this.#finish === "content_filter";
  }

  /** The events that close the answer, the last carrying the whole response. */
  end(): ResponseEvent[] {
    const status = this.incomplete ? "incomplete" : "completed";
    const out = [
      ...this.start(),
      ...this.#closeReasoning(),
      ...this.#closeMessage(status),
    ];
    out.push(this.#event(`response.${status}`, { response: this.response(status) }));
    return out;
  }

  /**
   * The events of an answer that failed part way: the response as failed (with what it had made),
   * then the error (which OpenAI's SDKs raise).
   */
  fail(error: { code: string; message: string }): ResponseEvent[] {
    const out = this.start();
    out.push(this.#event("response.failed", { response: this.response("failed", error) }));
    out.push(this.#event("error", { code: error.code, message: error.message, param: null }));
    return out;
  }
}

/** A whole chat completion as a Responses API response object. */
export function toResponse(completion: ChatCompletion, ctx: ResponseContext): ResponseObject {
  const builder = new ResponseBuilder(ctx);
  const choice = completion.choices[0];
  const message = choice?.message;
  if (message?.reasoning_content) builder.reasoning(message.reasoning_content);
  if (message?.content || message?.annotations?.length) {
    builder.text(message.content ?? "", message.annotations);
  }
  for (const call of message?.tool_calls ?? []) builder.call(call);
  builder.finish(choice?.finish_reason ?? null, completion.usage);
  // The last event carries the finished response.
  return builder.end().at(-1)!.response as ResponseObject;
}

/** Feeds one streamed chat chunk to `builder`; returns the events it makes. */
export function pushChunk(builder: ResponseBuilder, chunk: ChatCompletionChunk): ResponseEvent[] {
  const out: ResponseEvent[] = [];
  for (const choice of chunk.choices) {
    if (choice.index !== 0) continue;
    const d = choice.delta;
    if (d.reasoning_content) out.push(...builder.reasoning(d.reasoning_content));
    if (d.content || d.annotations?.length) {
      out.push(...builder.text(d.content ?? "", d.annotations));
    }
    for (const call of d.tool_calls ?? []) out.push(...builder.call(call));
    if (choice.finish_reason) builder.finish(choice.finish_reason);
  }
  if (chunk.usage) builder.finish(null, chunk.usage);
  return out;
}

/** One event as an SSE event (named by its type, as OpenAI sends them). */
export function responseSse(event: ResponseEvent): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}
