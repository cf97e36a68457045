/**
 * A fake Google Gemini REST upstream (`generativelanguage.googleapis.com`, API version `v1beta`)
 * for tests and load benchmarks. Built on plain `Deno.serve`; imitates the real wire shapes:
 * camelCase JSON, Google's error body, SSE framing without `[DONE]`, resumable uploads.
 *
 * Run standalone: `deno run -A tests/fakes/fake_gemini.ts --port 8787 [--latency 0]
 * [--keys "k1,k2"] [--any-key] [--stream-chunks 3]`.
 *
 * @module
 */

/** How the fake answers requests made with a given API key. */
export type KeyBehavior =
  | { kind: "ok" }
  | { kind: "invalid" }
  | { kind: "leaked" }
  | { kind: "rate_limited"; retryDelaySeconds?: number; perDay?: boolean; quotaValue?: string }
  | { kind: "unavailable" }
  /** Generate calls finish at once with no content at all (as Gemini 2.5 Pro sometimes does). */
  | { kind: "empty" }
  | { kind: "internal" }
  | { kind: "slow"; delayMs: number }
  | { kind: "network" }
  /** Google refuses the caller's location (every key of a deployment gets this). */
  | { kind: "location" }
  /** A free-tier key called from a country without a free tier. */
  | { kind: "free_tier_country" };

/** One request as the fake received it. */
export interface RecordedRequest {
  /** HTTP method, e.g. "POST". */
  method: string;
  /** URL path, e.g. "/v1beta/models/gemini-2.5-flash:generateContent". */
  path: string;
  /** URL query including the leading "?", or "". */
  search: string;
  /** Header names are lower-cased. */
  headers: Record<string, string>;
  /** The credential found in `x-goog-api-key` or `?key=`. */
  key: string | null;
  /** Parsed JSON body, or null (upload bytes are never kept). */
  body: unknown;
  /** Body size in bytes. */
  bytes: number;
}

/** Options of {@linkcode startFakeGemini}. */
export interface FakeGeminiOptions {
  /** Port to bind on 127.0.0.1; default 0 (any free port). */
  port?: number;
  /** Behaviour per API key; a key not listed gets `unknownKey`. */
  keys?: Record<string, KeyBehavior>;
  /** Behaviour of keys not listed in `keys`; default `{ kind: "invalid" }`. */
  unknownKey?: KeyBehavior;
  /** The models served by models.list / models.get; default: a realistic list. */
  models?: FakeModel[];
  /** Extra delay before every answer, in ms; default 0. */
  latencyMs?: number;
  /** How many SSE chunks a streamed answer text is split into; default 3. */
  streamChunks?: number;
  /** SSE event delimiter; default "\r\n\r\n". */
  sseDelimiter?: "\n\n" | "\r\n\r\n" | "\r\r";
  /** The model's answer text; default `Echo: ${lastUserText}`. */
  reply?: (request: GenerateRequestView) => string;
  /** Do not log unexpected handler errors. */
  quiet?: boolean;
  /**
   * Check generateContent requests the way Gemini does (unknown fields, thinking values per model,
   * tool schemas, safety settings, part shapes, Gemini 3 thought signatures) and answer 400 with
   * Google's wording when something would be refused. Default false.
   */
  strict?: boolean;
  /** The model's own output limit in words: longer answers stop there with MAX_TOKENS. */
  outputLimit?: number;
  /**
   * How an uploaded video (PROCESSING at first) ends: the state it turns into and on which GET of
   * it; default ACTIVE on the second. A large `afterGets` keeps it PROCESSING.
   */
  videoProcessing?: { state?: "ACTIVE" | "FAILED"; afterGets?: number };
}

/** A model served by the fake. */
export interface FakeModel {
  /** Model id, with or without the `models/` prefix. */
  name: string;
  /** Human name; defaults to the id. */
  displayName?: string;
  /** e.g. ["generateContent", "countTokens"]; decides which endpoints accept the model. */
  supportedGenerationMethods: string[];
  /** Defaults to 1048576 for generative models, else 2048. */
  inputTokenLimit?: number;
  /** Defaults to 65536 for generative models, else 1. */
  outputTokenLimit?: number;
  /** Reported as `thinking: true` when set. */
  thinking?: boolean;
}

/** What the `reply` option sees of a generateContent request. */
export interface GenerateRequestView {
  /** Bare model id, e.g. "gemini-2.5-flash". */
  model: string;
  /** Text of the last user turn (text parts joined with a space). */
  lastUserText: string;
  /** The parsed request body. */
  body: Record<string, unknown>;
}

