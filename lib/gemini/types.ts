/**
 * Zod schemas of the Gemini wire shapes the gateway reads and writes (camelCase, as on the wire).
 * Response schemas are lenient: unknown fields pass through untouched.
 */
import * as z from "zod";

/** One part of a content. */
export const PartSchema = z.looseObject({
  text: z.string().optional(),
  thought: z.boolean().optional(),
  thoughtSignature: z.string().optional(),
  inlineData: z.object({ mimeType: z.string(), data: z.string() }).optional(),
  fileData: z.object({ mimeType: z.string().optional(), fileUri: z.string() }).optional(),
  functionCall: z.looseObject({ id: z.string().optional(), name: z.string(), args: z.unknown() })
    .optional(),
});

/** A Gemini part. */
export type Part = z.infer<typeof PartSchema>;

/** A turn of the conversation. */
export const ContentSchema = z.object({
  role: z.string().optional(),
  parts: z.array(PartSchema).default([]),
});

/** A Gemini content. */
export type Content = z.infer<typeof ContentSchema>;

/** `usageMetadata` of a response. */
export const UsageMetadataSchema = z.looseObject({
  promptTokenCount: z.number().optional(),
  candidatesTokenCount: z.number().optional(),
  thoughtsTokenCount: z.number().optional(),
  toolUsePromptTokenCount: z.number().optional(),
  cachedContentTokenCount: z.number().optional(),
  totalTokenCount: z.number().optional(),
});

/** Gemini token accounting. */
export type UsageMetadata = z.infer<typeof UsageMetadataSchema>;

/** One candidate answer. */
export const CandidateSchema = z.looseObject({
  content: ContentSchema.optional(),
  finishReason: z.string().optional(),
  index: z.number().optional(),
});

/** A `GenerateContentResponse` (or one chunk of a stream). */
export const GenerateContentResponseSchema = z.looseObject({
  candidates: z.array(CandidateSchema).optional(),
  promptFeedback: z.looseObject({ blockReason: z.string().optional() }).optional(),
  usageMetadata: UsageMetadataSchema.optional(),
  modelVersion: z.string().optional(),
  responseId: z.string().optional(),
});

/** A generateContent response. */
export type GenerateContentResponse = z.infer<typeof GenerateContentResponseSchema>;

/** The `generationConfig` fields the gateway sets. */
export interface GenerationConfig {
  temperature?: number;
  topP?: number;
  maxOutputTokens?: number;
  stopSequences?: string[];
  candidateCount?: number;
}

/** A generateContent request body as the gateway builds it. */
export interface GenerateContentRequest {
  contents: Content[];
  systemInstruction?: { parts: Part[] };
  generationConfig?: GenerationConfig;
}

/** A `Model` of models.list. */
export const GeminiModelSchema = z.looseObject({
  name: z.string(),
  displayName: z.string().optional(),
  supportedGenerationMethods: z.array(z.string()).optional(),
});

/** The models.list answer. */
export const ListModelsResponseSchema = z.object({
  models: z.array(GeminiModelSchema).default([]),
  nextPageToken: z.string().optional(),
});
