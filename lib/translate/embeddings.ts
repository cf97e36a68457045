/**
 * OpenAI embeddings <-> Gemini batchEmbedContents (pure), including the base64 encoding the
 * official OpenAI SDKs ask for by default: little-endian float32 bytes.
 */
import type { EmbeddingsRequest } from "../openai/embeddings_schema.ts";
import { defaultedModel } from "./models.ts";
import { TranslateError } from "./chat_request.ts";

/** Texts per upstream batchEmbedContents call, at most. */
export const EMBED_BATCH_SIZE = 100;
/** The model OpenAI embedding model names fall back to when no alias says otherwise. */
export const DEFAULT_EMBEDDING_MODEL = "gemini-embedding-001";

/** One batchEmbedContents request body. */
export interface BatchEmbedRequest {
  requests: {
    model: string;
    content: { parts: { text: string }[] };
    outputDimensionality?: number;
    taskType?: string;
  }[];
}

/** One OpenAI embedding object. */
export interface EmbeddingObject {
  object: "embedding";
  index: number;
  embedding: number[] | string;
}

/** The OpenAI embeddings answer. */
export interface EmbeddingsResponse {
  object: "list";
  data: EmbeddingObject[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** The upstream model and the batches of an embeddings request. */
export function toBatchEmbedRequests(
  req: EmbeddingsRequest,
  aliases: Readonly<Record<string, string>> = {},
): { model: string; texts: string[]; batches: BatchEmbedRequest[] } {
  const model = defaultedModel(req.model, {
    aliases,
    fallback: DEFAULT_EMBEDDING_MODEL,
    openai: /^text-embedding-(3|ada)/,
  });
  const input = req.input;
  if (Array.isArray(input) && input.some((x) => typeof x !== "string")) {
    throw new TranslateError(
      "Token arrays cannot be embedded by Gemini; send the input as text",
      "input",
    );
  }
  const texts = typeof input === "string" ? [input] : input as string[];
  const batches: BatchEmbedRequest[] = [];
  for (let i = 0; i < texts.length; i += EMBED_BATCH_SIZE) {
    batches.push({
      requests: texts.slice(i, i + EMBED_BATCH_SIZE).map((text) => {
        const r: BatchEmbedRequest["requests"][number] = {
          model: `models/${model}`,
          content: { parts: [{ text }] },
        };
        if (req.dimensions != null) r.outputDimensionality = req.dimensions;
        if (req.task_type) r.taskType = req.task_type.toUpperCase();
        return r;
      }),
    });
  }
  return { model, texts, batches };
}

/** Little-endian float32 bytes of `values`, base64-encoded (what the OpenAI SDKs decode). */
export function float32Base64(values: readonly number[]): string {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * A token estimate for usage (Gemini reports none for embeddings): about four characters per token
 * for alphabetic text, one per character for CJK and similar scripts.
 */
export function estimateTokens(text: string): number {
  let wide = 0;
  for (const ch of text) if (ch.codePointAt(0)! >= 0x2e80) wide++;
  const narrow = [...text].length - wide;
  return wide + Math.ceil(narrow / 4);
}

/** Builds the OpenAI answer from the vectors, in input order. */
export function toEmbeddingsResponse(
  vectors: readonly (readonly number[])[],
  options: { model: string; texts: readonly string[]; base64: boolean },
): EmbeddingsResponse {
  const tokens = options.texts.reduce((n, t) => n + estimateTokens(t), 0);
  return {
    object: "list",
    data: vectors.map((values, index) => ({
      object: "embedding",
      index,
      embedding: options.base64 ? float32Base64(values) : [...values],
    })),
    model: options.model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}