/** A running fake Gemini server. */
export interface FakeGemini {
  /** Base URL, e.g. "http://127.0.0.1:43123" (no trailing slash). */
  url: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Sets (or replaces) the behaviour of one key. */
  setKey(key: string, behavior: KeyBehavior): void;
  /** How many requests arrived with that key (since the last `reset`). */
  callsFor(key: string): number;
  /** Clears `requests` and the per-key call counts. */
  reset(): void;
  /** Stops the server, aborts pending waits, resolves when finished. */
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

interface GeminiFile {
  name: string;
  displayName?: string;
  mimeType: string;
  sizeBytes: string;
  createTime: string;
  updateTime: string;
  expirationTime: string;
  sha256Hash: string;
  uri: string;
  state: "PROCESSING" | "ACTIVE" | "FAILED";
  source: "UPLOADED";
}

interface StoredFile {
  file: GeminiFile;
  project: string;
  gets: number;
}

interface UploadSession {
  id: string;
  project: string;
  displayName: string | undefined;
  mimeType: string;
  declaredSize: number | null;
  received: number;
}

interface Answer {
  text: string;
  finishReason: string;
  words: number;
}

const JSON_TYPE = "application/json; charset=UTF-8";
const API = "/v1beta";
const UPLOAD_PATH = "/upload/v1beta/files";
const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();
const NETWORK_FAULT = new Error("fake_gemini: simulated network failure");
const THOUGHT_TEXT = "Thinking about it.";
const THOUGHT_TOKENS = 5;
const EXPOSE_UPLOAD_HEADERS =
  "x-goog-upload-url, x-goog-upload-status, x-goog-upload-size-received, x-goog-upload-chunk-granularity";

const MSG_KEY_INVALID = "API key not valid. Please pass a valid API key.";
const MSG_LEAKED = "Your API key was reported as leaked. Please use another API key.";
const MSG_OVERLOADED = "The model is overloaded. Please try again later.";
/** A 1x1 PNG, what the fake's image models draw. */
export const TINY_PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const MSG_LOCATION = "User location is not supported for the API use.";
const MSG_FREE_TIER_COUNTRY =
  "Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.";
const MSG_INTERNAL =
  "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting";
const MSG_MULTIPLE_CREDENTIALS =
  "Multiple authentication credentials received. Please pass only one.";
const MSG_UNREGISTERED =
  "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
const MSG_OAUTH_EXPECTED =
  "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

/** The models the fake serves unless told otherwise. */
export const DEFAULT_MODELS: FakeModel[] = [
  {
    name: "gemini-2.5-flash",
    displayName: "Gemini 2.5 Flash",
    supportedGenerationMethods: ["generateContent", "countTokens"],
    inputTokenLimit: 1048576,
    outputTokenLimit: 65536,
    thinking: true,
  },
  {
    name: "gemini-2.5-pro",
    displayName: "Gemini 2.5 Pro",
    supportedGenerationMethods: ["generateContent", "countTokens"],
    inputTokenLimit: 1048576,
    outputTokenLimit: 65536,
    thinking: true,
  },
  {
    name: "gemini-2.5-flash-lite",
    displayName: "Gemini 2.5 Flash-Lite",
    supportedGenerationMethods: ["generateContent", "countTokens"],
    inputTokenLimit: 1048576,
    outputTokenLimit: 65536,
    thinking: true,
  },
  {
    name: "gemini-3-flash-preview",
    displayName: "Gemini 3 Flash Preview",
    supportedGenerationMethods: ["generateContent", "countTokens"],
    inputTokenLimit: 1048576,
    outputTokenLimit: 65536,
    thinking: true,
  },
  {
    name: "gemini-embedding-001",
    displayName: "Gemini Embedding 001",
    supportedGenerationMethods: ["embedContent", "countTokens"],
    inputTokenLimit: 2048,
    outputTokenLimit: 1,
  },
  {
    name: "text-embedding-004",
    displayName: "Text Embedding 004",
    supportedGenerationMethods: ["embedContent"],
    inputTokenLimit: 2048,
    outputTokenLimit: 1,
  },
  {
    name: "gemini-2.5-flash-image",
    displayName: "Nano Banana",
    supportedGenerationMethods: ["generateContent", "countTokens"],
    inputTokenLimit: 32768,
    outputTokenLimit: 32768,
  },
  {
    name: "gemini-2.5-flash-preview-tts",
    displayName: "Gemini 2.5 Flash Preview TTS",
    supportedGenerationMethods: ["generateContent", "countTokens"],
    inputTokenLimit: 8192,
    outputTokenLimit: 16384,
  },
  {
    name: "imagen-4.0-generate-001",
    displayName: "Imagen 4",
    supportedGenerationMethods: ["predict"],
    inputTokenLimit: 480,
    outputTokenLimit: 8192,
  },
];

/** Starts a fake Gemini upstream on 127.0.0.1 and resolves once it listens. */
export function startFakeGemini(options: FakeGeminiOptions = {}): Promise<FakeGemini> {
  try {
    return Promise.resolve(new FakeGeminiServer(options, true));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Narrows an unknown value to a plain JSON object. */
function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Returns the array found under a camelCase or snake_case field, or an empty array. */
function arrayField(obj: Json, camel: string, snake?: string): unknown[] {
  const v = obj[camel] ?? (snake === undefined ? undefined : obj[snake]);
  return Array.isArray(v) ? v : [];
}

/** Returns the object found under a camelCase or snake_case field, or undefined. */
function recordField(obj: Json, camel: string, snake?: string): Json | undefined {
  const v = obj[camel] ?? (snake === undefined ? undefined : obj[snake]);
  return isRecord(v) ? v : undefined;
}

/** Counts whitespace-separated words. */
function countWords(text: string): number {
  let n = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const space = c === 32 || (c >= 9 && c <= 13) || c === 160;
    if (space) inWord = false;
    else if (!inWord) {
      inWord = true;
      n++;
    }
  }
  return n;
}

/** Joins the `text` of every part of a Content (text parts only). */
function contentText(content: unknown): string {
  if (!isRecord(content)) return "";
  let out = "";
  for (const part of arrayField(content, "parts")) {
    if (isRecord(part) && typeof part.text === "string") {
      out = out === "" ? part.text : `${out} ${part.text}`;
    }
  }
  return out;
}

/** Word count of every text in `contents` plus the system instruction (minimum 1). */
function promptTokens(body: Json): number {
  let n = 0;
  for (const c of arrayField(body, "contents")) n += countWords(contentText(c));
  n += countWords(contentText(body.systemInstruction ?? body.system_instruction));
  return n < 1 ? 1 : n;
}

/** The text of the last user (or role-less) turn. */
function lastUserText(contents: unknown[]): string {
  for (let i = contents.length - 1; i >= 0; i--) {
    const c = contents[i];
    if (isRecord(c) && (c.role === undefined || c.role === "user")) return contentText(c);
  }
  return "";
}

/** Splits text into at most `n` consecutive non-empty pieces of similar length. */
function splitText(text: string, n: number): string[] {
  if (text.length === 0) return [""];
  const count = Math.max(1, Math.min(n, text.length));
  const pieces: string[] = [];
  for (let i = 0; i < count; i++) {
    const a = Math.floor((i * text.length) / count);
    const b = Math.floor(((i + 1) * text.length) / count);
    pieces.push(text.slice(a, b));
  }
  return pieces;
}

/** FNV-1a 32-bit hash of a string. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A deterministic unit-length vector derived from the text. */
function embed(text: string, dims: number): number[] {
  let seed = hash32(text) || 1;
  const values = new Array<number>(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const v = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
    values[i] = v;
    norm += v * v;
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < dims; i++) values[i] = Math.round((values[i] / norm) * 1e8) / 1e8;
  return values;
}

/** A random lowercase alphanumeric id. */
function randomId(length: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = "";
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

/** RFC 3339 timestamp with microseconds, like Google's. */
function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace("Z", "000Z");
}

/** The project a key belongs to: the text after the last `@`, else the key itself. */
function projectOf(key: string): string {
  const at = key.lastIndexOf("@");
  return at >= 0 ? key.slice(at + 1) : key;
}

/** Opaque page token for an offset. */
function pageToken(offset: number): string {
  return btoa(`fake-page:${offset}`).replaceAll("=", "");
}

/** Decodes a page token; null when missing, NaN when invalid. */
function pageOffset(token: string | null): number | null {
  if (token === null || token === "") return null;
  try {
    const raw = atob(token + "=".repeat((4 - (token.length % 4)) % 4));
    const m = /^fake-page:(\d+)$/.exec(raw);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Reads a page size query value with a default and a maximum. */
function pageSizeOf(raw: string | null, fallback: number, max: number): number {
  const n = raw === null ? NaN : Number(raw);
  if (!Number.isFinite(n) || n <= 0) return fallback;
  return Math.min(Math.floor(n), max);
}

/** decodeURIComponent that keeps malformed input as is. */
function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A Google-style JSON error response. */
function errorResponse(
  code: number,
  status: string,
  message: string,
  details?: Json[],
  headers?: Record<string, string>,
): Response {
  const error: Json = { code, message, status };
  if (details !== undefined) error.details = details;
  return new Response(JSON.stringify({ error }), {
    status: code,
    headers: { "content-type": JSON_TYPE, ...headers },
  });
}

/** A 200 JSON response. */
function jsonResponse(body: unknown, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(body), {
    status: 200,
    headers: { "content-type": JSON_TYPE, ...headers },
  });
}

/** 400 INVALID_ARGUMENT for a bad request (no ErrorInfo). */
function badRequest(message: string): Response {
  return errorResponse(400, "INVALID_ARGUMENT", message);
}

/** 404 for a model that does not exist or does not support the method. */
function modelNotFound(id: string, method: string): Response {
  return errorResponse(
    404,
    "NOT_FOUND",
    `models/${id} is not found for API version v1beta, or is not supported for ${method}. Call ListModels to see the list of available models and their supported methods.`,
  );
}

/** 404 for any unknown path or method. */
function methodNotFound(): Response {
  return errorResponse(404, "NOT_FOUND", "Method not found.");
}

/** 403 for a file that is not visible to the caller's project. */
function fileDenied(id: string): Response {
  return errorResponse(
    403,
    "PERMISSION_DENIED",
    `You do not have permission to access the File files/${id} or it may not exist.`,
  );
}

/** 499 answer used when a wait was aborted (client gone or server closing). */
function cancelled(): Response {
  return errorResponse(499, "CANCELLED", "The operation was cancelled.");
}

/** A response whose body errors at once: the client sees a broken connection. */
function networkFailure(): Response {
  return new Response(
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.error(NETWORK_FAULT);
      },
    }),
    { status: 200, headers: { "content-type": JSON_TYPE } },
  );
}

/** The error response for a failing key behaviour, or null when the key answers normally. */
function behaviorError(behavior: KeyBehavior, model: string | null): Response | null {
  switch (behavior.kind) {
    case "invalid":
      return errorResponse(400, "INVALID_ARGUMENT", MSG_KEY_INVALID, [
        {
          "@type": "type.googleapis.com/google.rpc.ErrorInfo",
          reason: "API_KEY_INVALID",
          domain: "googleapis.com",
          metadata: { service: "generativelanguage.googleapis.com" },
        },
        {
          "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
          locale: "en-US",
          message: MSG_KEY_INVALID,
        },
      ]);
    case "leaked":
      return errorResponse(403, "PERMISSION_DENIED", MSG_LEAKED);
    case "unavailable":
      return errorResponse(503, "UNAVAILABLE", MSG_OVERLOADED);
    case "location":
      return errorResponse(400, "FAILED_PRECONDITION", MSG_LOCATION);
    case "free_tier_country":
      return errorResponse(400, "FAILED_PRECONDITION", MSG_FREE_TIER_COUNTRY);
    case "internal":
      return errorResponse(500, "INTERNAL", MSG_INTERNAL);
    case "rate_limited":
      return rateLimited(behavior, model);
    default:
      return null;
  }
}

/** 429 RESOURCE_EXHAUSTED with QuotaFailure, Help and RetryInfo details. */
function rateLimited(
  behavior: { retryDelaySeconds?: number; perDay?: boolean; quotaValue?: string },
  model: string | null,
): Response {
  const delay = behavior.retryDelaySeconds ?? 15;
  const perDay = behavior.perDay === true;
  const quotaValue = behavior.quotaValue ?? (perDay ? "250" : "10");
  const metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests";
  const quotaId = perDay
    ? "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    : "GenerateRequestsPerMinutePerProjectPerModel-FreeTier";
  const dims: Record<string, string> = { location: "global" };
  if (model !== null) dims.model = model;
  const message =
    "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n" +
    `* Quota exceeded for metric: ${metric}, limit: ${quotaValue}` +
    (model !== null ? `, model: ${model}` : "") +
    `\nPlease retry in ${delay}s.`;
  return errorResponse(429, "RESOURCE_EXHAUSTED", message, [
    {
      "@type": "type.googleapis.com/google.rpc.QuotaFailure",
      violations: [{ quotaMetric: metric, quotaId, quotaDimensions: dims, quotaValue }],
    },
    {
      "@type": "type.googleapis.com/google.rpc.Help",
      links: [{
        description: "Learn more about Gemini API quotas",
        url: "https://ai.google.dev/gemini-api/docs/rate-limits",
      }],
    },
    { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: `${delay}s` },
  ]);
}

/** The public Model resource for a FakeModel. */
function modelResource(model: FakeModel): Json {
  const id = model.name.startsWith("models/") ? model.name.slice(7) : model.name;
  const generative = model.supportedGenerationMethods.includes("generateContent");
  const out: Json = {
    name: `models/${id}`,
    baseModelId: id,
    version: id.includes("preview") ? id : "001",
    displayName: model.displayName ?? id,
    description: `${model.displayName ?? id} (fake model served by fake_gemini).`,
    inputTokenLimit: model.inputTokenLimit ?? (generative ? 1048576 : 2048),
    outputTokenLimit: model.outputTokenLimit ?? (generative ? 65536 : 1),
    supportedGenerationMethods: [...model.supportedGenerationMethods],
  };
  if (generative) {
    out.temperature = 1;
    out.maxTemperature = 2;
    out.topP = 0.95;
    out.topK = 64;
  }
  if (model.thinking === true) out.thinking = true;
  return out;
}

