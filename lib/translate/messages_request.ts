/**
 * Anthropic Messages request -> the chat-completions request the gateway already serves (pure).
 *
 * Claude Code and the Anthropic SDK speak Messages: content blocks instead of parts, `tool_use` and
 * `tool_result` blocks instead of tool calls and tool messages, `thinking` for a budget. Spelled as
 * a chat request it goes through the one chat path, and `messages_response.ts` spells the answer
 * back.
 */
import type {
  AnthropicMessage,
  AnthropicTool,
  ContentBlock,
  CountTokensRequest,
  MessagesRequest,
} from "../anthropic/messages_schema.ts";
import type { ChatCompletionRequest, Message, ToolCall, UserPart } from "../openai/chat_schema.ts";
import { TranslateError } from "./chat_request.ts";
import { resolveModel } from "./models.ts";
import { type MessageSource, paramMapper, SourceTrail } from "./param_map.ts";
import { textOnly } from "./responses_request.ts";

/** What a Claude model name stands for when no alias names it. */
export const CLAUDE_STANDIN_MODEL = "gemini-2.5-flash";

/** Anthropic's web search server tool (every dated version). */
const WEB_SEARCH_TOOL = /^web_search_\d+$/;

/**
 * The model a Messages request runs on: an alias when there is one, a Gemini model by its name,
 * and any Claude model name (what Claude Code asks for by default) the stand-in.
 */
export function messagesModel(requested: string, aliases: Readonly<Record<string, string>>) {
  const resolved = resolveModel(requested, aliases);
  return !resolved.alias && /^claude-/i.test(resolved.model) ? CLAUDE_STANDIN_MODEL : requested;
}

/** A media block as a chat part. */
function mediaPart(block: Extract<ContentBlock, { type: "image" | "document" }>): UserPart {
  const source = block.source;
  switch (source.type) {
    case "base64":
      return block.type === "image"
        ? {
          type: "image_url",
          image_url: { url: `data:${source.media_type};base64,${source.data}` },
        }
        : {
          type: "file",
          file: { file_data: `data:${source.media_type};base64,${source.data}` },
        };
    case "url":
      return block.type === "image"
        ? { type: "image_url", image_url: { url: source.url } }
        : { type: "file", file: { file_url: source.url } };
    case "file":
      return { type: "file", file: { file_id: source.file_id } };
    case "text": {
      const title = block.type === "document" ? block.title : null;
      return { type: "text", text: title ? `${title}\n\n${source.data}` : source.data };
    }
  }
}

/** One user turn: its tool results (as tool messages, first), then what the user said. */
function userMessages(blocks: ContentBlock[], param: string, trail: SourceTrail): Message[] {
  const tools: Message[] = [];
  const parts: UserPart[] = [];
  /** Each part's field, for errors about it. */
  const fields: string[] = [];
  blocks.forEach((block, i) => {
    const at = `${param}[${i}]`;
    switch (block.type) {
      case "text":
        parts.push({ type: "text", text: block.text });
        fields.push(at);
        return;
      case "image":
      case "document":
        parts.push(mediaPart(block));
        fields.push(at);
        return;
      case "tool_result": {
        const content = typeof block.content === "string"
          ? [{ type: "text" as const, text: block.content }]
          : (block.content ?? []).map((b) =>
            b.type === "text" ? { type: "text" as const, text: b.text } : mediaPart(b)
          );
        let text = content.filter((p) => p.type === "text").map((p) => p.text).join("\n");
        if (block.is_error) text = `Error: ${text}`;
        tools.push({ role: "tool", tool_call_id: block.tool_use_id, content: text });
        trail.message(at);
        // Pictures a tool returned follow the results, as the user's.
        content.forEach((p, j) => {
          if (p.type === "text") return;
          parts.push(p);
          fields.push(`${at}.content[${j}]`);
        });
        return;
      }
      case "tool_use":
        throw new TranslateError(
          `'${at}': a tool_use block belongs in an assistant message`,
          at,
          "invalid_value",
        );
      default:
        return;
    }
  });
  if (!parts.length) return tools;
  const text = textOnly(parts);
  trail.message(param.replace(/\.content$/, ""), text === null ? fields : undefined);
  return [...tools, { role: "user", content: text ?? parts }];
}

