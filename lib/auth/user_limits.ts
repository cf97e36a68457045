/**
 * Per-user-key rules: expiry, allowed models and client addresses, requests per minute, concurrent requests, and budgets
 * of tokens and requests per (Pacific) day and month, enforced across isolates through leases in KV (`gw.limiter`, see
 * `user_limiter.ts`). Refusals come in a neutral shape so both API surfaces can answer in their own
 * error format; the OpenAI helpers here throw `OpenAiError`s (429 with `Retry-After`, 403).
 */
import type { Context, Next } from "hono";
import type { AppEnv, Gateway } from "../gateway.ts";
import { OpenAiError } from "../openai/errors.ts";
import { modelMatches, type UserKeyRecord } from "../store/user_keys.ts";
import { isWhole } from "../whole_body.ts";
import { ipAllowed } from "./ip_ranges.ts";
import { peerAddress } from "./sessions.ts";

/** Why a user key may not make this request, independent of the API shape. */
export interface UserRefusal {
  status: 403 | 429;
  message: string;
  code: string;
  /** The request field at fault, if any. */
  param?: string;
  /** Seconds until a retry can succeed (429 only). */
  retryAfterSeconds?: number;
}

/** An admitted request: call `release` (once) when its response is over. */
export interface UserAdmission {
  release: (() => void) | null;
}

/** The OpenAI-shaped error of a refusal. */
export function refusalToOpenAi(refusal: UserRefusal): OpenAiError {
  const headers: Record<string, string> = {};
  if (refusal.retryAfterSeconds !== undefined) {
    headers["retry-after"] = String(refusal.retryAfterSeconds);
  }
  return new OpenAiError(refusal.status, refusal.message, {
    code: refusal.code,
    param: refusal.param ?? null,
    headers,
  });
}

/**
 * Checks expiry and the key's allowed addresses (against `peer`, the client's address as the
 * server saw it), and admits one request against the key's RPM, budgets and concurrency limits
 * (from leases held in memory; at most one KV round trip when a lease runs out, none for a key
 * without limits).
 */
export async function admitUserRequest(
  gw: Gateway,
  userKey: UserKeyRecord,
  peer: string,
): Promise<UserAdmission | UserRefusal> {
  const refused = keyRefusal(userKey, peer, gw.now());
  if (refused) return refused;
  const admission = await gw.limiter.admit(userKey);
  if (admission.allowed) return { release: admission.release };
  const seconds = Math.max(1, Math.ceil(admission.retryAfterMs / 1000));
  const { limit, value } = admission;
  const day = "the day resets at midnight US Pacific";
  const month = "the month resets at midnight US Pacific on the 1st";
  const what = {
    rpm: `${value} requests per minute`,
    concurrency: `${value} concurrent requests`,
    tokens_per_day: `${value} tokens per day (${day})`,
    requests_per_day: `${value} requests per day (${day})`,
    tokens_per_month: `${value} tokens per month (${month})`,
    requests_per_month: `${value} requests per month (${month})`,
    contention: "too many simultaneous requests to check its limits",
  }[limit];
  const budget = limit !== "rpm" && limit !== "concurrency" && limit !== "contention";
  return {
    status: 429,
    code: budget ? `${limit}_exceeded` : "rate_limit_exceeded",
    message: `${budget ? "Budget used up" : "Rate limit reached"} for this API key: ${what}; ` +
      `retry in ${seconds} s`,
    retryAfterSeconds: seconds,
  };
}

function releasingBody(
  body: ReadableStream<Uint8Array>,
  done: () => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await reader.read();
        if (next.done) {
          controller.close();
          done();
        } else controller.enqueue(next.value);
      } catch (err) {
        done();
        controller.error(err);
      }
    },
    async cancel(reason) {
      done();
      await reader.cancel(reason);
    },
  });
}

/**
 * Why `userKey` may not be used at `now` from `peer` (it expired, or the address is not among
 * its allowed ones), or null. The checks of admission that are not limits: also what a
 * request continuing an earlier one (an upload's chunks) must pass.
 */
export function keyRefusal(userKey: UserKeyRecord, peer: string, now: number): UserRefusal | null {
  if (userKey.expiresAt !== null && userKey.expiresAt <= now) {
    return {
      status: 403,
      code: "api_key_expired",
      message: `This API key expired at ${new Date(userKey.expiresAt).toISOString()}`,
    };
  }
  if (userKey.allowedIps !== null && !ipAllowed(userKey.allowedIps, peer)) {
    return {
      status: 403,
      code: "ip_not_allowed",
      message: `This API key may not be used from this address (${peer})`,
    };
  }
  return null;
}