/** Reads a request body fully; returns the bytes and the parsed JSON (undefined if not JSON). */
async function readJsonBody(
  req: Request,
): Promise<{ bytes: number; json: unknown; parsed: boolean }> {
  if (req.body === null) return { bytes: 0, json: undefined, parsed: false };
  let buf: ArrayBuffer;
  try {
    buf = await req.arrayBuffer();
  } catch {
    // The client went away mid-body.
    return { bytes: 0, json: undefined, parsed: false };
  }
  if (buf.byteLength === 0) return { bytes: 0, json: undefined, parsed: false };
  try {
    return { bytes: buf.byteLength, json: JSON.parse(DECODER.decode(buf)), parsed: true };
  } catch {
    return { bytes: buf.byteLength, json: undefined, parsed: false };
  }
}

/** Counts the bytes of a body stream without keeping them. */
async function countBody(body: ReadableStream<Uint8Array> | null): Promise<number> {
  if (body === null) return 0;
  let n = 0;
  try {
    for await (const chunk of body) n += chunk.byteLength;
  } catch {
    // The client went away mid-body: report what arrived.
  }
  return n;
}

/** The fake server; exposed to callers only through the FakeGemini interface. */
class FakeGeminiServer implements FakeGemini {
  url: string;
  requests: RecordedRequest[] = [];
  readonly #record: boolean;
  readonly #keys = new Map<string, KeyBehavior>();
  readonly #unknownKey: KeyBehavior;
  readonly #models: Json[];
  readonly #modelById = new Map<string, Json>();
  readonly #latencyMs: number;
  readonly #streamChunks: number;
  readonly #delimiter: string;
  readonly #reply: ((request: GenerateRequestView) => string) | undefined;
  readonly #quiet: boolean;
  readonly #strict: boolean;
  readonly #outputLimit: number | undefined;
  readonly #videoProcessing: { state: "ACTIVE" | "FAILED"; afterGets: number };
  /** Thought signatures this fake issued (Gemini 3 function calls), with the model that did. */
  readonly #signatures = new Map<string, string>();
  readonly #counts = new Map<string, number>();
  readonly #files = new Map<string, StoredFile>();
  readonly #sessions = new Map<string, UploadSession>();
  readonly #streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  readonly #closing = new AbortController();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #idPrefix = randomId(6);
  #seq = 0;
  #closed: Promise<void> | null = null;

  constructor(options: FakeGeminiOptions, record: boolean) {
    this.#record = record;
    for (const [k, v] of Object.entries(options.keys ?? {})) this.#keys.set(k, v);
    this.#unknownKey = options.unknownKey ?? { kind: "invalid" };
    this.#models = (options.models ?? DEFAULT_MODELS).map(modelResource);
    for (const m of this.#models) this.#modelById.set(String(m.baseModelId), m);
    this.#latencyMs = options.latencyMs ?? 0;
    this.#streamChunks = Math.max(1, Math.floor(options.streamChunks ?? 3));
    this.#delimiter = options.sseDelimiter ?? "\r\n\r\n";
    this.#reply = options.reply;
    this.#quiet = options.quiet === true;
    this.#strict = options.strict === true;
    this.#outputLimit = options.outputLimit;
    this.#videoProcessing = {
      state: options.videoProcessing?.state ?? "ACTIVE",
      afterGets: options.videoProcessing?.afterGets ?? 2,
    };
    this.#server = Deno.serve({
      hostname: "127.0.0.1",
      port: options.port ?? 0,
      onListen() {},
      onError: (error) => {
        if (error !== NETWORK_FAULT && !this.#quiet) console.error("fake_gemini:", error);
        return errorResponse(500, "INTERNAL", "Internal error encountered.");
      },
    }, (req) => this.#handle(req));
    this.url = `http://127.0.0.1:${this.#server.addr.port}`;
  }

  setKey(key: string, behavior: KeyBehavior): void {
    this.#keys.set(key, behavior);
  }

  callsFor(key: string): number {
    return this.#counts.get(key) ?? 0;
  }

  reset(): void {
    this.requests.length = 0;
    this.#counts.clear();
  }

  close(): Promise<void> {
    if (this.#closed === null) {
      this.#closing.abort();
      for (const c of this.#streams) {
        try {
          c.error(NETWORK_FAULT);
        } catch {
          // already closed
        }
      }
      this.#streams.clear();
      this.#closed = this.#server.shutdown();
    }
    return this.#closed;
  }

