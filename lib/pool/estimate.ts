/**
 * A cheap, pure estimate of the input tokens of a Gemini request, used to skip keys whose
 * tokens-per-minute window could not take the request before calling them. The real count from
 * `usageMetadata` replaces the estimate once the answer is in.
 *
 * Rules of thumb (Gemini's tokenizer is not public): about 4 characters per token for Latin text,
 * about one token per CJK character, 258 tokens per inline image, and a quarter of the JSON length
 * for tools and anything else structured.
 */

/** Tokens counted for one inline or referenced image. */
export const IMAGE_TOKENS = 258;

function textTokens(text: string): number {
  let wide = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // CJK, kana, hangul and full-width forms: roughly one token each.
    if (c >= 0x2e80 && c <= 0xffef) wide++;
  }
  return wide + Math.ceil((text.length - wide) / 4);
}

function partTokens(part: unknown): number {
  if (!part || typeof part !== "object") return 0;
  const p = part as Record<string, unknown>;
  if (typeof p.text === "string") return textTokens(p.text);
  const inline = (p.inlineData ?? p.inline_data) as Record<string, unknown> | undefined;
  if (inline && typeof inline === "object") {
    const mime = String(inline.mimeType ?? inline.mime_type ?? "");
    if (mime.startsWith("image/")) return IMAGE_TOKENS;
    // Audio, video, documents: scale with size (base64 bytes), coarsely.
    const data = typeof inline.data === "string" ? inline.data.length : 0;
    return Math.max(IMAGE_TOKENS, Math.ceil(data / 1000));
  }
  if (p.fileData ?? p.file_data) return IMAGE_TOKENS;
  return Math.ceil(JSON.stringify(p).length / 4);
}

function contentTokens(content: unknown): number {
  if (!content || typeof content !== "object") return 0;
  const parts = (content as { parts?: unknown }).parts;
  if (!Array.isArray(parts)) return 0;
  let n = 0;
  for (const part of parts) n += partTokens(part);
  return n;
}

/**
 * Estimated input tokens of a generateContent-shaped body (`contents`, `systemInstruction`,
 * `tools`), at least 1. Accepts any JSON: unknown shapes count by their size.
 */
export function estimateRequestTokens(body: unknown): number {
  if (!body || typeof body !== "object") return 1;
  const b = body as Record<string, unknown>;
  let n = 0;
  const contents = b.contents;
  if (Array.isArray(contents)) { for (const c of contents) n += contentTokens(c); }
  else if (contents) n += contentTokens(contents);
  n += contentTokens(b.systemInstruction ?? b.system_instruction);
  if (b.tools) n += Math.ceil(JSON.stringify(b.tools).length / 4);
  if (!Array.isArray(contents) && !contents && !b.tools) {
    n += Math.ceil(JSON.stringify(body).length / 4);
  }
  return Math.max(1, n);
}
