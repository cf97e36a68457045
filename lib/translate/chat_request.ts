/**
 * OpenAI chat request -> Gemini generateContent request (pure). What needs I/O (http(s) media,
 * uploaded files, stored thought signatures) is listed by `chatRequestRefs`, resolved by the route,
 * and handed in as `ResolvedRefs`.
 */
import type {
  ChatCompletionRequest,
  GoogleExtras,
  Message,
  ToolCall,
  UserPart,
} from "../openai/chat_schema.ts";
import type {
  Content,
  FunctionCallingConfig,
  FunctionDeclaration,
  GenerateContentRequest,
  GenerationConfig,
  Part,
  SafetySetting,
} from "../gemini/types.ts";
import type { Settings } from "../store/settings.ts";
import type { StoredToolCall } from "../store/tool_calls.ts";
import { normalizeModel, type ResolvedModel, resolveModel } from "./models.ts";
import { SchemaError, toGeminiParameters, toResponseJsonSchema } from "./schema.ts";
import { isMimeType } from "./mime.ts";
import {
  requiresThoughtSignatures,
  ThinkingConfigError,
  thinkingConfigFor,
  type ThinkingDefaults,
} from "./thinking.ts";
import { DUMMY_THOUGHT_SIGNATURE, parseToolCallId } from "./tool_ids.ts";

/** Re-exported: routes that only need the name normalization import it from here. */
export { normalizeModel };

/** A translation problem the client must fix; `param` names the field. */
export class TranslateError extends Error {
  readonly param: string | null;
  readonly code: string;

  constructor(message: string, param: string | null = null, code = "invalid_value") {
    super(message);
    this.name = "TranslateError";
    this.param = param;
    this.code = code;
  }
}

/** What `convert` makes of a schema, a schema it refuses being a 400 naming `param`. */
function schemaOf<T>(convert: () => T, param: string): T {
  try {
    return convert();
  } catch (err) {
    if (err instanceof SchemaError) throw new TranslateError(err.message, param);
    throw err;
  }
}

/** Base64 media bytes with their MIME type. */
export interface InlineData {
  mimeType: string;
  data: string;
}

/** An uploaded file, as a request may reference it. */
export interface FileRef {
  uri: string;
  mimeType: string;
}

/**
 * A stored tool-call record: the thought signature, Gemini's own call id, and the model that made
 * them (a signature is only valid for that model).
 */
export type ToolCallRecord = StoredToolCall;

/** What the route resolved before translating. */
export interface ResolvedRefs {
  /** Media fetched for http(s) URLs, by URL. */
  media?: ReadonlyMap<string, InlineData>;
  /** Uploaded files by the gateway's file id. */
  files?: ReadonlyMap<string, FileRef>;
  /** Stored tool-call records by hash. */
  toolCalls?: ReadonlyMap<string, ToolCallRecord>;
}

/** Where an admin's prompt text goes. */
export type InjectionPosition = "system" | "user_prefix" | "user_suffix";

/** The admin settings that shape every chat request. */
export interface ChatSettings {
  thinking: ThinkingDefaults;
  /** Text added to every request ("" for none). */
  promptInjection: string;
  promptInjectionPosition: InjectionPosition;
  /** Threshold sent for every harm category, or `UNSET` to send none. */
  safetyThreshold: string;
  aliases: Readonly<Record<string, string>>;
}

/** The chat-shaping part of the settings. */
export function chatSettingsOf(s: Settings): ChatSettings {
  return {
    thinking: {
      mode: s.thinkingMode,
      budget: s.thinkingBudget,
      includeThoughts: s.includeThoughts,
    },
    promptInjection: s.promptInjection,
    promptInjectionPosition: s.promptInjectionPosition,
    safetyThreshold: s.safetyThreshold,
    aliases: s.aliases,
  };
}

/** Settings that change nothing: no injection, no safety settings, thinking left to the model. */
export const NEUTRAL_CHAT_SETTINGS: ChatSettings = {
  thinking: { mode: "auto", budget: -1, includeThoughts: false },
  promptInjection: "",
  promptInjectionPosition: "system",
  safetyThreshold: "UNSET",
  aliases: {},
};

