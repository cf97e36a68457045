/**
 * Gateway settings in KV under `["settings"]`: one small record, defaults filled in on read.
 */
import * as z from "zod";
import { aliasProblem } from "../translate/models.ts";
import { KV_VALUE_LIMIT, kvValueSize, updateWithRetry } from "./kv_util.ts";

const KEY: Deno.KvKey = ["settings"];

/** The most days `/v1/responses` answers may be kept (OpenAI keeps them 30). */
const MAX_RESPONSES_RETENTION_DAYS = 30;

/** Validators of every setting, shared by the stored record and the admin API's patch. */
const FIELDS = {
  /** How the pool picks among usable keys. */
  strategy: z.enum(["round_robin", "least_used", "adaptive"]),
  /** Upstream attempts per client request, across keys. */
  maxAttempts: z.number().int().min(1).max(20),
  /** How long a key rests after a 429 that names no `retryDelay`, in seconds. */
  defaultCooldownSeconds: z.number().int().min(1).max(86_400),
  /** Keys that failed every health check for this many days move to the removed area; null: off. */
  removeFailingKeysAfterDays: z.number().int().min(1).max(365).nullable(),
  /** Whether the health-check job probes keys (a free models call per key). */
  healthChecks: z.boolean(),
  /** Requests kept in the request log (0: no log). */
  requestLogSize: z.number().int().min(0).max(10_000),
  /** Days a `/v1/responses` answer is kept for `previous_response_id` (0: none is kept). */
  responsesRetentionDays: z.number().int().min(0).max(MAX_RESPONSES_RETENTION_DAYS),
  /** Megabytes of `/v1/responses` answers one user key may keep (0: no cap). */
  responsesStorageMb: z.number().int().min(0).max(100_000),
  /** Warn when at least this many keys share one Google Cloud project. */
  projectKeyWarning: z.number().int().min(2).max(10_000),
  /** Thinking when the client does not say: `auto` (model decides), `off` (least possible), `budget`. */
  thinkingMode: z.enum(["auto", "off", "budget"]),
  /** Token budget for `thinkingMode: "budget"` (fitted to each model's range; -1: dynamic). */
  thinkingBudget: z.number().int().min(-1).max(32_768),
  /** Whether thought summaries are returned as `reasoning_content` by default. */
  includeThoughts: z.boolean(),
  /**
   * Where thought summaries go: `reasoning_content` (the field DeepSeek-style clients read), or
   * `think_tags` (in `content` between `<think>` tags, for apps that show only content).
   */
  thoughtsFormat: z.enum(["reasoning_content", "think_tags"]),
  /** Text the gateway adds to every chat request ("" for none). */
  promptInjection: z.string().max(8_000),
  /** Where that text goes. */
  promptInjectionPosition: z.enum(["system", "user_prefix", "user_suffix"]),
  /** Continue answers cut at the output limit or mid-stream. */
  antiTruncation: z.boolean(),
  /** Continuation rounds at most. */
  antiTruncationRounds: z.number().int().min(1).max(5),
  /**
   * Streams: after this many seconds without the upstream's first event, SSE comments keep the
   * connection alive, one per as many seconds (0: never).
   */
  streamHeartbeatSeconds: z.number().int().min(0).max(300),
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
  strategy: FIELDS.strategy.default("round_robin"),
  maxAttempts: FIELDS.maxAttempts.default(5),
  defaultCooldownSeconds: FIELDS.defaultCooldownSeconds.default(60),
  removeFailingKeysAfterDays: FIELDS.removeFailingKeysAfterDays.default(3),
  healthChecks: FIELDS.healthChecks.default(true),
  requestLogSize: FIELDS.requestLogSize.default(1000),
  responsesRetentionDays: FIELDS.responsesRetentionDays.default(30),
  responsesStorageMb: FIELDS.responsesStorageMb.default(50),
  projectKeyWarning: FIELDS.projectKeyWarning.default(3),
  thinkingMode: FIELDS.thinkingMode.default("auto"),
  thinkingBudget: FIELDS.thinkingBudget.default(8_192),
  includeThoughts: FIELDS.includeThoughts.default(true),
  thoughtsFormat: FIELDS.thoughtsFormat.default("reasoning_content"),
  promptInjection: FIELDS.promptInjection.default(""),
  promptInjectionPosition: FIELDS.promptInjectionPosition.default("system"),
  antiTruncation: FIELDS.antiTruncation.default(false),
  antiTruncationRounds: FIELDS.antiTruncationRounds.default(3),
  streamHeartbeatSeconds: FIELDS.streamHeartbeatSeconds.default(15),
  safetyThreshold: FIELDS.safetyThreshold.default("OFF"),
  aliases: FIELDS.aliases.default({}),
});

