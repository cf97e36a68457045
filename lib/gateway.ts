/**
 * The per-isolate gateway context that routes use: KV, config, the key pool, the upstream client,
 * cached settings and models, authenticators, background work and the clock.
 */
import type { AdminAuthenticator } from "./auth/admin_auth.ts";
import type { UserKeyAuthenticator } from "./auth/user_auth.ts";
import type { UserLimiter } from "./auth/user_limiter.ts";
import type { UsageRecorder } from "./accounting.ts";
import type { Background } from "./background.ts";
import type { CachedValue } from "./cache.ts";
import type { ClientWatch } from "./client_watch.ts";
import type { Config } from "./config.ts";
import type { GeminiClient } from "./gemini/client.ts";
import type { MediaFetcher } from "./media/fetch_media.ts";
import type { KeyPool } from "./pool/key_pool.ts";
import type { Sealer } from "./secrets.ts";
import type { Settings } from "./store/settings.ts";
import type { ToolCallStore } from "./store/tool_calls.ts";
import type { UserKeyRecord } from "./store/user_keys.ts";
import type { SlowStarts } from "./heartbeat.ts";

/** A model as `/v1/models` lists it. */
export interface ModelEntry {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
  display_name?: string;
}

/** Everything a route needs; built once per isolate by `createApp`. */
export interface Gateway {
  kv: Deno.Kv;
  config: Config;
  sealer: Sealer;
  pool: KeyPool;
  client: GeminiClient;
  settings: CachedValue<Settings>;
  models: CachedValue<ModelEntry[]>;
  users: UserKeyAuthenticator;
  /** User-key limits (RPM, concurrency, budgets) from leases and counters held in memory. */
  limiter: UserLimiter;
  /** Completed requests' usage, written to KV in batches (see `lib/accounting.ts`). */
  usage: UsageRecorder;
  admin: AdminAuthenticator;
  background: Background;
  /** "The client went away" signals of requests (use `signalOf(c.req.raw)`, not `request.signal`). */
  clients: ClientWatch;
  /** A request's `X-Request-Id` (null for a request the app did not receive itself). */
  requestIdOf: (req: Request) => string | null;
  now: () => number;
  /** Stream openings raced against the heartbeat delay (`lib/heartbeat.ts`). */
  slowStarts: SlowStarts;
  /** Thought signatures behind tool-call ids (memory + KV). */
  toolCalls: ToolCallStore;
  /** Server-side fetching of http(s) media URLs, SSRF-safe; tests may replace it. */
  media: MediaFetcher;
}

/** Hono environment of the app: what middleware stores on the context. */
export interface AppEnv {
  Variables: {
    userKey: UserKeyRecord;
    /** Who an admin API request authenticated as (see `AuditEntry.actor`). */
    adminActor: string;
  };
}
