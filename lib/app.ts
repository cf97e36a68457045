/**
 * `createApp(deps)`: builds the Hono app and the per-isolate gateway context from injected
 * dependencies (KV, upstream fetch, clock, config), so tests can run it on `:memory:` KV against a
 * fake upstream with a fake clock.
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { declaredBodyLimit, declaredLength } from "./body_limit.ts";
import { asFrom, forwardedClient } from "./forwarded.ts";
import { addCorsHeaders, isApiPath, preflightResponse } from "./cors.ts";
import { AdminAuthenticator } from "./auth/admin_auth.ts";
import { adminAuth, authenticateUser, userKeyAuth } from "./auth/middleware.ts";
import { hasNativeCredential } from "./auth/native_auth.ts";
import { refusalToOpenAi, underUserLimits } from "./auth/user_limits.ts";
import { peerAddress } from "./auth/sessions.ts";
import { UserKeyAuthenticator } from "./auth/user_auth.ts";
import { UserLimiter } from "./auth/user_limiter.ts";
import { UsageRecorder } from "./accounting.ts";
import { Background } from "./background.ts";
import { CachedValue } from "./cache.ts";
import { ClientWatch } from "./client_watch.ts";
import type { Config } from "./config.ts";
import type { AppEnv, Gateway } from "./gateway.ts";
import { GeminiClient } from "./gemini/client.ts";
import { OpenAiError } from "./openai/errors.ts";
import { KeyPool } from "./pool/key_pool.ts";
import type { Sealer } from "./secrets.ts";
import { requestIds } from "./request_ids.ts";
import { readSettings } from "./store/settings.ts";
import { ToolCallStore } from "./store/tool_calls.ts";
import { MediaFetcher } from "./media/fetch_media.ts";
import { chatCompletion, chatCompletionsRoutes } from "../routes/v1/chat_completions.ts";
import { LIST_MODEL, loadModels, modelsRoutes } from "../routes/v1/models.ts";
import { FILES_MODEL } from "./gemini/files.ts";
import { embeddingsRoutes } from "../routes/v1/embeddings.ts";
import { imagesRoutes } from "../routes/v1/images.ts";
import { completionsRoutes } from "../routes/v1/completions.ts";
import { audioRoutes } from "../routes/v1/audio.ts";
import { filesRoutes } from "../routes/v1/files.ts";
import { responsesRoutes } from "../routes/v1/responses.ts";
import { messagesRoutes } from "../routes/v1/messages.ts";
import { anthropicErrorResponse, isAnthropicRequest } from "./anthropic/errors.ts";
import { isGeminiNativeRequest, nativeRoutes } from "../routes/v1beta/native.ts";
import { aliasesRoutes } from "../routes/admin/api/aliases.ts";
import { healthRoutes } from "../routes/health.ts";
import { keysRoutes } from "../routes/admin/api/keys.ts";
import { userKeysRoutes } from "../routes/admin/api/user_keys.ts";
import { statsRoutes } from "../routes/admin/api/stats.ts";
import { settingsRoutes } from "../routes/admin/api/settings.ts";
import { modelsAdminRoutes } from "../routes/admin/api/models.ts";
import { limitsRoutes } from "../routes/admin/api/limits.ts";
import { projectsRoutes } from "../routes/admin/api/projects.ts";
import { removedKeysRoutes } from "../routes/admin/api/removed_keys.ts";
import { requestLogRoutes } from "../routes/admin/api/request_log.ts";
import { jobsRoutes } from "../routes/admin/api/jobs.ts";
import { auditLogRoutes } from "../routes/admin/api/audit_log.ts";
import { alertsRoutes } from "../routes/admin/api/alerts.ts";
import { auditAdminApi } from "./auth/audit.ts";
import { staticRoutes } from "./ui/assets.ts";
import { urlPath } from "./url_path.ts";
import { SlowStarts } from "./heartbeat.ts";

/** Largest JSON body accepted on `/v1` (inline media included). */
export const MAX_BODY_BYTES = 40 * 1024 * 1024;
/** How long the model list is cached. */
export const MODELS_TTL_MS = 60_000;
/** How long settings are cached per isolate. */
export const SETTINGS_TTL_MS = 5_000;

/** What `createApp` is built from. */
export interface AppDeps {
  kv: Deno.Kv;
  config: Config;
  sealer: Sealer;
  /** Whether a generated admin password hash is stored. */
  hasAdminHash: boolean;
  /** The upstream fetch; tests may wrap it. */
  fetch?: typeof fetch;
  /** The clock, in epoch milliseconds. */
  now?: () => number;
  /** Round-robin positions leased at start-up (see `KeyPoolOptions.firstLease`). */
  firstLease?: Promise<number>;
}

