/**
 * Gateway settings in KV under `["settings"]`: one small record, defaults filled in on read.
 */
import * as z from "zod";
import { updateWithRetry } from "./kv_util.ts";

const KEY: Deno.KvKey = ["settings"];

/** Validators of the API-surface settings (thinking, injection, anti-truncation, safety, aliases). */
const API_FIELDS = {
  /** Thinking when the client does not say: `auto` (model decides), `off` (least possible), `budget`. */
  thinkingMode: z.enum(["auto", "off", "budget"]),
  /** Token budget for `thinkingMode: "budget"` (fitted to each model's range; -1: dynamic). */
  thinkingBudget: z.number().int().min(-1).max(32_768),
  /** Whether thought summaries are returned as `reasoning_content` by default. */
  includeThoughts: z.boolean(),
  /** Text the gateway adds to every chat request ("" for none). */
  promptInjection: z.string().max(8_000),
  /** Where that text goes. */
  promptInjectionPosition: z.enum(["system", "user_prefix", "user_suffix"]),
  /** Continue answers cut at the output limit or mid-stream. */
  antiTruncation: z.boolean(),
  /** Continuation rounds at most. */
  antiTruncationRounds: z.number().int().min(1).max(5),
  /** Threshold sent for every harm category; `UNSET` sends no safety settings. */
  safetyThreshold: z.enum([
    "OFF",
    "BLOCK_NONE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_LOW_AND_ABOVE",
    "UNSET",
  ]),
  /** Model aliases: client name -> upstream model (e.g. `gpt-4o` -> `gemini-2.5-flash`). */
  aliases: z.record(z.string().min(1).max(128), z.string().min(1).max(128)).refine(
    (a) => Object.keys(a).length <= 100,
    "at most 100 aliases",
  ),
};

/** The settings record; every field has a default so older records stay valid. */
export const SettingsSchema = z.object({
  /** How the pool picks among usable keys. */
  strategy: z.enum(["round_robin", "least_used", "adaptive"]).default("round_robin"),
  /** Upstream attempts per client request, across keys. */
  maxAttempts: z.number().int().min(1).max(20).default(5),
  /** How long a key rests after a 429 that names no `retryDelay`, in seconds. */
  defaultCooldownSeconds: z.number().int().min(1).max(86_400).default(60),
  /** Keys that failed every health check for this many days move to the removed area; null: off. */
  removeFailingKeysAfterDays: z.number().int().min(1).max(365).nullable().default(3),
  /** Whether the health-check job probes keys (a free models call per key). */
  healthChecks: z.boolean().default(true),
  /** Requests kept in the request log (0: no log). */
  requestLogSize: z.number().int().min(0).max(10_000).default(1000),
  /** Warn when at least this many keys share one Google Cloud project. */
  projectKeyWarning: z.number().int().min(2).max(10_000).default(3),
  thinkingMode: API_FIELDS.thinkingMode.default("auto"),
  thinkingBudget: API_FIELDS.thinkingBudget.default(8_192),
  includeThoughts: API_FIELDS.includeThoughts.default(true),
  promptInjection: API_FIELDS.promptInjection.default(""),
  promptInjectionPosition: API_FIELDS.promptInjectionPosition.default("system"),
  antiTruncation: API_FIELDS.antiTruncation.default(false),
  antiTruncationRounds: API_FIELDS.antiTruncationRounds.default(3),
  safetyThreshold: API_FIELDS.safetyThreshold.default("OFF"),
  aliases: API_FIELDS.aliases.default({}),
});

/** Gateway settings. */
export type Settings = z.infer<typeof SettingsSchema>;

/** A partial update of the settings, as the admin API accepts it (unknown fields rejected). */
export const SettingsPatchSchema = z.strictObject({
  strategy: z.enum(["round_robin", "least_used", "adaptive"]).optional(),
  maxAttempts: z.number().int().min(1).max(20).optional(),
  defaultCooldownSeconds: z.number().int().min(1).max(86_400).optional(),
  removeFailingKeysAfterDays: z.number().int().min(1).max(365).nullable().optional(),
  healthChecks: z.boolean().optional(),
  requestLogSize: z.number().int().min(0).max(10_000).optional(),
  projectKeyWarning: z.number().int().min(2).max(10_000).optional(),
  thinkingMode: API_FIELDS.thinkingMode.optional(),
  thinkingBudget: API_FIELDS.thinkingBudget.optional(),
  includeThoughts: API_FIELDS.includeThoughts.optional(),
  promptInjection: API_FIELDS.promptInjection.optional(),
  promptInjectionPosition: API_FIELDS.promptInjectionPosition.optional(),
  antiTruncation: API_FIELDS.antiTruncation.optional(),
  antiTruncationRounds: API_FIELDS.antiTruncationRounds.optional(),
  safetyThreshold: API_FIELDS.safetyThreshold.optional(),
  aliases: API_FIELDS.aliases.optional(),
});

/** A partial settings update. */
export type SettingsPatch = z.infer<typeof SettingsPatchSchema>;

/** Reads the settings, with defaults for what was never set. */
export async function readSettings(kv: Deno.Kv): Promise<Settings> {
  const entry = await kv.get(KEY);
  return SettingsSchema.parse(entry.value ?? {});
}

/** Merges `patch` into the stored settings atomically and returns the result. */
export async function patchSettings(kv: Deno.Kv, patch: SettingsPatch): Promise<Settings> {
  const next = await updateWithRetry<Settings>(kv, KEY, (current) => {
    const base = SettingsSchema.parse(current ?? {});
    return SettingsSchema.parse({ ...base, ...patch });
  });
  return SettingsSchema.parse(next ?? {});
}