  /** Waits `ms`, abortable by the client going away or the server closing; false when aborted. */
  #sleep(ms: number, req: Request): Promise<boolean> {
    const server = this.#closing.signal;
    if (server.aborted) return Promise.resolve(false);
    const client = req.signal;
    if (client.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        server.removeEventListener("abort", onAbort);
        client.removeEventListener("abort", onAbort);
        resolve(ok);
      };
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(true), ms);
      server.addEventListener("abort", onAbort);
      client.addEventListener("abort", onAbort);
    });
  }

  #behaviorOf(key: string): KeyBehavior {
    return this.#keys.get(key) ?? this.#unknownKey;
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    const headers: Record<string, string> = {};
    for (const [name, value] of req.headers) headers[name] = value;
    const key = headers["x-goog-api-key"] ?? url.searchParams.get("key");
    const rec: RecordedRequest = {
      method: req.method,
      path,
      search: url.search,
      headers,
      key,
      body: null,
      bytes: 0,
    };
    if (this.#record) this.requests.push(rec);
    if (key !== null) this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);

    const uploadId = path === UPLOAD_PATH ? url.searchParams.get("upload_id") : null;
    let json: unknown = undefined;
    let parsed = false;
    if (uploadId === null) {
      const read = await readJsonBody(req);
      rec.bytes = read.bytes;
      rec.body = read.parsed ? read.json : null;
      json = read.json;
      parsed = read.parsed;
    }

    // Credentials. Upload-session requests may omit the key: the session URL identifies it.
    const hasAuthorization = headers["authorization"] !== undefined;
    let early: Response | null = null;
    if (key !== null && hasAuthorization) {
      early = errorResponse(400, "INVALID_ARGUMENT", MSG_MULTIPLE_CREDENTIALS);
    } else if (key === null && hasAuthorization) {
      early = errorResponse(401, "UNAUTHENTICATED", MSG_OAUTH_EXPECTED);
    } else if (key === null && uploadId === null) {
      early = errorResponse(403, "PERMISSION_DENIED", MSG_UNREGISTERED);
    }
    const behavior: KeyBehavior = key === null ? { kind: "ok" } : this.#behaviorOf(key);
    if (early === null) {
      early = behaviorError(behavior, modelInPath(path));
    }
    if (early !== null || behavior.kind === "network") {
      if (uploadId !== null) rec.bytes = await countBody(req.body);
      if (this.#latencyMs > 0 && !(await this.#sleep(this.#latencyMs, req))) return cancelled();
      return early ?? networkFailure();
    }

    if (this.#latencyMs > 0 && !(await this.#sleep(this.#latencyMs, req))) {
      if (uploadId !== null) await countBody(req.body);
      return cancelled();
    }
    if (behavior.kind === "slow" && !(await this.#sleep(behavior.delayMs, req))) {
      if (uploadId !== null) await countBody(req.body);
      return cancelled();
    }
    if (behavior.kind === "empty" && /:(stream)?[gG]enerateContent$/.test(path)) {
      const empty = {
        candidates: [{ content: { role: "model" }, finishReason: "STOP", index: 0 }],
        usageMetadata: { promptTokenCount: 5, totalTokenCount: 5 },
        modelVersion: modelInPath(path) ?? "",
        responseId: "empty",
      };
      return path.endsWith(":streamGenerateContent")
        ? this.#sse([empty], url.searchParams.get("alt"))
        : jsonResponse(empty);
    }

    const project = key === null ? null : projectOf(key);
    if (uploadId !== null) return await this.#uploadChunk(req, rec, uploadId, headers);
    if (path === UPLOAD_PATH) {
      if (req.method !== "POST" || project === null) return methodNotFound();
      return this.#uploadStart(headers, json, parsed, project);
    }
    if (project === null || !path.startsWith(API + "/")) return methodNotFound();

    if (path === API + "/models") {
      return req.method === "GET" ? this.#listModels(url) : methodNotFound();
    }
    if (path.startsWith(API + "/models/")) {
      const rest = safeDecode(path.slice(API.length + 8));
      const colon = rest.indexOf(":");
      if (colon < 0) return req.method === "GET" ? this.#getModel(rest) : methodNotFound();
      if (req.method !== "POST") return methodNotFound();
      const model = rest.slice(0, colon);
      const method = rest.slice(colon + 1);
      switch (method) {
        case "generateContent":
          return await this.#generate(req, model, json, parsed, project, false, url);
        case "streamGenerateContent":
          return await this.#generate(req, model, json, parsed, project, true, url);
        case "countTokens":
          return this.#countTokens(model, json, parsed);
        case "embedContent":
          return this.#embedContent(model, json, parsed);
        case "batchEmbedContents":
          return this.#batchEmbed(model, json, parsed);
        case "predict":
          return this.#predict(model, json, parsed);
        default:
          return methodNotFound();
      }
    }
    if (path === API + "/files") {
      return req.method === "GET" ? this.#listFiles(url, project) : methodNotFound();
    }
    if (path.startsWith(API + "/files/")) {
      const id = safeDecode(path.slice(API.length + 7));
      if (req.method === "GET") return this.#getFile(id, project);
      if (req.method === "DELETE") return this.#deleteFile(id, project);
      return methodNotFound();
    }
    return methodNotFound();
  }

  // ---- models ----

  #listModels(url: URL): Response {
    const size = pageSizeOf(url.searchParams.get("pageSize"), 50, 1000);
    const offset = pageOffset(url.searchParams.get("pageToken"));
    if (Number.isNaN(offset)) return badRequest("Invalid page token.");
    const start = offset ?? 0;
    const page = this.#models.slice(start, start + size);
    const body: Json = { models: page };
    if (start + size < this.#models.length) body.nextPageToken = pageToken(start + size);
    return jsonResponse(body);
  }

  #getModel(id: string): Response {
    const bare = id.startsWith("models/") ? id.slice(7) : id;
    const m = this.#modelById.get(bare);
    return m === undefined ? modelNotFound(bare, "get") : jsonResponse(m);
  }

  #supports(model: string, ...methods: string[]): boolean {
    const m = this.#modelById.get(model);
    if (m === undefined) return false;
    const supported = m.supportedGenerationMethods;
    return Array.isArray(supported) && methods.some((x) => supported.includes(x));
  }

  // ---- Imagen ----

  /** Imagen's `:predict`: `sampleCount` PNGs for `instances[0].prompt`. */
  #predict(model: string, json: unknown, parsed: boolean): Response {
    if (!this.#supports(model, "predict")) return modelNotFound(model, "predict");
    if (!parsed || !isRecord(json)) return badRequest("Invalid JSON payload received.");
    const instance = arrayField(json, "instances")[0];
    if (!isRecord(instance) || typeof instance.prompt !== "string" || !instance.prompt.trim()) {
      return badRequest("The prompt is empty.");
    }
    const params = recordField(json, "parameters") ?? {};
    const count = typeof params.sampleCount === "number" ? Math.floor(params.sampleCount) : 1;
    if (count < 1 || count > 4) return badRequest("sampleCount must be between 1 and 4.");
    return jsonResponse({
      predictions: Array.from({ length: count }, () => ({
        mimeType: "image/png",
        bytesBase64Encoded: TINY_PNG,
      })),
    });
  }

  // ---- generateContent ----

  async #generate(
    req: Request,
    model: string,
    json: unknown,
    parsed: boolean,
    project: string,
    stream: boolean,
    url: URL,
  ): Promise<Response> {
    if (!this.#supports(model, "generateContent")) return modelNotFound(model, "generateContent");
    if (!parsed || !isRecord(json)) {
      return badRequest(
        "Invalid JSON payload received. Unexpected token.\nThe request body must be a JSON object.",
      );
    }
    const body = json;
    const contents = arrayField(body, "contents");
    if (contents.length === 0) {
      return badRequest("* GenerateContentRequest.contents: contents is not specified\n");
    }
    const fileError = this.#checkFileRefs(contents, project);
    if (fileError !== null) return fileError;
    // Google Search beside function declarations needs server-side tool circulation (and a
    // Gemini 3 model); without it Google refuses the request.
    const toolKinds = arrayField(body, "tools").filter(isRecord);
    const toolConfig = recordField(body, "toolConfig", "tool_config");
    if (
      toolKinds.some((t) => "googleSearch" in t || "google_search" in t) &&
      toolKinds.some((t) => "functionDeclarations" in t || "function_declarations" in t) &&
      toolConfig?.includeServerSideToolInvocations !== true
    ) {
      return badRequest(
        "Please enable tool_config.include_server_side_tool_invocations to use Built-in tools " +
          "with Function calling.",
      );
    }
    // This fake keeps no context caches: whatever cache a request names is not this project's.
    if (typeof body.cachedContent === "string") {
      return errorResponse(
        403,
        "PERMISSION_DENIED",
        "CachedContent not found (or permission denied)",
      );
    }
    if (this.#strict) {
      const invalid = checkGenerateRequest(
        this.#modelById.get(model),
        body,
        (signature) => this.#signatures.get(signature) === model,
      );
      if (invalid !== null) return invalid;
    }

    const userText = lastUserText(contents);
    if (userText.includes("[[BAD]]")) return badRequest("Invalid JSON payload received.");
    const slow = /\[\[SLOW:(\d+)\]\]/.exec(userText);
    if (slow !== null && !(await this.#sleep(Number(slow[1]), req))) return cancelled();

    const gen = recordField(body, "generationConfig", "generation_config") ?? {};
    const thinking = recordField(gen, "thinkingConfig", "thinking_config");
    const includeThoughts = thinking?.includeThoughts === true;
    const budget = thinking?.thinkingBudget;
    const thinks = thinking !== undefined &&
      (includeThoughts || (typeof budget === "number" && (budget > 0 || budget === -1)) ||
        typeof thinking.thinkingLevel === "string");
    const thoughts = thinks ? THOUGHT_TOKENS : 0;
    const prompt = promptTokens(body);
    const responseId = `${this.#idPrefix}${(++this.#seq).toString(36)}`;
    const head = { modelVersion: model, responseId };
    const alt = url.searchParams.get("alt");

    if (userText.includes("[[BLOCK]]")) {
      const blocked = {
        promptFeedback: {
          blockReason: "SAFETY",
          safetyRatings: [{ category: "HARM_CATEGORY_DANGEROUS_CONTENT", probability: "HIGH" }],
        },
        usageMetadata: { promptTokenCount: prompt, totalTokenCount: prompt },
        ...head,
      };
      return stream ? this.#sse([blocked], alt) : jsonResponse(blocked);
    }
    if (userText.includes("[[SAFETY]]")) {
      const unsafe = {
        candidates: [{
          finishReason: "SAFETY",
          index: 0,
          safetyRatings: [{
            category: "HARM_CATEGORY_DANGEROUS_CONTENT",
            probability: "HIGH",
            blocked: true,
          }],
        }],
        usageMetadata: usage(prompt, 0, thoughts),
        ...head,
      };
      return stream ? this.#sse([unsafe], alt) : jsonResponse(unsafe);
    }

    const calls = plannedCalls(body, contents, userText);
    if (calls !== null) {
      return this.#callAnswer(model, calls, {
        stream,
        alt,
        head,
        prompt,
        thoughts,
        includeThoughts,
      });
    }

    const answer = this.#answer(model, userText, body, gen);
    const rawCount = gen.candidateCount;
    const n = typeof rawCount === "number" && rawCount > 1 ? Math.floor(rawCount) : 1;
    // With Google Search on, the answer is grounded on two pages (on the candidate that ends it).
    const searched = arrayField(body, "tools").some((t) => isRecord(t) && "googleSearch" in t);
    const grounding = searched ? { groundingMetadata: groundingOf(userText, answer.text) } : {};

    // A TTS model speaks: 16-bit PCM at 24 kHz, two samples per character of the text, no text.
    const speaks = arrayField(gen, "responseModalities").some((m) => String(m) === "AUDIO");
    if (speaks) {
      if (!model.includes("-tts")) {
        return badRequest("The requested combination of response modalities is not supported.");
      }
      const voice = recordField(
        recordField(recordField(gen, "speechConfig") ?? {}, "voiceConfig") ?? {},
        "prebuiltVoiceConfig",
      )?.voiceName;
      const pcm = new Uint8Array(userText.length * 4);
      pcm[0] = typeof voice === "string" ? voice.length : 0;
      const audio = {
        candidates: [{
          content: {
            parts: [{
              inlineData: {
                mimeType: "audio/L16;codec=pcm;rate=24000",
                data: btoa(String.fromCharCode(...pcm)),
              },
            }],
            role: "model",
          },
          finishReason: "STOP",
          index: 0,
        }],
        usageMetadata: usage(prompt, pcm.length / 32, 0),
        ...head,
      };
      return stream ? this.#sse([audio], alt) : jsonResponse(audio);
    }
    // An image model draws (unless asked for text only): a PNG after the text.
    const modalities = arrayField(gen, "responseModalities");
    const draws = model.includes("-image") &&
      (modalities.length === 0 || modalities.some((m) => String(m).toUpperCase() === "IMAGE"));
    const image: Json = { inlineData: { mimeType: "image/png", data: TINY_PNG } };

    if (!stream) {
      const parts: Json[] = includeThoughts ? [{ text: THOUGHT_TEXT, thought: true }] : [];
      parts.push({ text: answer.text });
      if (draws) parts.push(image);
      const candidates = [];
      for (let i = 0; i < n; i++) {
        candidates.push({
          content: { parts, role: "model" },
          finishReason: answer.finishReason,
          index: i,
          ...logprobsOf(gen, answer.text),
          ...grounding,
        });
      }
      return jsonResponse({
        candidates,
        usageMetadata: usage(prompt, answer.words * n, thoughts),
        ...head,
      });
    }

    // Streaming: optional thought chunk, then the answer split into pieces.
    const early = { promptTokenCount: prompt, totalTokenCount: prompt };
    const chunk = (parts: Json[], finishReason: string | null, meta: Json): Json => {
      const candidates = [];
      for (let i = 0; i < n; i++) {
        const c: Json = { content: { parts, role: "model" } };
        if (finishReason !== null) c.finishReason = finishReason;
        c.index = i;
        const text = parts.map((p) => (p.thought ? "" : String(p.text ?? ""))).join("");
        if (text) Object.assign(c, logprobsOf(gen, text));
        if (finishReason !== null) Object.assign(c, grounding);
        candidates.push(c);
      }
      return { candidates, usageMetadata: meta, ...head };
    };
    const events: Json[] = [];
    if (includeThoughts) events.push(chunk([{ text: THOUGHT_TEXT, thought: true }], null, early));
    const pieces = splitText(answer.text, this.#streamChunks);
    const cut = userText.includes("[[CUT]]");
    const midError = userText.includes("[[MIDERROR]]");
    if (cut || midError) {
      events.push(chunk([{ text: pieces[0] }], null, early));
      const tail = midError
        ? { error: { code: 500, message: "Internal error encountered.", status: "INTERNAL" } }
        : null;
      return this.#sse(tail === null ? events : [...events, tail], alt);
    }
    for (let i = 0; i < pieces.length; i++) {
      const last = i === pieces.length - 1;
      events.push(
        chunk(
          last && draws ? [{ text: pieces[i] }, image] : [{ text: pieces[i] }],
          last ? answer.finishReason : null,
          last ? usage(prompt, answer.words * n, thoughts) : early,
        ),
      );
    }
    return this.#sse(events, alt);
  }

  /** Answers with function calls (a Gemini 3 model signs the first one). */
  #callAnswer(
    model: string,
    calls: { name: string; args: Json }[],
    o: {
      stream: boolean;
      alt: string | null;
      head: Json;
      prompt: number;
      thoughts: number;
      includeThoughts: boolean;
    },
  ): Response {
    const callParts: Json[] = calls.map((call, i) => {
      const part: Json = { functionCall: { name: call.name, args: call.args } };
      if (i === 0 && model.startsWith("gemini-3")) {
        const signature = newThoughtSignature();
        this.#signatures.set(signature, model);
        part.thoughtSignature = signature;
      }
      return part;
    });
    const thought = o.includeThoughts ? [{ text: THOUGHT_TEXT, thought: true }] : [];
    const meta = usage(o.prompt, 3 * calls.length, o.thoughts);
    if (!o.stream) {
      return jsonResponse({
        candidates: [{
          content: { parts: [...thought, ...callParts], role: "model" },
          finishReason: "STOP",
          index: 0,
        }],
        usageMetadata: meta,
        ...o.head,
      });
    }
    const events: Json[] = [];
    if (thought.length) {
      events.push({
        candidates: [{ content: { parts: thought, role: "model" }, index: 0 }],
        usageMetadata: { promptTokenCount: o.prompt, totalTokenCount: o.prompt },
        ...o.head,
      });
    }
    events.push({
      candidates: [{
        content: { parts: callParts, role: "model" },
        finishReason: "STOP",
        index: 0,
      }],
      usageMetadata: meta,
      ...o.head,
    });
    return this.#sse(events, o.alt);
  }

  #answer(model: string, userText: string, body: Json, gen: Json): Answer {
    let text = this.#reply !== undefined
      ? this.#reply({ model, lastUserText: userText, body })
      : defaultReply(body, userText, gen);
    let finishReason = "STOP";
    const stops = gen.stopSequences;
    if (Array.isArray(stops)) {
      let cutAt = -1;
      for (const s of stops) {
        if (typeof s !== "string" || s === "") continue;
        const i = text.indexOf(s);
        if (i >= 0 && (cutAt < 0 || i < cutAt)) cutAt = i;
      }
      if (cutAt >= 0) text = text.slice(0, cutAt);
    }
    let words = countWords(text);
    const max = gen.maxOutputTokens;
    if (typeof max === "number" && max > 0 && words > max) {
      text = (text.match(/\S+/g) ?? []).slice(0, max).join(" ");
      words = max;
      finishReason = "MAX_TOKENS";
    }
    const limit = this.#outputLimit;
    if (limit !== undefined && limit > 0 && words > limit) {
      text = (text.match(/\S+/g) ?? []).slice(0, limit).join(" ");
      words = limit;
      finishReason = "MAX_TOKENS";
    }
    return { text, finishReason, words };
  }

  #checkFileRefs(contents: unknown[], project: string): Response | null {
    for (const c of contents) {
      if (!isRecord(c)) continue;
      for (const part of arrayField(c, "parts")) {
        if (!isRecord(part)) continue;
        const fd = recordField(part, "fileData", "file_data");
        if (fd === undefined) continue;
        const uri = fd.fileUri ?? fd.file_uri;
        if (typeof uri !== "string") return badRequest("* fileData.fileUri: is required\n");
        const m = /(?:^|\/)files\/([^/?#]+)$/.exec(uri);
        if (m === null) {
          return badRequest(`Invalid or unsupported file uri: ${uri}`);
        }
        const stored = this.#files.get(m[1]);
        if (stored === undefined || stored.project !== project) return fileDenied(m[1]);
        if (stored.file.state !== "ACTIVE") {
          return errorResponse(
            400,
            "FAILED_PRECONDITION",
            `The File ${m[1]} is not in an ACTIVE state and usage is not allowed.`,
          );
        }
      }
    }
    return null;
  }

  #sse(events: Json[], alt: string | null): Response {
    if (alt !== "sse") {
      // Without alt=sse Google answers one JSON array of the chunks.
      return new Response(`[${events.map((e) => JSON.stringify(e)).join(",\n")}]`, {
        status: 200,
        headers: { "content-type": JSON_TYPE },
      });
    }
    const frames = events.map((e) =>
      ENCODER.encode(`data: ${JSON.stringify(e)}${this.#delimiter}`)
    );
    const streams = this.#streams;
    let index = 0;
    let controllerRef: ReadableStreamDefaultController<Uint8Array> | null = null;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controllerRef = controller;
        streams.add(controller);
      },
      pull(controller) {
        if (index < frames.length) controller.enqueue(frames[index++]);
        if (index >= frames.length) {
          controller.close();
          streams.delete(controller);
        }
      },
      cancel() {
        if (controllerRef !== null) streams.delete(controllerRef);
      },
    });
    return new Response(body, {
      status: 200,
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
      },
    });
  }

  // ---- countTokens / embeddings ----

  #countTokens(model: string, json: unknown, parsed: boolean): Response {
    if (!this.#supports(model, "countTokens")) return modelNotFound(model, "countTokens");
    if (!parsed || !isRecord(json)) return badRequest("Invalid JSON payload received.");
    const inner = recordField(json, "generateContentRequest", "generate_content_request");
    const source = inner ?? json;
    if (inner === undefined && !Array.isArray(json.contents)) {
      return badRequest("* CountTokensRequest: contents or generateContentRequest is required\n");
    }
    let n = 0;
    for (const c of arrayField(source, "contents")) n += countWords(contentText(c));
    n += countWords(contentText(source.systemInstruction ?? source.system_instruction));
    return jsonResponse({
      totalTokens: n,
      promptTokensDetails: [{ modality: "TEXT", tokenCount: n }],
    });
  }

  #embedOne(request: Json): number[] | string {
    const content = recordField(request, "content");
    if (content === undefined) return "* EmbedContentRequest.content: content is not specified\n";
    const dimsRaw = request.outputDimensionality ?? request.output_dimensionality;
    const dims = typeof dimsRaw === "number" && dimsRaw > 0 ? Math.floor(dimsRaw) : 768;
    return embed(contentText(content), dims);
  }

  #embedContent(model: string, json: unknown, parsed: boolean): Response {
    if (!this.#supports(model, "embedContent")) return modelNotFound(model, "embedContent");
    if (!parsed || !isRecord(json)) return badRequest("Invalid JSON payload received.");
    const values = this.#embedOne(json);
    if (typeof values === "string") return badRequest(values);
    return jsonResponse({ embedding: { values } });
  }

  #batchEmbed(model: string, json: unknown, parsed: boolean): Response {
    if (!this.#supports(model, "embedContent", "batchEmbedContents")) {
      return modelNotFound(model, "batchEmbedContents");
    }
    if (!parsed || !isRecord(json)) return badRequest("Invalid JSON payload received.");
    const requests = arrayField(json, "requests");
    if (requests.length === 0) {
      return badRequest("* BatchEmbedContentsRequest.requests: requests is not specified\n");
    }
    const embeddings = [];
    for (let i = 0; i < requests.length; i++) {
      const r = requests[i];
      if (!isRecord(r)) return badRequest(`* BatchEmbedContentsRequest.requests[${i}]: invalid\n`);
      if (r.model !== `models/${model}`) {
        return badRequest(
          `* BatchEmbedContentsRequest.requests[${i}].model: the model (${
            String(r.model)
          }) does not match the model in the URL (models/${model})\n`,
        );
      }
      const values = this.#embedOne(r);
      if (typeof values === "string") return badRequest(values);
      embeddings.push({ values });
    }
    return jsonResponse({ embeddings });
  }

  // ---- files ----

  #uploadStart(
    headers: Record<string, string>,
    json: unknown,
    parsed: boolean,
    project: string,
  ): Response {
    if (headers["x-goog-upload-protocol"] !== "resumable") {
      return badRequest("Only the resumable upload protocol is supported by this server.");
    }
    if ((headers["x-goog-upload-command"] ?? "").trim() !== "start") {
      return badRequest("Upload command must be 'start' for a new upload session.");
    }
    if (parsed && !isRecord(json)) return badRequest("Invalid JSON payload received.");
    const file = isRecord(json) ? recordField(json, "file") : undefined;
    let id = randomId(12);
    const wanted = file?.name;
    if (typeof wanted === "string" && wanted !== "") {
      const bare = wanted.startsWith("files/") ? wanted.slice(6) : wanted;
      if (!/^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/.test(bare)) {
        return badRequest(`Invalid file name: ${wanted}`);
      }
      if (this.#files.has(bare)) {
        return errorResponse(409, "ALREADY_EXISTS", `File files/${bare} already exists.`);
      }
      id = bare;
    }
    const sizeHeader = headers["x-goog-upload-header-content-length"];
    const declared = sizeHeader === undefined ? null : Number(sizeHeader);
    const mime = headers["x-goog-upload-header-content-type"] ??
      (typeof file?.mimeType === "string" ? file.mimeType : "application/octet-stream");
    const sessionId = `${randomId(24)}`;
    this.#sessions.set(sessionId, {
      id,
      project,
      displayName: typeof file?.displayName === "string" ? file.displayName : undefined,
      mimeType: mime,
      declaredSize: declared !== null && Number.isFinite(declared) ? declared : null,
      received: 0,
    });
    return new Response(null, {
      status: 200,
      headers: {
        "x-goog-upload-url":
          `${this.url}${UPLOAD_PATH}?upload_id=${sessionId}&upload_protocol=resumable`,
        "x-goog-upload-status": "active",
        "x-goog-upload-chunk-granularity": "8388608",
        "x-goog-upload-control-url":
          `${this.url}${UPLOAD_PATH}?upload_id=${sessionId}&upload_protocol=resumable`,
        "access-control-expose-headers": EXPOSE_UPLOAD_HEADERS,
      },
    });
  }

  async #uploadChunk(
    req: Request,
    rec: RecordedRequest,
    sessionId: string,
    headers: Record<string, string>,
  ): Promise<Response> {
    const expose = { "access-control-expose-headers": EXPOSE_UPLOAD_HEADERS };
    const session = this.#sessions.get(sessionId);
    if (session === undefined || req.method !== "POST") {
      rec.bytes = await countBody(req.body);
      return errorResponse(404, "NOT_FOUND", "Upload session not found or already finalized.");
    }
    const command = (headers["x-goog-upload-command"] ?? "")
      .split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (command.includes("query")) {
      rec.bytes = await countBody(req.body);
      return new Response(null, {
        status: 200,
        headers: {
          "x-goog-upload-status": "active",
          "x-goog-upload-size-received": String(session.received),
          ...expose,
        },
      });
    }
    if (command.includes("cancel")) {
      rec.bytes = await countBody(req.body);
      this.#sessions.delete(sessionId);
      return new Response(null, {
        status: 200,
        headers: { "x-goog-upload-status": "cancelled", ...expose },
      });
    }
    const uploading = command.includes("upload");
    const finalizing = command.includes("finalize");
    if (!uploading && !finalizing) {
      rec.bytes = await countBody(req.body);
      return badRequest(`Unsupported x-goog-upload-command: ${headers["x-goog-upload-command"]}`);
    }
    const offsetRaw = headers["x-goog-upload-offset"];
    const offset = offsetRaw === undefined ? session.received : Number(offsetRaw);
    rec.bytes = await countBody(req.body);
    if (offset !== session.received) {
      return errorResponse(
        400,
        "INVALID_ARGUMENT",
        `Invalid X-Goog-Upload-Offset ${offsetRaw}: expected ${session.received}.`,
        undefined,
        {
          "x-goog-upload-status": "active",
          "x-goog-upload-size-received": String(session.received),
          ...expose,
        },
      );
    }
    session.received += rec.bytes;
    if (!finalizing) {
      return new Response(null, {
        status: 200,
        headers: {
          "x-goog-upload-status": "active",
          "x-goog-upload-size-received": String(session.received),
          ...expose,
        },
      });
    }
    if (session.declaredSize !== null && session.declaredSize !== session.received) {
      return badRequest(
        `Upload size mismatch: declared ${session.declaredSize} bytes, received ${session.received}.`,
      );
    }
    this.#sessions.delete(sessionId);
    const now = Date.now();
    const file: GeminiFile = {
      name: `files/${session.id}`,
      mimeType: session.mimeType,
      sizeBytes: String(session.received),
      createTime: timestamp(now),
      updateTime: timestamp(now),
      expirationTime: timestamp(now + 48 * 3600 * 1000),
      sha256Hash: btoa(
        `${hash32(session.id).toString(16).padStart(8, "0")}${session.received}`.padEnd(32, "0"),
      ),
      uri: `${this.url}${API}/files/${session.id}`,
      state: session.mimeType.startsWith("video/") ? "PROCESSING" : "ACTIVE",
      source: "UPLOADED",
    };
    if (session.displayName !== undefined) {
      // Keep Google's field order: displayName right after name.
      const { name, ...rest } = file;
      this.#files.set(session.id, {
        file: { name, displayName: session.displayName, ...rest },
        project: session.project,
        gets: 0,
      });
    } else {
      this.#files.set(session.id, { file, project: session.project, gets: 0 });
    }
    const stored = this.#files.get(session.id);
    return jsonResponse({ file: stored?.file }, { "x-goog-upload-status": "final", ...expose });
  }

  #getFile(id: string, project: string): Response {
    const stored = this.#files.get(id);
    if (stored === undefined || stored.project !== project) return fileDenied(id);
    stored.gets++;
    if (stored.file.state === "PROCESSING" && stored.gets >= this.#videoProcessing.afterGets) {
      stored.file.state = this.#videoProcessing.state;
      stored.file.updateTime = timestamp(Date.now());
    }
    return jsonResponse(stored.file);
  }

  #deleteFile(id: string, project: string): Response {
    const stored = this.#files.get(id);
    if (stored === undefined || stored.project !== project) return fileDenied(id);
    this.#files.delete(id);
    return jsonResponse({});
  }

  #listFiles(url: URL, project: string): Response {
    const size = pageSizeOf(url.searchParams.get("pageSize"), 10, 100);
    const offset = pageOffset(url.searchParams.get("pageToken"));
    if (Number.isNaN(offset)) return badRequest("Invalid page token.");
    const start = offset ?? 0;
    const mine: GeminiFile[] = [];
    for (const f of this.#files.values()) if (f.project === project) mine.push(f.file);
    const body: Json = {};
    const page = mine.slice(start, start + size);
    if (page.length > 0) body.files = page;
    if (start + size < mine.length) body.nextPageToken = pageToken(start + size);
    return jsonResponse(body);
  }
}

