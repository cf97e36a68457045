/**
 * Gateway settings in KV under `["settings"]`: one small record, defaults filled in on read.
 */
import * as z from "zod";
import { updateWithRetry } from "./kv_util.ts";

const KEY: Deno.KvKey = ["settings"];

/** The settings record; every field has a default so older records stay valid. */
export const SettingsSchema = z.object({
  /** How the pool picks among usable keys. */
  strategy: z.enum(["round_robin"]).default("round_robin"),
  /** Upstream attempts per client request, across keys. */
  maxAttempts: z.number().int().min(1).max(20).default(5),
  /** How long a key rests after a 429 that names no `retryDelay`, in seconds. */
  defaultCooldownSeconds: z.number().int().min(1).max(86_400).default(60),
});

/** Gateway settings. */
export type Settings = z.infer<typeof SettingsSchema>;

/** A partial update of the settings, as the admin API accepts it (unknown fields rejected). */
export const SettingsPatchSchema = z.strictObject({
  strategy: z.enum(["round_robin"]).optional(),
  maxAttempts: z.number().int().min(1).max(20).optional(),
  defaultCooldownSeconds: z.number().int().min(1).max(86_400).optional(),
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
