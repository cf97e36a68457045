/**
 * Classifies upstream failures into what the pool must do about them (pure; see the failure table
 * in the design). Never by HTTP status alone: an invalid key arrives as a 400.
 */
import * as z from "zod";

/** Google's error body: `{"error": {"code", "message", "status", "details"}}`. */
export const GoogleErrorSchema = z.object({
  error: z.object({
    code: z.number().optional(),
    message: z.string().optional(),
    status: z.string().optional(),
    details: z.array(z.record(z.string(), z.unknown())).optional(),
  }),
});

/** A parsed Google error body. */
export type GoogleError = z.infer<typeof GoogleErrorSchema>;

/** What went wrong upstream, and so what to do. */
export type FailureClass =
  /** The key is bad (invalid, expired, leaked, suspended, disabled): mark it invalid, try another. */
  | { kind: "key_invalid"; reason: string }
  /** The key's quota is exhausted: rest it until `retryAfterMs` has passed, try another. */
  | { kind: "rate_limited"; retryAfterMs: number | null; perDay: boolean; reason: string }
  /** Upstream trouble (5xx, network, timeout): count an error, try another key. */
  | { kind: "upstream"; reason: string }
  /**
   * The key cannot be served from where it calls (its free tier is not offered in that country, or
   * its proxy's place is refused): rest it, try another key; not an upstream error.
   */
  | { kind: "unserved"; reason: string; deployment?: DeploymentProblem }
  /** The request itself is bad: answer the client at once, blame no key. */
  | { kind: "client"; reason: string; deployment?: DeploymentProblem };

/** Parses a protobuf Duration string such as `"15s"` or `"2.5s"` into milliseconds. */
export function parseDuration(text: unknown): number | null {
  if (typeof text !== "string") return null;
  const m = /^([0-9]+(?:\.[0-9]+)?)s$/.exec(text.trim());
  return m ? Math.round(Number(m[1]) * 1000) : null;
}

