/**
 * Zod schemas of OpenAI's audio requests: speech (JSON) and transcription / translation (the
 * fields of a multipart form besides its file).
 */
import * as z from "zod";
import { ModelNameSchema } from "./model_name.ts";

/** `POST /v1/audio/speech`. */
export const SpeechRequestSchema = z.object({
  /** Absent, or an OpenAI speech model name: the default Gemini TTS model. */
  model: ModelNameSchema.nullish(),
  input: z.string().min(1, "must not be empty").max(8_000),
  voice: z.string().min(1),
  /** Speaking style, as a TTS model takes it ("Say cheerfully"). */
  instructions: z.string().max(4_000).nullish(),
  /** `wav` and `pcm` as asked; `mp3`, `opus`, `aac`, `flac` are answered as WAV. */
  response_format: z.enum(["mp3", "opus", "aac", "flac", "wav", "pcm"]).nullish(),
  /** Accepted; Gemini's voices have no speed setting. */
  speed: z.number().min(0.25).max(4).nullish(),
  stream_format: z.enum(["audio", "sse"]).nullish(),
});

/** A validated speech request. */
export type SpeechRequest = z.infer<typeof SpeechRequestSchema>;

/** The text fields of `POST /v1/audio/transcriptions` and `/v1/audio/translations`. */
export const TranscriptionFieldsSchema = z.object({
  model: ModelNameSchema.optional(),
  language: z.string().min(2).max(32).optional(),
  prompt: z.string().max(4_000).optional(),
  response_format: z.enum(["json", "text", "verbose_json", "srt", "vtt"]).optional(),
  temperature: z.coerce.number().min(0).max(1).optional(),
});

/** The validated text fields of a transcription. */
export type TranscriptionFields = z.infer<typeof TranscriptionFieldsSchema>;
