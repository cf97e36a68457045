/**
 * `/admin/api/removed-keys`: keys the cleanup job moved out of the pool after failing for N days in
 * a row (with why, when, and the health history that decided it); restore one into the pool, or
 * delete it for good.
 */
import { shownId } from "../../../lib/secrets.ts";
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import {
  listRemovedKeys,
  purgeRemovedKey,
  type RemovedKey,
  restoreRemovedKey,
} from "../../../lib/store/gemini_keys.ts";
import { keyView } from "./keys.ts";

function removedView(r: RemovedKey) {
  return {
    id: r.record.id,
    label: r.record.label,
    masked: r.record.masked,
    project: r.record.project || null,
    removed_at: new Date(r.removedAt).toISOString(),
    reason: r.reason,
    invalid_reason: r.record.invalid?.reason ?? null,
    health_days: r.record.health.days,
  };
}

function notFound(id: string): OpenAiError {
  return new OpenAiError(404, `No removed key with id '${shownId(id)}'`, {
    code: "key_not_found",
  });
}

/** A Gemini key's id from a path; anything else names no key (a 404, and no KV read). */
function keyId(id: string): string {
  if (!/^k_[A-Za-z0-9_-]{1,64}$/.test(id)) throw notFound(id);
  return id;
}

/** Builds the removed-keys routes. */
export function removedKeysRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => c.json({ data: (await listRemovedKeys(gw.kv)).map(removedView) }));

  app.post("/:id/restore", async (c) => {
    const id = keyId(c.req.param("id"));
    const restored = await restoreRemovedKey(gw.kv, id, gw.now());
    if (!restored) throw notFound(id);
    gw.pool.invalidate();
    return c.json(keyView(restored, gw.now()));
  });

  app.delete("/:id", async (c) => {
    const id = keyId(c.req.param("id"));
    if (!(await purgeRemovedKey(gw.kv, id, { now: gw.now() }))) throw notFound(id);
    return c.body(null, 204);
  });

  return app;
}
