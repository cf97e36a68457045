/**
 * Runs one upstream operation across keys: pick a key, try it, classify a failure, update the
 * key's state, try the next key, within bounds. The caller decides what success means (a stream is
 * only "ok" once its first event has been read, so it fails over before any byte reaches the client).
 * Generic over the API shape: the OpenAI and the Gemini-native routes both use it.
 */
import { UpstreamRequestError, UpstreamTimeoutError } from "../gemini/client.ts";
import { classifyHttpFailure, type FailureClass } from "../gemini/errors.ts";
import type { Attempt, ErrorCause } from "../store/usage.ts";
import type { KeyPool, NoKey, PoolKey } from "./key_pool.ts";

/** Upstream attempts that fail with 5xx, a network error or a timeout, at most, per request. */
export const MAX_UPSTREAM_ERROR_ATTEMPTS = 3;

/** The result of one attempt as the caller saw it. */
export type AttemptResult<T> =
  | { ok: true; value: T }
  | { ok: false; status: number; body: string };

/** Why a request could not be served, independent of the API shape it is reported in. */
export interface GatewayFailure {
  status: number;
  message: string;
  /**
   * `client`: the request is bad; `no_key`: nothing can serve; `upstream`: Gemini kept failing;
   * `client_closed`: the caller went away (or gave up) during an attempt, which no key is blamed for.
   */
  kind: "client" | "no_key" | "upstream" | "client_closed";
  /** Seconds after which a retry may succeed. */
  retryAfterSeconds?: number;
  /** False when retrying soon cannot help (no usable keys at all). */
  shouldRetry?: boolean;
}

/** The outcome of `runWithFailover`. */
export type FailoverResult<T> =
  | { ok: true; value: T; key: PoolKey; attempts: Attempt[] }
  | { ok: false; failure: GatewayFailure; attempts: Attempt[] };

/** Options of `runWithFailover`. */
export interface FailoverOptions {
  model: string;
  /** Attempts across keys, at most. */
  maxAttempts: number;
  /** Rest after a 429 that names no delay, in ms. */
  defaultCooldownMs: number;
  now: () => number;
  /** The client's abort signal: once it fires, nothing is retried. */
  signal?: AbortSignal;
  /**
   * Estimated input tokens of the request (see `estimateRequestTokens`): keys whose
   * tokens-per-minute window cannot take them are skipped before the call.
   */
  estimatedTokens?: number;
  /** Only this key may serve (a request that uses a file uploaded with it). */
  pinnedKeyId?: string;
}

/**
 * Whether `err` is an abort of the call itself. A timeout is not one: the client turns it into an
 * `UpstreamTimeoutError`, which is the key's (it made the client wait).
 */
function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Replaces a key's secret (and anything shaped like a Google API key) in upstream text. */
export function redactSecret(text: string, key: { secret: string; masked: string }): string {
  let out = key.secret ? text.split(key.secret).join(key.masked) : text;
  // Both formats: `AIza…` keys and the `AQ.…` authorization keys Google issues since 2026.
  out = out.replace(
    /AIza[0-9A-Za-z_\-]{20,}|AQ\.[0-9A-Za-z_\-]{20,}/g,
    (m) => `${m.slice(0, 4)}…${m.slice(-4)}`,
  );
  return out;
}

/** The body of an attempt that got an empty answer (counted as upstream trouble, see `generate.ts`). */
export const EMPTY_ANSWER_BODY = "Gemini sent an empty answer";

/** The cause a failed attempt is counted under in the statistics. */
function causeOf(
  failure: FailureClass,
  result: { status: number; body: string } | null,
  timedOut: boolean,
): ErrorCause {
  if (failure.kind === "key_invalid") return "invalid_key";
  if (failure.kind === "unserved") return "location";
  if (failure.kind === "rate_limited") return failure.perDay ? "daily_quota" : "rate_limited";
  if (!result) return timedOut ? "timeout" : "network";
  if (result.body === EMPTY_ANSWER_BODY) return "empty_answer";
  return result.status >= 500 ? "server_error" : "refused";
}

