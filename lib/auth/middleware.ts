/**
 * Hono middleware for the two kinds of callers: user keys on `/v1` (with the per-key RPM limit)
 * and the admin on `/admin/api`.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv, Gateway } from "../gateway.ts";
import { OpenAiError } from "../openai/errors.ts";
import { takeMinuteToken } from "../store/rate_limits.ts";
import { bearerToken } from "./user_auth.ts";

/** Authenticates `Authorization: Bearer sk-…` and enforces the key's requests-per-minute limit. */
export function userKeyAuth(gw: Gateway): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const token = bearerToken(c.req.header("authorization"));
    const result = await gw.users.verify(token);
    if (result === "missing") {
      throw new OpenAiError(401, "Missing API key: send it as 'Authorization: Bearer sk-...'", {
        code: "missing_api_key",
      });
    }
    if (result === "invalid") {
      throw new OpenAiError(401, "Incorrect API key provided", { code: "invalid_api_key" });
    }
    if (result === "disabled") {
      throw new OpenAiError(401, "This API key has been disabled", { code: "invalid_api_key" });
    }
    if (result.rpm !== null) {
      const take = await takeMinuteToken(gw.kv, result.id, { limit: result.rpm, now: gw.now() });
      if (!take.allowed) {
        const seconds = Math.max(1, Math.ceil(take.resetInMs / 1000));
        throw new OpenAiError(
          429,
          `Rate limit reached for this API key: ${result.rpm} requests per minute; retry in ${seconds} s`,
          { code: "rate_limit_exceeded", headers: { "retry-after": String(seconds) } },
        );
      }
    }
    c.set("userKey", result);
    await next();
  };
}

/** Requires the admin password as a bearer token. */
export function adminAuth(gw: Gateway): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const check = await gw.admin.check(bearerToken(c.req.header("authorization")));
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
    await next();
  };
}