/** The harm categories the Gemini API takes settings for. */
export const HARM_CATEGORIES = [
  "HARM_CATEGORY_HARASSMENT",
  "HARM_CATEGORY_HATE_SPEECH",
  "HARM_CATEGORY_SEXUALLY_EXPLICIT",
  "HARM_CATEGORY_DANGEROUS_CONTENT",
  "HARM_CATEGORY_CIVIC_INTEGRITY",
] as const;

/** A translated request. */
export interface ChatTranslation {
  /** The upstream model. */
  model: string;
  resolved: ResolvedModel;
  body: GenerateContentRequest;
}

/** A reference that needs I/O before translation, with the field that holds it. */
export interface Ref {
  value: string;
  param: string;
}

/** An http(s) media URL to fetch: an image (`image_url`) or any file Gemini reads (`file_url`). */
export interface UrlRef extends Ref {
  kind: "image" | "file";
  /** The file's name, when the part gives one (its extension types an untyped download). */
  filename?: string | null;
}

/** The key of fetched media in `ResolvedRefs.media`: the same URL may be an image and a file. */
export function mediaKey(kind: UrlRef["kind"], url: string): string {
  return kind === "image" ? url : `file ${url}`;
}

/** Everything a request references that the route must resolve. */
export interface ChatRefs {
  /** http(s) media URLs. */
  urls: UrlRef[];
  /** Gateway file ids. */
  fileIds: Ref[];
  /** Hashes of stored tool-call records. */
  toolCallHashes: string[];
}

const DATA_URL = /^data:([^;,]+)?((?:;[^;,]+)*?);base64,(.*)$/s;

/** `data` as it is when its MIME type is a plain `type/subtype`; else a 400 naming `param`. */
function checkedType(data: InlineData, param: string): InlineData {
  if (isMimeType(data.mimeType)) return data;
  throw new TranslateError(
    `${JSON.stringify(data.mimeType.slice(0, 100))} is not a valid MIME type: give it as ` +
      "type/subtype, e.g. image/png or audio/wav",
    param,
    "invalid_mime_type",
  );
}

/** Splits a base64 `data:` URL into MIME type and data; null when `url` is not one. */
export function parseDataUrl(url: string): InlineData | null {
  const m = DATA_URL.exec(url);
  if (!m) return null;
  return { mimeType: m[1] || "application/octet-stream", data: m[3].replace(/\s+/g, "") };
}

const EXTENSION_TYPES: Record<string, string> = {
  pdf: "application/pdf",
  txt: "text/plain",
  md: "text/markdown",
  csv: "text/csv",
  html: "text/html",
  htm: "text/html",
  xml: "text/xml",
  json: "application/json",
  js: "text/javascript",
  py: "text/x-python",
  rtf: "text/rtf",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  webp: "image/webp",
  gif: "image/gif",
  heic: "image/heic",
  heif: "image/heif",
  mp3: "audio/mp3",
  mpga: "audio/mp3",
  wav: "audio/wav",
  aac: "audio/aac",
  ogg: "audio/ogg",
  oga: "audio/ogg",
  opus: "audio/ogg",
  flac: "audio/flac",
  aiff: "audio/aiff",
  m4a: "audio/mp4",
  mp4: "video/mp4",
  mpeg: "video/mpeg",
  mov: "video/mov",
  avi: "video/avi",
  webm: "video/webm",
  wmv: "video/wmv",
  flv: "video/x-flv",
  "3gp": "video/3gpp",
};

/** A MIME type guessed from a file name's extension, or null. */
export function mimeFromFilename(name: string | null | undefined): string | null {
  const m = /\.([A-Za-z0-9]+)$/.exec(name ?? "");
  return m ? EXTENSION_TYPES[m[1].toLowerCase()] ?? null : null;
}

function isHttpUrl(url: string): boolean {
  return /^https?:\/\//i.test(url);
}