/** Failed bookkeeping writes are logged at most this often (per isolate); the rest are counted. */
const BOOKKEEPING_LOG_MS = 60_000;
let bookkeepingLoggedAt = -Infinity;
let bookkeepingUnlogged = 0;

/**
 * Awaits one of the pool's bookkeeping writes (invalid mark, cooldown, error streak, cleared
 * streak) best effort: a KV conflict storm (`ConflictError`) or a write KV refuses must not turn a
 * failover into a 500. The failover decision does not depend on the write: the key is excluded
 * from this request either way, and the next failure of the key writes again.
 */
async function bookkeep(what: string, write: Promise<void>): Promise<void> {
  try {
    await write;
  } catch (err) {
    const now = performance.now();
    if (now - bookkeepingLoggedAt < BOOKKEEPING_LOG_MS) {
      bookkeepingUnlogged++;
      return;
    }
    const more = bookkeepingUnlogged ? ` (and ${bookkeepingUnlogged} more since the last one)` : "";
    bookkeepingLoggedAt = now;
    bookkeepingUnlogged = 0;
    console.error(`Recording ${what} failed; the request carries on${more}:`, describe(err));
  }
}

/** The failure of a request whose caller went away (499, nginx's and Google's "cancelled"). */
const CLIENT_CLOSED: GatewayFailure = {
  status: 499,
  kind: "client_closed",
  message: "The client closed the request before the answer was ready",
};

/**
 * How a failed request is accounted: a request its client abandoned is not a failure of the
 * gateway (it counts as served, with no tokens, like a stream the client stopped reading).
 */
export function failureOutcome(
  failure: GatewayFailure,
): { ok: boolean; status: number; errorClass: string } {
  return { ok: failure.kind === "client_closed", status: failure.status, errorClass: failure.kind };
}

/**
 * Tries `attempt` with successive keys until one succeeds or failing over can no longer help. A
 * caller that aborts (`signal`, or an attempt rejecting with an `AbortError`) ends it at once with
 * a `client_closed` failure.
 */
