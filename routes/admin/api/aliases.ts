/**
 * `GET /admin/api/aliases` and `PUT /admin/api/aliases`: the model aliases clients may use
 * (e.g. `gpt-4o` -> `gemini-2.5-flash`, or `fast` -> `gemini-2.5-flash-nothinking`). PUT replaces
 * the whole map; the aliases live in the settings record and show up in `/v1/models`.
 */
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { readBody } from "../../../lib/openai/request.ts";
import { AliasesPatchSchema, readSettings } from "../../../lib/store/settings.ts";
import { saveSettings } from "./settings.ts";

const PutSchema = z.strictObject({ aliases: AliasesPatchSchema });

/** Builds the alias routes. */
export function aliasesRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => c.json({ aliases: (await readSettings(gw.kv)).aliases }));
  app.put("/", async (c) => {
    // The same rules as the settings' patch: model-like ids, at most 100, no cycle.
    const { aliases } = await readBody(c.req.raw, PutSchema);
    const settings = await saveSettings(gw, { aliases });
    return c.json({ aliases: settings.aliases });
  });
  return app;
}