/** Lists what a request references that needs resolving (media URLs, files, signatures). */
export function chatRequestRefs(req: ChatCompletionRequest): ChatRefs {
  const refs: ChatRefs = { urls: [], fileIds: [], toolCallHashes: [] };
  req.messages.forEach((message, i) => {
    if (message.role === "user" && typeof message.content !== "string") {
      message.content.forEach((part, j) => {
        const param = `messages[${i}].content[${j}]`;
        if (part.type === "image_url" && isHttpUrl(part.image_url.url)) {
          refs.urls.push({
            value: part.image_url.url,
            param: `${param}.image_url.url`,
            kind: "image",
          });
        } else if (
          part.type === "file" && !part.file.file_id && !part.file.file_data && part.file.file_url
        ) {
          refs.urls.push({
            value: part.file.file_url,
            param: `${param}.file.file_url`,
            kind: "file",
            filename: part.file.filename,
          });
        } else if (part.type === "file" && part.file.file_id) {
          refs.fileIds.push({ value: part.file.file_id, param: `${param}.file.file_id` });
        } else if (
          part.type === "image" || part.type === "audio" || part.type === "video" ||
          part.type === "document"
        ) {
          refs.fileIds.push({ value: part.file_data.file_id, param: `${param}.file_data.file_id` });
        }
      });
    }
    if (message.role === "assistant") {
      for (const call of message.tool_calls ?? []) {
        const parsed = parseToolCallId(call.id);
        if (parsed.kind === "gateway" && parsed.hash) refs.toolCallHashes.push(parsed.hash);
      }
    }
  });
  return refs;
}

/** The target of a Markdown image that is a base64 `data:` URL of a picture, from its `](`. */
const DATA_URL_TARGET = /\]\(data:(image\/[a-z0-9.+-]+);base64,([A-Za-z0-9+/]+={0,2})\)/iy;

/**
 * The Markdown images of `text` with base64 `data:` URL targets (`![alt](data:image/...)`, the alt
 * text on one line without `]`), in order. Linear in the text's length: each `](data:` is matched
 * forward with a sticky pattern, and its `![` looked for back to the nearest `]` or line end, so
 * no character is scanned twice (a regex over the whole text backtracked from every `![`).
 */
function dataUrlImages(text: string): { start: number; end: number; media: InlineData }[] {
  const found: { start: number; end: number; media: InlineData }[] = [];
  let last = 0;
  for (let at = text.indexOf("](data:", last); at !== -1; at = text.indexOf("](data:", at + 1)) {
    let from = at;
    while (from > last && text[from - 1] !== "]" && text[from - 1] !== "\n") from--;
    // The first `![` of that stretch starts the image (as a leftmost regex match would).
    let start = -1;
    for (let i = from; i < at - 1 && start === -1; i++) {
      if (text[i] === "!" && text[i + 1] === "[") start = i;
    }
    if (start === -1) continue;
    DATA_URL_TARGET.lastIndex = at;
    const m = DATA_URL_TARGET.exec(text);
    if (!m) continue;
    const end = at + m[0].length;
    found.push({ start, end, media: { mimeType: m[1].toLowerCase(), data: m[2] } });
    last = end;
    at = end - 1;
  }
  return found;
}

/**
 * The parts of an answer's text: its Markdown data-URL images (what `splitText` made of an image
 * model's pictures) as inline images, the text around them as text (pure).
 */
export function textWithImages(text: string): Part[] {
  if (!text) return [];
  if (!text.includes("](data:image/")) return [{ text }];
  const parts: Part[] = [];
  let last = 0;
  for (const image of dataUrlImages(text)) {
    const before = text.slice(last, image.start).trim();
    if (before) parts.push({ text: before });
    parts.push({ inlineData: image.media });
    last = image.end;
  }
  const after = text.slice(last).trim();
  if (after) parts.push({ text: after });
  return parts;
}

function textOf(
  content: string | readonly { type: string; text?: string }[] | null | undefined,
): string {
  if (content == null) return "";
  if (typeof content === "string") return content;
  return content.map((p) => (p.type === "text" ? p.text ?? "" : "")).join("");
}

