/**
 * Zod schemas of the OpenAI chat-completions request. Unknown fields are ignored (stripped); wrong
 * types of known fields are a 400 naming the field.
 */
import * as z from "zod";

/** A text content part. */
export const TextPartSchema = z.object({ type: z.literal("text"), text: z.string() });

/** An image part (data URL or http(s) URL). */
export const ImagePartSchema = z.object({
  type: z.literal("image_url"),
  image_url: z.object({ url: z.string().min(1), detail: z.string().optional() }),
});

/** An audio part with base64 data. */
export const AudioPartSchema = z.object({
  type: z.literal("input_audio"),
  input_audio: z.object({ data: z.string().min(1), format: z.string().min(1) }),
});

/** Any user content part. */
export const UserPartSchema = z.discriminatedUnion("type", [
  TextPartSchema,
  ImagePartSchema,
  AudioPartSchema,
]);

const TextContentSchema = z.union([z.string(), z.array(TextPartSchema)]);

/** One message of the conversation. */
export const MessageSchema = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: TextContentSchema, name: z.string().optional() }),
  z.object({
    role: z.literal("developer"),
    content: TextContentSchema,
    name: z.string().optional(),
  }),
  z.object({
    role: z.literal("user"),
    content: z.union([z.string(), z.array(UserPartSchema)]),
    name: z.string().optional(),
  }),
  z.object({
    role: z.literal("assistant"),
    content: z.union([TextContentSchema, z.null()]).optional(),
    name: z.string().optional(),
  }),
]);

/** One chat message. */
export type Message = z.infer<typeof MessageSchema>;

/** The chat-completions request body. */
export const ChatCompletionRequestSchema = z.object({
  model: z.string().min(1),
  messages: z.array(MessageSchema).min(1),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(5)]).nullish(),
  n: z.number().int().min(1).max(8).nullish(),
  user: z.string().nullish(),
});

/** A validated chat-completions request. */
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;