// ---- strict request checks, function calls, JSON mode, log probabilities ----

/** Google's documented stand-in signature for history a model did not produce. */
export const DUMMY_THOUGHT_SIGNATURE = "skip_thought_signature_validator";

const GENERATE_FIELDS = [
  "contents",
  "systemInstruction",
  "tools",
  "toolConfig",
  "safetySettings",
  "generationConfig",
  "cachedContent",
  "labels",
  "serviceTier",
];
const GENERATION_CONFIG_FIELDS = [
  "temperature",
  "topP",
  "topK",
  "candidateCount",
  "maxOutputTokens",
  "stopSequences",
  "presencePenalty",
  "frequencyPenalty",
  "seed",
  "responseMimeType",
  "responseSchema",
  "responseJsonSchema",
  "responseLogprobs",
  "logprobs",
  "thinkingConfig",
  "responseModalities",
  "mediaResolution",
  "speechConfig",
  "imageConfig",
  "enableEnhancedCivicAnswers",
];
/** Keywords of Gemini's OpenAPI-subset `Schema` (function `parameters`). */
const SCHEMA_FIELDS = new Set([
  "type",
  "format",
  "title",
  "description",
  "nullable",
  "enum",
  "maxItems",
  "minItems",
  "properties",
  "required",
  "minProperties",
  "maxProperties",
  "minLength",
  "maxLength",
  "pattern",
  "example",
  "anyOf",
  "propertyOrdering",
  "default",
  "items",
  "minimum",
  "maximum",
]);
const PART_DATA_FIELDS = [
  "text",
  "inlineData",
  "inline_data",
  "fileData",
  "file_data",
  "functionCall",
  "function_call",
  "functionResponse",
  "function_response",
  "executableCode",
  "codeExecutionResult",
];
const SAFETY_CATEGORIES = new Set([
  "HARM_CATEGORY_HARASSMENT",
  "HARM_CATEGORY_HATE_SPEECH",
  "HARM_CATEGORY_SEXUALLY_EXPLICIT",
  "HARM_CATEGORY_DANGEROUS_CONTENT",
  "HARM_CATEGORY_CIVIC_INTEGRITY",
]);
const SAFETY_THRESHOLDS = new Set([
  "BLOCK_LOW_AND_ABOVE",
  "BLOCK_MEDIUM_AND_ABOVE",
  "BLOCK_ONLY_HIGH",
  "BLOCK_NONE",
  "OFF",
]);

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function unknownField(obj: Json, allowed: readonly string[], where: string): Response | null {
  const ok = new Set([...allowed, ...allowed.map(snake)]);
  for (const k of Object.keys(obj)) {
    if (!ok.has(k)) {
      return badRequest(
        `Invalid JSON payload received. Unknown name "${k}"${where}: Cannot find field.`,
      );
    }
  }
  return null;
}