function userParts(
  message: Extract<Message, { role: "user" }>,
  index: number,
  refs: ResolvedRefs,
): Part[] {
  if (typeof message.content === "string") return [{ text: message.content }];
  return message.content.map((part: UserPart, j): Part => {
    const param = `messages[${index}].content[${j}]`;
    switch (part.type) {
      case "text":
        return { text: part.text };
      case "image_url": {
        const url = part.image_url.url;
        const data = parseDataUrl(url);
        if (data) return { inlineData: checkedType(data, `${param}.image_url.url`) };
        const fetched = isHttpUrl(url) ? refs.media?.get(mediaKey("image", url)) : undefined;
        if (fetched) return { inlineData: fetched };
        throw new TranslateError(
          isHttpUrl(url)
            ? `The image at ${url.slice(0, 200)} could not be fetched`
            : "image_url.url must be a base64 data: URL or an http(s) URL",
          `${param}.image_url.url`,
        );
      }
      case "input_audio": {
        // Some clients send a whole data URL where OpenAI wants bare base64; Gemini refuses the
        // prefix, so it is taken off (its type stands when it names one).
        const url = parseDataUrl(part.input_audio.data);
        const format = part.input_audio.format.toLowerCase();
        const typed = url !== null && url.mimeType !== "application/octet-stream";
        const mimeType = typed ? url.mimeType : format.includes("/") ? format : `audio/${format}`;
        const data = { mimeType, data: url ? url.data : part.input_audio.data };
        return {
          inlineData: checkedType(data, `${param}.input_audio.${typed ? "data" : "format"}`),
        };
      }
      case "file": {
        if (part.file.file_id) {
          return { fileData: fileRef(refs, part.file.file_id, `${param}.file.file_id`) };
        }
        if (part.file.file_data) {
          const parsed = parseDataUrl(part.file.file_data);
          if (parsed && parsed.mimeType !== "application/octet-stream") {
            return { inlineData: checkedType(parsed, `${param}.file.file_data`) };
          }
          const mimeType = mimeFromFilename(part.file.filename);
          if (!mimeType) {
            throw new TranslateError(
              "The type of file_data is unknown: send it as a data: URL with its MIME type, " +
                "or give a filename with a known extension",
              `${param}.file.file_data`,
            );
          }
          return { inlineData: { mimeType, data: parsed?.data ?? part.file.file_data.trim() } };
        }
        if (part.file.file_url) {
          const url = part.file.file_url;
          const fetched = isHttpUrl(url) ? refs.media?.get(mediaKey("file", url)) : undefined;
          if (fetched) return { inlineData: fetched };
          throw new TranslateError(
            isHttpUrl(url)
              ? `The file at ${url.slice(0, 200)} could not be fetched`
              : "file.file_url must be an http(s) URL",
            `${param}.file.file_url`,
          );
        }
        throw new TranslateError(
          "A file part needs file.file_id, file.file_data or file.file_url",
          `${param}.file`,
        );
      }
      default: {
        const ref = fileRef(refs, part.file_data.file_id, `${param}.file_data.file_id`);
        return {
          fileData: {
            fileUri: ref.fileUri,
            mimeType: part.file_data.mime_type ?? ref.mimeType,
          },
        };
      }
    }
  });
}

function fileRef(
  refs: ResolvedRefs,
  id: string,
  param: string,
): { fileUri: string; mimeType: string } {
  const file = refs.files?.get(id);
  if (!file) throw new TranslateError(`No such file: '${id}'`, param, "file_not_found");
  return { fileUri: file.uri, mimeType: file.mimeType };
}

function parseArguments(text: string, param: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    throw new TranslateError("Tool call arguments must be a JSON object", param);
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    return value as Record<string, unknown>;
  }
  return { value };
}

function functionCallParts(
  calls: readonly ToolCall[],
  index: number,
  refs: ResolvedRefs,
  model: string,
): Part[] {
  return calls.map((call, j): Part => {
    const param = `messages[${index}].tool_calls[${j}]`;
    const functionCall: { id?: string; name: string; args: unknown } = {
      name: call.function.name,
      args: parseArguments(call.function.arguments, `${param}.function.arguments`),
    };
    const part: Part = { functionCall };
    const parsed = parseToolCallId(call.id);
    if (parsed.kind === "gemini") functionCall.id = parsed.id;
    const record = parsed.kind === "gateway" && parsed.hash
      ? refs.toolCalls?.get(parsed.hash)
      : undefined;
    if (record?.geminiId) functionCall.id = record.geminiId;
    // A signature is bound to the model that made it: another model refuses it as corrupted, so a
    // conversation that changed model replays the call without it (the dummy, where one is due),
    // whether the client echoed it or the gateway stored it.
    const foreign = record?.model !== undefined && record.model !== model;
    const signature = foreign
      ? undefined
      : call.extra_content?.google?.thought_signature ?? record?.signature;
    if (signature) part.thoughtSignature = signature;
    return part;
  });
}

