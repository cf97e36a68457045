/**
 * `GET /admin/api/settings` and `PATCH /admin/api/settings` (strategy, attempts, cooldown default,
 * cleanup, health checks, request-log size, project warning threshold).
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { readBody } from "../../../lib/openai/request.ts";
import { patchSettings, readSettings, SettingsPatchSchema } from "../../../lib/store/settings.ts";

/** Builds the settings routes. */
export function settingsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => c.json(await readSettings(gw.kv)));
  app.patch("/", async (c) => {
    const patch = await readBody(c.req.raw, SettingsPatchSchema);
    const settings = await patchSettings(gw.kv, patch);
    gw.settings.set(settings);
    // The pool reads the strategy from its own view: make this isolate see the change at once.
    gw.pool.invalidate();
    return c.json(settings);
  });
  return app;
}
