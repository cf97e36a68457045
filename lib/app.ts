/**
 * `createApp(deps)`: builds the Hono app and the per-isolate gateway context from injected
 * dependencies (KV, upstream fetch, clock, config), so tests can run it on `:memory:` KV against a
 * fake upstream with a fake clock.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { AdminAuthenticator } from "./auth/admin_auth.ts";
import { adminAuth, userKeyAuth } from "./auth/middleware.ts";
import { UserKeyAuthenticator } from "./auth/user_auth.ts";
import { Background } from "./background.ts";
import { CachedValue } from "./cache.ts";
import type { Config } from "./config.ts";
import type { AppEnv, Gateway, ModelEntry } from "./gateway.ts";
import { GeminiClient } from "./gemini/client.ts";
import { OpenAiError } from "./openai/errors.ts";
import { KeyPool } from "./pool/key_pool.ts";
import type { Sealer } from "./secrets.ts";
import { readSettings } from "./store/settings.ts";
import { chatCompletionsRoutes } from "../routes/v1/chat_completions.ts";
import { loadModels, modelsRoutes } from "../routes/v1/models.ts";
import { healthRoutes } from "../routes/health.ts";
import { keysRoutes } from "../routes/admin/api/keys.ts";
import { userKeysRoutes } from "../routes/admin/api/user_keys.ts";
import { statsRoutes } from "../routes/admin/api/stats.ts";
import { settingsRoutes } from "../routes/admin/api/settings.ts";

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
}

/** The built app and its context. */
export interface App {
  hono: Hono<AppEnv>;
  gateway: Gateway;
  /** The request handler for `Deno.serve`. */
  fetch: (req: Request) => Response | Promise<Response>;
  /** Waits for background work (usage writes, cache refreshes) to finish. */
  drain(): Promise<void>;
}

/** Builds the gateway app. */
export function createApp(deps: AppDeps): App {
  const now = deps.now ?? Date.now;
  const kv = deps.kv;
  const gateway: Gateway = {
    kv,
    config: deps.config,
    sealer: deps.sealer,
    now,
    pool: new KeyPool({ kv, sealer: deps.sealer, now }),
    client: new GeminiClient({
      baseUrl: deps.config.geminiBaseUrl,
      fetch: deps.fetch ?? fetch,
      timeoutMs: deps.config.upstreamTimeoutMs,
    }),
    settings: new CachedValue({ load: () => readSettings(kv), ttlMs: SETTINGS_TTL_MS, now }),
    models: undefined as unknown as CachedValue<ModelEntry[]>,
    users: new UserKeyAuthenticator({ kv, now }),
    admin: new AdminAuthenticator({
      kv,
      password: deps.config.adminPassword,
      hasStoredHash: deps.hasAdminHash,
    }),
    background: new Background(),
  };
  gateway.models = new CachedValue({ load: () => loadModels(gateway), ttlMs: MODELS_TTL_MS, now });

  const hono = new Hono<AppEnv>();
  hono.use(requestId());
  hono.onError((err, c) => {
    if (err instanceof OpenAiError) return err.toResponse();
    console.error(`Unhandled error on ${c.req.method} ${c.req.path}:`, err);
    return new OpenAiError(500, "The gateway failed to handle this request", {
      code: "internal_error",
    }).toResponse();
  });
  hono.notFound((c) =>
    new OpenAiError(404, `Unknown route: ${c.req.method} ${c.req.path}`, { code: "unknown_route" })
      .toResponse()
  );

  hono.route("/health", healthRoutes(gateway));

  const limit = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: () => {
      throw new OpenAiError(413, `Request body is larger than ${MAX_BODY_BYTES} bytes`, {
        code: "request_too_large",
      });
    },
  });
  hono.use("/v1/*", limit, userKeyAuth(gateway));
  hono.route("/v1/chat/completions", chatCompletionsRoutes(gateway));
  hono.route("/v1/models", modelsRoutes(gateway));

  hono.use("/admin/api/*", bodyLimit({ maxSize: 1024 * 1024 }), adminAuth(gateway));
  hono.route("/admin/api/keys", keysRoutes(gateway));
  hono.route("/admin/api/user-keys", userKeysRoutes(gateway));
  hono.route("/admin/api/stats", statsRoutes(gateway));
  hono.route("/admin/api/settings", settingsRoutes(gateway));

  return {
    hono,
    gateway,
    fetch: (req) => hono.fetch(req),
    async drain() {
      await gateway.background.drain();
      await Promise.all([
        gateway.pool.settle(),
        gateway.settings.settle(),
        gateway.models.settle(),
      ]);
    },
  };
}