/** The response object Gemini wants for a tool result: an object, wrapped as `{output}` otherwise. */
export function toolResultObject(content: string): Record<string, unknown> {
  let value: unknown = content;
  try {
    value = JSON.parse(content);
  } catch {
    // Plain text: sent as the output string.
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    return value as Record<string, unknown>;
  }
  return { output: value };
}

function mergeTurns(contents: Content[]): Content[] {
  const merged: Content[] = [];
  for (const c of contents) {
    const prev = merged.at(-1);
    if (prev && prev.role === c.role) prev.parts.push(...c.parts);
    else merged.push({ role: c.role, parts: [...c.parts] });
  }
  return merged;
}

function hasTextPart(c: Content): boolean {
  return c.parts.some((p) => typeof p.text === "string");
}

function inject(contents: Content[], system: string[], settings: ChatSettings): void {
  const text = settings.promptInjection;
  if (!text) return;
  if (settings.promptInjectionPosition === "system") {
    system.unshift(text);
    return;
  }
  const users = contents.filter((c) => c.role === "user" && hasTextPart(c));
  if (settings.promptInjectionPosition === "user_prefix") {
    const first = users[0];
    if (first) first.parts.unshift({ text: `${text}\n\n` });
    else system.unshift(text);
  } else {
    const last = users.at(-1);
    if (last) last.parts.push({ text: `\n\n${text}` });
    else system.push(text);
  }
}

function googleExtras(req: ChatCompletionRequest): GoogleExtras {
  return { ...req.google, ...req.extra_body?.google };
}

function safetySettings(
  req: ChatCompletionRequest,
  settings: ChatSettings,
): SafetySetting[] | undefined {
  const custom = googleExtras(req).safety_settings;
  if (custom) {
    const seen = new Set<string>();
    return custom.map((s, i) => {
      const category = s.category.toUpperCase();
      if (seen.has(category)) {
        throw new TranslateError(
          `Safety category '${s.category}' is listed twice`,
          `extra_body.google.safety_settings[${i}].category`,
        );
      }
      seen.add(category);
      return { category, threshold: s.threshold.toUpperCase() };
    });
  }
  if (settings.safetyThreshold === "UNSET") return undefined;
  return HARM_CATEGORIES.map((category) => ({
    category,
    // OFF is refused for civic integrity by some models; BLOCK_NONE is the least blocking there.
    threshold: category === "HARM_CATEGORY_CIVIC_INTEGRITY" && settings.safetyThreshold === "OFF"
      ? "BLOCK_NONE"
      : settings.safetyThreshold,
  }));
}

function declarations(req: ChatCompletionRequest): FunctionDeclaration[] {
  const defs = [
    ...(req.tools ?? []).map((t) => t.function),
    ...(req.functions ?? []),
  ];
  const names = new Set<string>();
  return defs.map((fn, i) => {
    const param = req.tools?.length ? `tools[${i}].function.name` : `functions[${i}].name`;
    if (!/^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$/.test(fn.name)) {
      throw new TranslateError(
        `Function name '${fn.name}' is not allowed: use letters, digits, '_', '.', ':' or '-', ` +
          "starting with a letter or '_'",
        param,
      );
    }
    if (names.has(fn.name)) {
      throw new TranslateError(`Function '${fn.name}' is defined twice`, param);
    }
    names.add(fn.name);
    const decl: FunctionDeclaration = { name: fn.name };
    if (fn.description) decl.description = fn.description;
    const parameters = schemaOf(
      () => toGeminiParameters(fn.parameters),
      req.tools?.length ? `tools[${i}].function.parameters` : `functions[${i}].parameters`,
    );
    if (parameters) decl.parameters = parameters;
    return decl;
  });
}

