/**
 * Zod schemas of OpenAI's image requests: generation (`POST /v1/images/generations`, JSON) and
 * editing (`POST /v1/images/edits`, the text fields of a multipart form).
 */
import * as z from "zod";
import { ModelNameSchema } from "./model_name.ts";

/** The image generation request body. */
export const ImagesRequestSchema = z.object({
  /** Absent, or an OpenAI image model name: the default Gemini image model. */
  model: ModelNameSchema.nullish(),
  prompt: z.string().trim().min(1, "must not be empty").max(32_000),
  n: z.number().int().min(1).max(4).nullish(),
  /** `auto`, or `<width>x<height>`: sets the picture's aspect ratio. */
  size: z.string().min(1).nullish(),
  /** `b64_json` (the default, as for gpt-image-1), or `url` (a `data:` URL: no image host). */
  response_format: z.enum(["b64_json", "url"]).nullish(),
  // Accepted for compatibility; Gemini has no counterpart for these.
  quality: z.string().nullish(),
  style: z.string().nullish(),
  background: z.string().nullish(),
  output_format: z.string().nullish(),
  moderation: z.string().nullish(),
  user: z.string().nullish(),
});

/** A validated image generation request. */
export type ImagesRequest = z.infer<typeof ImagesRequestSchema>;

/** The text fields of an image edit form (its pictures are the form's files). */
export const ImageEditFieldsSchema = z.object({
  model: ModelNameSchema.nullish(),
  prompt: z.string().trim().min(1, "must not be empty").max(32_000),
  n: z.coerce.number().int().min(1).max(4).nullish(),
  size: z.string().min(1).nullish(),
  response_format: z.enum(["b64_json", "url"]).nullish(),
  // Other fields (quality, background, input_fidelity, output_format, output_compression, user)
  // are accepted and left out: Gemini has no counterpart for them.
});

/** A validated image edit request's fields. */
export type ImageEditFields = z.infer<typeof ImageEditFieldsSchema>;
