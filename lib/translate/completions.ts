/**
 * OpenAI legacy text completions <-> the chat path (pure): a prompt (and a `suffix`, for filling
 * in the middle) is spelled as a chat request that asks Gemini to continue the text, and the chat
 * answer, whole or streamed, is spelled back as `text_completion` objects.
 */
import type { ChatCompletionRequest } from "../openai/chat_schema.ts";
import type { CompletionsRequest } from "../openai/completions_schema.ts";
import type { ChatCompletion, ChatUsage, ChoiceLogprobs, FinishReason } from "./chat_response.ts";
import type { ChatCompletionChunk } from "./chat_stream.ts";
import { resolveModel } from "./models.ts";

/** What Gemini is told to do with a prompt: continue it, as a completion model would. */
export const CONTINUE_INSTRUCTION =
  "You are a text completion engine. Continue the user's text from exactly where it stops, as " +
  "its author would. Reply with the continuation only: do not repeat the text, do not answer " +
  "or comment on it, and add no quotes or formatting around it.";

/** What Gemini is told to do with a prompt and a suffix: write what goes between them. */
export const INSERT_INSTRUCTION =
  "You are a text completion engine. The user sends the text before a gap in <prefix> and the " +
  "text after it in <suffix>. Reply with only the text that fills the gap, so that prefix, your " +
  "reply and suffix read as one: no tags, no quotes, no comments.";

/** The prompt of a request as one text. */
export function promptOf(req: CompletionsRequest): string {
  return typeof req.prompt === "string" ? req.prompt : req.prompt[0];
}

/**
 * `req` as a chat request. Thinking is asked for as little as the model allows (a completion
 * client waits for text, and thoughts would count against its `max_tokens`), unless the model's
 * name (or the alias it is) carries a thinking suffix, which then decides.
 */
export function toChatRequest(
  req: CompletionsRequest,
  aliases: Readonly<Record<string, string>> = {},
): ChatCompletionRequest {
  const prompt = promptOf(req);
  const fill = req.suffix != null && req.suffix !== "";
  const chat: ChatCompletionRequest = {
    model: req.model,
    messages: [
      { role: "system", content: fill ? INSERT_INSTRUCTION : CONTINUE_INSTRUCTION },
      {
        role: "user",
        content: fill ? `<prefix>${prompt}</prefix><suffix>${req.suffix}</suffix>` : prompt,
      },
    ],
    stream: req.stream,
    stream_options: req.stream ? req.stream_options : undefined,
    max_tokens: req.max_tokens,
    temperature: req.temperature,
    top_p: req.top_p,
    n: req.n,
    stop: req.stop,
    presence_penalty: req.presence_penalty,
    frequency_penalty: req.frequency_penalty,
    seed: req.seed,
    user: req.user,
  };
  if (resolveModel(req.model, aliases).suffix === null) chat.reasoning_effort = "none";
  if (req.logprobs != null) {
    chat.logprobs = true;
    chat.top_logprobs = req.logprobs;
  }
  return chat;
}

/** `choices[].logprobs` of a text completion. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

/** One choice of a text completion (or of a chunk of one). */
export interface CompletionChoice {
  text: string;
  index: number;
  logprobs: CompletionLogprobs | null;
  finish_reason: Exclude<FinishReason, "tool_calls"> | null;
}

/** A text completion, or one chunk of a streamed one. */
export interface TextCompletion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
}

/** The characters of `text` as OpenAI's offsets count them: code points, not UTF-16 units. */
function characters(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** Chat's log probabilities as a text completion's, the offsets counted from `offset`. */
export function completionLogprobs(
  logprobs: ChoiceLogprobs | null,
  offset: number,
): CompletionLogprobs | null {
  if (!logprobs) return null;
  const out: CompletionLogprobs = {
    tokens: [],
    token_logprobs: [],
    top_logprobs: [],
    text_offset: [],
  };
  let at = offset;
  for (const t of logprobs.content) {
    out.tokens.push(t.token);
    out.token_logprobs.push(t.logprob);
    out.top_logprobs.push(Object.fromEntries(t.top_logprobs.map((o) => [o.token, o.logprob])));
    out.text_offset.push(at);
    at += characters(t.token);
  }
  return out;
}

function finishOf(reason: FinishReason | null): CompletionChoice["finish_reason"] {
  return reason === "tool_calls" ? "stop" : reason;
}

function usageOf(u: ChatUsage) {
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens,
    total_tokens: u.total_tokens,
  };
}

/** The id of a text completion made from the chat completion `id`. */
function completionId(id: string): string {
  return id.replace(/^chatcmpl-/, "cmpl-");
}

/** A whole chat answer as a text completion (`echo`: the prompt comes first in each text). */
export function toCompletion(chat: ChatCompletion, options: { echo: string }): TextCompletion {
  return {
    id: completionId(chat.id),
    object: "text_completion",
    created: chat.created,
    model: chat.model,
    choices: chat.choices.map((c) => ({
      text: options.echo + (c.message.content ?? ""),
      index: c.index,
      logprobs: completionLogprobs(c.logprobs, characters(options.echo)),
      finish_reason: finishOf(c.finish_reason),
    })),
    usage: usageOf(chat.usage),
  };
}

/**
 * The answer to a request for no tokens (`max_tokens: 0`): each choice holds the echoed prompt
 * (or nothing) and stops at the length asked for; nothing is asked of Gemini.
 */
export function emptyCompletion(options: {
  id: string;
  created: number;
  model: string;
  n: number;
  echo: string;
  promptTokens: number;
}): TextCompletion {
  return {
    id: options.id,
    object: "text_completion",
    created: options.created,
    model: options.model,
    choices: Array.from({ length: options.n }, (_, index) => ({
      text: options.echo,
      index,
      logprobs: null,
      finish_reason: "length" as const,
    })),
    usage: {
      prompt_tokens: options.promptTokens,
      completion_tokens: 0,
      total_tokens: options.promptTokens,
    },
  };
}

/** Spells a chat stream's chunks as text completion chunks, choice by choice. */
export class CompletionStream {
  #echo: string;
  /** Characters sent so far per choice (the next token's `text_offset`). */
  #sent = new Map<number, number>();

  /** `echo`: the prompt, sent first in each choice's text ("" for none). */
  constructor(echo: string) {
    this.#echo = echo;
  }

  /** The text completion chunk of one chat chunk, or null when it carries nothing of one. */
  chunk(chunk: ChatCompletionChunk): TextCompletion | null {
    const choices: CompletionChoice[] = [];
    for (const c of chunk.choices) {
      let text = c.delta.content ?? "";
      const sent = this.#sent.get(c.index);
      const start = sent ?? 0;
      if (sent === undefined && (text || c.finish_reason)) text = this.#echo + text;
      if (!text && !c.finish_reason && !c.logprobs) continue;
      const offset = start + (sent === undefined ? characters(this.#echo) : 0);
      this.#sent.set(c.index, start + characters(text));
      choices.push({
        text,
        index: c.index,
        logprobs: completionLogprobs(c.logprobs, offset),
        finish_reason: finishOf(c.finish_reason),
      });
    }
    const usage = chunk.usage ? usageOf(chunk.usage) : undefined;
    if (!choices.length && !usage) return null;
    return {
      id: completionId(chunk.id),
      object: "text_completion",
      created: chunk.created,
      model: chunk.model,
      choices,
      ...(usage ? { usage } : {}),
    };
  }
}
