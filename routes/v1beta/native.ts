/**
 * The Gemini-native API for Google's SDKs and tools (`@google/genai`, `gemini-cli`): everything
 * under `/v1beta/` and `/upload/v1beta/`, and the same shapes under `/v1/` and `/upload/v1/` for
 * native requests (`@google/genai` 3.x calls `/v1` by default). The user key is swapped for a pool
 * key (it never reaches the upstream; `?key=`, other credentials and quota parameters are
 * stripped); the pool, failover, limits and accounting are those of `/v1`; streams pass through
 * byte for byte; files are pinned to the key that uploaded them and visible only to the user key
 * that did.
 */
import { publicOrigin } from "../../lib/forwarded.ts";
import { type Context, Hono } from "hono";
import { declaredBodyLimit, readTextUpTo } from "../../lib/body_limit.ts";
import { accountRequest, type RequestOutcome, requestTags } from "../../lib/accounting.ts";
import {
  assertNativeModelAllowed,
  hasNativeCredential,
  nativeKeyAuth,
  refusalToGoogle,
} from "../../lib/auth/native_auth.ts";
import { keyRefusal, modelVisible } from "../../lib/auth/user_limits.ts";
import { peerAddress } from "../../lib/auth/sessions.ts";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import type { ByteSource } from "../../lib/gemini/byte_source.ts";
import { concatBytes } from "../../lib/bytes.ts";
import { GoogleApiError, googleErrorOf } from "../../lib/gemini/errors.ts";
import {
  assertFileKeyUsable,
  deleteOwnedFile,
  FileAccessError,
  FILES_MODEL,
  pinnedFailure,
  upstreamFileCall,
} from "../../lib/gemini/files.ts";
import {
  EMPTY_ANSWER,
  failoverOptions,
  IdleTimeout,
  isEmptyAnswer,
  isEmptyStream,
  parseChunk,
} from "../../lib/gemini/generate.ts";
import { SseParser } from "../../lib/gemini/sse.ts";
import { readGenerateContentResponse, type UsageMetadata } from "../../lib/gemini/types.ts";
import {
  finalFile,
  MAX_FILE_BYTES,
  startUpload,
  uploadChunks,
  UploadTooLargeError,
} from "../../lib/gemini/upload.ts";
import { estimateRequestTokens } from "../../lib/pool/estimate.ts";
import {
  type FailoverResult,
  failureOutcome,
  type GatewayFailure,
  runWithFailover,
} from "../../lib/pool/failover.ts";
import { randomId } from "../../lib/secrets.ts";
import {
  type FileRecord,
  getFileByName,
  listLiveFiles,
  newFileId,
  putFile,
} from "../../lib/store/files.ts";
import {
  deleteUploadSession,
  getUploadSession,
  putUploadSession,
} from "../../lib/store/upload_sessions.ts";
import { getUserKey, type UserKeyRecord } from "../../lib/store/user_keys.ts";
import type { Attempt } from "../../lib/store/usage.ts";
import { expiryOf, fileStateOf } from "../../lib/translate/files.ts";
import { fileUriMeaning, mayNameFiles, namedFileUris } from "../../lib/translate/file_refs.ts";
import { isMimeType } from "../../lib/translate/mime.ts";
import { aliasOf, normalizeModel } from "../../lib/translate/models.ts";
import { urlPath } from "../../lib/url_path.ts";
import { markWhole } from "../../lib/whole_body.ts";
import { heartbeatResponse, KEEP_ALIVE_BLANK, SLOW } from "../../lib/heartbeat.ts";

/** Largest metadata body of an upload start (a file's name and type, not its bytes). */
const MAX_UPLOAD_METADATA_BYTES = 64 * 1024;
/** Largest JSON body of a native request (inline media included). */
const MAX_JSON_BYTES = 40 * 1024 * 1024;
/** Model methods that are POSTed to `models/{model}:{method}`. */
const MODEL_METHODS = new Set([
  "generateContent",
  "streamGenerateContent",
  "countTokens",
  "embedContent",
  "batchEmbedContents",
  "batchGenerateContent",
  "predict",
  "predictLongRunning",
]);
/**
 * Client headers forwarded upstream (everything else stays here: credentials, and
 * `x-goog-user-project`, which bills and checks quota against another project).
 */
const FORWARDED_HEADERS = ["content-type", "x-goog-api-client"];
/**
 * Query parameters never forwarded, as compared by `paramName`: credentials (the user key must not
 * reach Google, and the pool key must be the request's only credential) and Google's system
 * parameters that steer quota or billing (`quotaUser`, `userIp`, `userProject`).
 */
const DROPPED_PARAMS = new Set([
  "key",
  "apikey",
  "accesstoken",
  "oauthtoken",
  "bearertoken",
  "quotauser",
  "userip",
  "userproject",
]);
/** Upload headers that go back to the client from the upstream. */
const UPLOAD_RESPONSE_HEADERS = [
  "x-goog-upload-status",
  "x-goog-upload-size-received",
  "x-goog-upload-chunk-granularity",
];

