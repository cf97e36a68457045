/**
 * `GET /health`: liveness and KV reachability, without secrets and without auth.
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../lib/gateway.ts";

/** The gateway version reported by `/health`. */
export const VERSION = "0.1.0";

/** Builds the health route. */
export function healthRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => {
    let kv = "ok";
    try {
      await gw.kv.get(["meta", "crypto"], { consistency: "eventual" });
    } catch {
      kv = "unreachable";
    }
    const status = kv === "ok" ? "ok" : "degraded";
    return c.json(
      {
        status,
        version: VERSION,
        deno: Deno.version.deno,
        kv,
        time: new Date(gw.now()).toISOString(),
      },
      status === "ok" ? 200 : 503,
    );
  });
  return app;
}
