/**
 * User-key authentication for the Gemini-native API: the key arrives the way Google's SDKs and
 * tools send theirs (`x-goog-api-key`, `?key=`, or `Authorization: Bearer`), is verified with the
 * same `UserKeyAuthenticator` and limits as `/v1`, and refusals come in Google's error shape. The
 * user key never travels further: forwarded requests carry a pool key only.
 */
import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv, Gateway } from "../gateway.ts";
import { GoogleApiError, googleErrorOf } from "../gemini/errors.ts";
import { modelRefusal, runUnderUserLimits, type UserRefusal } from "./user_limits.ts";
import { bearerToken } from "./user_auth.ts";
import type { UserKeyRecord } from "../store/user_keys.ts";
import { urlHasParam } from "../url_path.ts";

/** The user key a Gemini-native request presents, from whichever place it uses. */
export function nativeCredential(req: Request): string | null {
  const header = req.headers.get("x-goog-api-key")?.trim();
  if (header) return header;
  const query = new URL(req.url).searchParams.get("key")?.trim();
  if (query) return query;
  return bearerToken(req.headers.get("authorization"));
}

/** Whether a request carries its key the Gemini way (header or query), as Google's SDKs do. */
export function hasNativeCredential(req: Request): boolean {
  return req.headers.has("x-goog-api-key") || urlHasParam(req.url, "key");
}

/** The Google-shaped error of a user-limit refusal. */
export function refusalToGoogle(refusal: UserRefusal): GoogleApiError {
  return googleErrorOf(refusal);
}

/** Throws a Google-shaped 403 when `userKey` may not use `model`. */
export async function assertNativeModelAllowed(
  gw: Gateway,
  options: { userKey: UserKeyRecord; model: string },
): Promise<void> {
  const refusal = await modelRefusal(gw, options);
  if (refusal) throw refusalToGoogle(refusal);
}

async function authenticate(gw: Gateway, c: Context<AppEnv>): Promise<UserKeyRecord> {
  const result = await gw.users.verify(nativeCredential(c.req.raw));
  if (result === "missing") {
    throw new GoogleApiError(
      401,
      "Missing API key: send your gateway key (sk-...) in the x-goog-api-key header",
    );
  }
  if (result === "invalid") {
    throw new GoogleApiError(401, "API key not valid. Please pass a valid gateway key.");
  }
  if (result === "disabled") throw new GoogleApiError(401, "This API key has been disabled.");
  return result;
}

/**
 * Authenticates a Gemini-native request and runs it under the key's limits; a concurrency slot is
 * given back once the response body has been sent or the client went away.
 */
export function nativeKeyAuth(gw: Gateway): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const userKey = await authenticate(gw, c);
    c.set("userKey", userKey);
    await runUnderUserLimits(gw, c, { refuse: refusalToGoogle, next });
  };
}
