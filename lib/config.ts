/**
 * Environment -> typed, validated configuration. The only module that reads `Deno.env`.
 */
import * as z from "zod";

const DEFAULT_GEMINI_BASE_URL = "https://generativelanguage.googleapis.com";
/** Where a local run keeps its KV database when KV_PATH is not set. */
export const DEFAULT_LOCAL_KV_PATH = "./data/gateway.kv";

function isDeploy(value: string | undefined): boolean {
  return value === "true" || value === "1";
}

function emptyToUndefined(value: unknown): unknown {
  return typeof value === "string" && value.trim() === "" ? undefined : value;
}

const optionalString = z.preprocess(emptyToUndefined, z.string().optional());

/** Schema of the environment the gateway reads; every field maps to one variable of the contract. */
export const EnvSchema = z.object({
  PORT: z.preprocess(
    emptyToUndefined,
    z.coerce.number().int().min(0).max(65535).default(8000),
  ),
  GEMINI_BASE_URL: z.preprocess(
    emptyToUndefined,
    z.url({ protocol: /^https?$/ }).default(DEFAULT_GEMINI_BASE_URL),
  ),
  KV_PATH: optionalString,
  ADMIN_PASSWORD: z.preprocess(
    emptyToUndefined,
    z.string().min(8, "must be at least 8 characters")
      // HTTP trims header values: such a password could never be sent as a bearer token.
      .refine((v) => v.trim() === v, "must not begin or end with a space")
      .optional(),
  ),
  ENCRYPTION_KEY: z.preprocess(
    emptyToUndefined,
    z.string().min(16, "must be at least 16 characters").optional(),
  ),
  GEMINI_KEYS: optionalString,
  UPSTREAM_TIMEOUT_MS: z.preprocess(
    emptyToUndefined,
    z.coerce.number().int().min(1000).max(3_600_000).default(300_000),
  ),
  UPSTREAM_HTTP: z.preprocess(emptyToUndefined, z.enum(["direct", "fetch"]).default("direct")),
  TRUST_PROXY: z.preprocess(
    emptyToUndefined,
    z.coerce.number().int().min(0, "must be 0 to 5").max(5, "must be 0 to 5").default(0),
  ),
  HTTPS_PROXY: optionalString,
  HTTP_PROXY: optionalString,
  ALL_PROXY: optionalString,
  https_proxy: optionalString,
  http_proxy: optionalString,
  all_proxy: optionalString,
  DENO_DEPLOY: optionalString,
  ENCRYPTION_KEY_FILE: optionalString,
  XDG_CONFIG_HOME: optionalString,
  HOME: optionalString,
});

/** The validated configuration the app is built from. */
export interface Config {
  port: number;
  /** Upstream origin without a trailing slash. */
  geminiBaseUrl: string;
  kvPath: string | undefined;
  adminPassword: string | undefined;
  encryptionKey: string | undefined;
  /** Gemini keys to import at start-up. */
  geminiKeys: string[];
  /** How long to wait for the upstream's response headers (and between stream chunks). */
  upstreamTimeoutMs: number;
  /**
   * How JSON calls reach the upstream: `direct`, the gateway's own HTTP/1.1 client (less CPU and
   * latency per call), or `fetch` (also what every call uses when an HTTP proxy is configured,
   * since only `fetch` honours one).
   */
  upstreamHttp: "direct" | "fetch";
  /** True on Deno Deploy, where no secret may be generated and kept locally. */
  onDeploy: boolean;
  /**
   * Reverse proxies in front of the gateway whose `X-Forwarded-For` and `X-Forwarded-Proto` are
   * believed (0: none, the peer is the client). Self-hosted behind nginx or Caddy: 1.
   */
  trustProxy: number;
  /** Where a locally generated ENCRYPTION_KEY is kept: outside the project and the KV file. */
  encryptionKeyFile: string | undefined;
}

/** Thrown when an environment variable holds a bad value; the message names the variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Splits a list of keys separated by commas, spaces or newlines; drops empties and repeats. */
export function splitKeyList(text: string): string[] {
  const seen = new Set<string>();
  for (const part of text.split(/[\s,;]+/)) {
    const key = part.trim();
    if (key) seen.add(key);
  }
  return [...seen];
}

/** Parses an environment record into a `Config`, throwing `ConfigError` naming the first bad variable. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const result = EnvSchema.safeParse(env);
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = String(issue.path[0] ?? "environment");
    throw new ConfigError(`Invalid environment variable ${name}: ${issue.message}`);
  }
  const e = result.data;
  return {
    port: e.PORT,
    geminiBaseUrl: e.GEMINI_BASE_URL.replace(/\/+$/, ""),
    // Locally a visible file beside the project; on Deno Deploy the platform's database.
    kvPath: e.KV_PATH ?? (isDeploy(e.DENO_DEPLOY) ? undefined : DEFAULT_LOCAL_KV_PATH),
    adminPassword: e.ADMIN_PASSWORD,
    encryptionKey: e.ENCRYPTION_KEY,
    geminiKeys: e.GEMINI_KEYS ? splitKeyList(e.GEMINI_KEYS) : [],
    upstreamTimeoutMs: e.UPSTREAM_TIMEOUT_MS,
    // Only fetch honours an HTTP proxy.
    upstreamHttp:
      [e.HTTPS_PROXY, e.HTTP_PROXY, e.ALL_PROXY, e.https_proxy, e.http_proxy, e.all_proxy]
          .some(Boolean)
        ? "fetch"
        : e.UPSTREAM_HTTP,
    onDeploy: isDeploy(e.DENO_DEPLOY),
    trustProxy: e.TRUST_PROXY,
    encryptionKeyFile: e.ENCRYPTION_KEY_FILE ??
      (e.XDG_CONFIG_HOME || e.HOME
        ? `${e.XDG_CONFIG_HOME ?? `${e.HOME}/.config`}/gemini-gateway/encryption.key`
        : undefined),
  };
}

/** Reads the process environment (the only `Deno.env` access in the code base). */
export function loadConfig(): Config {
  return parseConfig(Deno.env.toObject());
}
