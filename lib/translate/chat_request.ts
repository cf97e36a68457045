/**
 * OpenAI chat request -> Gemini generateContent request (pure).
 */
import type { ChatCompletionRequest, Message } from "../openai/chat_schema.ts";
import type { Content, GenerateContentRequest, GenerationConfig, Part } from "../gemini/types.ts";

/** A translation problem the client must fix; `param` names the field. */
export class TranslateError extends Error {
  readonly param: string | null;

  constructor(message: string, param: string | null = null) {
    super(message);
    this.name = "TranslateError";
    this.param = param;
  }
}

/** The client's model id as Gemini's path wants it (a leading `models/` removed). */
export function normalizeModel(model: string): string {
  return model.replace(/^models\//, "");
}

function textOf(content: string | { type: "text"; text: string }[] | null | undefined): string {
  if (content == null) return "";
  return typeof content === "string" ? content : content.map((p) => p.text).join("");
}

const DATA_URL = /^data:([^;,]+)?((?:;[^;,]+)*?);base64,(.*)$/s;

/** Splits a base64 `data:` URL into MIME type and data; null when `url` is not one. */
export function parseDataUrl(url: string): { mimeType: string; data: string } | null {
  const m = DATA_URL.exec(url);
  if (!m) return null;
  return { mimeType: m[1] || "application/octet-stream", data: m[3].replace(/\s+/g, "") };
}

function userParts(message: Extract<Message, { role: "user" }>, index: number): Part[] {
  if (typeof message.content === "string") return [{ text: message.content }];
  return message.content.map((part, j): Part => {
    const param = `messages[${index}].content[${j}]`;
    if (part.type === "text") return { text: part.text };
    if (part.type === "image_url") {
      const data = parseDataUrl(part.image_url.url);
      if (!data) {
        throw new TranslateError(
          "Only base64 data: URLs are supported in image_url for now",
          `${param}.image_url.url`,
        );
      }
      return { inlineData: data };
    }
    const format = part.input_audio.format.toLowerCase();
    return {
      inlineData: {
        mimeType: format.includes("/") ? format : `audio/${format}`,
        data: part.input_audio.data,
      },
    };
  });
}

/** Builds the Gemini request body and model for an OpenAI chat request. */
export function toGeminiChatRequest(
  req: ChatCompletionRequest,
): { model: string; body: GenerateContentRequest } {
  const system: string[] = [];
  const contents: Content[] = [];
  req.messages.forEach((message, index) => {
    switch (message.role) {
      case "system":
      case "developer":
        system.push(textOf(message.content));
        break;
      case "user":
        contents.push({ role: "user", parts: userParts(message, index) });
        break;
      case "assistant": {
        const text = textOf(message.content);
        if (text) contents.push({ role: "model", parts: [{ text }] });
        break;
      }
    }
  });
  if (contents.length === 0) {
    throw new TranslateError("At least one user or assistant message is required", "messages");
  }
  // Gemini wants alternating turns: merge consecutive turns of the same role.
  const merged: Content[] = [];
  for (const c of contents) {
    const prev = merged.at(-1);
    if (prev && prev.role === c.role) prev.parts.push(...c.parts);
    else merged.push({ role: c.role, parts: [...c.parts] });
  }

  const config: GenerationConfig = {};
  if (req.temperature != null) config.temperature = req.temperature;
  if (req.top_p != null) config.topP = req.top_p;
  const maxTokens = req.max_completion_tokens ?? req.max_tokens;
  if (maxTokens != null) config.maxOutputTokens = maxTokens;
  if (req.stop != null) {
    const stops = typeof req.stop === "string" ? [req.stop] : req.stop;
    if (stops.length) config.stopSequences = stops;
  }
  if (req.n != null && req.n > 1) {
    if (req.stream) throw new TranslateError("n greater than 1 is not supported with stream", "n");
    config.candidateCount = req.n;
  }

  const body: GenerateContentRequest = { contents: merged };
  const systemText = system.filter((s) => s.length > 0).join("\n\n");
  if (systemText) body.systemInstruction = { parts: [{ text: systemText }] };
  if (Object.keys(config).length) body.generationConfig = config;
  return { model: normalizeModel(req.model), body };
}