/** Whether a request under `/v1` speaks Gemini's API rather than OpenAI's. */
export function isGeminiNativeRequest(req: Request): boolean {
  const path = urlPath(req.url);
  if (!path.startsWith("/v1/")) return false;
  if (hasNativeCredential(req)) return true;
  const m = /^\/v1\/(models|tunedModels)\/[^/]+:([A-Za-z]+)$/.exec(path);
  return req.method === "POST" && m !== null && MODEL_METHODS.has(m[2]);
}

interface NativePath {
  /** `/models/...`, `/files/...`: the path after the version. */
  rest: string;
  upload: boolean;
}

function nativePath(url: URL): NativePath | null {
  const m = /^(\/upload)?\/(v1beta|v1)(\/.*)?$/.exec(url.pathname);
  if (!m) return null;
  return { upload: m[1] !== undefined, rest: m[3] ?? "/" };
}

/** A query parameter's name as Google may read it: no `$` prefix, no underscores, any case. */
function paramName(name: string): string {
  return name.replace(/^\$/, "").replaceAll("_", "").toLowerCase();
}

/** The client's query without credentials or quota steering (`alt`, paging, `fields` stay). */
function forwardedQuery(url: URL): string {
  if (!url.search) return "";
  const q = new URLSearchParams(url.search);
  for (const name of new Set(q.keys())) {
    if (DROPPED_PARAMS.has(paramName(name))) q.delete(name);
  }
  return q.toString();
}

function forwardedHeaders(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARDED_HEADERS) {
    const v = req.headers.get(name);
    if (v) out[name] = v;
  }
  return out;
}

/** A percent-encoded path segment, decoded; a malformed encoding is the client's 400. */
function decodedSegment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new GoogleApiError(
      400,
      `Invalid percent-encoding in the request path: ${JSON.stringify(raw.slice(0, 100))}`,
    );
  }
}

function jsonResponse(text: string, status = 200): Response {
  return new Response(text, {
    status,
    headers: { "content-type": "application/json; charset=UTF-8" },
  });
}

/** The Gemini File resource of a stored record (for listings served from KV). */
function fileResource(r: FileRecord): Record<string, unknown> {
  return {
    name: r.name,
    displayName: r.filename,
    mimeType: r.mimeType,
    sizeBytes: String(r.bytes),
    createTime: new Date(r.createdAt).toISOString(),
    expirationTime: new Date(r.expiresAt).toISOString(),
    uri: r.uri,
    state: r.state,
    source: "UPLOADED",
  };
}

/** Builds the native routes (they match full paths: `/v1beta/...`, `/v1/...`, `/upload/...`). */
export function nativeRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.onError((err) => {
    if (err instanceof GoogleApiError) return err.toResponse();
    if (err instanceof FileAccessError) return googleErrorOf(err).toResponse();
    console.error("Unhandled error on a native route:", err);
    return new GoogleApiError(500, "The gateway failed to handle this request").toResponse();
  });
  app.notFound((c) =>
    new GoogleApiError(404, `Method not found: ${c.req.method} ${c.req.path}`).toResponse()
  );
  const jsonLimit = declaredBodyLimit<AppEnv>({
    maxSize: MAX_JSON_BYTES,
    onError: () => {
      throw new GoogleApiError(413, `Request body is larger than ${MAX_JSON_BYTES} bytes`, {
        // The rest of the body is not read: the connection ends with the answer.
        headers: { connection: "close" },
      });
    },
  });
  const auth = nativeKeyAuth(gw);

  // Upload chunks are authorized by their session token, like Google's own upload URLs.
  app.post("/upload/:version{v1beta|v1}/files", async (c, next) => {
    const token = c.req.query("upload_id");
    if (token) return await uploadChunk(gw, c, token);
    await next();
  });
  app.use("*", async (c, next) => {
    const path = nativePath(new URL(c.req.url));
    if (!path) throw new GoogleApiError(404, `Method not found: ${c.req.path}`);
    if (path.upload) return await next();
    // The body limit may put a counting copy of the request in the context: the request the
    // routes watched is that copy, which the app's own release (of the original) misses.
    try {
      return await jsonLimit(c, next);
    } finally {
      gw.clients.release(c.req.raw);
    }
  });
  app.use("*", auth);

  app.post("/upload/:version{v1beta|v1}/files", (c) => uploadStart(gw, c));
  app.get(
    "/:version{v1beta|v1}/models",
    (c) => forwardJson(gw, c, { model: "models.list", list: true }),
  );
  app.get("/:version{v1beta|v1}/files", (c) => listNativeFiles(gw, c));
  app.get("/:version{v1beta|v1}/files/:id", (c) => fileOperation(gw, c, "GET"));
  app.delete("/:version{v1beta|v1}/files/:id", (c) => fileOperation(gw, c, "DELETE"));
  app.all("/:version{v1beta|v1}/*", async (c) => {
    const url = new URL(c.req.url);
    const rest = nativePath(url)!.rest;
    const m = /^\/(models|tunedModels)\/([^/:]+)(?::([A-Za-z]+))?$/.exec(rest);
    if (m && !m[3] && c.req.method === "GET") {
      return await forwardJson(gw, c, { model: "models.list", aliasModel: m[2] });
    }
    if (m && m[3] && c.req.method === "POST") {
      return await modelCall(gw, c, {
        collection: m[1],
        model: decodedSegment(m[2]),
        method: m[3],
      });
    }
    throw new GoogleApiError(
      404,
      `Method not found: ${c.req.method} ${url.pathname} is not served by this gateway`,
    );
  });
  return app;
}

