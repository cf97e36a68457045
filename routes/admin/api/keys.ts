/**
 * `/admin/api/keys`: list, batch add (with duplicate and rejection report), patch, delete Gemini
 * keys. Keys are only ever shown masked.
 */
import { Hono } from "hono";
import * as z from "zod";
import { splitKeyList } from "../../../lib/config.ts";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { readBody } from "../../../lib/openai/request.ts";
import {
  addGeminiKeys,
  deleteGeminiKey,
  type GeminiKeyRecord,
  keyStatus,
  listGeminiKeys,
  updateGeminiKey,
} from "../../../lib/store/gemini_keys.ts";
import { type Counts, emptyCounts, readUsageStats } from "../../../lib/store/usage.ts";

/** Longest accepted key; Google's keys are far shorter. */
const MAX_KEY_LENGTH = 512;
/** Keys accepted in one batch. */
const MAX_BATCH = 1000;

const AddKeysSchema = z.strictObject({
  keys: z.array(z.string()).min(1).max(MAX_BATCH),
  weight: z.number().int().min(1).max(100).optional(),
  label: z.string().max(100).optional(),
});

const PatchKeySchema = z.strictObject({
  enabled: z.boolean().optional(),
  weight: z.number().int().min(1).max(100).optional(),
  label: z.string().max(100).optional(),
  /** `"active"` restores an invalid or cooling key. */
  status: z.literal("active").optional(),
});

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

/** The admin view of a key record (never the secret). */
export function keyView(record: GeminiKeyRecord, now: number, usage: Counts = emptyCounts()) {
  const state = keyStatus(record, now);
  return {
    id: record.id,
    label: record.label,
    masked: record.masked,
    enabled: record.enabled,
    weight: record.weight,
    status: state.status,
    status_reason: state.reason,
    status_until: iso(state.until),
    cooldowns: Object.entries(record.cooldowns)
      .filter(([, c]) => c.until > now)
      .map(([model, c]) => ({ model, until: iso(c.until), reason: c.reason })),
    consecutive_errors: record.consecutiveErrors,
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

/** Builds the key admin routes. */
export function keysRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const [records, stats] = await Promise.all([
      listGeminiKeys(gw.kv),
      readUsageStats(gw.kv, gw.now()),
    ]);
    const now = gw.now();
    return c.json({ data: records.map((r) => keyView(r, now, stats.keys[r.id])) });
  });

  app.post("/", async (c) => {
    const body = await readBody(c.req.raw, AddKeysSchema);
    const tokens = body.keys.flatMap(splitKeyList);
    const rejected: { key: string; reason: string }[] = [];
    const accepted: string[] = [];
    for (const t of tokens) {
      const reason = rejectReason(t);
      if (reason) {
        rejected.push({ key: t.length > 12 ? `${t.slice(0, 4)}…${t.slice(-4)}` : "…", reason });
      } else accepted.push(t);
    }
    const now = gw.now();
    const result = await addGeminiKeys(gw.kv, gw.sealer, accepted, {
      weight: body.weight,
      label: body.label,
      now,
    });
    gw.pool.invalidate();
    gw.models.invalidate();
    return c.json({
      added: result.added.length,
      duplicates: result.duplicates,
      rejected,
      data: result.added.map((r) => keyView(r, now)),
    }, result.added.length ? 201 : 200);
  });

  app.patch("/:id", async (c) => {
    const patch = await readBody(c.req.raw, PatchKeySchema);
    const now = gw.now();
    const updated = await updateGeminiKey(gw.kv, c.req.param("id"), (r) => ({
      ...r,
      enabled: patch.enabled ?? r.enabled,
      weight: patch.weight ?? r.weight,
      label: patch.label ?? r.label,
      ...(patch.status === "active" ? { invalid: null, cooldowns: {}, consecutiveErrors: 0 } : {}),
      updatedAt: now,
    }));
    if (!updated) throw new OpenAiError(404, `No Gemini key with id '${c.req.param("id")}'`);
    gw.pool.invalidate();
    return c.json(keyView(updated, now));
  });

  app.delete("/:id", async (c) => {
    if (!(await deleteGeminiKey(gw.kv, c.req.param("id")))) {
      throw new OpenAiError(404, `No Gemini key with id '${c.req.param("id")}'`);
    }
    gw.pool.invalidate();
    return c.body(null, 204);
  });

  return app;
}
