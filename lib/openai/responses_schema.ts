/**
 * Zod schemas of OpenAI's Responses API request (`POST /v1/responses`). Unknown fields are ignored
 * (stripped); wrong types of known fields are a 400 naming the field. Items the gateway cannot use
 * are refused by the translation (`lib/translate/responses_request.ts`), which names them.
 */
import * as z from "zod";
import { ModelNameSchema } from "./model_name.ts";
import { ReasoningEffortSchema } from "./chat_schema.ts";

const InputTextSchema = z.object({ type: z.literal("input_text"), text: z.string() });

const InputImageSchema = z.object({
  type: z.literal("input_image"),
  image_url: z.string().min(1).nullish(),
  file_id: z.string().min(1).nullish(),
  detail: z.string().nullish(),
});

const InputFileSchema = z.object({
  type: z.literal("input_file"),
  file_id: z.string().min(1).nullish(),
  file_data: z.string().min(1).nullish(),
  file_url: z.string().min(1).nullish(),
  filename: z.string().nullish(),
});

const InputAudioSchema = z.object({
  type: z.literal("input_audio"),
  input_audio: z.object({ data: z.string().min(1), format: z.string().min(1) }),
});

const OutputTextSchema = z.object({ type: z.literal("output_text"), text: z.string() });
const RefusalSchema = z.object({ type: z.literal("refusal"), refusal: z.string() });

/** A content part of an input message (assistant turns carry output text and refusals). */
export const InputPartSchema = z.discriminatedUnion("type", [
  InputTextSchema,
  InputImageSchema,
  InputFileSchema,
  InputAudioSchema,
  OutputTextSchema,
  RefusalSchema,
]);

/** One content part of an input message. */
export type InputPart = z.infer<typeof InputPartSchema>;

const MessageItemSchema = z.object({
  type: z.literal("message"),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: z.union([z.string(), z.array(InputPartSchema)]),
});

const FunctionCallItemSchema = z.object({
  type: z.literal("function_call"),
  call_id: z.string().min(1),
  name: z.string().min(1),
  /** The namespace tool the function belongs to. */
  namespace: z.string().min(1).nullish(),
  arguments: z.string(),
});

const FunctionOutputSchema = z.union([
  z.string(),
  z.array(z.discriminatedUnion("type", [InputTextSchema, InputImageSchema, InputFileSchema])),
]);

const FunctionCallOutputItemSchema = z.object({
  type: z.literal("function_call_output"),
  call_id: z.string().min(1),
  output: FunctionOutputSchema,
});

const CustomToolCallItemSchema = z.object({
  type: z.literal("custom_tool_call"),
  call_id: z.string().min(1),
  name: z.string().min(1),
  namespace: z.string().min(1).nullish(),
  input: z.string(),
});

const CustomToolCallOutputItemSchema = z.object({
  type: z.literal("custom_tool_call_output"),
  call_id: z.string().min(1),
  output: FunctionOutputSchema,
});

/**
 * Items a client echoes back from an earlier answer that carry nothing to send again: reasoning
 * (Gemini's thought signatures ride on the call ids instead) and the record of a web search whose
 * findings are in the answer's text.
 */
const PassedOverItemSchema = z.object({
  type: z.enum(["reasoning", "web_search_call"]),
});

const ItemReferenceSchema = z.object({
  type: z.literal("item_reference"),
  id: z.string().min(1),
});

/** One input item. A message may come without its `type`. */
export const InputItemSchema = z.preprocess(
  (v) =>
    typeof v === "object" && v !== null && !Array.isArray(v) && !("type" in v) && "role" in v
      ? { ...v, type: "message" }
      : v,
  z.discriminatedUnion("type", [
    MessageItemSchema,
    FunctionCallItemSchema,
    FunctionCallOutputItemSchema,
    CustomToolCallItemSchema,
    CustomToolCallOutputItemSchema,
    PassedOverItemSchema,
    ItemReferenceSchema,
  ]),
);

/** One input item. */
export type InputItem = z.infer<typeof InputItemSchema>;