/**
 * Forwards a GET (the model list, one model) with failover. Models the user key does not see
 * (disabled on this gateway, or not among the key's allowed models) are left out of the list, and
 * asking for one of them is a 404, as for a model that does not exist.
 */
async function forwardJson(
  gw: Gateway,
  c: Context<AppEnv>,
  options: { model: string; aliasModel?: string; list?: boolean },
): Promise<Response> {
  const url = new URL(c.req.url);
  const userKey = c.get("userKey");
  const view = await gw.pool.view();
  let path = `/v1beta${nativePath(url)!.rest}`;
  if (options.aliasModel) {
    const settings = await gw.settings.get();
    const name = normalizeModel(decodedSegment(options.aliasModel));
    const target = aliasOf(settings.aliases, name);
    if (target) path = `/v1beta/models/${encodeURIComponent(normalizeModel(target))}`;
    const model = target ? normalizeModel(target) : name;
    if (!modelVisible(view.models, userKey, model)) {
      throw new GoogleApiError(404, `models/${name} is not found for API version v1beta`);
    }
  }
  const failover = await failoverOptions(gw, {
    model: options.model,
    signal: gw.clients.signalOf(c.req.raw),
  });
  const result = await runWithFailover(gw.pool, failover, async (key) => {
    const res = await gw.client.send(key.secret, {
      method: "GET",
      path,
      query: forwardedQuery(url),
      headers: forwardedHeaders(c.req.raw),
    }, gw.clients.signalOf(c.req.raw));
    const text = await res.text();
    return res.ok ? { ok: true, value: text } : { ok: false, status: res.status, body: text };
  });
  if (!result.ok) throw googleErrorOf(result.failure);
  return jsonResponse(
    options.list ? visibleModelList(result.value, view.models, userKey) : result.value,
  );
}

/** A `models.list` page without the models `userKey` does not see (other fields as they are). */
function visibleModelList(
  text: string,
  models: ReadonlyMap<string, { enabled: boolean }>,
  userKey: UserKeyRecord,
): string {
  let page: unknown;
  try {
    page = JSON.parse(text);
  } catch {
    return text;
  }
  if (!page || typeof page !== "object" || !Array.isArray((page as { models?: unknown }).models)) {
    return text;
  }
  const list = page as { models: unknown[] };
  list.models = list.models.filter((m) => {
    const name = (m as { name?: unknown } | null)?.name;
    return typeof name === "string" && modelVisible(models, userKey, normalizeModel(name));
  });
  return JSON.stringify(list);
}

/**
 * Whether `host` is where a `files/` path is a Files API file: the upstream's, or the Gemini API's
 * (other Google hosts, Cloud Storage's among them, serve plain web files).
 */
function googleHostOf(gw: Gateway): (host: string) => boolean {
  const upstream = new URL(gw.client.url("")).host.toLowerCase();
  return (host) => host === upstream || host === "generativelanguage.googleapis.com";
}

/**
 * The `files/...` names a parsed request body references (see `namedFileUris`). A URI that looks
 * like a file but is not spelled as Google spells one is refused: the gateway could not tell whose
 * it is.
 */
function referencedFiles(gw: Gateway, json: unknown): string[] {
  const names = new Set<string>();
  const googleHost = googleHostOf(gw);
  for (const { uri, from } of namedFileUris(json)) {
    const meaning = fileUriMeaning(uri, googleHost);
    if (meaning.kind === "file") names.add(meaning.name);
    // A batch input that is not a file is left to Google (it may name a bucket, say).
    if (meaning.kind === "malformed" && from === "fileData") {
      throw new GoogleApiError(
        400,
        `Invalid file uri ${JSON.stringify(uri.slice(0, 200))}: name an uploaded file as ` +
          "files/{id} or by the uri Gemini gave it",
      );
    }
  }
  return [...names];
}

/** `json` serialized again; a body nested too deeply to serialize is the client's 400. */
function canonicalJson(json: unknown): string {
  try {
    return JSON.stringify(json);
  } catch {
    throw new GoogleApiError(400, "Invalid JSON payload received: nested too deeply.");
  }
}

