/**
 * Zod schema of OpenAI's legacy text completions request (`POST /v1/completions`). Unknown fields
 * are ignored; what the gateway cannot do (several prompts, prompts as token ids, `best_of` above
 * `n`) is refused with a 400 naming the field.
 */
import * as z from "zod";
import { ModelNameSchema } from "./model_name.ts";

/** A prompt: text, or a list holding one text (several prompts in one request are refused). */
const PromptSchema = z.union([
  z.string(),
  z.array(z.string()).length(
    1,
    "must be one text: send one prompt per request (token-id prompts are not supported either)",
  ),
], { error: "must be a text, or a list of one text (token ids are not supported)" });

/** The text completions request body. */
export const CompletionsRequestSchema = z.object({
  model: ModelNameSchema,
  prompt: PromptSchema,
  suffix: z.string().nullish(),
  /** 0 (with `echo`: the prompt back) asks Gemini for nothing. */
  max_tokens: z.number().int().min(0).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  n: z.number().int().min(1).max(8).nullish(),
  best_of: z.number().int().min(1).max(8).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  /** How many likeliest tokens to report beside each chosen one (0-5, as OpenAI allows). */
  logprobs: z.number().int().min(0).max(5).nullish(),
  echo: z.boolean().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(5)]).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  seed: z.number().int().nullish(),
  user: z.string().nullish(),
}).refine((r) => r.best_of == null || r.best_of === (r.n ?? 1), {
  message: "must equal n (or be left out): the gateway returns every completion it makes",
  path: ["best_of"],
});

/** A validated text completions request. */
export type CompletionsRequest = z.infer<typeof CompletionsRequestSchema>;