/** Parses an upstream error body, tolerating non-JSON text and Google's array-wrapped form. */
export function parseGoogleError(text: string): GoogleError | null {
  try {
    let value: unknown = JSON.parse(text);
    if (Array.isArray(value)) value = value[0];
    const parsed = GoogleErrorSchema.safeParse(value);
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

function detailsOf(err: GoogleError | null, type: string): Record<string, unknown>[] {
  return (err?.error.details ?? []).filter((d) => String(d["@type"] ?? "").endsWith(type));
}

const KEY_403_PATTERNS = [
  /reported as leaked/i,
  /has been suspended/i,
  /project has been denied access/i,
  /API key not valid/i,
  /API key expired/i,
  /has not been used in project .* or it is disabled/i,
];

/** `ErrorInfo` reasons of a 403 that condemn the key (disabled API, restricted or suspended key). */
const KEY_403_REASONS = new Set([
  "SERVICE_DISABLED",
  "CONSUMER_SUSPENDED",
  "API_KEY_HTTP_REFERRER_BLOCKED",
  "API_KEY_IP_ADDRESS_BLOCKED",
  "API_KEY_ANDROID_APP_BLOCKED",
  "API_KEY_IOS_APP_BLOCKED",
]);

/** A 403 about a resource the request names, not about the key. */
const RESOURCE_403 = /permission to access the File|CachedContent|or it may not exist/i;

/** Google refuses this deployment's location: every key (or every free-tier key) fails alike. */
export interface DeploymentProblem {
  /** `location`: no key can serve from here; `free_tier_location`: free-tier keys cannot. */
  kind: "location" | "free_tier_location";
  message: string;
}

const LOCATION_REFUSED = /User location is not supported/i;
const FREE_TIER_COUNTRY = /free tier is not available in your country/i;

/** The deployment problem a 400's message names, or null. */
function problemOf(message: string): DeploymentProblem | null {
  if (LOCATION_REFUSED.test(message)) return { kind: "location", message };
  if (FREE_TIER_COUNTRY.test(message)) return { kind: "free_tier_location", message };
  return null;
}

/** The deployment problem an upstream failure reveals, or null (pure). */
export function deploymentProblem(status: number, bodyText: string): DeploymentProblem | null {
  if (status !== 400) return null;
  return problemOf(parseGoogleError(bodyText)?.error.message ?? bodyText.slice(0, 300));
}

/**
 * Classifies an HTTP error answer from Gemini. `proxied`: the key called through its own proxy,
 * so a refusal of its location is the proxy's place, not the deployment's (no `deployment` then).
 */
export function classifyHttpFailure(
  status: number,
  bodyText: string,
  options: { proxied?: boolean } = {},
): FailureClass {
  const err = parseGoogleError(bodyText);
  const message = err?.error.message ?? (bodyText.slice(0, 200) || `HTTP ${status}`);
  const reasons = detailsOf(err, "google.rpc.ErrorInfo").map((d) => String(d.reason ?? ""));

  if (reasons.includes("API_KEY_INVALID") || reasons.includes("API_KEY_SERVICE_BLOCKED")) {
    return { kind: "key_invalid", reason: message };
  }
  if (status === 401) return { kind: "key_invalid", reason: message };
  if (status === 403) {
    // Something the request names (a file, a cache) that this key's project cannot see: the
    // request is at fault (files are routed to their own key before this).
    if (RESOURCE_403.test(message)) return { kind: "client", reason: message };
    if (
      reasons.some((r) => KEY_403_REASONS.has(r)) || KEY_403_PATTERNS.some((p) => p.test(message))
    ) {
      return { kind: "key_invalid", reason: message };
    }
    // Another refusal (no permission for this model or feature, billing needed): another key may
    // serve, and this one is not condemned for it. Marking it invalid would let any client that
    // can provoke such a 403 take keys out of the pool, up to one per attempt.
    if (/permission|billing|consumer/i.test(message)) return { kind: "upstream", reason: message };
    return { kind: "client", reason: message };
  }
  const problem = status === 400 ? problemOf(message) : null;
  const deployment = options.proxied ? undefined : problem ?? undefined;
  if (problem?.kind === "location") {
    // Every key calling from here is refused alike: answer at once (no key is burned), unless
    // the key called from its proxy's place, which another key may not share.
    if (options.proxied) {
      return { kind: "unserved", reason: `${message} (through the key's proxy)` };
    }
    const hint = " (Gemini does not serve the region this gateway runs in; its admin dashboard " +
      "says what to do)";
    return { kind: "client", reason: message + hint, deployment };
  }
  // A free-tier key called from a country without a free tier: its place, not the key, is at
  // fault (the key works from elsewhere), and a billed key may serve. Try another key.
  if (problem?.kind === "free_tier_location") {
    return { kind: "unserved", reason: message, deployment };
  }
  if (status === 400 && err?.error.status === "FAILED_PRECONDITION" && /billing/i.test(message)) {
    return { kind: "key_invalid", reason: message };
  }
  if (status === 429) {
    const retry = detailsOf(err, "google.rpc.RetryInfo")[0];
    const quotaIds = detailsOf(err, "google.rpc.QuotaFailure").flatMap((d) =>
      Array.isArray(d.violations)
        ? d.violations.map((v) => String((v as Record<string, unknown>)?.quotaId ?? ""))
        : []
    );
    return {
      kind: "rate_limited",
      retryAfterMs: parseDuration(retry?.retryDelay),
      perDay: quotaIds.length > 0 && quotaIds.every((id) => /PerDay/i.test(id)),
      reason: message,
    };
  }
  if (status === 408 || status >= 500) return { kind: "upstream", reason: message };
  // A redirect is never followed (the key would go with it): the upstream misbehaves.
  if (status >= 300 && status < 400) {
    return { kind: "upstream", reason: `Upstream answered with a redirect (HTTP ${status})` };
  }
  return { kind: "client", reason: message };
}

const STATUS_NAMES: Record<number, string> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  409: "ALREADY_EXISTS",
  413: "INVALID_ARGUMENT",
  429: "RESOURCE_EXHAUSTED",
  499: "CANCELLED",
  500: "INTERNAL",
  501: "UNIMPLEMENTED",
  502: "UNAVAILABLE",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED",
};

/** The canonical Google status name of an HTTP status. */
export function googleStatusName(code: number): string {
  return STATUS_NAMES[code] ?? (code >= 500 ? "INTERNAL" : "INVALID_ARGUMENT");
}

/** An error the Gemini-native routes answer in Google's shape: `{"error": {code, message, status}}`. */
export class GoogleApiError extends Error {
  readonly code: number;
  readonly status: string;
  readonly headers: Record<string, string>;

  constructor(code: number, message: string, options: { headers?: Record<string, string> } = {}) {
    super(message);
    this.name = "GoogleApiError";
    this.code = code;
    this.status = googleStatusName(code);
    this.headers = options.headers ?? {};
  }

  /** A `Response` carrying this error. */
  toResponse(): Response {
    return Response.json(
      { error: { code: this.code, message: this.message, status: this.status } },
      { status: this.code, headers: this.headers },
    );
  }
}

/** The Google-shaped error of a failure that may carry a retry hint (pool, file or limit refusal). */
export function googleErrorOf(
  failure: { status: number; message: string; retryAfterSeconds?: number },
): GoogleApiError {
  const headers: Record<string, string> = {};
  if (failure.retryAfterSeconds !== undefined) {
    headers["retry-after"] = String(failure.retryAfterSeconds);
  }
  return new GoogleApiError(failure.status, failure.message, { headers });
}
