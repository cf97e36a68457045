/**
 * Zod schemas of Anthropic's Messages API request (`POST /v1/messages`, what Claude Code and the
 * `@anthropic-ai/sdk` send). Unknown fields are ignored (stripped); wrong types of known fields are
 * a 400 naming the field. Blocks the gateway cannot use are refused by the translation
 * (`lib/translate/messages_request.ts`), which names them.
 */
import * as z from "zod";
import { ModelNameSchema } from "../openai/model_name.ts";

const CacheControl = { cache_control: z.unknown().optional() };

const TextBlockSchema = z.object({ type: z.literal("text"), text: z.string(), ...CacheControl });

const ImageBlockSchema = z.object({
  type: z.literal("image"),
  source: z.discriminatedUnion("type", [
    z.object({ type: z.literal("base64"), media_type: z.string().min(1), data: z.string().min(1) }),
    z.object({ type: z.literal("url"), url: z.string().min(1) }),
    z.object({ type: z.literal("file"), file_id: z.string().min(1) }),
  ]),
  ...CacheControl,
});

const DocumentBlockSchema = z.object({
  type: z.literal("document"),
  source: z.discriminatedUnion("type", [
    z.object({ type: z.literal("base64"), media_type: z.string().min(1), data: z.string().min(1) }),
    z.object({ type: z.literal("text"), media_type: z.string().nullish(), data: z.string() }),
    z.object({ type: z.literal("url"), url: z.string().min(1) }),
    z.object({ type: z.literal("file"), file_id: z.string().min(1) }),
  ]),
  title: z.string().nullish(),
  ...CacheControl,
});

const ToolUseBlockSchema = z.object({
  type: z.literal("tool_use"),
  id: z.string().min(1),
  name: z.string().min(1),
  input: z.unknown(),
});

const ToolResultBlockSchema = z.object({
  type: z.literal("tool_result"),
  tool_use_id: z.string().min(1),
  content: z.union([
    z.string(),
    z.array(z.discriminatedUnion("type", [TextBlockSchema, ImageBlockSchema, DocumentBlockSchema])),
  ]).optional(),
  is_error: z.boolean().nullish(),
  ...CacheControl,
});

/**
 * Blocks an assistant turn carries back from an earlier answer that are not sent again: thoughts
 * (Gemini's signatures ride on the tool ids) and the records of server tools whose findings are
 * in the text.
 */
const PassedOverBlockSchema = z.object({
  type: z.enum([
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "web_search_tool_result",
  ]),
});

/** One content block of a message. */
export const ContentBlockSchema = z.discriminatedUnion("type", [
  TextBlockSchema,
  ImageBlockSchema,
  DocumentBlockSchema,
  ToolUseBlockSchema,
  ToolResultBlockSchema,
  PassedOverBlockSchema,
]);

/** One content block. */
export type ContentBlock = z.infer<typeof ContentBlockSchema>;

/** One message of the conversation (Claude Code puts system messages between turns, too). */
export const AnthropicMessageSchema = z.object({
  role: z.enum(["user", "assistant", "system"]),
  content: z.union([z.string(), z.array(ContentBlockSchema)]),
});

/** One message. */
export type AnthropicMessage = z.infer<typeof AnthropicMessageSchema>;

/** A client tool (`type` absent or `custom`) or a server tool of Anthropic's (by its type). */
export const AnthropicToolSchema = z.looseObject({
  type: z.string().nullish(),
  name: z.string().min(1).max(128),
  description: z.string().nullish(),
  input_schema: z.record(z.string(), z.unknown()).nullish(),
});

/** One tool. */
export type AnthropicTool = z.infer<typeof AnthropicToolSchema>;

/** `tool_choice`. */
export const AnthropicToolChoiceSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auto"), disable_parallel_tool_use: z.boolean().nullish() }),
  z.object({ type: z.literal("any"), disable_parallel_tool_use: z.boolean().nullish() }),
  z.object({
    type: z.literal("tool"),
    name: z.string().min(1),
    disable_parallel_tool_use: z.boolean().nullish(),
  }),
  z.object({ type: z.literal("none") }),
]);

/** Structured output: the answer is JSON of this schema. */
const OutputFormatSchema = z.object({
  type: z.literal("json_schema"),
  schema: z.record(z.string(), z.unknown()),
});

/** The Messages API request body. */
export const MessagesRequestSchema = z.object({
  model: ModelNameSchema,
  max_tokens: z.number().int().positive(),
  messages: z.array(AnthropicMessageSchema),
  system: z.union([z.string(), z.array(TextBlockSchema)]).nullish(),
  stream: z.boolean().nullish(),
  temperature: z.number().min(0).max(1).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().positive().nullish(),
  stop_sequences: z.array(z.string()).nullish(),
  tools: z.array(AnthropicToolSchema).max(512).nullish(),
  tool_choice: AnthropicToolChoiceSchema.nullish(),
  thinking: z.discriminatedUnion("type", [
    z.object({ type: z.literal("enabled"), budget_tokens: z.number().int().min(0) }),
    z.object({ type: z.literal("disabled") }),
    z.object({ type: z.literal("adaptive") }),
  ]).nullish(),
  metadata: z.object({ user_id: z.string().nullish() }).nullish(),
  /** How hard to think, and structured output. */
  output_config: z.object({
    effort: z.enum(["low", "medium", "high", "xhigh", "max"]).nullish(),
    format: OutputFormatSchema.nullish(),
  }).nullish(),
  /** The older spelling of `output_config.format`. */
  output_format: OutputFormatSchema.nullish(),
  /** Anthropic-side tools the gateway does not run (refused by name, not ignored). */
  mcp_servers: z.unknown().optional(),
  container: z.unknown().optional(),
});

/** A validated Messages request. */
export type MessagesRequest = z.infer<typeof MessagesRequestSchema>;

/** The body of `POST /v1/messages/count_tokens`: a request without its output settings. */
export const CountTokensRequestSchema = MessagesRequestSchema.omit({
  max_tokens: true,
  stream: true,
  temperature: true,
  top_p: true,
  top_k: true,
  stop_sequences: true,
  metadata: true,
});

/** A validated count-tokens request. */
export type CountTokensRequest = z.infer<typeof CountTokensRequestSchema>;