/** The built app and its context. */
export interface App {
  hono: Hono<AppEnv>;
  gateway: Gateway;
  /** The request handler for `Deno.serve`. */
  fetch: (req: Request, info?: Deno.ServeHandlerInfo) => Response | Promise<Response>;
  /**
   * Starts loading, without waiting, what an isolate's first request needs (settings, the key
   * pool's view, recent usage); called once at start-up, which also leases round-robin positions.
   */
  warm(): void;
  /** Waits for background work (usage writes, cache refreshes) to finish. */
  drain(): Promise<void>;
  /** Drains, then gives back unused user-limit leases (on SIGINT/SIGTERM; the app is done). */
  shutdown(): Promise<void>;
}

function isFileUpload(req: Request): boolean {
  return req.method === "POST" && urlPath(req.url).replace(/\/+$/, "") === "/v1/files";
}

/**
 * The first middleware of every request: its `X-Request-Id`, and once the handler has answered,
 * its client is no longer watched (a streamed body notices its client going away through its own
 * `cancel`). `c.req.raw` is read after the handler, as the routes saw it.
 */
function requestScope(
  clients: ClientWatch,
  idOf: (req: Request) => string,
): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const id = idOf(c.req.raw);
    try {
      await next();
    } finally {
      clients.release(c.req.raw);
    }
    // Set on the response itself: a handler's own Response (a stream, an error) would not get
    // headers prepared on the context. (Hono copies a response set on the context: only a copy
    // made here is set.)
    const res = finalResponse(c.res, id, isApiPath(urlPath(c.req.url)));
    if (res !== c.res) c.res = res;
  };
}

/**
 * `res` with its `X-Request-Id` and, for an API surface, its CORS headers. Headers of a response
 * passed through from `fetch` are immutable: such a response is copied first.
 */
function finalResponse(res: Response, id: string, api: boolean): Response {
  let out = res;
  try {
    out.headers.set("x-request-id", id);
  } catch {
    out = new Response(res.body, res);
    out.headers.set("x-request-id", id);
  }
  if (api) addCorsHeaders(out.headers);
  return out;
}

/** Responses whose request id and CORS headers are set already (`finalResponse`). */
const finished = new WeakSet<Response>();

/** The answer to an error no route turned into a response: its own, or a logged 500. */
function errorResponse(err: unknown, req: Request): Response {
  const error = err instanceof OpenAiError ? err : unexpected(err, req);
  // Anthropic's clients (Claude Code) read errors in Anthropic's shape.
  return isAnthropicRequest(req) ? anthropicErrorResponse(error) : error.toResponse();
}

/** The 500 of an error no route expected (logged, unless the client went away). */
function unexpected(err: unknown, req: Request): OpenAiError {
  // A client that went away comes back as its own abort reason: nothing failed here, and nobody
  // is left to answer.
  const clientLeft = req.signal.aborted && err === req.signal.reason;
  if (!clientLeft) console.error(`Unhandled error on ${req.method} ${urlPath(req.url)}:`, err);
  return new OpenAiError(500, "The gateway failed to handle this request", {
    code: "internal_error",
  });
}

/**
 * Whether `req` is a chat completion the app dispatches directly: `POST /v1/chat/completions` with
 * a declared body length, not shaped like a Gemini-native call. Others (chunked bodies, another
 * spelling of the path) take the Hono route, which runs the same steps.
 */
function isDirectChat(req: Request): boolean {
  // On this path only a key sent the Gemini way makes a request native (`isGeminiNativeRequest`).
  return req.method === "POST" && urlPath(req.url) === "/v1/chat/completions" &&
    declaredLength(req) !== null && !hasNativeCredential(req);
}

/** Largest body of an admin API request (a batch of keys is far smaller). */
const ADMIN_BODY_BYTES = 1024 * 1024;

/** Refuses a body larger than `maxBytes` with a 413 in OpenAI's shape. */
function tooLarge(maxBytes: number): never {
  throw new OpenAiError(413, `Request body is larger than ${maxBytes} bytes`, {
    code: "request_too_large",
    // The rest of the body is not read: the connection ends with the answer.
    headers: { connection: "close" },
  });
}