/** The key a request's files pin it to (all of them must agree), checked for the user. */
async function pinnedKeyFor(
  gw: Gateway,
  userKey: UserKeyRecord,
  names: string[],
): Promise<string | undefined> {
  const keys = new Set<string>();
  const records = await Promise.all(names.map((name) => getFileByName(gw.kv, name)));
  for (const [i, record] of records.entries()) {
    const name = names[i];
    if (!record) continue; // not uploaded through this gateway: the upstream decides
    if (record.userId !== userKey.id) {
      throw new GoogleApiError(
        403,
        `You do not have permission to access the File ${name} or it may not exist.`,
      );
    }
    keys.add(record.keyId);
  }
  if (keys.size > 1) {
    throw new GoogleApiError(
      400,
      "These files were uploaded through different Gemini keys and cannot be used in one request",
    );
  }
  return keys.size ? [...keys][0] : undefined;
}

/** `models/{model}:{method}`: generate, stream, count, embed (and other model methods). */
async function modelCall(
  gw: Gateway,
  c: Context<AppEnv>,
  call: { collection: string; model: string; method: string },
): Promise<Response> {
  const userKey = c.get("userKey");
  const settings = await gw.settings.get();
  const requested = normalizeModel(call.model);
  const alias = call.collection === "models" ? aliasOf(settings.aliases, requested) : undefined;
  const model = alias ? normalizeModel(alias) : requested;
  await assertNativeModelAllowed(gw, { userKey, model });
  let text = await c.req.text();
  let json: unknown = undefined;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    throw new GoogleApiError(400, "Invalid JSON payload received.");
  }
  if (alias && call.method === "batchEmbedContents" && json && typeof json === "object") {
    // Each inner request names the model too, and must match the URL.
    const requests = (json as { requests?: unknown }).requests;
    if (Array.isArray(requests)) {
      for (const r of requests) {
        if (r && typeof r === "object") (r as { model: string }).model = `models/${model}`;
      }
      text = JSON.stringify(json);
    }
  }
  let names: string[] = [];
  if (mayNameFiles(text)) {
    // What was checked is what goes upstream: the parsed body, without escapes or duplicate keys
    // that another parser could read differently.
    names = referencedFiles(gw, json);
    text = canonicalJson(json);
  }
  const pinnedKeyId = await pinnedKeyFor(gw, userKey, names);
  const url = new URL(c.req.url);
  const path = `/v1beta/${call.collection}/${encodeURIComponent(model)}:${call.method}`;
  const query = forwardedQuery(url);
  const signal = gw.clients.signalOf(c.req.raw);
  const failover = await failoverOptions(gw, {
    model,
    signal,
    pinnedKeyId,
    estimatedTokens: estimateRequestTokens(json),
  });
  const startedAt = gw.now();
  const account = (
    attempts: Attempt[],
    outcome: Pick<RequestOutcome, "ok" | "served" | "status" | "errorClass" | "usage">,
  ) =>
    accountRequest(gw, {
      model,
      userId: userKey.id,
      attempts,
      startedAt,
      ...requestTags(gw, c.req.raw),
      ...outcome,
    });
  const fail = async (failure: GatewayFailure, attempts: Attempt[]): Promise<never> => {
    account(attempts, failureOutcome(failure));
    if (pinnedKeyId && failure.kind !== "client" && failure.kind !== "client_closed") {
      throw await pinnedFailure(gw, {
        keyId: pinnedKeyId,
        what: "A file of this request",
        failure,
      });
    }
    throw googleErrorOf(failure);
  };

  const post = { path, query, body: text, headers: forwardedHeaders(c.req.raw) };
  const streaming = call.method === "streamGenerateContent" &&
    url.searchParams.get("alt") === "sse";
  if (!streaming) {
    const result = await runWithFailover(gw.pool, failover, async (key) => {
      const res = await gw.client.post(key.secret, post, signal);
      const body = await res.text();
      if (!res.ok) return { ok: false, status: res.status, body };
      // An empty answer is tried again with another key, as on /v1.
      if (call.method === "generateContent") {
        const parsed = parseChunk(body);
        if (parsed.ok && isEmptyAnswer(parsed.value)) return EMPTY_ANSWER;
      }
      return { ok: true, value: body };
    });
    if (!result.ok) return await fail(result.failure, result.attempts);
    const usage = call.method === "generateContent" || call.method === "streamGenerateContent"
      ? usageOf(result.value)
      : undefined;
    account(result.attempts, { ok: true, status: 200, usage });
    return markWhole(jsonResponse(result.value));
  }

  // A stream: opened once its first event has arrived (failover until then), then passed through
  // byte for byte while its events are read on the side for usage and completeness.
  const upstream = new AbortController();
  const stopUpstream = () => upstream.abort();
  signal.addEventListener("abort", stopUpstream, { once: true });
  const opening = runWithFailover(gw.pool, failover, async (key) => {
    const res = await gw.client.post(key.secret, post, upstream.signal);
    if (!res.ok) return { ok: false, status: res.status, body: await res.text() };
    const passing = new PassThrough(res.body);
    const first = await passing.firstEvent();
    if (first === null) {
      return { ok: false, status: 502, body: "Upstream stream ended with no data" };
    }
    const parsed = parseChunk(first);
    if (!parsed.ok) {
      await res.body.cancel();
      return parsed;
    }
    if (isEmptyStream(parsed.value)) {
      await res.body.cancel();
      return EMPTY_ANSWER;
    }
    return { ok: true, value: passing };
  });
  const failed = (failure: GatewayFailure, attempts: Attempt[]): Promise<never> => {
    signal.removeEventListener("abort", stopUpstream);
    return fail(failure, attempts);
  };
  const scope: PassThroughScope = { signal, stopUpstream, upstream, account };
  const heartbeatMs = settings.streamHeartbeatSeconds * 1000;
  const opened = await gw.slowStarts.race(opening, heartbeatMs);
  if (opened !== SLOW) {
    if (!opened.ok) return await failed(opened.failure, opened.attempts);
    return passThrough(gw, opened.value, opened.attempts, scope);
  }
  // Slow to start: heartbeats (blank lines, which every version of Google's SDK skips) until it
  // does; a failure after that is the stream's error event, in Google's shape.
  const later = opening.then((o) =>
    o.ok ? passThrough(gw, o.value, o.attempts, scope) : failed(o.failure, o.attempts)
  ).catch((err) => {
    const error = err instanceof GoogleApiError ? err : new GoogleApiError(
      502,
      `The upstream stream failed: ${err instanceof Error ? err.message : err}`,
    );
    return new Response(errorEvent(error), { headers: NATIVE_SSE_HEADERS });
  });
  return heartbeatResponse(later, {
    everyMs: heartbeatMs,
    headers: NATIVE_SSE_HEADERS,
    cancel: stopUpstream,
    beat: KEEP_ALIVE_BLANK,
  });
}