/** Options of `runUnderUserLimits`. */
export interface UserLimitsOptions {
  /** Turns a refusal into the error of the caller's API shape (OpenAI or Google). */
  refuse: (refusal: UserRefusal) => Error;
}

/** Admits one request of `userKey` or throws its refusal; returns what gives its slot back. */
async function admitOrRefuse(
  gw: Gateway,
  userKey: UserKeyRecord,
  refuse: (refusal: UserRefusal) => Error,
  peer: string,
): Promise<(() => void) | null> {
  const admitted = await admitUserRequest(gw, userKey, peer);
  if ("status" in admitted) throw refuse(admitted);
  return admitted.release;
}

/**
 * `res`, with `done` called once its body has been sent in full or the client went away. A body
 * complete in memory (`markWhole`) leaves at once: its slot is given back now, and no stream is
 * made to watch it go.
 */
function releasingResponse(res: Response, done: () => void): Response {
  if (isWhole(res) || !res.body) {
    done();
    return res;
  }
  return new Response(releasingBody(res.body, done), {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
}

/**
 * Answers with `run` under the user key's limits: refuses through `refuse`, and gives a
 * concurrency slot back once the response body has been sent in full or the client went away.
 */
export async function underUserLimits(
  gw: Gateway,
  userKey: UserKeyRecord,
  options: { refuse: (refusal: UserRefusal) => Error; peer: string },
  run: () => Promise<Response>,
): Promise<Response> {
  const done = await admitOrRefuse(gw, userKey, options.refuse, options.peer);
  if (!done) return await run();
  let res: Response;
  try {
    res = await run();
  } catch (err) {
    done();
    throw err;
  }
  return releasingResponse(res, done);
}

/**
 * `underUserLimits` as Hono middleware: runs the rest of the request under the user key's limits
 * (set `userKey` on the context first).
 */
export async function runUnderUserLimits(
  gw: Gateway,
  c: Context<AppEnv>,
  options: UserLimitsOptions & { next: Next },
): Promise<void> {
  const done = await admitOrRefuse(gw, c.get("userKey"), options.refuse, peerAddress(c.env));
  if (!done) return await options.next();
  try {
    await options.next();
  } catch (err) {
    done();
    throw err;
  }
  // Only a response that is wrapped is set again (Hono copies a response set on the context).
  const res = releasingResponse(c.res, done);
  if (res !== c.res) c.res = res;
}

/** `runUnderUserLimits` with OpenAI-shaped refusals (403/429), for `/v1`. */
export function withUserLimits(gw: Gateway, c: Context<AppEnv>, next: Next): Promise<void> {
  return runUnderUserLimits(gw, c, { refuse: refusalToOpenAi, next });
}

/**
 * Whether `userKey` sees `model` in model lists: not disabled in the model configuration `models`
 * (a pool view's), and among the key's allowed models. The same rules as `modelRefusal`.
 */
export function modelVisible(
  models: ReadonlyMap<string, { enabled: boolean }>,
  userKey: UserKeyRecord,
  model: string,
): boolean {
  return (models.get(model)?.enabled ?? true) &&
    (userKey.models === null || modelMatches(userKey.models, model));
}

/**
 * Why `userKey` may not use `model` (the model is disabled on this gateway, or not among the key's
 * allowed models), or null when it may.
 */
export async function modelRefusal(
  gw: Gateway,
  options: { userKey: UserKeyRecord; model: string },
): Promise<UserRefusal | null> {
  const { userKey, model } = options;
  if (!(await gw.pool.modelEnabled(model))) {
    return {
      status: 403,
      code: "model_disabled",
      param: "model",
      message: `The model '${model}' is disabled on this gateway`,
    };
  }
  if (userKey.models !== null && !modelMatches(userKey.models, model)) {
    return {
      status: 403,
      code: "model_not_allowed",
      param: "model",
      message: `This API key may not use the model '${model}'; allowed: ${
        userKey.models.join(", ") || "none"
      }`,
    };
  }
  return null;
}

/** Throws an OpenAI-shaped 403 when `userKey` may not use `model` (see `modelRefusal`). */
export async function assertModelAllowed(
  gw: Gateway,
  options: { userKey: UserKeyRecord; model: string },
): Promise<void> {
  const refusal = await modelRefusal(gw, options);
  if (refusal) throw refusalToOpenAi(refusal);
}