/** A function tool, declared flat (not nested under `function` as in chat completions). */
const FunctionToolSchema = z.object({
  type: z.literal("function"),
  name: z.string().min(1).max(128),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

/** A custom tool: the model calls it with free text (Codex's `apply_patch`, for one). */
const CustomToolSchema = z.object({
  type: z.literal("custom"),
  name: z.string().min(1).max(128),
  description: z.string().nullish(),
  format: z.looseObject({ type: z.string() }).nullish(),
});

/** Function and custom tools grouped under a name (calls name the namespace and the tool). */
const NamespaceToolSchema = z.object({
  type: z.literal("namespace"),
  name: z.string().min(1).max(64),
  description: z.string().nullish(),
  tools: z.array(z.discriminatedUnion("type", [FunctionToolSchema, CustomToolSchema])).max(512),
});

/** OpenAI's built-in web search: Google Search on Gemini (its options do not apply). */
const WebSearchToolSchema = z.object({
  type: z.enum(["web_search", "web_search_preview", "web_search_2025_08_26"]),
});

const KNOWN_TOOLS: Record<string, z.ZodType> = {
  function: FunctionToolSchema,
  custom: CustomToolSchema,
  namespace: NamespaceToolSchema,
  web_search: WebSearchToolSchema,
  web_search_preview: WebSearchToolSchema,
  web_search_2025_08_26: WebSearchToolSchema,
};

type KnownTool =
  | z.infer<typeof FunctionToolSchema>
  | z.infer<typeof CustomToolSchema>
  | z.infer<typeof NamespaceToolSchema>
  | z.infer<typeof WebSearchToolSchema>;

/**
 * One tool: a known kind checked by its own schema (its problems named by field), or a built-in
 * tool of OpenAI's that Gemini has no counterpart for, kept by name for the translation to refuse.
 */
export const ResponsesToolSchema = z.looseObject({ type: z.string().min(1) }).transform(
  (v, ctx): KnownTool | { type: "unsupported"; kind: string } => {
    const schema = KNOWN_TOOLS[v.type];
    if (!schema) return { type: "unsupported", kind: v.type };
    const parsed = schema.safeParse(v);
    if (parsed.success) return parsed.data as KnownTool;
    for (const issue of parsed.error.issues) {
      ctx.addIssue({ code: "custom", message: issue.message, path: [...issue.path] });
    }
    return z.NEVER;
  },
);

/** One tool of a Responses request. */
export type ResponsesTool = z.infer<typeof ResponsesToolSchema>;

/** One tool named by a choice (a namespaced one with its namespace). */
const NamedToolSchema = z.object({
  type: z.enum(["function", "custom"]),
  name: z.string().min(1),
  namespace: z.string().min(1).nullish(),
});

/** `tool_choice`. */
export const ResponsesToolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  NamedToolSchema,
  z.object({
    type: z.literal("allowed_tools"),
    mode: z.enum(["auto", "required"]),
    tools: z.array(NamedToolSchema),
  }),
  z.object({ type: z.enum(["web_search", "web_search_preview"]) }),
]);

/** `text.format`. */
export const TextFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    name: z.string().min(1),
    description: z.string().nullish(),
    schema: z.record(z.string(), z.unknown()),
    strict: z.boolean().nullish(),
  }),
]);

/** The Responses API request body. */
export const ResponsesRequestSchema = z.object({
  model: ModelNameSchema,
  input: z.union([z.string(), z.array(InputItemSchema)]),
  instructions: z.string().nullish(),
  stream: z.boolean().nullish(),
  max_output_tokens: z.number().int().positive().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  tools: z.array(ResponsesToolSchema).max(512).nullish(),
  tool_choice: ResponsesToolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  text: z.object({ format: TextFormatSchema.nullish(), verbosity: z.string().nullish() })
    .nullish(),
  reasoning: z.object({
    effort: ReasoningEffortSchema.nullish(),
    summary: z.enum(["auto", "concise", "detailed"]).nullish(),
  }).nullish(),
  previous_response_id: z.string().min(1).nullish(),
  store: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  user: z.string().nullish(),
  safety_identifier: z.string().nullish(),
  truncation: z.enum(["auto", "disabled"]).nullish(),
  background: z.boolean().nullish(),
  /** OpenAI-side state the gateway does not keep (refused by name, not ignored). */
  conversation: z.unknown().optional(),
  prompt: z.unknown().optional(),
});

/** A validated Responses request. */
export type ResponsesRequest = z.infer<typeof ResponsesRequestSchema>;

/** The model a token count is made for when its request names none. */
export const COUNT_MODEL = "gemini-2.5-flash";

/**
 * `POST /v1/responses/input_tokens`: a Responses request to count the input of, without what only
 * answering uses (its `model`, when absent, is `COUNT_MODEL`).
 */
export const InputTokensRequestSchema = ResponsesRequestSchema.extend({
  model: ModelNameSchema.nullish().transform((m) => m ?? COUNT_MODEL),
  input: z.union([z.string(), z.array(InputItemSchema)]).nullish().transform((i) => i ?? []),
});
