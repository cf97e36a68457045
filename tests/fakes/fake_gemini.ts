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
  | { kind: "internal" }
  | { kind: "slow"; delayMs: number }
  | { kind: "network" };

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
  state: "PROCESSING" | "ACTIVE";
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
const MSG_INTERNAL =
  "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting";
const MSG_MULTIPLE_CREDENTIALS =
  "Multiple authentication credentials received. Please pass only one.";
const MSG_UNREGISTERED =
  "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
const MSG_OAUTH_EXPECTED =
  "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

const DEFAULT_MODELS: FakeModel[] = [
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

    const answer = this.#answer(model, userText, body, gen);
    const rawCount = gen.candidateCount;
    const n = typeof rawCount === "number" && rawCount > 1 ? Math.floor(rawCount) : 1;

    if (!stream) {
      const parts: Json[] = includeThoughts ? [{ text: THOUGHT_TEXT, thought: true }] : [];
      parts.push({ text: answer.text });
      const candidates = [];
      for (let i = 0; i < n; i++) {
        candidates.push({
          content: { parts, role: "model" },
          finishReason: answer.finishReason,
          index: i,
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
          [{ text: pieces[i] }],
          last ? answer.finishReason : null,
          last ? usage(prompt, answer.words * n, thoughts) : early,
        ),
      );
    }
    return this.#sse(events, alt);
  }

  #answer(model: string, userText: string, body: Json, gen: Json): Answer {
    let text = this.#reply !== undefined
      ? this.#reply({ model, lastUserText: userText, body })
      : `Echo: ${userText}`;
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
    if (stored.file.state === "PROCESSING" && stored.gets >= 2) {
      stored.file.state = "ACTIVE";
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
