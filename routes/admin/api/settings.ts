/**
 * `GET /admin/api/settings` and `PATCH /admin/api/settings` (strategy, attempts, cooldown default,
 * cleanup, health checks, request-log size, project warning threshold).
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { readBody } from "../../../lib/openai/request.ts";
import {
  patchSettings,
  readSettings,
  type Settings,
  type SettingsPatch,
  SettingsPatchSchema,
  SettingsTooLargeError,
} from "../../../lib/store/settings.ts";

/**
 * Stores a validated settings patch and makes this isolate use it at once; settings that would not
 * fit in KV are a 400 naming the field to shorten.
 */
export async function saveSettings(gw: Gateway, patch: SettingsPatch): Promise<Settings> {
  let settings: Settings;
  try {
    settings = await patchSettings(gw.kv, patch);
  } catch (err) {
    if (!(err instanceof SettingsTooLargeError)) throw err;
    throw new OpenAiError(400, err.message, { param: err.field, code: "invalid_value" });
  }
  gw.settings.set(settings);
  return settings;
}

/** Builds the settings routes. */
export function settingsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => c.json(await readSettings(gw.kv)));
  app.patch("/", async (c) => {
    const patch = await readBody(c.req.raw, SettingsPatchSchema);
    const settings = await saveSettings(gw, patch);
    // The pool reads the strategy from its own view: make this isolate see the change at once.
    gw.pool.invalidate();
    return c.json(settings);
  });
  return app;
}
