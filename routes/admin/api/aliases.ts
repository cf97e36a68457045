/**
 * `GET /admin/api/aliases` and `PUT /admin/api/aliases`: the model aliases clients may use
 * (e.g. `gpt-4o` -> `gemini-2.5-flash`, or `fast` -> `gemini-2.5-flash-nothinking`). PUT replaces
 * the whole map; the aliases live in the settings record and show up in `/v1/models`.
 */
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { readBody } from "../../../lib/openai/request.ts";
import { readSettings } from "../../../lib/store/settings.ts";
import { aliasProblem } from "../../../lib/translate/models.ts";
import { saveSettings } from "./settings.ts";

const PutSchema = z.strictObject({
  aliases: z.record(z.string().min(1).max(128), z.string().min(1).max(128)),
});

/** Builds the alias routes. */
export function aliasesRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => c.json({ aliases: (await readSettings(gw.kv)).aliases }));
  app.put("/", async (c) => {
    const { aliases } = await readBody(c.req.raw, PutSchema);
    if (Object.keys(aliases).length > 100) {
      throw new OpenAiError(400, "At most 100 aliases can be defined", { param: "aliases" });
    }
    const problem = aliasProblem(aliases);
    if (problem) throw new OpenAiError(400, problem, { param: "aliases", code: "invalid_value" });
    const settings = await saveSettings(gw, { aliases });
    return c.json({ aliases: settings.aliases });
  });
  return app;
}
