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
  functionResponse: z.looseObject({
    id: z.string().optional(),
    name: z.string(),
    response: z.unknown(),
  }).optional(),
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

/** One token and its log probability. */
export const LogprobsCandidateSchema = z.looseObject({
  token: z.string().optional(),
  tokenId: z.number().optional(),
  logProbability: z.number().optional(),
});

/** `logprobsResult` of a candidate: the chosen token and the top alternatives at each step. */
export const LogprobsResultSchema = z.looseObject({
  topCandidates: z.array(z.looseObject({ candidates: z.array(LogprobsCandidateSchema).optional() }))
    .optional(),
  chosenCandidates: z.array(LogprobsCandidateSchema).optional(),
});

/** Gemini log probabilities. */
export type LogprobsResult = z.infer<typeof LogprobsResultSchema>;

/** One candidate answer. */
export const CandidateSchema = z.looseObject({
  content: ContentSchema.optional(),
  finishReason: z.string().optional(),
  index: z.number().optional(),
  logprobsResult: LogprobsResultSchema.optional(),
  /** Google Search grounding: read defensively (`webSources`), never trusted for its shape. */
  groundingMetadata: z.unknown().optional(),
});

/** One candidate. */
export type Candidate = z.infer<typeof CandidateSchema>;

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

type Json = Record<string, unknown>;

/** Whether `v` is a plain JSON object (not null, not an array). */
export function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function optional(v: unknown, type: "string" | "number" | "boolean"): boolean {
  return v === undefined || typeof v === type;
}

/** Whether an object has no keys but `allowed` (a strict zod object would drop the others). */
function onlyKeys(o: Json, allowed: readonly string[]): boolean {
  for (const k in o) if (!allowed.includes(k)) return false;
  return true;
}

function plainPart(p: unknown): boolean {
  if (!isObject(p)) return false;
  if (!optional(p.text, "string") || !optional(p.thought, "boolean")) return false;
  if (!optional(p.thoughtSignature, "string")) return false;
  const inline = p.inlineData;
  if (inline !== undefined) {
    if (!isObject(inline) || !onlyKeys(inline, ["mimeType", "data"])) return false;
    if (typeof inline.mimeType !== "string" || typeof inline.data !== "string") return false;
  }
  const file = p.fileData;
  if (file !== undefined) {
    if (!isObject(file) || !onlyKeys(file, ["mimeType", "fileUri"])) return false;
    if (!optional(file.mimeType, "string") || typeof file.fileUri !== "string") return false;
  }
  for (const [call, value] of [["functionCall", "args"], ["functionResponse", "response"]]) {
    const c = p[call];
    if (c === undefined) continue;
    if (!isObject(c) || typeof c.name !== "string" || !optional(c.id, "string")) return false;
    if (!(value in c)) return false;
  }
  return true;
}

function plainLogprob(c: unknown): boolean {
  return isObject(c) && optional(c.token, "string") && optional(c.tokenId, "number") &&
    optional(c.logProbability, "number");
}

function plainLogprobs(l: unknown): boolean {
  if (!isObject(l)) return false;
  const top = l.topCandidates;
  if (top !== undefined) {
    if (!Array.isArray(top)) return false;
    for (const t of top) {
      if (!isObject(t)) return false;
      const cs = t.candidates;
      if (cs !== undefined && !(Array.isArray(cs) && cs.every(plainLogprob))) return false;
    }
  }
  const chosen = l.chosenCandidates;
  return chosen === undefined || (Array.isArray(chosen) && chosen.every(plainLogprob));
}

function plainCandidate(c: unknown): boolean {
  if (!isObject(c)) return false;
  if (!optional(c.finishReason, "string") || !optional(c.index, "number")) return false;
  if (c.logprobsResult !== undefined && !plainLogprobs(c.logprobsResult)) return false;
  const content = c.content;
  if (content === undefined) return true;
  if (!isObject(content) || !onlyKeys(content, ["role", "parts"])) return false;
  return optional(content.role, "string") && Array.isArray(content.parts) &&
    content.parts.every(plainPart);
}

/** The token counts of a usage record. */
export const USAGE_FIELDS = [
  "promptTokenCount",
  "candidatesTokenCount",
  "thoughtsTokenCount",
  "toolUsePromptTokenCount",
  "cachedContentTokenCount",
  "totalTokenCount",
] as const;

/**
 * Reads a parsed upstream payload as a `GenerateContentResponse`: the payload itself when it
 * already has exactly the shape the schema would return (the usual case, checked without copying
 * it), else the schema's result. Same answers as `GenerateContentResponseSchema.safeParse`.
 */
export function readGenerateContentResponse(
  json: unknown,
): { success: true; data: GenerateContentResponse } | { success: false } {
  if (isObject(json)) {
    const usage = json.usageMetadata;
    const feedback = json.promptFeedback;
    const candidates = json.candidates;
    if (
      optional(json.modelVersion, "string") && optional(json.responseId, "string") &&
      (usage === undefined ||
        (isObject(usage) && USAGE_FIELDS.every((f) => optional(usage[f], "number")))) &&
      (feedback === undefined ||
        (isObject(feedback) && optional(feedback.blockReason, "string"))) &&
      (candidates === undefined || (Array.isArray(candidates) && candidates.every(plainCandidate)))
    ) {
      return { success: true, data: json as GenerateContentResponse };
    }
  }
  const parsed = GenerateContentResponseSchema.safeParse(json);
  return parsed.success ? { success: true, data: parsed.data } : { success: false };
}

/** `generationConfig.thinkingConfig`. */
export interface ThinkingConfig {
  thinkingBudget?: number;
  thinkingLevel?: "MINIMAL" | "LOW" | "MEDIUM" | "HIGH";
  includeThoughts?: boolean;
}

/** The `generationConfig` fields the gateway sets. */
export interface GenerationConfig {
  temperature?: number;
  topP?: number;
  topK?: number;
  maxOutputTokens?: number;
  stopSequences?: string[];
  candidateCount?: number;
  seed?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  responseLogprobs?: boolean;
  logprobs?: number;
  responseMimeType?: string;
  responseJsonSchema?: unknown;
  thinkingConfig?: ThinkingConfig;
  /** `["TEXT"]`, `["TEXT", "IMAGE"]`, `["IMAGE"]`: what an image model answers with. */
  responseModalities?: string[];
  /** An image model's picture shape, e.g. `{"aspectRatio": "16:9"}`. */
  imageConfig?: { aspectRatio?: string };
  /** A TTS model's voice. */
  speechConfig?: { voiceConfig: { prebuiltVoiceConfig: { voiceName: string } } };
}

/** A function the model may call, with an OpenAPI-subset `parameters` schema. */
export interface FunctionDeclaration {
  name: string;
  description?: string;
  parameters?: Record<string, unknown>;
}

/** One safety setting. */
export interface SafetySetting {
  category: string;
  threshold: string;
}

/** `toolConfig.functionCallingConfig`. */
export interface FunctionCallingConfig {
  mode: "AUTO" | "ANY" | "NONE" | "VALIDATED";
  allowedFunctionNames?: string[];
}

/** A generateContent request body as the gateway builds it. */
export interface GenerateContentRequest {
  contents: Content[];
  systemInstruction?: { parts: Part[] };
  /** Function declarations, or Google Search (`{googleSearch: {}}`). */
  tools?:
    ({ functionDeclarations: FunctionDeclaration[] } | { googleSearch: Record<string, never> })[];
  toolConfig?: { functionCallingConfig: FunctionCallingConfig };
  safetySettings?: SafetySetting[];
  generationConfig?: GenerationConfig;
  cachedContent?: string;
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
