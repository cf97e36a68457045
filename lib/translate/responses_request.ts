/**
 * OpenAI Responses request -> the chat-completions request the gateway already serves (pure).
 *
 * The Responses API is a different spelling of the same conversation: items instead of messages,
 * flat function tools, `text.format` for `response_format`, `reasoning.effort` for
 * `reasoning_effort`. Spelled as a chat request, it goes through the one chat path (files, images,
 * thought signatures, thinking, failover, accounting) and its answer is spelled back by
 * `responses_response.ts`.
 */
import type { ChatCompletionRequest, Message, ToolCall, UserPart } from "../openai/chat_schema.ts";
import type {
  InputItem,
  InputPart,
  ResponsesRequest,
  ResponsesTool,
} from "../openai/responses_schema.ts";
import { TranslateError } from "./chat_request.ts";
import { type MessageSource, paramMapper, SourceTrail } from "./param_map.ts";

/** The parameters of a custom tool, spelled as a function: its free text is one argument. */
export const CUSTOM_TOOL_INPUT = "input";

/** A tool the client declared, behind the function name Gemini sees. */
export interface ToolOrigin {
  name: string;
  namespace?: string;
  /** A custom tool: its call's free text is the function's one argument. */
  custom: boolean;
}

/** The function name Gemini sees for a tool (in a namespace: `namespace.name`). */
export function qualifiedName(name: string, namespace?: string): string {
  return namespace ? `${namespace}.${name}` : name;
}

/** A chat request made from a Responses request, with what its answer's translation needs. */
export interface ChatFromResponses {
  chat: ChatCompletionRequest;
  /**
   * The tools Gemini knows by another name or shape (custom tools, tools in a namespace), by the
   * name Gemini calls them: a call is answered as the tool the client declared.
   */
  toolOrigins: Map<string, ToolOrigin>;
  /** The caller's name of a chat request's field (for errors the chat path raises). */
  paramOf: (chatParam: string) => string | null;
}

/** Chat request fields by their Responses names. */
const RESPONSES_FIELDS: Record<string, string> = {
  model: "model",
  max_completion_tokens: "max_output_tokens",
  temperature: "temperature",
  top_p: "top_p",
  tools: "tools",
  tool_choice: "tool_choice",
  response_format: "text.format",
  reasoning_effort: "reasoning.effort",
};

/** A part of a user message in chat's spelling. */
function userPart(part: InputPart, param: string): UserPart {
  switch (part.type) {
    case "input_text":
    case "output_text":
      return { type: "text", text: part.text };
    case "refusal":
      return { type: "text", text: part.refusal };
    case "input_audio":
      return part;
    case "input_image":
      if (part.image_url) return { type: "image_url", image_url: { url: part.image_url } };
      if (part.file_id) return { type: "file", file: { file_id: part.file_id } };
      throw new TranslateError(
        `'${param}' needs an image_url or a file_id`,
        param,
        "missing_image",
      );
    case "input_file":
      if (part.file_id) return { type: "file", file: { file_id: part.file_id } };
      if (part.file_data) {
        return { type: "file", file: { file_data: part.file_data, filename: part.filename } };
      }
      if (part.file_url) {
        return { type: "file", file: { file_url: part.file_url, filename: part.filename } };
      }
      throw new TranslateError(
        `'${param}' needs a file_id, file_data or file_url`,
        param,
        "missing_file",
      );
  }
}

/** The text of a message made only of text parts (one per line), or null when it holds media. */
export function textOnly(parts: UserPart[]): string | null {
  let text = "";
  for (const p of parts) {
    if (p.type !== "text") return null;
    text += text ? `\n${p.text}` : p.text;
  }
  return text;
}

/** One message item in chat's spelling. */
function messageOf(
  item: Extract<InputItem, { type: "message" }>,
  param: string,
): Message {
  const parts = typeof item.content === "string"
    ? [{ type: "text" as const, text: item.content }]
    : item.content.map((p, i) => userPart(p, `${param}.content[${i}]`));
  if (item.role === "user") {
    return { role: "user", content: typeof item.content === "string" ? item.content : parts };
  }
  const text = textOnly(parts);
  if (text === null) {
    throw new TranslateError(
      `'${param}.content' of a ${item.role} message can hold only text`,
      `${param}.content`,
      "invalid_value",
    );
  }
  if (item.role === "assistant") return { role: "assistant", content: text };
  return { role: item.role, content: text };
}

/** A function call's output in chat's spelling: its text, and its media (with their fields). */
function toolOutput(
  output: Extract<InputItem, { type: "function_call_output" }>["output"],
  param: string,
): { text: string; media: { part: UserPart; param: string }[] } {
  if (typeof output === "string") return { text: output, media: [] };
  let text = "";
  const media: { part: UserPart; param: string }[] = [];
  output.forEach((p, i) => {
    const part = userPart(p, `${param}[${i}]`);
    if (part.type === "text") text += text ? `\n${part.text}` : part.text;
    else media.push({ part, param: `${param}[${i}]` });
  });
  return { text, media };
}

