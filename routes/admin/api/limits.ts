/**
 * `GET /admin/api/limits`: the limits in force per model and quota scope (a project, or a key
 * without one), where they come from (admin override, learned from a 429, model default), current
 * usage against them, and the pool's effective limits: the sum over usable quota scopes (the
 * "limit multiplier": keys of one project count once, since Google counts quotas per project).
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import type { Limits } from "../../../lib/store/models.ts";
import { keyLimits, type PoolView } from "../../../lib/pool/key_pool.ts";
import { isUsable } from "../../../lib/pool/selection.ts";
import type { GeminiKeyRecord } from "../../../lib/store/gemini_keys.ts";
import { parseModelId } from "./models.ts";

const DIMS = ["rpm", "tpm", "rpd"] as const;

function modelsOf(view: PoolView, extra: readonly string[]): string[] {
  const ids = new Set(extra);
  for (const id of view.models.keys()) ids.add(id);
  for (const k of view.keys) for (const m of Object.keys(k.learned)) ids.add(m);
  for (const p of view.projects.values()) {
    for (const m of Object.keys(p.learned)) ids.add(m);
    for (const m of Object.keys(p.limits)) ids.add(m);
  }
  return [...ids].sort();
}

function scopesOf(view: PoolView): Map<string, GeminiKeyRecord[]> {
  const scopes = new Map<string, GeminiKeyRecord[]>();
  for (const k of view.keys) {
    const scope = k.project ? `project:${k.project}` : `key:${k.id}`;
    const list = scopes.get(scope);
    if (list) list.push(k);
    else scopes.set(scope, [k]);
  }
  return scopes;
}

/** Builds the limits route. */
export function limitsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const requested = (c.req.query("model") ?? "").split(",").filter(Boolean).map(parseModelId);
    const view = await gw.pool.view();
    const now = gw.now();
    const listed = (gw.models.peek() ?? []).map((m) => m.id);
    const models = modelsOf(view, [...requested, ...(requested.length ? [] : listed)])
      .filter((m) => !requested.length || requested.includes(m));
    const scopes = scopesOf(view);
    // `scopes=0`: the pool's limits only (the dashboard's refresh), without a row and a usage
    // read per quota scope and model.
    const withScopes = c.req.query("scopes") !== "0";
    const out = [];
    const scopeRows = [];
    for (const model of models) {
      const pool: Record<string, number | null> = { rpm: 0, tpm: 0, rpd: 0 };
      const unlimited: Record<string, number> = { rpm: 0, tpm: 0, rpd: 0 };
      let usableScopes = 0;
      let usableKeys = 0;
      for (const [scope, keys] of scopes) {
        const project = keys[0].project ? view.projects.get(keys[0].project) : undefined;
        const usable = keys.filter((k) =>
          isUsable(k, model, { now, projectCooldowns: project?.cooldowns })
        );
        const limits: Limits = keyLimits(view, keys[0], model);
        if (withScopes) {
          const usage = await gw.pool.usageOf(keys[0], model);
          scopeRows.push({
            model,
            scope,
            keys: keys.map((k) => ({ id: k.id, masked: k.masked })),
            usable_keys: usable.length,
            limits,
            source: {
              override: project?.limits[model] ?? null,
              learned: (project ? project.learned[model] : keys[0].learned[model]) ?? null,
              default: view.models.get(model)?.limits ?? null,
            },
            usage: {
              rpm: Math.round(usage.rpm * 100) / 100,
              tpm: Math.round(usage.tpm),
              rpd: usage.rpd,
            },
          });
        }
        if (!usable.length) continue;
        usableScopes++;
        usableKeys += usable.length;
        for (const d of DIMS) {
          const v = limits[d];
          if (v === null) unlimited[d]++;
          else pool[d] = (pool[d] ?? 0) + v;
        }
      }
      for (const d of DIMS) if (unlimited[d] > 0 || usableScopes === 0) pool[d] = null;
      out.push({
        model,
        defaults: view.models.get(model)?.limits ?? { rpm: null, tpm: null, rpd: null },
        pool,
        scopes_without_limit: unlimited,
        usable_keys: usableKeys,
        usable_scopes: usableScopes,
        multiplier: usableScopes,
      });
    }
    return c.json(withScopes ? { data: out, scopes: scopeRows } : { data: out });
  });

  return app;
}