/** One assistant turn: its text and its tool calls. */
function assistantMessage(
  blocks: ContentBlock[],
  param: string,
  trail: SourceTrail,
): Message | null {
  let text = "";
  const calls: ToolCall[] = [];
  const callParams: string[] = [];
  blocks.forEach((block, i) => {
    switch (block.type) {
      case "text":
        text += block.text;
        return;
      case "tool_use":
        calls.push({
          id: block.id,
          type: "function",
          function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) },
        });
        callParams.push(`${param}[${i}]`);
        return;
      case "image":
      case "document":
      case "tool_result":
        throw new TranslateError(
          `'${param}[${i}]': a ${block.type} block belongs in a user message`,
          `${param}[${i}]`,
          "invalid_value",
        );
      default:
        return;
    }
  });
  if (!text && !calls.length) return null;
  trail.message(param.replace(/\.content$/, ""));
  for (const call of callParams) trail.call(call, true);
  return {
    role: "assistant",
    content: text || null,
    ...(calls.length ? { tool_calls: calls } : {}),
  };
}

/** The conversation in chat's spelling (`trail` learns where each message came from). */
export function chatMessages(
  messages: AnthropicMessage[],
  trail = new SourceTrail(),
): Message[] {
  const out: Message[] = [];
  messages.forEach((m, i) => {
    const param = `messages[${i}].content`;
    if (m.role === "system") {
      const text = typeof m.content === "string"
        ? m.content
        : m.content.map((b) => b.type === "text" ? b.text : "").join("\n\n");
      out.push({ role: "system", content: text });
      trail.message(`messages[${i}]`);
      return;
    }
    if (typeof m.content === "string") {
      out.push({ role: m.role, content: m.content });
      trail.message(`messages[${i}]`);
      return;
    }
    if (m.role === "user") out.push(...userMessages(m.content, param, trail));
    else {
      const message = assistantMessage(m.content, param, trail);
      if (message) out.push(message);
    }
  });
  return out;
}

/** Chat request fields by their Messages names. */
const MESSAGES_FIELDS: Record<string, string> = {
  model: "model",
  max_completion_tokens: "max_tokens",
  temperature: "temperature",
  top_p: "top_p",
  top_k: "top_k",
  stop: "stop_sequences",
  tools: "tools",
  tool_choice: "tool_choice",
  response_format: "output_config.format",
  reasoning_effort: "output_config.effort",
  extra_body: "thinking",
};

/** A chat request made from a Messages request, and the caller's names of its fields. */
export interface ChatFromMessages {
  chat: ChatCompletionRequest;
  /** The caller's name of a chat request's field (for errors the chat path raises). */
  paramOf: (chatParam: string) => string | null;
}

/** Tools in chat's spelling, and whether Google Search is on. */
function chatTools(
  tools: AnthropicTool[],
): { tools: ChatCompletionRequest["tools"]; search: boolean } {
  const out: NonNullable<ChatCompletionRequest["tools"]> = [];
  let search = false;
  tools.forEach((tool, i) => {
    if (!tool.type || tool.type === "custom") {
      out.push({
        type: "function",
        function: {
          name: tool.name,
          description: tool.description,
          parameters: tool.input_schema ?? { type: "object", properties: {} },
        },
      });
      return;
    }
    if (WEB_SEARCH_TOOL.test(tool.type)) {
      search = true;
      return;
    }
    throw new TranslateError(
      `Tool type '${tool.type}' of 'tools[${i}]' is not supported: Gemini offers client tools ` +
        "and web search here",
      `tools[${i}].type`,
      "unsupported_value",
    );
  });
  return { tools: out.length ? out : undefined, search };
}

/** `tool_choice` in chat's spelling, and whether calls may come in parallel. */
function chatToolChoice(choice: MessagesRequest["tool_choice"]): {
  choice?: ChatCompletionRequest["tool_choice"];
  parallel?: boolean;
} {
  if (!choice) return {};
  const parallel = "disable_parallel_tool_use" in choice && choice.disable_parallel_tool_use
    ? false
    : undefined;
  switch (choice.type) {
    case "auto":
      return { choice: "auto", parallel };
    case "any":
      return { choice: "required", parallel };
    case "tool":
      return { choice: { type: "function", function: { name: choice.name } }, parallel };
    case "none":
      return { choice: "none" };
  }
}