function checkSchema(schema: unknown, at: string): Response | null {
  if (!isRecord(schema)) return badRequest(`Invalid value at '${at}': expected an object.`);
  for (const [k, v] of Object.entries(schema)) {
    if (!SCHEMA_FIELDS.has(k)) {
      return badRequest(
        `Invalid JSON payload received. Unknown name "${k}" at '${at}': Cannot find field.`,
      );
    }
    if (k === "enum" && Array.isArray(v)) {
      const i = v.findIndex((x) => typeof x !== "string");
      if (i >= 0) {
        return badRequest(
          `Invalid value at '${at}.enum[${i}]' (TYPE_STRING), ${JSON.stringify(v[i])}`,
        );
      }
    }
    if (k === "properties" && isRecord(v)) {
      if (Object.keys(v).length === 0 && schema.type === "object") {
        return badRequest(`* ${at}.properties: should be non-empty for OBJECT type\n`);
      }
      for (const [name, sub] of Object.entries(v)) {
        const bad = checkSchema(sub, `${at}.properties[${name}].value`);
        if (bad) return bad;
      }
    }
    if (k === "items") {
      const bad = checkSchema(v, `${at}.items`);
      if (bad) return bad;
    }
    if (k === "anyOf" && Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const bad = checkSchema(v[i], `${at}.any_of[${i}]`);
        if (bad) return bad;
      }
    }
  }
  return null;
}