/** What a native stream's answer needs from its request. */
interface PassThroughScope {
  /** The client's "went away" signal, and what it stops. */
  signal: AbortSignal;
  stopUpstream: () => void;
  upstream: AbortController;
  account: (
    attempts: Attempt[],
    outcome: Pick<RequestOutcome, "ok" | "served" | "status" | "errorClass" | "usage">,
  ) => void;
}

/**
 * The answer of an opened native stream: one body when the upstream sent it whole already, else
 * the bytes passed through as they come, its events read on the side.
 */
function passThrough(
  gw: Gateway,
  passing: PassThrough,
  attempts: Attempt[],
  scope: PassThroughScope,
): Response {
  const { signal, stopUpstream, upstream, account } = scope;
  const end = (error: string | undefined, errorClass = error ? "stream_error" : undefined) => {
    signal.removeEventListener("abort", stopUpstream);
    // A stream that broke after Gemini's first event still gave the client part of an answer.
    const served = !error || passing.usage !== undefined;
    account(attempts, { ok: !error, served, status: 200, errorClass, usage: passing.usage });
    // A stream that failed after its first byte: 502, as Google answers a broken stream.
    return error ? errorEvent(new GoogleApiError(502, error)) : null;
  };
  if (passing.readAll()) {
    // The whole answer is in hand: one body, no stream to set up and pull.
    const last = end(passing.incomplete);
    const chunks = last ? [...passing.taken(), last] : passing.taken();
    return markWhole(new Response(concatBytes(chunks), { headers: NATIVE_SSE_HEADERS }));
  }
  // One idle timer for the whole stream, not one per chunk.
  const idle = new IdleTimeout(gw.client.deadlines);
  let done = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (done) return;
      const held = passing.taken();
      if (held.length) return held.forEach((chunk) => controller.enqueue(chunk));
      let last: Uint8Array | null = null;
      try {
        const next = await idle.next(passing);
        if (done) return;
        if (next === "timeout") {
          upstream.abort();
          last = end("Upstream sent nothing for too long; the answer is incomplete");
        } else if (next.done) {
          last = end(passing.incomplete);
        } else {
          return controller.enqueue(next.value);
        }
      } catch (err) {
        if (done) return;
        last = end(`Upstream stream broke: ${err instanceof Error ? err.message : err}`);
      }
      done = true;
      idle.close();
      if (last) controller.enqueue(last);
      controller.close();
    },
    cancel() {
      if (done) return;
      done = true;
      idle.close();
      upstream.abort();
      passing.cancel();
      end(undefined, "client_closed");
    },
  });
  return new Response(body, { headers: NATIVE_SSE_HEADERS });
}

/**
 * The usage an answer reports: a generateContent answer's, or the last in a stream answered
 * without `alt=sse` (one JSON array of the chunks).
 */
