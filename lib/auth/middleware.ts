/**
 * Hono middleware for the two kinds of callers: user keys on `/v1` (with the per-key RPM limit)
 * and the admin on `/admin/api`.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv, Gateway } from "../gateway.ts";
import { OpenAiError } from "../openai/errors.ts";
import { withUserLimits } from "./user_limits.ts";
import type { AdminCheck } from "./admin_auth.ts";
import {
  authenticateSession,
  clientAddress,
  lockedOutError,
  lockoutRemaining,
  recordLoginFailure,
  releaseLoginAttempt,
  reserveLoginAttempt,
  sessionActor,
} from "./sessions.ts";
import { bearerCredential, bearerToken } from "./user_auth.ts";
import type { UserKeyRecord } from "../store/user_keys.ts";

/**
 * The user key of `Authorization: Bearer sk-…`, or of `x-api-key: sk-…` (how Anthropic's clients
 * send it); a 401 in OpenAI's shape when there is none.
 */
export async function authenticateUser(gw: Gateway, req: Request): Promise<UserKeyRecord> {
  const result = await gw.users.verify(
    bearerToken(req.headers.get("authorization")) ?? req.headers.get("x-api-key"),
  );
  if (result === "missing") {
    throw new OpenAiError(
      401,
      "Missing API key: send it as 'Authorization: Bearer sk-...' (or 'x-api-key: sk-...')",
      {
        code: "missing_api_key",
      },
    );
  }
  if (result === "invalid") {
    throw new OpenAiError(401, "Incorrect API key provided", { code: "invalid_api_key" });
  }
  if (result === "disabled") {
    throw new OpenAiError(401, "This API key has been disabled", { code: "invalid_api_key" });
  }
  return result;
}

/** Authenticates `Authorization: Bearer sk-…` and enforces the key's limits (see `user_limits.ts`). */
export function userKeyAuth(gw: Gateway): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    c.set("userKey", await authenticateUser(gw, c.req.raw));
    // Expiry, RPM, concurrency and budgets, shared across isolates through KV.
    await withUserLimits(gw, c, next);
  };
}

/** Requires the admin password as a bearer token, or an admin session cookie (with CSRF token). */
export function adminAuth(gw: Gateway): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const presented = bearerCredential(c.req.header("authorization"));
    if (!c.req.header("authorization") && gw.admin.configured) {
      const active = await authenticateSession(gw, c.req.raw);
      if (active) {
        c.set("adminActor", sessionActor(active));
        return await next();
      }
    }
    const client = clientAddress(c.env);
    // A presented password is checked only once an attempt is reserved for the client, in one
    // atomic step: parallel guesses cannot all be checked before the first failure is counted.
    // A password this isolate has found right already takes no reservation (so an admin's own
    // parallel calls never wait on one another), but a locked-out address is refused all the same:
    // while locked, no answer may tell a right guess from a wrong one.
    const known = !!presented && await gw.admin.knownGood(presented);
    const guarded = !!presented && gw.admin.configured && !known;
    if (known) {
      const locked = await lockoutRemaining(gw, client);
      if (locked > 0) throw lockedOutError(locked);
    }
    if (guarded) {
      const attempt = await reserveLoginAttempt(gw, client);
      if (!attempt.allowed) throw lockedOutError(attempt.refusedForMs);
    }
    let check: AdminCheck | null = null;
    try {
      check = await gw.admin.check(presented);
    } finally {
      // A right password takes its reservation back; a check that failed to run counts as none.
      if (guarded && check === "denied") await recordLoginFailure(gw, client);
      else if (guarded) await releaseLoginAttempt(gw, client);
    }
    if (check === "unconfigured") {
      throw new OpenAiError(
        503,
        "The admin area is locked because ADMIN_PASSWORD is not set: set it in your Deno Deploy " +
          "app's environment variables (Settings > Environment Variables) and redeploy",
        { code: "admin_password_not_set" },
      );
    }
    if (check === "denied") {
      throw new OpenAiError(
        401,
        "Admin authentication required: send 'Authorization: Bearer <ADMIN_PASSWORD>'",
        {
          code: "invalid_admin_password",
          headers: { "www-authenticate": 'Bearer realm="admin"' },
        },
      );
    }
    c.set("adminActor", "password");
    await next();
  };
}