/**
 * The chat messages of a Responses input: consecutive calls join the assistant turn before them,
 * and media returned by tools follows their outputs as a user message.
 */
export function inputMessages(
  input: ResponsesRequest["input"],
  trail = new SourceTrail(),
): Message[] {
  if (typeof input === "string") {
    trail.message("input");
    return [{ role: "user", content: input }];
  }
  const out: Message[] = [];
  /** Media of the tool outputs in a row (with their fields), sent once the row ends. */
  let toolMedia: { part: UserPart; param: string }[] = [];
  const flushMedia = () => {
    if (!toolMedia.length) return;
    out.push({ role: "user", content: toolMedia.map((m) => m.part) });
    trail.message(toolMedia[0].param, toolMedia.map((m) => m.param));
    toolMedia = [];
  };
  input.forEach((item, i) => {
    const param = `input[${i}]`;
    if (item.type !== "function_call_output" && item.type !== "custom_tool_call_output") {
      flushMedia();
    }
    switch (item.type) {
      case "message":
        out.push(messageOf(item, param));
        trail.message(
          param,
          typeof item.content === "string"
            ? undefined
            : item.content.map((_, j) => `${param}.content[${j}]`),
        );
        return;
      case "function_call":
      case "custom_tool_call": {
        const call: ToolCall = {
          id: item.call_id,
          type: "function",
          function: {
            name: qualifiedName(item.name, item.namespace ?? undefined),
            arguments: item.type === "function_call"
              ? item.arguments
              : JSON.stringify({ [CUSTOM_TOOL_INPUT]: item.input }),
          },
        };
        const last = out.at(-1);
        const joined = last?.role === "assistant" && !last.function_call;
        if (joined) last.tool_calls = [...(last.tool_calls ?? []), call];
        else out.push({ role: "assistant", content: null, tool_calls: [call] });
        trail.call(param, joined);
        return;
      }
      case "function_call_output":
      case "custom_tool_call_output": {
        const { text, media } = toolOutput(item.output, `${param}.output`);
        out.push({ role: "tool", tool_call_id: item.call_id, content: text });
        trail.message(param);
        toolMedia.push(...media);
        return;
      }
      case "reasoning":
      case "web_search_call":
        return;
      case "item_reference":
        throw new TranslateError(
          `'${param}' refers to item '${item.id}', but the gateway does not keep items: send ` +
            "the item itself",
          param,
          "unsupported_value",
        );
    }
  });
  flushMedia();
  return out;
}

type ChatTool = NonNullable<ChatCompletionRequest["tools"]>[number];
type FunctionTool = Extract<ResponsesTool, { type: "function" }>;
type CustomTool = Extract<ResponsesTool, { type: "custom" }>;

/** A function or custom tool as a chat function, named as Gemini sees it. */
function chatFunction(tool: FunctionTool | CustomTool, namespace?: string): ChatTool {
  const name = qualifiedName(tool.name, namespace);
  if (tool.type === "function") {
    return {
      type: "function",
      function: {
        name,
        description: tool.description,
        parameters: tool.parameters,
        strict: tool.strict,
      },
    };
  }
  const format = tool.format?.type === "grammar"
    ? " The input must follow this grammar: " + JSON.stringify(tool.format)
    : "";
  return {
    type: "function",
    function: {
      name,
      description: (tool.description ?? "") + format,
      parameters: {
        type: "object",
        properties: {
          [CUSTOM_TOOL_INPUT]: { type: "string", description: "The tool's free-text input" },
        },
        required: [CUSTOM_TOOL_INPUT],
      },
    },
  };
}

/** Tools in chat's spelling, whether Google Search is on, and the origins of renamed tools. */
function chatTools(
  tools: ResponsesTool[],
): { tools: ChatTool[]; search: boolean; origins: Map<string, ToolOrigin> } {
  const out: ChatTool[] = [];
  const origins = new Map<string, ToolOrigin>();
  let search = false;
  const add = (tool: FunctionTool | CustomTool, namespace?: string) => {
    out.push(chatFunction(tool, namespace));
    if (tool.type === "custom" || namespace) {
      origins.set(qualifiedName(tool.name, namespace), {
        name: tool.name,
        custom: tool.type === "custom",
        ...(namespace ? { namespace } : {}),
      });
    }
  };
  tools.forEach((tool, i) => {
    switch (tool.type) {
      case "function":
      case "custom":
        add(tool);
        return;
      case "namespace":
        for (const inner of tool.tools) add(inner, tool.name);
        return;
      case "web_search":
      case "web_search_preview":
      case "web_search_2025_08_26":
        search = true;
        return;
      case "unsupported":
        throw new TranslateError(
          `Tool type '${tool.kind}' of 'tools[${i}]' is not supported: Gemini offers function ` +
            "tools, custom tools, namespaces of them and web search here",
          `tools[${i}].type`,
          "unsupported_value",
        );
    }
  });
  return { tools: out, search, origins };
}

