/**
 * `/admin/api/projects`: Google Cloud projects as the keys' labels name them, with their keys,
 * cooldowns (which rest every key of the project), learned limits and admin limit overrides, and a
 * warning when many keys share one project (they share its quota).
 */
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { readBody } from "../../../lib/openai/request.ts";
import { listGeminiKeys } from "../../../lib/store/gemini_keys.ts";
import { kvValueSize } from "../../../lib/store/kv_util.ts";
import { LimitValueSchema, noLimits } from "../../../lib/store/models.ts";
import {
  deleteProject,
  emptyProject,
  listProjects,
  MAX_PROJECT_LENGTH,
  type ProjectRecord,
  updateProject,
} from "../../../lib/store/projects.ts";
import { parseModelId } from "./models.ts";

const limit = LimitValueSchema.optional();
const LimitsPatchSchema = z.strictObject({ rpm: limit, tpm: limit, rpd: limit });

/** Limit overrides one project may hold (models with their own limits). */
const MAX_PROJECT_OVERRIDES = 200;
/**
 * The most bytes a project record may take after an admin change: well under KV's 64 KiB, so that
 * what the request path adds later (learned limits, cooldowns) still fits.
 */
const MAX_PROJECT_ADMIN_BYTES = 32 * 1024;

const PatchProjectSchema = z.strictObject({
  /** Per model: limits that win over learned ones and model defaults; null removes the override. */
  limits: z.record(z.string(), LimitsPatchSchema.nullable()).refine(
    (l) => Object.keys(l).length <= MAX_PROJECT_OVERRIDES,
    `at most ${MAX_PROJECT_OVERRIDES} models per request`,
  ).optional(),
  /** Ends the project's cooldowns: `true` for all, or a list of model ids. */
  clear_cooldowns: z.union([z.boolean(), z.array(z.string())]).optional(),
  /** Forgets the limits learned from 429s. */
  clear_learned: z.boolean().optional(),
});

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function projectView(
  record: ProjectRecord,
  options: { keys: { id: string; masked: string }[]; now: number; threshold: number },
) {
  const n = options.keys.length;
  return {
    name: record.name,
    keys: options.keys,
    key_count: n,
    warning: n >= options.threshold
      ? `${n} keys share this project: Google counts quotas per project, so together they have ` +
        `the quota of one key`
      : null,
    cooldowns: Object.entries(record.cooldowns)
      .filter(([, c]) => c.until > options.now)
      .map(([model, c]) => ({ model, until: iso(c.until), reason: c.reason, cause: c.cause })),
    learned: record.learned,
    limits: record.limits,
    updated_at: record.updatedAt ? iso(record.updatedAt) : null,
  };
}

/** A project name from the path, already decoded once by Hono (never decoded again). */
function checkName(raw: string): string {
  const name = raw.trim();
  if (!name || name.length > MAX_PROJECT_LENGTH) {
    throw new OpenAiError(400, `Invalid project name '${name.slice(0, 100)}'`, {
      param: "name",
      code: "invalid_value",
    });
  }
  return name;
}

/** Builds the project admin routes. */
export function projectsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  async function load() {
    const [keys, records, settings] = await Promise.all([
      listGeminiKeys(gw.kv),
      listProjects(gw.kv),
      gw.settings.get(),
    ]);
    const byName = new Map(records.map((r) => [r.name, r]));
    const members = new Map<string, { id: string; masked: string }[]>();
    for (const k of keys) {
      if (!k.project) continue;
      const list = members.get(k.project) ?? [];
      list.push({ id: k.id, masked: k.masked });
      members.set(k.project, list);
      if (!byName.has(k.project)) byName.set(k.project, emptyProject(k.project));
    }
    return { keys, byName, members, threshold: settings.projectKeyWarning };
  }

  app.get("/", async (c) => {
    const { keys, byName, members, threshold } = await load();
    const now = gw.now();
    const data = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name)).map((r) =>
      projectView(r, { keys: members.get(r.name) ?? [], now, threshold })
    );
    return c.json({
      data,
      keys_without_project: keys.filter((k) => !k.project).length,
      warnings: data.flatMap((p) => p.warning ? [`Project '${p.name}': ${p.warning}`] : []),
    });
  });

  app.patch("/:name", async (c) => {
    const name = checkName(c.req.param("name"));
    const body = await readBody(c.req.raw, PatchProjectSchema);
    const limitModels = Object.keys(body.limits ?? {}).map((m) => [m, parseModelId(m)] as const);
    const clear = body.clear_cooldowns;
    const clearModels = Array.isArray(clear) ? clear.map(parseModelId) : null;
    const now = gw.now();
    const record = await updateProject(gw.kv, name, (r) => {
      const limits = { ...r.limits };
      for (const [raw, model] of limitModels) {
        const patch = body.limits![raw];
        if (patch === null) delete limits[model];
        else {
          const next = { ...noLimits(), ...limits[model] };
          for (const d of ["rpm", "tpm", "rpd"] as const) {
            if (patch[d] !== undefined) next[d] = patch[d] ?? null;
          }
          limits[model] = next;
        }
      }
      if (Object.keys(limits).length > MAX_PROJECT_OVERRIDES) {
        throw new OpenAiError(
          400,
          `A project holds limit overrides for at most ${MAX_PROJECT_OVERRIDES} models ` +
            `(this change would make ${Object.keys(limits).length}); remove some with null`,
          { param: "limits", code: "invalid_value" },
        );
      }
      let cooldowns = r.cooldowns;
      if (clear === true) cooldowns = {};
      else if (clearModels) {
        cooldowns = Object.fromEntries(
          Object.entries(r.cooldowns).filter(([m]) => !clearModels.includes(m)),
        );
      }
      const next = {
        ...r,
        limits,
        cooldowns,
        learned: body.clear_learned ? {} : r.learned,
        updatedAt: now,
      };
      const bytes = kvValueSize(next);
      if (bytes > MAX_PROJECT_ADMIN_BYTES) {
        throw new OpenAiError(
          400,
          `The project's stored state would take ${bytes} bytes, over the ` +
            `${MAX_PROJECT_ADMIN_BYTES} allowed: use fewer or shorter model ids in limits`,
          { param: "limits", code: "invalid_value" },
        );
      }
      return next;
    });
    gw.pool.invalidate();
    const { members, threshold } = await load();
    return c.json(projectView(record, { keys: members.get(name) ?? [], now, threshold }));
  });

  app.delete("/:name", async (c) => {
    const name = checkName(c.req.param("name"));
    if (!(await deleteProject(gw.kv, name))) {
      throw new OpenAiError(404, `No stored state for project '${name}'`, {
        code: "project_not_found",
      });
    }
    gw.pool.invalidate();
    return c.body(null, 204);
  });

  return app;
}