function toolConfig(
  req: ChatCompletionRequest,
  decls: FunctionDeclaration[],
): { decls: FunctionDeclaration[]; config?: FunctionCallingConfig } {
  const choice = req.tool_choice ??
    (req.function_call
      ? (typeof req.function_call === "string"
        ? req.function_call
        : { type: "function" as const, function: { name: req.function_call.name } })
      : undefined);
  if (!choice || decls.length === 0) return { decls };
  const known = (name: string, param: string) => {
    if (!decls.some((d) => d.name === name)) {
      throw new TranslateError(`tool_choice names '${name}', which is not among the tools`, param);
    }
  };
  if (choice === "none") return { decls, config: { mode: "NONE" } };
  if (choice === "auto") return { decls, config: { mode: "AUTO" } };
  if (choice === "required") return { decls, config: { mode: "ANY" } };
  if (choice.type === "function") {
    known(choice.function.name, "tool_choice.function.name");
    return { decls, config: { mode: "ANY", allowedFunctionNames: [choice.function.name] } };
  }
  const allowed = choice.allowed_tools.tools.map((t, i) => {
    known(t.function.name, `tool_choice.allowed_tools.tools[${i}].function.name`);
    return t.function.name;
  });
  if (choice.allowed_tools.mode === "required") {
    return { decls, config: { mode: "ANY", allowedFunctionNames: allowed } };
  }
  return { decls: decls.filter((d) => allowed.includes(d.name)), config: { mode: "AUTO" } };
}