/** `tool_choice` in chat's spelling. */
function chatToolChoice(
  choice: NonNullable<ResponsesRequest["tool_choice"]>,
): ChatCompletionRequest["tool_choice"] {
  if (typeof choice === "string") return choice;
  if (choice.type === "function" || choice.type === "custom") {
    return {
      type: "function",
      function: { name: qualifiedName(choice.name, choice.namespace ?? undefined) },
    };
  }
  if (choice.type === "allowed_tools") {
    return {
      type: "allowed_tools",
      allowed_tools: {
        mode: choice.mode,
        tools: choice.tools.map((t) => ({
          type: "function",
          function: { name: qualifiedName(t.name, t.namespace ?? undefined) },
        })),
      },
    };
  }
  // A web search choice: search is on with the tools; the model decides when to use it.
  return "auto";
}

/** `text.format` in chat's spelling. */
function responseFormat(
  format: NonNullable<NonNullable<ResponsesRequest["text"]>["format"]>,
): ChatCompletionRequest["response_format"] {
  if (format.type !== "json_schema") return format;
  return {
    type: "json_schema",
    json_schema: {
      name: format.name,
      description: format.description,
      schema: format.schema,
      strict: format.strict,
    },
  };
}

/** The input of a request as items (a string is one user message). */
export function inputItems(input: ResponsesRequest["input"]): InputItem[] {
  return typeof input === "string" ? [{ type: "message", role: "user", content: input }] : input;
}

/**
 * Refuses what asks for state OpenAI keeps and the gateway does not: silently left out, it would
 * make an answer without the conversation or prompt the caller meant.
 */
function refuseUnkept(req: ResponsesRequest): void {
  const refuse = (param: string, what: string) => {
    throw new TranslateError(`${what} are not supported here`, param, "unsupported_value");
  };
  if (req.background) refuse("background", "Background responses (leave 'background' unset)");
  if (req.conversation != null) {
    refuse(
      "conversation",
      "Conversations (continue an answer with 'previous_response_id', or send the whole " +
        "conversation in 'input')",
    );
  }
  if (req.prompt != null) refuse("prompt", "Stored prompt templates (send 'instructions')");
}

/**
 * Spells a Responses request as a chat request. `history` holds the items of the response it
 * continues (`previous_response_id`: its input and its output); that response's instructions are
 * not carried over, as OpenAI documents.
 */
export function toChatRequest(
  req: ResponsesRequest,
  history: InputItem[] = [],
): ChatFromResponses {
  refuseUnkept(req);
  const sources: MessageSource[] = [];
  if (req.instructions) sources.push({ message: "instructions", calls: [] });
  const earlier = inputMessages(history);
  for (const _ of earlier) sources.push({ message: "previous_response_id", calls: [] });
  const conversation = [...earlier, ...inputMessages(req.input, new SourceTrail(sources))];
  if (!conversation.length) {
    throw new TranslateError("'input' holds no message to answer", "input", "invalid_value");
  }
  const { tools, search, origins } = chatTools(req.tools ?? []);
  const messages: Message[] = req.instructions
    ? [{ role: "system", content: req.instructions }, ...conversation]
    : conversation;
  const chat: ChatCompletionRequest = {
    model: req.model,
    messages,
    stream: req.stream ?? false,
    ...(req.stream ? { stream_options: { include_usage: true } } : {}),
    temperature: req.temperature,
    top_p: req.top_p,
    max_completion_tokens: req.max_output_tokens,
    parallel_tool_calls: req.parallel_tool_calls,
    user: req.safety_identifier ?? req.user,
    ...(tools.length ? { tools } : {}),
    ...(req.tool_choice && tools.length ? { tool_choice: chatToolChoice(req.tool_choice) } : {}),
    ...(search ? { web_search_options: {} } : {}),
    ...(req.text?.format ? { response_format: responseFormat(req.text.format) } : {}),
    ...(req.reasoning?.effort ? { reasoning_effort: req.reasoning.effort } : {}),
    // Asking for a summary asks Gemini for its thought summaries; as at OpenAI, there are none
    // otherwise (the model may think all the same).
    extra_body: {
      google: { thinking_config: { include_thoughts: req.reasoning?.summary != null } },
    },
  };
  return { chat, toolOrigins: origins, paramOf: paramMapper(sources, RESPONSES_FIELDS) };
}
