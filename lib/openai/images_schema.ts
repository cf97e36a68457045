/**
 * Zod schema of the OpenAI image generation request (`POST /v1/images/generations`).
 */
import * as z from "zod";

/** The image generation request body. */
export const ImagesRequestSchema = z.object({
  /** Absent, or an OpenAI image model name: the default Gemini image model. */
  model: z.string().min(1).nullish(),
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
