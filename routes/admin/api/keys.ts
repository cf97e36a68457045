/**
 * `/admin/api/keys`: list, batch add (with duplicate and rejection report), patch (including the
 * project label, the outbound proxy and restoring), delete Gemini keys, probe one now. Keys are only ever shown masked.
 */
import { Hono } from "hono";
import * as z from "zod";
import { splitKeyList } from "../../../lib/config.ts";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { applyProbe, probeKey } from "../../../lib/jobs/health_check.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { readBody } from "../../../lib/openai/request.ts";
import {
  addGeminiKeys,
  deleteGeminiKey,
  type GeminiKeyRecord,
  getGeminiKey,
  keyStatus,
  listGeminiKeys,
  parseProxyUrl,
  sealProxy,
  updateGeminiKey,
} from "../../../lib/store/gemini_keys.ts";
import {
  getProject,
  listProjects,
  MAX_PROJECT_LENGTH,
  type ProjectRecord,
} from "../../../lib/store/projects.ts";
import {
  type Counts,
  emptyCounts,
  readUsageTotal,
  readUsageTotals,
} from "../../../lib/store/usage.ts";

/** Longest accepted key; Google's keys are far shorter. */
const MAX_KEY_LENGTH = 512;
/** Keys accepted in one batch. */
const MAX_BATCH = 1000;

/** A project label: trimmed, 1-100 characters; null or "" clears it. */
export const ProjectLabelSchema = z.string().trim().max(MAX_PROJECT_LENGTH).nullable();

/** An outbound proxy URL, checked and split into the URL and how it is shown; null: none. */
const ProxySchema = z.string().max(2000).transform((text, ctx) => {
  const parsed = parseProxyUrl(text);
  if ("problem" in parsed) {
    ctx.addIssue({ code: "custom", message: parsed.problem });
    return z.NEVER;
  }
  return parsed;
}).nullable();

const AddKeysSchema = z.strictObject({
  keys: z.array(z.string()).min(1).max(MAX_BATCH),
  weight: z.number().int().min(1).max(100).optional(),
  label: z.string().max(100).optional(),
  project: ProjectLabelSchema.optional(),
  /** Every key added calls Gemini through this proxy. */
  proxy: ProxySchema.optional(),
});

const PatchKeySchema = z.strictObject({
  enabled: z.boolean().optional(),
  weight: z.number().int().min(1).max(100).optional(),
  label: z.string().max(100).optional(),
  project: ProjectLabelSchema.optional(),
  proxy: ProxySchema.optional(),
  /** `"active"` restores an invalid or cooling key (its own cooldowns; a project's stay). */
  status: z.literal("active").optional(),
});

/**
 * How a rejected token is shown (pure): its length, and its first 4 characters only when it is long
 * enough (16+) that they are a small part of it; never most of a short secret.
 */
export function shownRejected(token: string): string {
  const head = token.length >= 16 ? token.slice(0, 4) : "";
  return `${head}… (${token.length} characters)`;
}

