/**
 * Zod schema of the OpenAI embeddings request.
 */
import * as z from "zod";
import { ModelNameSchema } from "./model_name.ts";

/** The embeddings request body. */
export const EmbeddingsRequestSchema = z.object({
  model: ModelNameSchema,
  input: z.union([
    z.string().min(1, "must not be empty"),
    z.array(z.string().min(1, "must not be empty")).min(1).max(2048),
    z.array(z.number()).min(1),
    z.array(z.array(z.number())).min(1),
  ]),
  dimensions: z.number().int().positive().max(65_536).nullish(),
  encoding_format: z.enum(["float", "base64"]).nullish(),
  user: z.string().nullish(),
  /** Gemini's task type (`RETRIEVAL_QUERY`, `SEMANTIC_SIMILARITY`, ...); optional extension. */
  task_type: z.string().min(1).nullish(),
});

/** A validated embeddings request. */
export type EmbeddingsRequest = z.infer<typeof EmbeddingsRequestSchema>;