type ThinkingRule =
  | { kind: "none" }
  | { kind: "budget"; min: number; max: number; zero: boolean }
  | { kind: "level"; levels: string[] };

function thinkingRule(model: Json | undefined): ThinkingRule {
  const id = String(model?.baseModelId ?? "");
  if (model?.thinking !== true) return { kind: "none" };
  if (id.startsWith("gemini-2.5-pro")) return { kind: "budget", min: 128, max: 32768, zero: false };
  if (id.startsWith("gemini-2.5-flash-lite")) {
    return { kind: "budget", min: 512, max: 24576, zero: true };
  }
  if (id.startsWith("gemini-2.5")) return { kind: "budget", min: 1, max: 24576, zero: true };
  if (/^gemini-3(\.\d+)?-flash/.test(id)) {
    return { kind: "level", levels: ["MINIMAL", "LOW", "MEDIUM", "HIGH"] };
  }
  if (/^gemini-3-pro/.test(id)) return { kind: "level", levels: ["LOW", "HIGH"] };
  if (/^gemini-3\.\d+-pro/.test(id)) return { kind: "level", levels: ["LOW", "MEDIUM", "HIGH"] };
  return { kind: "level", levels: ["LOW", "HIGH"] };
}

function checkThinking(model: Json | undefined, thinking: Json): Response | null {
  const name = String(model?.name ?? "models/unknown");
  const rule = thinkingRule(model);
  const budget = thinking.thinkingBudget ?? thinking.thinking_budget;
  const level = thinking.thinkingLevel ?? thinking.thinking_level;
  if (rule.kind === "none") return badRequest(`Thinking is not enabled for ${name}`);
  if (budget !== undefined && level !== undefined) {
    return badRequest("You can only set only one of thinking budget and thinking level.");
  }
  if (level !== undefined) {
    if (rule.kind !== "level") return badRequest("Thinking level is not supported for this model.");
    if (!rule.levels.includes(String(level))) {
      return badRequest(`Thinking level ${String(level)} is not supported for this model.`);
    }
  }
  if (budget !== undefined && rule.kind === "budget") {
    const b = Number(budget);
    if (b === 0 && !rule.zero) {
      return badRequest("Budget 0 is invalid. This model only works in thinking mode.");
    }
    if (b !== -1 && b !== 0 && (b < rule.min || b > rule.max)) {
      return badRequest(
        `The thinking budget ${b} is invalid. Please choose a value between ${rule.min} and ${rule.max}.`,
      );
    }
  }
  return null;
}

/** Checks a generateContent request the way Gemini would (strict mode). */
function checkGenerateRequest(
  model: Json | undefined,
  body: Json,
  issued: (signature: string) => boolean,
): Response | null {
  const top = unknownField(body, GENERATE_FIELDS, "");
  if (top) return top;
  const gen = recordField(body, "generationConfig", "generation_config");
  if (gen) {
    const bad = unknownField(gen, GENERATION_CONFIG_FIELDS, " at 'generation_config'");
    if (bad) return bad;
    const thinking = recordField(gen, "thinkingConfig", "thinking_config");
    if (thinking) {
      const t = checkThinking(model, thinking);
      if (t) return t;
    }
    const mime = gen.responseMimeType ?? gen.response_mime_type;
    if (
      mime !== undefined &&
      !["text/plain", "application/json", "text/x.enum"].includes(String(mime))
    ) {
      return badRequest(
        `* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are \`text/plain\`, \`application/json\`, \`text/x.enum\`.\n`,
      );
    }
    const schema = gen.responseSchema ?? gen.response_schema;
    const jsonSchema = gen.responseJsonSchema ?? gen.response_json_schema;
    if (schema !== undefined && jsonSchema !== undefined) {
      return badRequest("response_schema and response_json_schema cannot both be set.");
    }
    if (
      (schema !== undefined || jsonSchema !== undefined) && mime !== "application/json" &&
      mime !== "text/x.enum"
    ) {
      return badRequest(
        "* GenerateContentRequest.generation_config.response_mime_type: must be application/json or text/x.enum when a response schema is set.\n",
      );
    }
    const logprobs = gen.logprobs;
    if (logprobs !== undefined) {
      if ((gen.responseLogprobs ?? gen.response_logprobs) !== true) {
        return badRequest("logprobs can only be set when response_logprobs is true.");
      }
      if (typeof logprobs !== "number" || logprobs < 0 || logprobs > 20) {
        return badRequest(`logprobs must be between 0 and 20, got ${String(logprobs)}.`);
      }
    }
  }
  const safety = arrayField(body, "safetySettings", "safety_settings");
  const seen = new Set<string>();
  for (let i = 0; i < safety.length; i++) {
    const s = safety[i];
    if (!isRecord(s)) return badRequest(`Invalid value at 'safety_settings[${i}]'`);
    const category = String(s.category);
    if (!SAFETY_CATEGORIES.has(category)) {
      return badRequest(
        `Invalid value at 'safety_settings[${i}].category' (type.googleapis.com/google.ai.generativelanguage.v1beta.HarmCategory), "${category}"`,
      );
    }
    if (!SAFETY_THRESHOLDS.has(String(s.threshold))) {
      return badRequest(
        `Invalid value at 'safety_settings[${i}].threshold' (type.googleapis.com/google.ai.generativelanguage.v1beta.SafetySetting.HarmBlockThreshold), "${
          String(s.threshold)
        }"`,
      );
    }
    if (seen.has(category)) return badRequest(`Duplicate category in safety settings: ${category}`);
    seen.add(category);
  }
  const tools = arrayField(body, "tools");
  const declared = new Set<string>();
  for (let t = 0; t < tools.length; t++) {
    const tool = tools[t];
    if (!isRecord(tool)) return badRequest(`Invalid value at 'tools[${t}]'`);
    const decls = arrayField(tool, "functionDeclarations", "function_declarations");
    for (let d = 0; d < decls.length; d++) {
      const decl = decls[d];
      const at = `tools[${t}].function_declarations[${d}]`;
      if (!isRecord(decl)) return badRequest(`Invalid value at '${at}'`);
      const name = String(decl.name ?? "");
      if (!/^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$/.test(name)) {
        return badRequest(
          `* GenerateContentRequest.${at}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 128.\n`,
        );
      }
      declared.add(name);
      const params = decl.parameters;
      const jsonParams = decl.parametersJsonSchema ?? decl.parameters_json_schema;
      if (params !== undefined && jsonParams !== undefined) {
        return badRequest(
          `* GenerateContentRequest.${at}: parameters and parameters_json_schema are mutually exclusive.\n`,
        );
      }
      if (params !== undefined) {
        const bad = checkSchema(params, `${at}.parameters`);
        if (bad) return bad;
      }
    }
  }
  const fcc = recordField(
    recordField(body, "toolConfig", "tool_config") ?? {},
    "functionCallingConfig",
    "function_calling_config",
  );
  if (fcc) {
    const mode = String(fcc.mode ?? "AUTO");
    if (!["AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"].includes(mode)) {
      return badRequest(
        `Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), "${mode}"`,
      );
    }
    const allowed = arrayField(fcc, "allowedFunctionNames", "allowed_function_names");
    if (allowed.length && mode !== "ANY" && mode !== "VALIDATED") {
      return badRequest(
        "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: only allowed when mode is ANY or VALIDATED.\n",
      );
    }
    for (const name of allowed) {
      if (!declared.has(String(name))) {
        return badRequest(
          `* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: ${
            String(name)
          } is not a declared function.\n`,
        );
      }
    }
  }
  const contents = arrayField(body, "contents");
  for (let i = 0; i < contents.length; i++) {
    const c = contents[i];
    if (!isRecord(c)) return badRequest(`Invalid value at 'contents[${i}]'`);
    if (c.role !== undefined && !["user", "model", "function"].includes(String(c.role))) {
      return badRequest(`Please use a valid role: user, model.`);
    }
    const parts = arrayField(c, "parts");
    if (parts.length === 0) {
      return badRequest(
        `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.\n`,
      );
    }
    for (let j = 0; j < parts.length; j++) {
      const part = parts[j];
      if (!isRecord(part)) return badRequest(`Invalid value at 'contents[${i}].parts[${j}]'`);
      const data = PART_DATA_FIELDS.filter((f) => part[f] !== undefined);
      if (data.length !== 1) {
        return badRequest(
          `* GenerateContentRequest.contents[${i}].parts[${j}].data: required oneof field 'data' must have one initialized field\n`,
        );
      }
      const inline = recordField(part, "inlineData", "inline_data");
      if (inline) {
        const raw = String(inline.data ?? "");
        if (!(inline.mimeType ?? inline.mime_type)) {
          return badRequest(
            `* GenerateContentRequest.contents[${i}].parts[${j}].inline_data.mime_type: mime_type is required\n`,
          );
        }
        if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(raw)) {
          return badRequest(
            `Invalid value at 'contents[${i}].parts[${j}].inline_data.data' (TYPE_BYTES), Base64 decoding failed for "${
              raw.slice(0, 40)
            }"`,
          );
        }
      }
    }
  }
  if (String(model?.baseModelId ?? "").startsWith("gemini-3")) {
    return checkThoughtSignatures(contents, issued);
  }
  return null;
}