/** Builds the Gemini request body and model for an OpenAI chat request. */
export function toGeminiChatRequest(
  req: ChatCompletionRequest,
  options: { settings?: ChatSettings; refs?: ResolvedRefs } = {},
): ChatTranslation {
  const settings = options.settings ?? NEUTRAL_CHAT_SETTINGS;
  const refs = options.refs ?? {};
  const resolved = resolveModel(req.model, settings.aliases);
  const model = resolved.model;
  const needsSignatures = requiresThoughtSignatures(model);

  const system: string[] = [];
  const contents: Content[] = [];
  // Tool-call ids of earlier assistant messages -> function name, for tool results.
  const callNames = new Map<string, string>();
  req.messages.forEach((message, index) => {
    switch (message.role) {
      case "system":
      case "developer":
        system.push(textOf(message.content));
        break;
      case "user":
        contents.push({ role: "user", parts: userParts(message, index, refs) });
        break;
      case "assistant": {
        // Pictures an image model drew earlier come back as Markdown data-URL images: they go
        // upstream as images again (to be edited), not as megabytes of base64 text.
        const parts: Part[] = textWithImages(textOf(message.content));
        if (needsSignatures) {
          for (const p of parts) if (p.inlineData) p.thoughtSignature = DUMMY_THOUGHT_SIGNATURE;
        }
        const calls = message.tool_calls ?? [];
        for (const call of calls) callNames.set(call.id, call.function.name);
        const callParts = functionCallParts(calls, index, refs, model);
        if (message.function_call) {
          callParts.push({
            functionCall: {
              name: message.function_call.name,
              args: parseArguments(
                message.function_call.arguments,
                `messages[${index}].function_call.arguments`,
              ),
            },
          });
        }
        if (needsSignatures && callParts.length && !callParts[0].thoughtSignature) {
          callParts[0].thoughtSignature = DUMMY_THOUGHT_SIGNATURE;
        }
        parts.push(...callParts);
        if (parts.length) contents.push({ role: "model", parts });
        break;
      }
      case "tool": {
        const name = callNames.get(message.tool_call_id);
        if (!name) {
          throw new TranslateError(
            `tool_call_id '${message.tool_call_id}' does not match a tool call of an earlier ` +
              "assistant message",
            `messages[${index}].tool_call_id`,
          );
        }
        const functionResponse: { id?: string; name: string; response: unknown } = {
          name,
          response: toolResultObject(textOf(message.content)),
        };
        const parsed = parseToolCallId(message.tool_call_id);
        if (parsed.kind === "gemini") functionResponse.id = parsed.id;
        else if (parsed.hash) {
          const id = refs.toolCalls?.get(parsed.hash)?.geminiId;
          if (id) functionResponse.id = id;
        }
        contents.push({ role: "user", parts: [{ functionResponse }] });
        break;
      }
      case "function":
        contents.push({
          role: "user",
          parts: [{
            functionResponse: {
              name: message.name,
              response: toolResultObject(message.content ?? ""),
            },
          }],
        });
        break;
    }
  });
  if (contents.length === 0) {
    throw new TranslateError("At least one user or assistant message is required", "messages");
  }
  const merged = mergeTurns(contents);
  inject(merged, system, settings);

  const config: GenerationConfig = {};
  if (req.temperature != null) config.temperature = req.temperature;
  if (req.top_p != null) config.topP = req.top_p;
  if (req.top_k != null) config.topK = req.top_k;
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
  if (req.seed != null) config.seed = req.seed;
  if (req.presence_penalty != null) config.presencePenalty = req.presence_penalty;
  if (req.frequency_penalty != null) config.frequencyPenalty = req.frequency_penalty;
  if (req.top_logprobs != null && req.top_logprobs > 0 && req.logprobs !== true) {
    throw new TranslateError("top_logprobs needs logprobs set to true", "top_logprobs");
  }
  if (req.logprobs === true) {
    config.responseLogprobs = true;
    if (req.top_logprobs != null && req.top_logprobs > 0) config.logprobs = req.top_logprobs;
  }
  if (req.modalities != null) {
    if (req.modalities.includes("audio")) {
      throw new TranslateError(
        "Audio output is not supported on chat completions; use a Gemini TTS model natively",
        "modalities",
      );
    }
    config.responseModalities = req.modalities.map((m) => m.toUpperCase());
  }
  const format = req.response_format;
  if (format?.type === "json_object") config.responseMimeType = "application/json";
  if (format?.type === "json_schema") {
    config.responseMimeType = "application/json";
    if (format.json_schema.schema) {
      const schema = format.json_schema.schema;
      config.responseJsonSchema = schemaOf(
        () => toResponseJsonSchema(schema),
        "response_format.json_schema.schema",
      );
    }
  }
  const extras = googleExtras(req);
  const explicit = extras.thinking_config;
  try {
    const thinking = thinkingConfigFor(model, {
      effort: req.reasoning_effort,
      suffix: resolved.suffix,
      explicit: explicit
        ? {
          budget: explicit.thinking_budget ?? explicit.thinkingBudget,
          level: explicit.thinking_level ?? explicit.thinkingLevel,
          includeThoughts: explicit.include_thoughts ?? explicit.includeThoughts,
        }
        : undefined,
    }, settings.thinking);
    if (thinking) config.thinkingConfig = thinking;
  } catch (err) {
    if (err instanceof ThinkingConfigError) throw new TranslateError(err.message, err.param);
    throw err;
  }

  const body: GenerateContentRequest = { contents: merged };
  const systemText = system.filter((s) => s.length > 0).join("\n\n");
  if (systemText) body.systemInstruction = { parts: [{ text: systemText }] };
  const tools = toolConfig(req, declarations(req));
  if (tools.decls.length) body.tools = [{ functionDeclarations: tools.decls }];
  // Web search: a `-search` model name, or OpenAI's `web_search_options`. Gemini refuses Google
  // Search beside function declarations unless the server-side tool calls are circulated back
  // (`includeServerSideToolInvocations`, Gemini 3 only), which OpenAI clients cannot carry: the
  // declared functions win (agents like Codex declare web search with every request).
  if ((resolved.search || req.web_search_options) && !tools.decls.length) {
    (body.tools ??= []).push({ googleSearch: {} });
  }
  if (tools.config) body.toolConfig = { functionCallingConfig: tools.config };
  const safety = safetySettings(req, settings);
  if (safety) body.safetySettings = safety;
  if (Object.keys(config).length) body.generationConfig = config;
  if (extras.cached_content) body.cachedContent = extras.cached_content;
  return { model, resolved, body };
}
