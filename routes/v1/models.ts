/**
 * `GET /v1/models` and `GET /v1/models/{id}`: the live model list of the upstream (fetched through
 * the key pool, cached briefly), in OpenAI's shape (Anthropic's for a request with an
 * `anthropic-version` header) with the `models/` prefix stripped, without the models disabled in
 * the model configuration or not allowed for the caller's user key.
 */
import { Hono } from "hono";
import type { AppEnv, Gateway, ModelEntry } from "../../lib/gateway.ts";
import { failoverOptions } from "../../lib/gemini/generate.ts";
import { ListModelsResponseSchema } from "../../lib/gemini/types.ts";
import { failureToOpenAi, OpenAiError } from "../../lib/openai/errors.ts";
import { runWithFailover } from "../../lib/pool/failover.ts";
import { normalizeModel } from "../../lib/translate/chat_request.ts";
import { aliasModels } from "../../lib/translate/models.ts";
import type { UserKeyRecord } from "../../lib/store/user_keys.ts";
import { modelVisible } from "../../lib/auth/user_limits.ts";
import { markWhole } from "../../lib/whole_body.ts";

/** Generation methods that make a model useful through this gateway. */
const SERVED_METHODS = new Set(["generateContent", "embedContent", "batchEmbedContents"]);
/** Upstream model list pages fetched at most. */
const MAX_PAGES = 10;
/** The model key used for pool bookkeeping of list calls. */
export const LIST_MODEL = "models.list";

/** Loads every page of the upstream model list through the pool. */
export async function loadModels(gw: Gateway): Promise<ModelEntry[]> {
  const failover = await failoverOptions(gw, { model: LIST_MODEL });
  const out: ModelEntry[] = [];
  let pageToken: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ pageSize: "1000" });
    if (pageToken) query.set("pageToken", pageToken);
    const result = await runWithFailover(gw.pool, failover, async (key) => {
      const res = await gw.client.send(key.secret, {
        method: "GET",
        path: "/v1beta/models",
        query: query.toString(),
      });
      const text = await res.text();
      if (!res.ok) return { ok: false, status: res.status, body: text };
      const parsed = ListModelsResponseSchema.safeParse(JSON.parse(text));
      if (!parsed.success) return { ok: false, status: 502, body: "Unexpected model list shape" };
      return { ok: true, value: parsed.data };
    });
    if (!result.ok) throw failureToOpenAi(result.failure);
    for (const m of result.value.models) {
      const methods = m.supportedGenerationMethods ?? [];
      if (!methods.some((x) => SERVED_METHODS.has(x))) continue;
      const entry: ModelEntry = {
        id: normalizeModel(m.name),
        object: "model",
        created: 0,
        owned_by: "google",
      };
      if (m.displayName) entry.display_name = m.displayName;
      out.push(entry);
    }
    pageToken = result.value.nextPageToken;
    if (!pageToken) break;
  }
  return out;
}

/**
 * The models a user key sees: the upstream list without models disabled in the model
 * configuration, and, for a key limited to some models, only those.
 */
export async function visibleModels(gw: Gateway, userKey: UserKeyRecord): Promise<ModelEntry[]> {
  const [models, view, settings] = await Promise.all([
    gw.models.get(),
    gw.pool.view(),
    gw.settings.get(),
  ]);
  const visible = models.filter((m) => modelVisible(view.models, userKey, m.id));
  // Admin-defined aliases (e.g. gpt-4o -> gemini-2.5-flash) whose target is visible.
  return [...visible, ...aliasModels(settings.aliases, visible)];
}

/** Builds the model routes. */
export function modelsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => {
    const models = await visibleModels(gw, c.get("userKey"));
    // Anthropic's SDK (it sends its API version) reads its own list shape.
    if (c.req.header("anthropic-version")) return markWhole(c.json(anthropicModelList(models)));
    return markWhole(c.json({ object: "list", data: models }));
  });
  app.get("/:id{.+}", async (c) => {
    // Hono decoded the path already (a second decode would throw on a "%" in the name).
    const id = normalizeModel(c.req.param("id"));
    const found = (await visibleModels(gw, c.get("userKey"))).find((m) => m.id === id);
    if (!found) {
      throw new OpenAiError(404, `The model '${id}' does not exist`, {
        param: "model",
        code: "model_not_found",
      });
    }
    return markWhole(c.json(c.req.header("anthropic-version") ? anthropicModel(found) : found));
  });
  return app;
}

/** A model as Anthropic's API lists it. */
function anthropicModel(m: ModelEntry) {
  return {
    type: "model",
    id: m.id,
    display_name: m.display_name ?? m.id,
    created_at: new Date(m.created * 1000).toISOString(),
  };
}

/** The model list in Anthropic's shape (one page: all of it). */
function anthropicModelList(models: ModelEntry[]) {
  return {
    data: models.map(anthropicModel),
    has_more: false,
    first_id: models[0]?.id ?? null,
    last_id: models.at(-1)?.id ?? null,
  };
}