function hasTextPart(content: Json): boolean {
  return arrayField(content, "parts").some((p) => isRecord(p) && typeof p.text === "string");
}

/**
 * Gemini 3: in the current turn (after the last user text), the first function call of every
 * model step must carry the signature the model issued (this model: another model's is refused),
 * or the documented dummy.
 */
function checkThoughtSignatures(
  contents: unknown[],
  issued: (signature: string) => boolean,
): Response | null {
  let start = 0;
  for (let i = contents.length - 1; i >= 0; i--) {
    const c = contents[i];
    if (isRecord(c) && (c.role ?? "user") === "user" && hasTextPart(c)) {
      start = i + 1;
      break;
    }
  }
  for (let i = start; i < contents.length; i++) {
    const c = contents[i];
    if (!isRecord(c) || c.role !== "model") continue;
    const calls = arrayField(c, "parts").filter((p) =>
      isRecord(p) && (p.functionCall ?? p.function_call) !== undefined
    ) as Json[];
    if (calls.length === 0) continue;
    const first = calls[0];
    const signature = first.thoughtSignature ?? first.thought_signature;
    const fc = recordField(first, "functionCall", "function_call") ?? {};
    if (typeof signature !== "string" || signature === "") {
      return badRequest(
        `Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call \`default_api:${
          String(fc.name)
        }\` , position ${
          i + 1
        }. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.`,
      );
    }
    if (signature !== DUMMY_THOUGHT_SIGNATURE && !issued(signature)) {
      return badRequest(
        "Unable to submit request because Thought signature is not valid.. Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini",
      );
    }
  }
  return null;
}

/** A long random thought signature, as Gemini 3 issues. */
function newThoughtSignature(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(270));
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/**
 * The function calls a request asks for: `[[CALL:name:{json}]]` markers in the last user text
 * (several make parallel calls), or, with mode ANY, the first allowed function; null for text.
 */
function plannedCalls(
  body: Json,
  contents: unknown[],
  userText: string,
): { name: string; args: Json }[] | null {
  const declared: string[] = [];
  for (const tool of arrayField(body, "tools")) {
    if (!isRecord(tool)) continue;
    for (const d of arrayField(tool, "functionDeclarations", "function_declarations")) {
      if (isRecord(d) && typeof d.name === "string") declared.push(d.name);
    }
  }
  if (declared.length === 0) return null;
  const last = contents[contents.length - 1];
  if (!isRecord(last) || (last.role ?? "user") !== "user" || !hasTextPart(last)) return null;
  const fcc = recordField(
    recordField(body, "toolConfig", "tool_config") ?? {},
    "functionCallingConfig",
    "function_calling_config",
  ) ?? {};
  const mode = String(fcc.mode ?? "AUTO");
  if (mode === "NONE") return null;
  const allowedRaw = arrayField(fcc, "allowedFunctionNames", "allowed_function_names").map(String);
  const allowed = allowedRaw.length ? allowedRaw : declared;
  const calls: { name: string; args: Json }[] = [];
  for (const m of userText.matchAll(/\[\[CALL:([A-Za-z0-9_.:-]+)(?::(\{.*?\}))?\]\]/g)) {
    if (!allowed.includes(m[1])) continue;
    let args: Json = {};
    try {
      const parsed = m[2] ? JSON.parse(m[2]) : {};
      if (isRecord(parsed)) args = parsed;
    } catch {
      // keep {}
    }
    calls.push({ name: m[1], args });
  }
  if (calls.length) return calls;
  if (mode === "ANY") return [{ name: allowed[0], args: {} }];
  return null;
}

/** A value that fits a (JSON or OpenAPI) schema, for JSON-mode answers. */
function sampleOf(schema: unknown, depth = 0): unknown {
  if (!isRecord(schema) || depth > 8) return null;
  const anyOf = schema.anyOf ?? schema.oneOf;
  if (Array.isArray(anyOf) && anyOf.length) return sampleOf(anyOf[0], depth + 1);
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  switch (String(type ?? (isRecord(schema.properties) ? "object" : "string")).toLowerCase()) {
    case "object": {
      const out: Json = {};
      for (const [k, v] of Object.entries(isRecord(schema.properties) ? schema.properties : {})) {
        out[k] = sampleOf(v, depth + 1);
      }
      return out;
    }
    case "array":
      return [sampleOf(schema.items, depth + 1)];
    case "integer":
      return 1;
    case "number":
      return 1.5;
    case "boolean":
      return true;
    default:
      return "text";
  }
}

/** The answer when no `reply` option is given: tool results, JSON mode, or an echo. */
function defaultReply(body: Json, userText: string, gen: Json): string {
  const contents = arrayField(body, "contents");
  const last = contents[contents.length - 1];
  if (isRecord(last)) {
    const results = arrayField(last, "parts").map((p) =>
      isRecord(p) ? recordField(p, "functionResponse", "function_response") : undefined
    ).filter((r): r is Json => r !== undefined);
    if (results.length) {
      return `Results: ${
        results.map((r) => `${String(r.name)}=${JSON.stringify(r.response)}`).join("; ")
      }`;
    }
  }
  // Audio in the last turn: the fake "hears" its type and size.
  const heard = isRecord(last)
    ? arrayField(last, "parts").map((p) => isRecord(p) ? recordField(p, "inlineData") : undefined)
      .find((d) => d !== undefined && String(d.mimeType).startsWith("audio/"))
    : undefined;
  if (heard) {
    const bytes = Math.floor((String(heard.data).replace(/=+$/, "").length * 3) / 4);
    return `Heard ${bytes} bytes of ${heard.mimeType}`;
  }
  const mime = gen.responseMimeType ?? gen.response_mime_type;
  if (mime === "application/json") {
    const schema = gen.responseJsonSchema ?? gen.response_json_schema ?? gen.responseSchema ??
      gen.response_schema;
    return JSON.stringify(schema !== undefined ? sampleOf(schema) : { echo: userText });
  }
  return `Echo: ${userText}`;
}

/** `logprobsResult` for an answer text (one token per word), when the request asked for it. */
function logprobsOf(gen: Json, text: string): Json {
  if ((gen.responseLogprobs ?? gen.response_logprobs) !== true) return {};
  const top = typeof gen.logprobs === "number" ? gen.logprobs : 0;
  const tokens = text.match(/\S+\s*/g) ?? [];
  return {
    logprobsResult: {
      chosenCandidates: tokens.map((token, i) => ({ token, logProbability: -0.01 * (i + 1) })),
      topCandidates: tokens.map((token, i) => ({
        candidates: Array.from({ length: top }, (_, k) => ({
          token: k === 0 ? token : `${token.trim()}_${k}`,
          logProbability: -0.01 * (i + 1) - k,
        })),
      })),
    },
  };
}

/** usageMetadata of a finished answer. */
function usage(prompt: number, candidates: number, thoughts: number): Json {
  const out: Json = { promptTokenCount: prompt };
  if (candidates > 0) out.candidatesTokenCount = candidates;
  out.totalTokenCount = prompt + candidates + thoughts;
  out.promptTokensDetails = [{ modality: "TEXT", tokenCount: prompt }];
  if (thoughts > 0) out.thoughtsTokenCount = thoughts;
  return out;
}

/** The bare model id named in a `/v1beta/models/{m}:method` path, else null. */
function modelInPath(path: string): string | null {
  if (!path.startsWith("/v1beta/models/")) return null;
  const rest = path.slice(15);
  const colon = rest.indexOf(":");
  return colon < 0 ? null : rest.slice(0, colon);
}

/** Google Search grounding as Gemini reports it: the queries, the pages, what each supports. */
function groundingOf(query: string, text: string): Json {
  const page = (n: number, title: string) => ({
    web: { uri: `https://vertexaisearch.cloud.google.com/grounding-api-redirect/fake-${n}`, title },
  });
  return {
    webSearchQueries: [query],
    searchEntryPoint: { renderedContent: "<div>search</div>" },
    groundingChunks: [page(1, "example.com"), page(2, "example.org"), page(1, "example.com")],
    groundingSupports: [{
      segment: { startIndex: 0, endIndex: text.length, text },
      groundingChunkIndices: [0, 1],
    }],
  };
}

/** Parses `--name value` command-line flags. */
function parseFlags(args: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) continue;
    const eq = a.indexOf("=");
    if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < args.length && !args[i + 1].startsWith("--")) flags.set(a.slice(2), args[++i]);
    else flags.set(a.slice(2), "true");
  }
  return flags;
}

/** Command-line entry point: serves until killed, without recording requests. */
function main(args: string[]): void {
  const flags = parseFlags(args);
  const keys: Record<string, KeyBehavior> = {};
  for (const k of (flags.get("keys") ?? "").split(",")) {
    if (k.trim() !== "") keys[k.trim()] = { kind: "ok" };
  }
  const options: FakeGeminiOptions = {
    port: Number(flags.get("port") ?? 8787),
    latencyMs: Number(flags.get("latency") ?? 0),
    streamChunks: Number(flags.get("stream-chunks") ?? 3),
    keys,
    unknownKey: flags.has("any-key") ? { kind: "ok" } : { kind: "invalid" },
  };
  const fake = new FakeGeminiServer(options, false);
  console.log(fake.url);
}

if (import.meta.main) main(Deno.args);