export async function runWithFailover<T>(
  pool: KeyPool,
  options: FailoverOptions,
  attempt: (key: PoolKey) => Promise<AttemptResult<T>>,
): Promise<FailoverResult<T>> {
  const tried = new Set<string>();
  const attempts: Attempt[] = [];
  let last: FailureClass | null = null;
  let upstreamErrors = 0;

  while (attempts.length < options.maxAttempts && upstreamErrors < MAX_UPSTREAM_ERROR_ATTEMPTS) {
    // A caller gone before a key was picked costs no key anything: nothing was sent.
    if (options.signal?.aborted) return { ok: false, attempts, failure: CLIENT_CLOSED };
    const picked = await pool.pick(options.model, tried, {
      estimatedTokens: options.estimatedTokens,
      pinnedKeyId: options.pinnedKeyId,
    });
    if (!("secret" in picked)) {
      return { ok: false, attempts, failure: noKeyFailure(picked, last, options.now()) };
    }
    if (options.signal?.aborted) {
      // Gone while the key was picked: nothing is sent, and the key's windows take it back.
      pool.cancelPick(picked);
      return { ok: false, attempts, failure: CLIENT_CLOSED };
    }
    tried.add(picked.id);
    const started = options.now();
    let result: AttemptResult<T> | null = null;
    let failure: FailureClass;
    let timedOut = false;
    try {
      result = await attempt(picked);
    } catch (err) {
      // The caller gave up on the call (the client went away, or a stream's heartbeats ended with
      // it): no key is to blame, and no other key is to be asked. The attempt reached Gemini, so
      // it counts (as one the key served) in the key's windows.
      if (options.signal?.aborted || isAbort(err)) {
        attempts.push({ keyId: picked.id, ok: true, reservation: picked.reservation });
        return { ok: false, attempts, failure: CLIENT_CLOSED };
      }
      // The request could not even be built (a header made from the client's input): nothing was
      // sent, the key is not to blame, and no other key would do better.
      if (err instanceof UpstreamRequestError) {
        pool.cancelPick(picked);
        return {
          ok: false,
          attempts,
          failure: { status: 400, kind: "client", message: err.message },
        };
      }
      result = null;
      timedOut = err instanceof UpstreamTimeoutError;
      failure = { kind: "upstream", reason: describe(err) };
    }
    if (result?.ok) {
      attempts.push({ keyId: picked.id, ok: true, reservation: picked.reservation });
      pool.noteOutcome(picked.id, { ok: true, latencyMs: options.now() - started });
      await bookkeep("a key's success", pool.noteSuccess(picked.id));
      return { ok: true, value: result.value, key: picked, attempts };
    }
    if (result) {
      const proxied = pool.proxyOf(picked.secret) !== undefined;
      failure = classifyHttpFailure(result.status, result.body, { proxied });
      // Google refuses the deployment's place: the admin hears of it.
      if ("deployment" in failure && failure.deployment) {
        pool.alerts.note(failure.deployment.kind, failure.deployment.message);
      }
    }
    failure = failure!;
    failure = { ...failure, reason: redactSecret(failure.reason, picked) };
    if (failure.kind === "client") {
      // The request is at fault, not the key: no failover, and the attempt counts as served.
      attempts.push({ keyId: picked.id, ok: true, reservation: picked.reservation });
      return {
        ok: false,
        attempts,
        failure: { status: result?.status ?? 400, message: failure.reason, kind: "client" },
      };
    }
    attempts.push({
      keyId: picked.id,
      ok: false,
      cause: causeOf(failure, result && !result.ok ? result : null, timedOut),
      reservation: picked.reservation,
    });
    pool.noteOutcome(picked.id, { ok: false });
    last = failure;
    if (failure.kind === "key_invalid") {
      await bookkeep("an invalid key", pool.markInvalid(picked.id, failure.reason));
    } else if (failure.kind === "unserved") {
      await bookkeep(
        "a key's location rest",
        pool.noteUnserved(picked.id, failure.reason, { model: options.model }),
      );
    } else if (failure.kind === "rate_limited") {
      await bookkeep(
        "a 429 cooldown",
        pool.noteRateLimited(picked.id, {
          model: options.model,
          retryAfterMs: failure.retryAfterMs,
          defaultCooldownMs: options.defaultCooldownMs,
          body: result?.body ?? "",
          reason: failure.reason,
        }),
      );
    } else {
      upstreamErrors++;
      // A key that made the client wait a whole timeout rests at once, not after a streak.
      await bookkeep(
        "an upstream error",
        pool.noteError(picked.id, failure.reason, { model: options.model, rest: timedOut }),
      );
    }
    if (options.signal?.aborted) return { ok: false, attempts, failure: CLIENT_CLOSED };
  }
  const reason = last ? `: ${last.reason}` : "";
  return {
    ok: false,
    attempts,
    failure: {
      status: 503,
      kind: "upstream",
      message: `Gemini did not answer successfully after ${attempts.length} attempts${reason}`,
      retryAfterSeconds: 1,
    },
  };
}

function noKeyFailure(picked: NoKey, last: FailureClass | null, now: number): GatewayFailure {
  if (picked.total === 0) {
    return {
      status: 503,
      kind: "no_key",
      message: "No Gemini keys are configured; add keys through the admin API or GEMINI_KEYS",
      shouldRetry: false,
    };
  }
  const lastReason = last ? ` (last error: ${last.reason})` : "";
  if (picked.retryAt !== null) {
    const seconds = Math.max(1, Math.ceil((picked.retryAt - now) / 1000));
    const what = picked.limited
      ? "All Gemini keys are at their rate limits or unavailable"
      : "All Gemini keys are rate limited or unavailable";
    return {
      status: 503,
      kind: "no_key",
      message: `${what}; retry in ${seconds} s${lastReason}`,
      retryAfterSeconds: seconds,
    };
  }
  return {
    status: 503,
    kind: "no_key",
    message: `No usable Gemini key: every key is disabled or invalid${lastReason}`,
    retryAfterSeconds: 60,
    shouldRetry: false,
  };
}
