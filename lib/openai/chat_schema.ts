/**
 * Zod schemas of the OpenAI chat-completions request. Unknown fields are ignored (stripped); wrong
 * types of known fields are a 400 naming the field.
 */
import * as z from "zod";
import { isModelName, ModelNameSchema } from "./model_name.ts";

/** A text content part. */
export const TextPartSchema = z.object({ type: z.literal("text"), text: z.string() });

/** An image part (data URL or http(s) URL). */
export const ImagePartSchema = z.object({
  type: z.literal("image_url"),
  image_url: z.object({ url: z.string().min(1), detail: z.string().nullish() }),
});

/** An audio part with base64 data. */
export const AudioPartSchema = z.object({
  type: z.literal("input_audio"),
  input_audio: z.object({ data: z.string().min(1), format: z.string().min(1) }),
});

/**
 * OpenAI's file part: an uploaded file by id, or inline base64 data with a file name; or, the
 * gateway's addition, an http(s) URL it fetches (a PDF, say).
 */
export const FilePartSchema = z.object({
  type: z.literal("file"),
  file: z.object({
    file_id: z.string().min(1).nullish(),
    file_data: z.string().min(1).nullish(),
    file_url: z.string().min(1).nullish(),
    filename: z.string().nullish(),
  }),
});

/** The gateway's typed file reference: `{"type": "video", "file_data": {"file_id", "mime_type"}}`. */
export const TypedFilePartSchema = z.object({
  type: z.enum(["image", "audio", "video", "document"]),
  file_data: z.object({
    file_id: z.string().min(1),
    mime_type: z.string().min(1).nullish(),
  }),
});

/** Any user content part. */
export const UserPartSchema = z.discriminatedUnion("type", [
  TextPartSchema,
  ImagePartSchema,
  AudioPartSchema,
  FilePartSchema,
  TypedFilePartSchema,
]);

/** One user content part. */
export type UserPart = z.infer<typeof UserPartSchema>;

const TextContentSchema = z.union([z.string(), z.array(TextPartSchema)]);

/** A refusal part, as assistant messages may carry (ignored when translating). */
const RefusalPartSchema = z.object({ type: z.literal("refusal"), refusal: z.string() });

/** A tool call of an assistant message. */
export const ToolCallSchema = z.object({
  id: z.string().min(1),
  type: z.literal("function").default("function"),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
  /** Google's compatibility layer carries the thought signature here; clients may echo it. */
  extra_content: z.object({
    google: z.object({ thought_signature: z.string().nullish() }).nullish(),
  }).nullish(),
});

/** One assistant tool call. */
export type ToolCall = z.infer<typeof ToolCallSchema>;

/** One message of the conversation. */
export const MessageSchema = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: TextContentSchema, name: z.string().nullish() }),
  z.object({
    role: z.literal("developer"),
    content: TextContentSchema,
    name: z.string().nullish(),
  }),
  z.object({
    role: z.literal("user"),
    content: z.union([z.string(), z.array(UserPartSchema)]),
    name: z.string().nullish(),
  }),
  z.object({
    role: z.literal("assistant"),
    content: z.union([z.string(), z.array(z.union([TextPartSchema, RefusalPartSchema])), z.null()])
      .optional(),
    name: z.string().nullish(),
    tool_calls: z.array(ToolCallSchema).nullish(),
    function_call: z.object({ name: z.string().min(1), arguments: z.string() }).nullish(),
  }),
  z.object({
    role: z.literal("tool"),
    tool_call_id: z.string().min(1),
    content: TextContentSchema,
  }),
  z.object({
    role: z.literal("function"),
    name: z.string().min(1),
    content: z.string().nullable(),
  }),
]);

/** One chat message. */
export type Message = z.infer<typeof MessageSchema>;

/** A function the model may call. */
export const FunctionDefinitionSchema = z.object({
  name: z.string().min(1).max(128),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

/** A tool definition (only function tools exist on Gemini's side). */
export const ToolSchema = z.object({
  type: z.literal("function"),
  function: FunctionDefinitionSchema,
});

const NamedFunctionSchema = z.object({
  type: z.literal("function"),
  function: z.object({ name: z.string().min(1) }),
});

/** `tool_choice`: none, auto, required, one named function, or an allowed-tools list. */
export const ToolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  NamedFunctionSchema,
  z.object({
    type: z.literal("allowed_tools"),
    allowed_tools: z.object({
      mode: z.enum(["auto", "required"]),
      tools: z.array(NamedFunctionSchema),
    }),
  }),
]);

