/**
 * Gemini keys in KV: sealed secret, admin fields and health state, one record per key under
 * `["gk", id]`, with a fingerprint index `["gk_fp", fingerprint]` for duplicate detection.
 */
import * as z from "zod";
import { maskSecret, randomId, type Sealer } from "../secrets.ts";
import { backoff, ConflictError, MAX_OCC_ATTEMPTS, updateWithRetry } from "./kv_util.ts";

const PREFIX = "gk";
const FP_PREFIX = "gk_fp";

/** A model-scoped (or, under `"*"`, key-wide) pause of a key. */
export const CooldownSchema = z.object({
  until: z.number(),
  reason: z.string(),
});

/** The stored record of one Gemini key. */
export const GeminiKeyRecordSchema = z.object({
  id: z.string(),
  label: z.string(),
  sealed: z.string(),
  fingerprint: z.string(),
  masked: z.string(),
  enabled: z.boolean(),
  weight: z.number().int().min(1).max(100),
  /** `invalid` keys are never used until an admin (or a health check) restores them. */
  invalid: z.object({ reason: z.string(), at: z.number() }).nullable(),
  /** Pauses by model id; `"*"` pauses the key for every model. */
  cooldowns: z.record(z.string(), CooldownSchema),
  consecutiveErrors: z.number().int(),
  createdAt: z.number(),
  updatedAt: z.number(),
});

/** One Gemini key as stored. */
export type GeminiKeyRecord = z.infer<typeof GeminiKeyRecordSchema>;

/** Key status as the admin API reports it. */
export type KeyStatus = "active" | "cooldown" | "invalid";

/** The state of `key` at time `now`, with why and until when. */
export function keyStatus(
  key: GeminiKeyRecord,
  now: number,
): { status: KeyStatus; reason: string | null; until: number | null } {
  if (key.invalid) return { status: "invalid", reason: key.invalid.reason, until: null };
  let latest: { until: number; reason: string } | null = null;
  for (const c of Object.values(key.cooldowns)) {
    if (c.until > now && (!latest || c.until > latest.until)) latest = c;
  }
  if (latest) return { status: "cooldown", reason: latest.reason, until: latest.until };
  return { status: "active", reason: null, until: null };
}

/** Reads every key record (ordered by id). */
export async function listGeminiKeys(kv: Deno.Kv): Promise<GeminiKeyRecord[]> {
  const out: GeminiKeyRecord[] = [];
  for await (const entry of kv.list<GeminiKeyRecord>({ prefix: [PREFIX] })) {
    out.push(GeminiKeyRecordSchema.parse(entry.value));
  }
  return out;
}

/** Reads one key record. */
export async function getGeminiKey(kv: Deno.Kv, id: string): Promise<GeminiKeyRecord | null> {
  const entry = await kv.get<GeminiKeyRecord>([PREFIX, id]);
  return entry.value ? GeminiKeyRecordSchema.parse(entry.value) : null;
}

/** What happened to each secret passed to `addGeminiKeys`. */
export interface AddKeysResult {
  added: GeminiKeyRecord[];
  duplicates: number;
}

/** Options of `addGeminiKeys`. */
export interface AddKeysOptions {
  weight?: number;
  label?: string;
  now: number;
}

/**
 * Seals and stores new keys; a key whose fingerprint already exists is counted as a duplicate and
 * left untouched, so importing the same list twice is harmless.
 */
export async function addGeminiKeys(
  kv: Deno.Kv,
  sealer: Sealer,
  secrets: string[],
  options: AddKeysOptions,
): Promise<AddKeysResult> {
  const added: GeminiKeyRecord[] = [];
  let duplicates = 0;
  const seen = new Set<string>();
  for (const secret of secrets) {
    const fingerprint = await sealer.fingerprint(secret);
    if (seen.has(fingerprint)) {
      duplicates++;
      continue;
    }
    seen.add(fingerprint);
    const id = randomId("k_", 9);
    const record: GeminiKeyRecord = {
      id,
      label: options.label ?? "",
      sealed: await sealer.seal(secret, `gk:${id}`),
      fingerprint,
      masked: maskSecret(secret),
      enabled: true,
      weight: options.weight ?? 1,
      invalid: null,
      cooldowns: {},
      consecutiveErrors: 0,
      createdAt: options.now,
      updatedAt: options.now,
    };
    const res = await kv.atomic()
      .check({ key: [FP_PREFIX, fingerprint], versionstamp: null })
      .set([FP_PREFIX, fingerprint], id)
      .set([PREFIX, id], record)
      .commit();
    if (res.ok) added.push(record);
    else duplicates++;
  }
  return { added, duplicates };
}

/** Opens the secret of a key record. */
export function openGeminiKey(sealer: Sealer, record: GeminiKeyRecord): Promise<string> {
  return sealer.open(record.sealed, `gk:${record.id}`);
}

/**
 * Applies `change` to a key record atomically (read, check, write, retried on conflict). Returns the
 * updated record, or null when the key does not exist.
 */
export function updateGeminiKey(
  kv: Deno.Kv,
  id: string,
  change: (record: GeminiKeyRecord) => GeminiKeyRecord | undefined,
): Promise<GeminiKeyRecord | null> {
  return updateWithRetry<GeminiKeyRecord>(kv, [PREFIX, id], (current) => {
    if (current === null) return undefined;
    return change(GeminiKeyRecordSchema.parse(current));
  });
}

/** Deletes a key and its fingerprint index; false when it did not exist. */
export async function deleteGeminiKey(kv: Deno.Kv, id: string): Promise<boolean> {
  for (let attempt = 0; attempt < MAX_OCC_ATTEMPTS; attempt++) {
    const entry = await kv.get<GeminiKeyRecord>([PREFIX, id]);
    if (entry.value === null) return false;
    const res = await kv.atomic()
      .check(entry)
      .delete([PREFIX, id])
      .delete([FP_PREFIX, entry.value.fingerprint])
      .commit();
    if (res.ok) return true;
    await backoff(attempt);
  }
  throw new ConflictError(`key ${id}`);
}
