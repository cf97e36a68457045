/**
 * Model configuration in KV, one small record per configured model under `["model_cfg", id]`:
 * whether the gateway serves it, and the default per-key limits (RPM, TPM, RPD) for it. A model
 * without a record is enabled and has no configured limits (limits learned from 429s still apply).
 */
import * as z from "zod";
import { listRecords, readRecord, updateWithRetry } from "./kv_util.ts";

const PREFIX = "model_cfg";

/** The largest limit value stored (requests or tokens); anything above is no limit in practice. */
export const MAX_LIMIT_VALUE = 1_000_000_000;

/** One limit value (requests or tokens); null = no limit known. */
export const LimitValueSchema = z.number().int().positive().max(MAX_LIMIT_VALUE).nullable();

const limit = LimitValueSchema.default(null);

/** Requests per minute, input tokens per minute, requests per (Pacific) day; null = no limit known. */
export const LimitsSchema = z.object({ rpm: limit, tpm: limit, rpd: limit });

/** Per-key (or per-project) limits of one model. */
export type Limits = z.infer<typeof LimitsSchema>;

/** Limits with nothing set. */
export function noLimits(): Limits {
  return { rpm: null, tpm: null, rpd: null };
}

/**
 * Limits by model read from a stored record that may hold values the schema no longer accepts
 * (pure): each value that is not a valid limit becomes null, each entry that is not an object is
 * dropped. Used to repair a record instead of failing to read it.
 */
export function repairLimitsByModel(raw: unknown): Record<string, Limits> {
  const out: Record<string, Limits> = {};
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return out;
  for (const [model, value] of Object.entries(raw)) {
    const limits = repairLimits(value);
    if (limits) out[model] = limits;
  }
  return out;
}

/** Stored limits with each value that is not a valid limit as null; null when it is no object. */
function repairLimits(raw: unknown): Limits | null {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return null;
  const v = raw as Record<string, unknown>;
  const one = (x: unknown) => {
    const parsed = LimitValueSchema.safeParse(x ?? null);
    return parsed.success ? parsed.data : null;
  };
  return { rpm: one(v.rpm), tpm: one(v.tpm), rpd: one(v.rpd) };
}

/** The stored configuration of one model. */
export const ModelConfigSchema = z.object({
  id: z.string(),
  enabled: z.boolean().default(true),
  /** Default limits of every key (or project) for this model. */
  limits: LimitsSchema.default(noLimits()),
  updatedAt: z.number().default(0),
});

/** One model's configuration. */
export type ModelConfig = z.infer<typeof ModelConfigSchema>;

/** A partial update of a model's configuration. */
export interface ModelConfigPatch {
  enabled?: boolean;
  limits?: Partial<Limits>;
}

/** Reads every model configuration, by model id (a bad record is repaired or skipped, and logged). */
export async function listModelConfigs(kv: Deno.Kv): Promise<Map<string, ModelConfig>> {
  const configs = await listRecords(
    kv,
    [PREFIX],
    (value) =>
      readRecord(ModelConfigSchema, value, (v) => ({
        ...v,
        limits: repairLimits(v.limits) ?? noLimits(),
      })),
  );
  return new Map(configs.map((c) => [c.id, c]));
}

/** Merges `patch` into a model's configuration (creating it) and returns the result. */
export async function patchModelConfig(
  kv: Deno.Kv,
  id: string,
  options: { patch: ModelConfigPatch; now: number },
): Promise<ModelConfig> {
  const next = await updateWithRetry<ModelConfig>(kv, [PREFIX, id], (current) => {
    const base = ModelConfigSchema.parse(current ?? { id });
    return {
      ...base,
      enabled: options.patch.enabled ?? base.enabled,
      limits: { ...base.limits, ...options.patch.limits },
      updatedAt: options.now,
    };
  });
  return ModelConfigSchema.parse(next);
}

/** Forgets a model's configuration (back to enabled, no configured limits); false if none. */
export async function deleteModelConfig(kv: Deno.Kv, id: string): Promise<boolean> {
  const entry = await kv.get([PREFIX, id]);
  if (entry.value === null) return false;
  await kv.delete([PREFIX, id]);
  return true;
}