/** Why a submitted token is not a plausible key, or null when it is. */
export function rejectReason(token: string): string | null {
  if (token.length > MAX_KEY_LENGTH) return `longer than ${MAX_KEY_LENGTH} characters`;
  if (!/^[\x21-\x7e]+$/.test(token)) return "contains spaces or non-printable characters";
  if (token.length < 8) return "too short to be a key";
  return null;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** The admin view of a key record (never the secret), with its project's cooldowns. */
export function keyView(
  record: GeminiKeyRecord,
  now: number,
  options: { usage?: Counts; project?: ProjectRecord } = {},
) {
  const usage = options.usage ?? emptyCounts();
  const projectCooldowns = options.project?.cooldowns ?? {};
  const state = keyStatus(record, now, projectCooldowns);
  const cooldowns = [
    ...Object.entries(record.cooldowns).map(([model, c]) => ({ model, c, scope: "key" })),
    ...Object.entries(projectCooldowns).map(([model, c]) => ({ model, c, scope: "project" })),
  ].filter(({ c }) => c.until > now);
  return {
    id: record.id,
    label: record.label,
    masked: record.masked,
    enabled: record.enabled,
    weight: record.weight,
    project: record.project || null,
    /** The outbound proxy, without its login; null: direct. */
    proxy: record.proxy?.shown ?? null,
    status: state.status,
    status_cause: state.cause,
    status_reason: state.reason,
    status_until: iso(state.until),
    cooldowns: cooldowns.map(({ model, c, scope }) => ({
      model,
      until: iso(c.until),
      reason: c.reason,
      cause: c.cause,
      scope,
    })),
    consecutive_errors: record.consecutiveErrors,
    health: {
      checked_at: iso(record.health.checkedAt),
      result: record.health.result,
      message: record.health.message,
      days: record.health.days,
    },
    usage: {
      requests: usage.req,
      attempts: usage.att,
      errors: usage.err,
      input_tokens: usage.in,
      output_tokens: usage.out,
    },
    created_at: iso(record.createdAt),
    updated_at: iso(record.updatedAt),
  };
}

/** Warnings about projects shared by at least `threshold` keys (their keys share one quota). */
export function projectWarnings(keys: readonly GeminiKeyRecord[], threshold: number): string[] {
  const counts = new Map<string, number>();
  for (const k of keys) if (k.project) counts.set(k.project, (counts.get(k.project) ?? 0) + 1);
  return [...counts].filter(([, n]) => n >= threshold).map(([p, n]) =>
    `${n} keys share project '${p}': Google counts quotas per project, so together they have ` +
    `the quota of one key`
  );
}

async function projectsByName(gw: Gateway): Promise<Map<string, ProjectRecord>> {
  return new Map((await listProjects(gw.kv)).map((p) => [p.name, p]));
}

/** The stored project of `record`, if it names one that has a record. */
async function projectOf(gw: Gateway, record: GeminiKeyRecord): Promise<ProjectRecord | undefined> {
  return record.project ? await getProject(gw.kv, record.project) ?? undefined : undefined;
}

/**
 * A key's view with its project and usage, as the list shows it: the admin UI puts an answer with
 * one key in place of its row.
 */
async function fullKeyView(gw: Gateway, record: GeminiKeyRecord, now: number) {
  await gw.usage.flush();
  const [project, usage] = await Promise.all([
    projectOf(gw, record),
    readUsageTotal(gw.kv, "key", record.id),
  ]);
  return keyView(record, now, { project, usage });
}

function notFound(id: string): OpenAiError {
  return new OpenAiError(404, `No Gemini key with id '${id}'`, { code: "key_not_found" });
}

/** Builds the key admin routes. */
export function keysRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    // This isolate's batched usage first, so the keys' usage includes its own requests.
    await gw.usage.flush();
    const [records, usage, projects, settings] = await Promise.all([
      listGeminiKeys(gw.kv),
      readUsageTotals(gw.kv, "key"),
      projectsByName(gw),
      gw.settings.get(),
    ]);
    const now = gw.now();
    return c.json({
      data: records.map((r) =>
        keyView(r, now, { usage: usage[r.id], project: projects.get(r.project) })
      ),
      warnings: projectWarnings(records, settings.projectKeyWarning),
    });
  });

  app.post("/", async (c) => {
    const body = await readBody(c.req.raw, AddKeysSchema);
    // The batch limit counts keys, not strings: one string may carry many, split here.
    const tokens = body.keys.flatMap(splitKeyList);
    if (tokens.length > MAX_BATCH) {
      throw new OpenAiError(
        400,
        `At most ${MAX_BATCH} keys can be added at once (this batch holds ${tokens.length})`,
        { param: "keys", code: "invalid_value" },
      );
    }
    const rejected: { key: string; reason: string }[] = [];
    const accepted: string[] = [];
    for (const t of tokens) {
      const reason = rejectReason(t);
      if (reason) rejected.push({ key: shownRejected(t), reason });
      else accepted.push(t);
    }
    const now = gw.now();
    const result = await addGeminiKeys(gw.kv, gw.sealer, accepted, {
      weight: body.weight,
      label: body.label,
      project: body.project ?? "",
      proxy: body.proxy,
      now,
    });
    gw.pool.invalidate();
    gw.models.invalidate();
    const settings = await gw.settings.get();
    return c.json({
      added: result.added.length,
      duplicates: result.duplicates,
      rejected,
      data: result.added.map((r) => keyView(r, now)),
      warnings: body.project
        ? projectWarnings(await listGeminiKeys(gw.kv), settings.projectKeyWarning)
          .filter((w) => w.includes(`'${body.project}'`))
        : [],
    }, result.added.length ? 201 : 200);
  });

  app.patch("/:id", async (c) => {
    const patch = await readBody(c.req.raw, PatchKeySchema);
    const now = gw.now();
    const id = c.req.param("id");
    const proxy = patch.proxy ? await sealProxy(gw.sealer, id, patch.proxy) : patch.proxy;
    const updated = await updateGeminiKey(gw.kv, id, (r) => ({
      ...r,
      ...(proxy === undefined ? {} : { proxy }),
      enabled: patch.enabled ?? r.enabled,
      weight: patch.weight ?? r.weight,
      label: patch.label ?? r.label,
      project: patch.project === undefined ? r.project : patch.project ?? "",
      ...(patch.status === "active" ? { invalid: null, cooldowns: {}, consecutiveErrors: 0 } : {}),
      updatedAt: now,
    }));
    if (!updated) throw notFound(c.req.param("id"));
    gw.pool.invalidate();
    return c.json(await fullKeyView(gw, updated, now));
  });

  app.delete("/:id", async (c) => {
    const id = c.req.param("id");
    if (!(await deleteGeminiKey(gw.kv, id, { now: gw.now() }))) throw notFound(id);
    gw.pool.invalidate();
    return c.body(null, 204);
  });

  /** Probes one key now (a free models call) and applies what it shows, like the health check. */
  app.post("/:id/check", async (c) => {
    const id = c.req.param("id");
    const key = await getGeminiKey(gw.kv, id);
    if (!key) throw notFound(id);
    const probe = await probeKey(gw, key);
    const now = gw.now();
    const updated = await updateGeminiKey(gw.kv, id, (r) => applyProbe(r, probe, now));
    if (!updated) throw notFound(id);
    gw.pool.invalidate();
    return c.json({
      result: probe.result,
      message: probe.message,
      key: await fullKeyView(gw, updated, now),
    });
  });

  return app;
}