function usageOf(text: string): UsageMetadata | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  let usage: UsageMetadata | undefined;
  for (const item of Array.isArray(json) ? json : [json]) {
    const parsed = readGenerateContentResponse(item);
    if (parsed.success && parsed.data.usageMetadata) usage = parsed.data.usageMetadata;
  }
  return usage;
}

/** The headers of a native stream's response. */
const NATIVE_SSE_HEADERS = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
};

const encoder = new TextEncoder();

/** A stream's error event, in Google's error shape. */
function errorEvent(error: GoogleApiError): Uint8Array<ArrayBuffer> {
  const payload = { error: { code: error.code, message: error.message, status: error.status } };
  return encoder.encode(`data: ${JSON.stringify(payload)}\r\n\r\n`);
}

/**
 * An upstream SSE body passed through byte for byte (copies, in order), its events read on the
 * side: the usage they report, and whether the answer reached its end.
 */
class PassThrough implements AsyncIterator<Uint8Array> {
  #source: ByteSource;
  #parser = new SseParser();
  #decoder = new TextDecoder();
  /** Bytes read and not yet passed on. */
  #held: Uint8Array[] = [];
  #finished = false;
  usage: UsageMetadata | undefined;

  constructor(source: ByteSource) {
    this.#source = source;
  }

  /** Reads until the first event and answers its payload (null: the body ended without one). */
  async firstEvent(): Promise<string | null> {
    while (true) {
      const bytes = await this.#source.read();
      if (bytes === null) return this.#end()[0] ?? null;
      const copy = bytes.slice();
      this.#held.push(copy);
      const events = this.#parser.push(this.#decoder.decode(copy, { stream: true }));
      this.#inspect(events);
      if (events.length) return events[0];
    }
  }

  /**
   * Whether every byte has been read (when the source can tell without another read); if so, the
   * events of the last bytes are read too.
   */
  readAll(): boolean {
    if (this.#source.ended !== true) return false;
    this.#end();
    return true;
  }

  /** Why the answer is incomplete, once the body has ended; undefined when it is complete. */
  get incomplete(): string | undefined {
    return this.#finished ? undefined : "Upstream ended the stream before the answer was complete";
  }

  /** The bytes read and not yet passed on. */
  taken(): Uint8Array[] {
    const held = this.#held;
    this.#held = [];
    return held;
  }

  /** The next bytes to pass on (a copy), or done at the end of the body. */
  async next(): Promise<IteratorResult<Uint8Array>> {
    const bytes = await this.#source.read();
    if (bytes === null) {
      this.#end();
      return { done: true, value: undefined };
    }
    const copy = bytes.slice();
    this.#inspect(this.#parser.push(this.#decoder.decode(copy, { stream: true })));
    return { done: false, value: copy };
  }

  cancel(): void {
    this.#source.cancel().catch(() => {});
  }

  /** The body ended: the events of what the decoder and the parser still hold. */
  #end(): string[] {
    const events = [...this.#parser.push(this.#decoder.decode()), ...this.#parser.flush()];
    this.#inspect(events);
    return events;
  }

  #inspect(events: string[]): void {
    for (const e of events) {
      const parsed = parseChunk(e);
      if (!parsed.ok) continue;
      if (parsed.value.usageMetadata) this.usage = parsed.value.usageMetadata;
      if ((parsed.value.candidates ?? []).some((c) => c.finishReason)) this.#finished = true;
      if (parsed.value.promptFeedback?.blockReason) this.#finished = true;
    }
  }
}

/** `GET files`: the caller's own files, from KV (the upstream list would show other users'). */
async function listNativeFiles(gw: Gateway, c: Context<AppEnv>): Promise<Response> {
  const size = Math.min(100, Math.max(1, Number(c.req.query("pageSize")) || 10));
  const token = c.req.query("pageToken") || undefined;
  const { files, hasMore } = await listLiveFiles(gw.kv, c.get("userKey").id, {
    after: token,
    limit: size,
    order: "desc",
    now: gw.now(),
  });
  const body: Record<string, unknown> = {};
  if (files.length) body.files = files.map(fileResource);
  if (hasMore && files.length) body.nextPageToken = files.at(-1)!.id;
  return c.json(body);
}