/** What decides thinking when a request does not: the model name and the admin's settings. */
export interface ThinkingDefaults {
  /** The model's name asks for thinking (a `-thinking`, `-high`... suffix, maybe via an alias). */
  suffixed?: boolean;
  /** The admin's thinking mode when the client does not say (`auto`: the gateway decides). */
  mode?: string;
}

/** The thinking settings in chat's spelling (Gemini's thinking config). */
function thinking(
  req: Pick<MessagesRequest, "thinking">,
  defaults: ThinkingDefaults,
): Partial<ChatCompletionRequest> {
  const t = req.thinking;
  const quiet = { extra_body: { google: { thinking_config: { include_thoughts: false } } } };
  // Without thinking asked for, Claude does not think: Gemini thinks as little as the model allows
  // (its thoughts would count against max_tokens), and shows none; unless the model's name or the
  // admin asked for thinking, which then decides (its thoughts still not shown).
  if (!t) {
    const decided = defaults.suffixed || (defaults.mode !== undefined && defaults.mode !== "auto");
    return decided ? quiet : { reasoning_effort: "none", ...quiet };
  }
  if (t.type === "disabled") return { reasoning_effort: "none", ...quiet };
  const config = t.type === "enabled"
    ? { thinking_budget: t.budget_tokens, include_thoughts: true }
    : { include_thoughts: true };
  return { extra_body: { google: { thinking_config: config } } };
}

/** The system prompt's text. */
function systemText(system: MessagesRequest["system"]): string {
  if (!system) return "";
  return typeof system === "string" ? system : system.map((b) => b.text).join("\n\n");
}

/**
 * Spells a Messages request (or a count-tokens request, without output settings) as a chat
 * request for `model` (see `messagesModel`; `defaults` see `ThinkingDefaults`).
 */
export function toChatRequest(
  req: MessagesRequest | CountTokensRequest,
  model: string,
  defaults: ThinkingDefaults = {},
): ChatFromMessages {
  for (const field of ["mcp_servers", "container"] as const) {
    const value = req[field];
    if (value != null && !(Array.isArray(value) && value.length === 0)) {
      throw new TranslateError(
        `'${field}' is not supported: Anthropic runs those tools, the gateway cannot`,
        field,
        "unsupported_value",
      );
    }
  }
  const system = systemText(req.system);
  const sources: MessageSource[] = system ? [{ message: "system", calls: [] }] : [];
  const messages = chatMessages(req.messages, new SourceTrail(sources));
  if (!messages.length) {
    throw new TranslateError("'messages' holds nothing to answer", "messages", "invalid_value");
  }
  const { tools, search } = chatTools(req.tools ?? []);
  const { choice, parallel } = tools ? chatToolChoice(req.tool_choice) : {};
  const out: ChatCompletionRequest = {
    model,
    messages: system ? [{ role: "system", content: system }, ...messages] : messages,
    ...(tools ? { tools } : {}),
    ...(choice ? { tool_choice: choice } : {}),
    ...(parallel === false ? { parallel_tool_calls: false } : {}),
    ...(search ? { web_search_options: {} } : {}),
    ...thinking(req, defaults),
  };
  const format = req.output_config?.format ?? req.output_format;
  if (format) {
    out.response_format = {
      type: "json_schema",
      json_schema: { name: "output", schema: format.schema },
    };
  }
  const effort = req.output_config?.effort;
  // An explicit thinking budget (or none) decides; else the effort does.
  if (effort && (!req.thinking || req.thinking.type === "adaptive")) out.reasoning_effort = effort;
  if ("max_tokens" in req) {
    const stops = req.stop_sequences ?? [];
    if (stops.length > 5) {
      throw new TranslateError(
        "Gemini takes at most 5 stop_sequences",
        "stop_sequences",
        "invalid_value",
      );
    }
    Object.assign(out, {
      max_completion_tokens: req.max_tokens,
      stream: req.stream ?? false,
      ...(req.stream ? { stream_options: { include_usage: true } } : {}),
      temperature: req.temperature,
      top_p: req.top_p,
      top_k: req.top_k,
      ...(stops.length ? { stop: stops } : {}),
      user: req.metadata?.user_id,
    });
  }
  return { chat: out, paramOf: paramMapper(sources, MESSAGES_FIELDS) };
}
