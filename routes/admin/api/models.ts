/**
 * `/admin/api/models`: the models the upstream offers merged with the gateway's model
 * configuration: enable or disable a model (what `/v1/models` lists and what clients may use
 * follows it) and set its default per-key limits (RPM, TPM, RPD).
 */
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway, ModelEntry } from "../../../lib/gateway.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { readBody } from "../../../lib/openai/request.ts";
import {
  deleteModelConfig,
  LimitValueSchema,
  listModelConfigs,
  type ModelConfig,
  noLimits,
  patchModelConfig,
} from "../../../lib/store/models.ts";
import { normalizeModel } from "../../../lib/translate/chat_request.ts";

const limit = LimitValueSchema.optional();

const PatchModelSchema = z.strictObject({
  enabled: z.boolean().optional(),
  rpm: limit,
  tpm: limit,
  rpd: limit,
});

/**
 * A model id as accepted in admin paths, queries and bodies. `raw` is already decoded (Hono decodes
 * path parameters and queries once; the admin UI encodes once): decoding it again would turn a
 * literal '%' into a URIError and `%2520` into another name.
 */
export function parseModelId(raw: string): string {
  const id = normalizeModel(raw);
  if (!/^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$/.test(id)) {
    throw new OpenAiError(400, `Invalid model id '${id.slice(0, 200)}'`, {
      param: "model",
      code: "invalid_value",
    });
  }
  return id;
}

function modelView(id: string, options: { config?: ModelConfig; upstream?: ModelEntry }) {
  return {
    id,
    display_name: options.upstream?.display_name ?? null,
    listed_upstream: options.upstream !== undefined,
    configured: options.config !== undefined,
    enabled: options.config?.enabled ?? true,
    limits: options.config?.limits ?? noLimits(),
  };
}

/** Builds the model admin routes. */
export function modelsAdminRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const configs = await listModelConfigs(gw.kv);
    let upstream: ModelEntry[] = [];
    let upstreamError: string | null = null;
    try {
      upstream = await gw.models.get();
    } catch (err) {
      upstreamError = err instanceof Error ? err.message : String(err);
    }
    const byId = new Map(upstream.map((m) => [m.id, m]));
    const ids = [...new Set([...byId.keys(), ...configs.keys()])].sort();
    return c.json({
      data: ids.map((id) => modelView(id, { config: configs.get(id), upstream: byId.get(id) })),
      upstream_error: upstreamError,
    });
  });

  app.patch("/:id{.+}", async (c) => {
    const id = parseModelId(c.req.param("id"));
    const body = await readBody(c.req.raw, PatchModelSchema);
    const limits: Record<string, number | null> = {};
    for (const d of ["rpm", "tpm", "rpd"] as const) {
      if (body[d] !== undefined) limits[d] = body[d] ?? null;
    }
    const config = await patchModelConfig(gw.kv, id, {
      patch: { enabled: body.enabled, limits },
      now: gw.now(),
    });
    gw.pool.invalidate();
    const upstream = gw.models.peek()?.find((m) => m.id === id);
    return c.json(modelView(id, { config, upstream }));
  });

  app.delete("/:id{.+}", async (c) => {
    const id = parseModelId(c.req.param("id"));
    if (!(await deleteModelConfig(gw.kv, id))) {
      throw new OpenAiError(404, `The model '${id}' has no configuration`, {
        code: "model_not_configured",
      });
    }
    gw.pool.invalidate();
    return c.body(null, 204);
  });

  return app;
}