/** `GET` / `DELETE files/{id}` through the key that uploaded the file, for its owner only. */
async function fileOperation(
  gw: Gateway,
  c: Context<AppEnv>,
  method: "GET" | "DELETE",
): Promise<Response> {
  const name = `files/${c.req.param("id")}`;
  const record = await getFileByName(gw.kv, name);
  if (!record || record.userId !== c.get("userKey").id) {
    throw new GoogleApiError(
      403,
      `You do not have permission to access the File ${name} or it may not exist.`,
    );
  }
  const signal = gw.clients.signalOf(c.req.raw);
  let result: FailoverResult<string>;
  if (method === "DELETE") {
    const deleted = await deleteOwnedFile(gw, record, signal);
    if (!deleted) return jsonResponse("{}");
    result = deleted;
  } else {
    result = await upstreamFileCall(gw, { method, keyId: record.keyId, name, signal });
  }
  if (!result.ok) {
    throw await pinnedFailure(gw, {
      keyId: record.keyId,
      what: `The file ${name}`,
      failure: result.failure,
      advice: method === "DELETE"
        ? "it can be deleted once that key works again, and expires 48 hours after its upload"
        : undefined,
    });
  }
  return jsonResponse(result.value);
}

/**
 * The file size an upload start declares (`X-Goog-Upload-Header-Content-Length`): undefined when
 * it declares none (the upstream then takes whatever arrives); a 400 when it is not a byte count.
 */
function declaredFileSize(header: string | null): number | undefined {
  const text = header?.trim();
  if (!text) return undefined;
  if (!/^\d{1,16}$/.test(text)) {
    throw new GoogleApiError(
      400,
      `X-Goog-Upload-Header-Content-Length ${
        JSON.stringify(text.slice(0, 40))
      } is not a byte count`,
    );
  }
  return Number(text);
}

/** Starts a resumable upload on a pool key and hands out the gateway's own session URL. */
async function uploadStart(gw: Gateway, c: Context<AppEnv>): Promise<Response> {
  const req = c.req.raw;
  if ((req.headers.get("x-goog-upload-protocol") ?? "").toLowerCase() !== "resumable") {
    throw new GoogleApiError(
      400,
      "Only the resumable upload protocol is supported by this gateway",
    );
  }
  if ((req.headers.get("x-goog-upload-command") ?? "").trim().toLowerCase() !== "start") {
    throw new GoogleApiError(400, "Upload command must be 'start' for a new upload session.");
  }
  // Only the file's metadata comes with the start (its bytes come with the chunks): bounded.
  const metadata = await readTextUpTo(req, MAX_UPLOAD_METADATA_BYTES);
  if (metadata === null) {
    throw new GoogleApiError(
      413,
      `Upload metadata is larger than ${MAX_UPLOAD_METADATA_BYTES} bytes; the file's bytes go ` +
        "with the upload requests, not with the start",
      { headers: { connection: "close" } },
    );
  }
  let displayName: string | undefined;
  try {
    const parsed = metadata ? JSON.parse(metadata) : {};
    if (typeof parsed?.file?.displayName === "string") displayName = parsed.file.displayName;
  } catch {
    throw new GoogleApiError(400, "Invalid JSON payload received.");
  }
  const declared = declaredFileSize(req.headers.get("x-goog-upload-header-content-length"));
  if (declared !== undefined && declared > MAX_FILE_BYTES) {
    throw new GoogleApiError(400, `The file is larger than ${MAX_FILE_BYTES} bytes`);
  }
  const mimeType = req.headers.get("x-goog-upload-header-content-type")?.trim() ||
    "application/octet-stream";
  if (!isMimeType(mimeType.split(";")[0].trim())) {
    throw new GoogleApiError(
      400,
      `X-Goog-Upload-Header-Content-Type ${
        JSON.stringify(mimeType.slice(0, 100))
      } is not a valid MIME type (type/subtype)`,
    );
  }
  const userKey = c.get("userKey");
  const startedAt = gw.now();
  const failover = await failoverOptions(gw, {
    model: FILES_MODEL,
    signal: gw.clients.signalOf(req),
  });
  const result = await runWithFailover(gw.pool, failover, async (key) => {
    const r = await startUpload(gw.client, key.secret, {
      mimeType,
      size: declared,
      body: metadata || "{}",
      signal: gw.clients.signalOf(req),
    });
    return r.ok ? { ok: true, value: r } : r;
  });
  accountRequest(gw, {
    model: FILES_MODEL,
    userId: userKey.id,
    attempts: result.attempts,
    ok: result.ok,
    status: result.ok ? 200 : result.failure.status,
    startedAt,
    ...requestTags(gw, c.req.raw),
  });
  if (!result.ok) throw googleErrorOf(result.failure);
  const token = randomId("", 24);
  await putUploadSession(gw.kv, token, {
    upstream: result.value.sessionUrl,
    keyId: result.key.id,
    userId: userKey.id,
    displayName,
    createdAt: gw.now(),
  });
  const origin = publicOrigin(req, gw.config);
  const version = c.req.param("version") ?? "v1beta";
  const sessionUrl =
    `${origin}/upload/${version}/files?upload_id=${token}&upload_protocol=resumable`;
  const headers = new Headers({
    "x-goog-upload-url": sessionUrl,
    "x-goog-upload-control-url": sessionUrl,
    "x-goog-upload-status": "active",
    "access-control-expose-headers":
      "x-goog-upload-url, x-goog-upload-status, x-goog-upload-size-received, x-goog-upload-chunk-granularity",
  });
  const granularity = result.value.response.headers.get("x-goog-upload-chunk-granularity");
  if (granularity) headers.set("x-goog-upload-chunk-granularity", granularity);
  return new Response(null, { status: 200, headers });
}