/** `response_format`. */
export const ResponseFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string().min(1),
      description: z.string().nullish(),
      schema: z.record(z.string(), z.unknown()).nullish(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

/** Gemini's thinking controls as Google's OpenAI layer accepts them (snake or camel case). */
export const ThinkingConfigSchema = z.object({
  thinking_budget: z.number().int().min(-1).nullish(),
  thinkingBudget: z.number().int().min(-1).nullish(),
  thinking_level: z.string().min(1).nullish(),
  thinkingLevel: z.string().min(1).nullish(),
  include_thoughts: z.boolean().nullish(),
  includeThoughts: z.boolean().nullish(),
});

/** Gemini-specific options: `extra_body.google` (the layout Google's own OpenAI layer uses). */
export const GoogleExtrasSchema = z.object({
  thinking_config: ThinkingConfigSchema.nullish(),
  safety_settings: z.array(z.object({ category: z.string().min(1), threshold: z.string().min(1) }))
    .nullish(),
  cached_content: z.string().min(1).nullish(),
});

/** The Gemini-specific options of a request. */
export type GoogleExtras = z.infer<typeof GoogleExtrasSchema>;

/** OpenAI's reasoning effort levels (the 2026 SDK's list). */
export const ReasoningEffortSchema = z.enum([
  "none",
  "minimal",
  "low",
  "medium",
  "high",
  "xhigh",
  "max",
]);

/** A reasoning effort. */
export type ReasoningEffort = z.infer<typeof ReasoningEffortSchema>;

/** The chat-completions request body. */
export const ChatCompletionRequestSchema = z.object({
  model: ModelNameSchema,
  messages: z.array(MessageSchema).min(1),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().positive().nullish(),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(5)]).nullish(),
  n: z.number().int().min(1).max(8).nullish(),
  seed: z.number().int().nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  tools: z.array(ToolSchema).max(512).nullish(),
  tool_choice: ToolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  functions: z.array(FunctionDefinitionSchema).max(512).nullish(),
  function_call: z.union([z.enum(["none", "auto"]), z.object({ name: z.string().min(1) })])
    .nullish(),
  response_format: ResponseFormatSchema.nullish(),
  reasoning_effort: ReasoningEffortSchema.nullish(),
  user: z.string().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  /**
   * Output kinds: `["text", "image"]` asks an image model for pictures (OpenRouter's spelling;
   * Gemini's image models draw without it too), `["text"]` for text only.
   */
  modalities: z.array(z.enum(["text", "image", "audio"])).min(1).max(3).nullish(),
  /** OpenAI's web search: any options turn Google Search on (its own options do not apply). */
  web_search_options: z.looseObject({}).nullish(),
  extra_body: z.object({ google: GoogleExtrasSchema.nullish() }).nullish(),
  /** The same options sent at the top level (some clients flatten `extra_body`). */
  google: GoogleExtrasSchema.nullish(),
});

/** A validated chat-completions request. */
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `z.number()` with optional bounds and `.int()`, `.nullish()`: the checks of the plain fields. */
function nullishNumber(v: unknown, min: number, max: number, int: boolean): boolean {
  if (v === undefined || v === null) return true;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) return false;
  return !int || Number.isSafeInteger(v);
}

function nullishType(v: unknown, type: "string" | "boolean"): boolean {
  return v === undefined || v === null || typeof v === type;
}

/** Message roles whose plain form is `{role, content: string, name?}`. */
const PLAIN_ROLES = new Set(["system", "developer", "user", "assistant"]);

function plainMessage(m: unknown): boolean {
  if (!isObject(m)) return false;
  for (const k in m) {
    if (k !== "role" && k !== "content" && k !== "name") return false;
  }
  return typeof m.role === "string" && PLAIN_ROLES.has(m.role) &&
    typeof m.content === "string" && nullishType(m.name, "string");
}

/**
 * Checks of the top-level fields a plain request may carry, each exactly as the schema's (a field
 * outside this table sends the request through the schema).
 */
const PLAIN_FIELDS = new Map<string, (v: unknown) => boolean>(Object.entries({
  model: isModelName,
  messages: (v) => Array.isArray(v) && v.length >= 1 && v.every(plainMessage),
  stream: (v) => nullishType(v, "boolean"),
  stream_options: (v) =>
    v === undefined || v === null ||
    (isObject(v) && Object.keys(v).every((k) => k === "include_usage") &&
      nullishType(v.include_usage, "boolean")),
  temperature: (v) => nullishNumber(v, 0, 2, false),
  top_p: (v) => nullishNumber(v, 0, 1, false),
  top_k: (v) => nullishNumber(v, Number.MIN_VALUE, Infinity, true),
  max_tokens: (v) => nullishNumber(v, Number.MIN_VALUE, Infinity, true),
  max_completion_tokens: (v) => nullishNumber(v, Number.MIN_VALUE, Infinity, true),
  n: (v) => nullishNumber(v, 1, 8, true),
  seed: (v) => nullishNumber(v, -Infinity, Infinity, true),
  presence_penalty: (v) => nullishNumber(v, -2, 2, false),
  frequency_penalty: (v) => nullishNumber(v, -2, 2, false),
  logprobs: (v) => nullishType(v, "boolean"),
  parallel_tool_calls: (v) => nullishType(v, "boolean"),
  user: (v: unknown) => nullishType(v, "string"),
}));

/**
 * Reads a parsed request body as a `ChatCompletionRequest`: the body itself when it is a plain
 * chat (text messages and scalar options only, no unknown field; the usual case, checked without
 * copying it), else the schema's result. Same answers as `ChatCompletionRequestSchema.safeParse`:
 * a plain body is one the schema returns unchanged.
 */
export function readChatCompletionRequest(
  json: unknown,
): z.ZodSafeParseResult<ChatCompletionRequest> {
  if (isObject(json) && json.model !== undefined && json.messages !== undefined) {
    let plain = true;
    for (const k in json) {
      const check = PLAIN_FIELDS.get(k);
      if (!check || !check(json[k])) {
        plain = false;
        break;
      }
    }
    if (plain) return { success: true, data: json as ChatCompletionRequest };
  }
  return ChatCompletionRequestSchema.safeParse(json);
}