/** Gateway settings. */
export type Settings = z.infer<typeof SettingsSchema>;

/**
 * Aliases as the admin API accepts them, through `PATCH /admin/api/settings` as through
 * `PUT /admin/api/aliases`: names and targets are model-like ids (`aliasProblem`), at most 100.
 * (Stored records are read without this rule: older versions let other names through.)
 */
export const AliasesPatchSchema = z.unknown().superRefine((raw, ctx) => {
  // JSON gives `__proto__` as a name like any other, but a record would drop it unseen.
  if (typeof raw === "object" && raw !== null && Object.hasOwn(raw, "__proto__")) {
    ctx.addIssue({ code: "custom", message: "'__proto__' cannot be an alias name" });
  }
}).pipe(FIELDS.aliases.superRefine((aliases, ctx) => {
  const problem = aliasProblem(aliases);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
}));

/** A partial update of the settings, as the admin API accepts it (unknown fields rejected). */
export const SettingsPatchSchema = z.strictObject({
  strategy: FIELDS.strategy.optional(),
  maxAttempts: FIELDS.maxAttempts.optional(),
  defaultCooldownSeconds: FIELDS.defaultCooldownSeconds.optional(),
  removeFailingKeysAfterDays: FIELDS.removeFailingKeysAfterDays.optional(),
  healthChecks: FIELDS.healthChecks.optional(),
  requestLogSize: FIELDS.requestLogSize.optional(),
  responsesRetentionDays: FIELDS.responsesRetentionDays.optional(),
  responsesStorageMb: FIELDS.responsesStorageMb.optional(),
  projectKeyWarning: FIELDS.projectKeyWarning.optional(),
  thinkingMode: FIELDS.thinkingMode.optional(),
  thinkingBudget: FIELDS.thinkingBudget.optional(),
  includeThoughts: FIELDS.includeThoughts.optional(),
  thoughtsFormat: FIELDS.thoughtsFormat.optional(),
  promptInjection: FIELDS.promptInjection.optional(),
  promptInjectionPosition: FIELDS.promptInjectionPosition.optional(),
  antiTruncation: FIELDS.antiTruncation.optional(),
  antiTruncationRounds: FIELDS.antiTruncationRounds.optional(),
  streamHeartbeatSeconds: FIELDS.streamHeartbeatSeconds.optional(),
  safetyThreshold: FIELDS.safetyThreshold.optional(),
  aliases: AliasesPatchSchema.optional(),
});

/** A partial settings update. */
export type SettingsPatch = z.infer<typeof SettingsPatchSchema>;

/** Reads the settings, with defaults for what was never set. */
export async function readSettings(kv: Deno.Kv): Promise<Settings> {
  const entry = await kv.get(KEY);
  return SettingsSchema.parse(entry.value ?? {});
}

/** Thrown when patched settings would not fit in one KV value; names the field to shorten. */
export class SettingsTooLargeError extends Error {
  readonly field: string;
  readonly bytes: number;

  constructor(options: { field: string; bytes: number }) {
    super(
      `The settings would take ${options.bytes} bytes, over KV's ${KV_VALUE_LIMIT}-byte limit ` +
        `for one value: make '${options.field}' shorter`,
    );
    this.name = "SettingsTooLargeError";
    this.field = options.field;
    this.bytes = options.bytes;
  }
}

/** The field of `patch` that takes the most room (the one to shorten), "settings" if none (pure). */
function largestField(patch: SettingsPatch): string {
  let best = "settings";
  let size = -1;
  for (const [field, value] of Object.entries(patch)) {
    const n = value === undefined ? 0 : kvValueSize(value);
    if (n > size) [best, size] = [field, n];
  }
  return best;
}

/**
 * Merges `patch` into the stored settings atomically and returns the result. Throws
 * `SettingsTooLargeError` (and writes nothing) when the result would not fit in one KV value.
 */
export async function patchSettings(kv: Deno.Kv, patch: SettingsPatch): Promise<Settings> {
  const next = await updateWithRetry<Settings>(kv, KEY, (current) => {
    const base = SettingsSchema.parse(current ?? {});
    const merged = SettingsSchema.parse({ ...base, ...patch });
    const bytes = kvValueSize(merged);
    if (bytes > KV_VALUE_LIMIT) {
      throw new SettingsTooLargeError({ field: largestField(patch), bytes });
    }
    return merged;
  });
  return SettingsSchema.parse(next ?? {});
}