/** Builds the gateway app. */
export function createApp(deps: AppDeps): App {
  const now = deps.now ?? Date.now;
  const kv = deps.kv;
  // Parts that depend on each other are built in order, so none is patched in afterwards.
  const background = new Background();
  const pool = new KeyPool({ kv, sealer: deps.sealer, now, firstLease: deps.firstLease });
  const settings = new CachedValue({ load: () => readSettings(kv), ttlMs: SETTINGS_TTL_MS, now });
  let modelsTriedAt = -Infinity;
  const usage = new UsageRecorder({
    kv,
    settings: () => settings.peek(),
    settle: (attempts, options) => pool.settleUsage(attempts, options),
    maskedOf: (keyId) => pool.maskedOf(keyId),
    knownModel: (model) => {
      if (model === FILES_MODEL || model === LIST_MODEL) return true;
      const models = gateway.models.current();
      if (models) return models.some((m) => m.id === model);
      // Not loaded on this isolate yet: loaded now for the next ones (at most once a minute, so a
      // list that fails to load is not asked for again by every refused request).
      if (now() - modelsTriedAt >= 60_000) {
        modelsTriedAt = now();
        gateway.models.get().catch(() => {});
      }
      return false;
    },
  });
  const requestIdsByRequest = new WeakMap<Request, string>();
  const gateway: Gateway = {
    kv,
    config: deps.config,
    sealer: deps.sealer,
    now,
    pool,
    client: new GeminiClient({
      baseUrl: deps.config.geminiBaseUrl,
      fetch: deps.fetch ?? fetch,
      timeoutMs: deps.config.upstreamTimeoutMs,
      // A fetch given by a test wraps every upstream call: then every call goes through it.
      direct: !deps.fetch && deps.config.upstreamHttp === "direct",
      // A key's outbound proxy, as the pool last loaded it (the pool is made below).
      proxyOf: (apiKey) => gateway.pool.proxyOf(apiKey),
    }),
    settings,
    // Loaded lazily, through the gateway itself (the model list is fetched across the pool).
    models: new CachedValue({ load: () => loadModels(gateway), ttlMs: MODELS_TTL_MS, now }),
    users: new UserKeyAuthenticator({ kv, now }),
    limiter: new UserLimiter({
      kv,
      now,
      budgetSince: (id, versionstamp) => usage.budgetSince(id, versionstamp),
    }),
    usage,
    admin: new AdminAuthenticator({
      kv,
      password: deps.config.adminPassword,
      hasStoredHash: deps.hasAdminHash,
    }),
    background,
    clients: new ClientWatch(),
    requestIdOf: (req) => requestIdsByRequest.get(req) ?? null,
    slowStarts: new SlowStarts(),
    toolCalls: new ToolCallStore({ kv, background }),
    media: new MediaFetcher(),
  };

  const idOf = requestIds(requestIdsByRequest);
  const hono = new Hono<AppEnv>();
  hono.use(requestScope(gateway.clients, idOf));
  hono.onError((err, c) => errorResponse(err, c.req.raw));
  const unknownRoute = (c: Context<AppEnv>) =>
    errorResponse(
      new OpenAiError(404, `Unknown route: ${c.req.method} ${c.req.path}`, {
        code: "unknown_route",
      }),
      c.req.raw,
    );
  hono.notFound(unknownRoute);

  hono.route("/health", healthRoutes(gateway));

  const limit = declaredBodyLimit<AppEnv>({
    maxSize: MAX_BODY_BYTES,
    onError: () => tooLarge(MAX_BODY_BYTES),
  });
  // Gemini-native requests (Google's SDKs) under /v1beta, /upload and, when they look native, /v1.
  const native = nativeRoutes(gateway);
  // One middleware layer for /v1 (each layer costs on every request): native-looking requests go
  // to the native routes; file uploads stream with their own limit (2 GB per file), so they skip
  // the JSON body limit; then the user key and its limits.
  const userAuth = userKeyAuth(gateway);
  hono.use("/v1/*", async (c, next) => {
    if (isGeminiNativeRequest(c.req.raw)) return await native.fetch(c.req.raw, c.env);
    if (isFileUpload(c.req.raw)) return await userAuth(c, next);
    // The user-key middleware answers by throwing or through `next`, never with a Response.
    return await limit(c, () => userAuth(c, next) as Promise<void>);
  });
  hono.all("/v1beta/*", (c) => native.fetch(c.req.raw, c.env));
  hono.all("/upload/*", (c) => native.fetch(c.req.raw, c.env));
  hono.route("/v1/chat/completions", chatCompletionsRoutes(gateway));
  hono.route("/v1/completions", completionsRoutes(gateway));
  hono.route("/v1/models", modelsRoutes(gateway));
  hono.route("/v1/embeddings", embeddingsRoutes(gateway));
  hono.route("/v1/images", imagesRoutes(gateway));
  hono.route("/v1/audio", audioRoutes(gateway));
  hono.route("/v1/files", filesRoutes(gateway));
  hono.route("/v1/responses", responsesRoutes(gateway));
  hono.route("/v1/messages", messagesRoutes(gateway));

  hono.use(
    "/admin/api/*",
    // Admin answers (a new user key's secret among them) are never kept by a cache.
    async (c, next) => {
      await next();
      if (!c.res.headers.has("cache-control")) c.res.headers.set("cache-control", "no-store");
    },
    bodyLimit({ maxSize: ADMIN_BODY_BYTES, onError: () => tooLarge(ADMIN_BODY_BYTES) }),
    auditAdminApi(gateway),
    adminAuth(gateway),
  );
  hono.route("/admin/api/keys", keysRoutes(gateway));
  hono.route("/admin/api/user-keys", userKeysRoutes(gateway));
  hono.route("/admin/api/stats", statsRoutes(gateway));
  hono.route("/admin/api/settings", settingsRoutes(gateway));
  hono.route("/admin/api/aliases", aliasesRoutes(gateway));
  hono.route("/admin/api/models", modelsAdminRoutes(gateway));
  hono.route("/admin/api/limits", limitsRoutes(gateway));
  hono.route("/admin/api/projects", projectsRoutes(gateway));
  hono.route("/admin/api/removed-keys", removedKeysRoutes(gateway));
  hono.route("/admin/api/request-log", requestLogRoutes(gateway));
  hono.route("/admin/api/jobs", jobsRoutes(gateway));
  hono.route("/admin/api/audit-log", auditLogRoutes(gateway));
  hono.route("/admin/api/alerts", alertsRoutes(gateway));

  // The admin web UI: pages under /admin (they read /admin/api in-process), files under /static.
  hono.route("/static", staticRoutes());
  // The admin pages (and their login) are loaded with their first request: an isolate that only
  // serves the API never evaluates them, so it starts faster and its heap, which every full GC
  // walks, is about 4 MB (of some 9 MB of modules) smaller.
  let adminPages: Promise<Hono<AppEnv>> | null = null;
  const pages = () =>
    adminPages ??= import("../routes/admin/pages/mod.tsx").then(({ adminPageRoutes }) => {
      const app = new Hono<AppEnv>();
      app.onError((err, c) => errorResponse(err, c.req.raw));
      app.notFound(unknownRoute);
      return app.route("/admin", adminPageRoutes(gateway, { api: (req) => hono.fetch(req) }));
    }).catch((err) => {
      adminPages = null;
      throw err;
    });
  hono.all("/admin", async (c) => (await pages()).fetch(c.req.raw, c.env));
  hono.all("/admin/*", async (c) => (await pages()).fetch(c.req.raw, c.env));
  hono.get("/", (c) => c.redirect("/admin", 302));

  /**
   * The hottest route without Hono's context and middleware chain (about 10 µs of CPU per request
   * less, measured with 64 clients), through the same steps as the Hono route: request id, body
   * limit, user key, its limits, the handler, errors, and the end of the client watch.
   */
  const directChat = async (req: Request, info?: Deno.ServeHandlerInfo): Promise<Response> => {
    const id = idOf(req);
    // A stream's response gets its headers while the upstream works on the request.
    const finish = (res: Response) => {
      const out = finalResponse(res, id, true);
      finished.add(out);
      return out;
    };
    let res: Response;
    try {
      if ((declaredLength(req) ?? 0) > MAX_BODY_BYTES) tooLarge(MAX_BODY_BYTES);
      const userKey = await authenticateUser(gateway, req);
      res = await underUserLimits(
        gateway,
        userKey,
        { refuse: refusalToOpenAi, peer: peerAddress(info) },
        () => chatCompletion(gateway, req, userKey, finish),
      );
    } catch (err) {
      res = errorResponse(err, req);
    } finally {
      gateway.clients.release(req);
    }
    return finished.has(res) ? res : finalResponse(res, id, true);
  };

  const trustProxy = deps.config.trustProxy;
  return {
    hono,
    gateway,
    // The connection info becomes `c.env`, where the admin login lockout finds the client address
    // (behind trusted proxies, the address they forward).
    fetch: (req, info) => {
      if (trustProxy && info) {
        const client = forwardedClient(req.headers, trustProxy);
        if (client) info = asFrom(info, client);
      }
      if (isDirectChat(req)) return directChat(req, info);
      if (req.method === "OPTIONS" && isApiPath(urlPath(req.url))) {
        const res = preflightResponse(req);
        res.headers.set("x-request-id", idOf(req));
        return res;
      }
      return hono.fetch(req, info);
    },
    warm() {
      gateway.settings.get().catch((err) =>
        console.error("Loading the settings failed:", err instanceof Error ? err.message : err)
      );
      gateway.pool.warm();
    },
    async drain() {
      await gateway.background.drain();
      // Usage batched in memory goes to KV.
      await gateway.usage.drain();
      await Promise.all([
        gateway.limiter.drain(),
        gateway.users.settle(),
        gateway.pool.settle(),
        gateway.settings.settle(),
        gateway.models.settle(),
      ]);
      // Their timers run out by themselves; an idle app holds none.
      gateway.client.deadlines.stop();
      gateway.slowStarts.stop();
      gateway.client.closeIdle();
      gateway.clients.stop();
    },
    async shutdown() {
      await this.drain();
      await gateway.limiter.close();
    },
  };
}