/**
 * Lets go of a request's body that will not be read (any more): not one the upload is reading
 * already (locked), and never with an error of its own.
 */
async function discardBody(req: Request): Promise<void> {
  if (req.body && !req.body.locked) await req.body.cancel().catch(() => {});
}

/** One request on an upload session: bytes (re-chunked as needed), query, finalize or cancel. */
async function uploadChunk(gw: Gateway, c: Context<AppEnv>, token: string): Promise<Response> {
  const req = c.req.raw;
  const session = await getUploadSession(gw.kv, token);
  if (!session) {
    await discardBody(req);
    throw new GoogleApiError(404, "Upload session not found or already finalized.");
  }
  try {
    // The chunks carry no key: the one that started the upload must still be usable, from here.
    const owner = await getUserKey(gw.kv, session.userId);
    if (!owner || !owner.enabled) {
      throw new GoogleApiError(
        403,
        "The gateway key that started this upload was deleted or disabled; upload the file again",
      );
    }
    const refusal = keyRefusal(owner, peerAddress(c.env), gw.now());
    if (refusal) throw refusalToGoogle(refusal);
    await assertFileKeyUsable(gw, { keyId: session.keyId, what: "This upload session" });
  } catch (err) {
    await discardBody(req);
    throw err;
  }
  const command = (req.headers.get("x-goog-upload-command") ?? "").split(",")
    .map((s) => s.trim().toLowerCase()).filter((s) => s);
  const offset = Number(req.headers.get("x-goog-upload-offset") ?? "0");
  if (command.includes("upload") && (!Number.isInteger(offset) || offset < 0)) {
    await discardBody(req);
    throw new GoogleApiError(400, "Invalid X-Goog-Upload-Offset");
  }
  // The session lives on one key: no failover, and the upstream's answer goes back as it is.
  const failover = await failoverOptions(gw, {
    model: FILES_MODEL,
    pinnedKeyId: session.keyId,
    signal: gw.clients.signalOf(req),
  });
  const sent = await runWithFailover(gw.pool, { ...failover, maxAttempts: 1 }, async (k) => {
    if (!command.includes("upload")) {
      await discardBody(req);
      const r = await gw.client.send(k.secret, {
        method: "POST",
        path: "",
        url: session.upstream,
        headers: { "x-goog-upload-command": command.join(", ") },
      }, gw.clients.signalOf(req));
      return { ok: true, value: r };
    }
    try {
      const r = await uploadChunks(
        gw.client,
        req.body ?? new ReadableStream({ start: (ctl) => ctl.close() }),
        {
          apiKey: k.secret,
          sessionUrl: session.upstream,
          startOffset: offset,
          finalize: command.includes("finalize"),
          maxBytes: MAX_FILE_BYTES - offset,
          signal: gw.clients.signalOf(req),
        },
      );
      return { ok: true, value: r.response };
    } catch (err) {
      // Too large is the client's doing: it must not count against the key.
      if (err instanceof UploadTooLargeError) return { ok: true, value: null };
      throw err;
    }
  });
  if (!sent.ok) {
    await discardBody(req);
    throw await pinnedFailure(gw, {
      keyId: session.keyId,
      what: "This upload session",
      failure: sent.failure,
    });
  }
  const res = sent.value;
  if (!res) throw new GoogleApiError(400, `The file is larger than ${MAX_FILE_BYTES} bytes`);
  const headers = new Headers({
    "content-type": res.headers.get("content-type") ?? "application/json",
  });
  for (const name of UPLOAD_RESPONSE_HEADERS) {
    const v = res.headers.get(name);
    if (v) headers.set(name, v);
  }
  const status = res.headers.get("x-goog-upload-status");
  if (res.ok && status === "final") {
    const text = await res.text();
    const file = await finalFile(new Response(text));
    if (file) {
      const now = gw.now();
      await putFile(gw.kv, {
        id: newFileId(now),
        name: file.name,
        uri: file.uri,
        mimeType: file.mimeType ?? "application/octet-stream",
        bytes: Number(file.sizeBytes ?? 0),
        filename: file.displayName ?? session.displayName ?? file.name,
        purpose: "user_data",
        userId: session.userId,
        keyId: session.keyId,
        state: fileStateOf(file.state),
        source: "native",
        createdAt: now,
        expiresAt: expiryOf(file.expirationTime, now),
      }, now);
    }
    await deleteUploadSession(gw.kv, token);
    return new Response(text, { status: res.status, headers });
  }
  if (status === "cancelled") await deleteUploadSession(gw.kv, token);
  return new Response(res.body, { status: res.status, headers });
}
