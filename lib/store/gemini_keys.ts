/**
 * Gemini keys in KV: sealed secret, admin fields and health state, one record per key under
 * `["gk", id]`, with a fingerprint index `["gk_fp", fingerprint]` for duplicate detection, a
 * recoverable "removed" area `["gk_removed", id]` for keys the cleanup job took out of the pool,
 * and tombstones `["gk_deleted", fingerprint]` of keys the admin deleted, so that the start-up
 * import of `GEMINI_KEYS` does not bring them back.
 */
import * as z from "zod";
import { maskSecret, randomId, type Sealer } from "../secrets.ts";
import {
  backoff,
  ConflictError,
  getManyBatched,
  listRecords,
  MAX_OCC_ATTEMPTS,
  parseRecord,
  readRecord,
  type RecordRead,
  updateWithRetry,
} from "./kv_util.ts";
import { LimitsSchema, repairLimitsByModel } from "./models.ts";

const PREFIX = "gk";
const FP_PREFIX = "gk_fp";
const REMOVED_PREFIX = "gk_removed";
const DELETED_PREFIX = "gk_deleted";

/** Why a key (or a project) rests: each cause has its own duration rule. */
export const CooldownCauseSchema = z.enum([
  /** A per-minute 429: until the `retryDelay` Google named (or the default). */
  "rate_limit",
  /** A per-day quota 429: until midnight America/Los_Angeles. */
  "daily_quota",
  /** A 429 with `quotaValue` "0": the project has no quota for the model; retried next Pacific day. */
  "no_quota",
  /** Repeated upstream errors (5xx, network): a short, growing backoff. */
  "errors",
  /** Google does not serve the key from where it calls (its proxy's or the server's country). */
  "location",
]);

/** A cooldown cause. */
export type CooldownCause = z.infer<typeof CooldownCauseSchema>;

/** A model-scoped (or, under `"*"`, key-wide) pause of a key or project. */
export const CooldownSchema = z.object({
  until: z.number(),
  reason: z.string(),
  cause: CooldownCauseSchema.default("rate_limit"),
  /** The 429 also named a per-day quota id: a second one in a row parks until Pacific midnight. */
  perDayHint: z.boolean().optional(),
});

/** One cooldown. */
export type Cooldown = z.infer<typeof CooldownSchema>;

/** What health checks (and requests) observed, kept long enough for the N-day cleanup rule. */
export const KeyHealthSchema = z.object({
  /** When the last health check ran. */
  checkedAt: z.number().nullable().default(null),
  /** `ok`, `invalid`, `rate_limited` or `error` (the upstream did not say). */
  result: z.string().nullable().default(null),
  message: z.string().nullable().default(null),
  /** UTC day (`YYYY-MM-DD`) -> whether the key worked at least once that day (`ok`) or only failed. */
  days: z.record(z.string(), z.enum(["ok", "fail"])).default({}),
});

/** A key's health history. */
export type KeyHealth = z.infer<typeof KeyHealthSchema>;

/** The stored record of one Gemini key. */
export const GeminiKeyRecordSchema = z.object({
  id: z.string(),
  label: z.string(),
  sealed: z.string(),
  fingerprint: z.string(),
  masked: z.string(),
  enabled: z.boolean(),
  weight: z.number().int().min(1).max(100),
  /** The Google Cloud project the key belongs to (a free label); "" when unknown. */
  project: z.string().default(""),
  /** `invalid` keys are never used until an admin (or a health check) restores them. */
  invalid: z.object({ reason: z.string(), at: z.number() }).nullable(),
  /** Pauses by model id; `"*"` pauses the key for every model. */
  cooldowns: z.record(z.string(), CooldownSchema),
  consecutiveErrors: z.number().int(),
  /** Limits learned from 429s (`quotaValue`) for a key without a project, by model. */
  learned: z.record(z.string(), LimitsSchema).default({}),
  health: KeyHealthSchema.default({ checkedAt: null, result: null, message: null, days: {} }),
  /**
   * The outbound proxy this key's calls go through (sealed: its URL may hold a login), and how it
   * is shown (without the login); null: direct.
   */
  proxy: z.object({ sealed: z.string(), shown: z.string() }).nullable().default(null),
  createdAt: z.number(),
  updatedAt: z.number(),
});

/** One Gemini key as stored. */
export type GeminiKeyRecord = z.infer<typeof GeminiKeyRecordSchema>;

/** A key moved out of the pool by the cleanup rule (or an admin), restorable. */
export const RemovedKeySchema = z.object({
  record: GeminiKeyRecordSchema,
  removedAt: z.number(),
  reason: z.string(),
});

/** A removed key. */
export type RemovedKey = z.infer<typeof RemovedKeySchema>;

/** Key status as the admin API reports it (whether it is enabled is a separate field). */
export type KeyStatus = "active" | "cooldown" | "invalid";

/** A key state with why and until when (null: until someone or something restores it). */
export interface KeyState {
  status: KeyStatus;
  reason: string | null;
  until: number | null;
  cause: CooldownCause | "invalid" | null;
}

/**
 * The state of `key` at `now`, counting the cooldowns of its project (`projectCooldowns`): the
 * cooldown shown is the one that ends last.
 */
export function keyStatus(
  key: GeminiKeyRecord,
  now: number,
  projectCooldowns: Record<string, Cooldown> = {},
): KeyState {
  if (key.invalid) {
    return { status: "invalid", reason: key.invalid.reason, until: null, cause: "invalid" };
  }
  let latest: Cooldown | null = null;
  for (const c of [...Object.values(key.cooldowns), ...Object.values(projectCooldowns)]) {
    if (c.until > now && (!latest || c.until > latest.until)) latest = c;
  }
  if (latest) {
    return { status: "cooldown", reason: latest.reason, until: latest.until, cause: latest.cause };
  }
  return { status: "active", reason: null, until: null, cause: null };
}

/** A stored key with its learned limits made valid (they are what 429s taught: safe to forget). */
function repairKey(value: Record<string, unknown>): Record<string, unknown> {
  return { ...value, learned: repairLimitsByModel(value.learned) };
}

/**
 * A stored key record, repaired when only its learned limits are out of range (an older version
 * stored any `quotaValue`); `data` is null when it cannot be read at all.
 */
function readKeyRecord(value: unknown): RecordRead<GeminiKeyRecord> {
  return readRecord(GeminiKeyRecordSchema, value, repairKey);
}

/** The key record of a stored value, or the schema's error when it cannot be read even repaired. */
function parseKey(value: unknown): GeminiKeyRecord {
  return parseRecord(GeminiKeyRecordSchema, value, repairKey);
}

/**
 * Reads every key record (ordered by id). A record that does not match the schema is repaired in
 * memory or, when it cannot be, skipped, and logged either way: one bad record must not stop the
 * pool from loading.
 */
export function listGeminiKeys(kv: Deno.Kv): Promise<GeminiKeyRecord[]> {
  return listRecords(kv, [PREFIX], readKeyRecord);
}

/** Reads one key record (repaired like `listGeminiKeys` does; throws when it cannot be read). */
export async function getGeminiKey(kv: Deno.Kv, id: string): Promise<GeminiKeyRecord | null> {
  const entry = await kv.get<unknown>([PREFIX, id]);
  return entry.value ? parseKey(entry.value) : null;
}

/** What happened to each secret passed to `addGeminiKeys`. */
export interface AddKeysResult {
  added: GeminiKeyRecord[];
  duplicates: number;
  /** Keys the admin deleted, left out (with `skipDeleted` only). */
  deleted: number;
}

/** The tombstone of a key the admin deleted (by fingerprint; only its presence is read). */
interface DeletedKey {
  id: string;
  deletedAt: number;
}

/** Options of `addGeminiKeys`. */
export interface AddKeysOptions {
  weight?: number;
  label?: string;
  project?: string;
  /** An outbound proxy for every key added (as `parseProxyUrl` accepted it). */
  proxy?: { url: string; shown: string } | null;
  now: number;
  /**
   * Leave out keys the admin deleted (the start-up import of `GEMINI_KEYS`). Without it (the admin
   * adding keys) a deleted key is added again and its tombstone cleared.
   */
  skipDeleted?: boolean;
}

/** Proxy schemes Deno's HTTP client speaks. */
const PROXY_SCHEMES = new Set(["http:", "https:", "socks5:", "socks5h:"]);

/**
 * An outbound proxy URL (`http://[user:pass@]host:port`, also `https:`, `socks5:`, `socks5h:`) and
 * how it is shown (no login), or why it is not one (pure).
 */
export function parseProxyUrl(text: string): { url: string; shown: string } | { problem: string } {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    return { problem: "not a URL (use http://host:port, optionally with user:password@)" };
  }
  if (!PROXY_SCHEMES.has(url.protocol)) {
    return { problem: `unsupported scheme '${url.protocol}': use http, https, socks5 or socks5h` };
  }
  if (!url.hostname) return { problem: "the proxy URL has no host" };
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) {
    return { problem: "a proxy URL has no path, query or fragment" };
  }
  const login = url.username || url.password ? " (with login)" : "";
  return { url: url.href.replace(/\/$/, ""), shown: `${url.protocol}//${url.host}${login}` };
}

/** The stored form of a key's proxy (sealed with the key's id as context). */
export async function sealProxy(
  sealer: Sealer,
  id: string,
  proxy: { url: string; shown: string },
): Promise<{ sealed: string; shown: string }> {
  return { sealed: await sealer.seal(proxy.url, `gkp:${id}`), shown: proxy.shown };
}

/** The proxy URL of a key record, or null when it has none. */
export async function openProxy(sealer: Sealer, record: GeminiKeyRecord): Promise<string | null> {
  return record.proxy ? await sealer.open(record.proxy.sealed, `gkp:${record.id}`) : null;
}

/**
 * Seals and stores new keys; a key whose fingerprint already exists (in the pool or in the removed
 * area) is counted as a duplicate and left untouched, so importing the same list twice is harmless.
 */
export async function addGeminiKeys(
  kv: Deno.Kv,
  sealer: Sealer,
  secrets: string[],
  options: AddKeysOptions,
): Promise<AddKeysResult> {
  const added: GeminiKeyRecord[] = [];
  let duplicates = 0;
  let deleted = 0;
  const seen = new Set<string>();
  const fingerprints = await Promise.all(secrets.map((secret) => sealer.fingerprint(secret)));
  // Keys stored already (or deleted) are found by reads made together, not by a write attempt
  // each: GEMINI_KEYS is imported at every start of every isolate.
  const stored = new Set<string>();
  const tombstones = new Set<string>();
  const unique = [...new Set(fingerprints)];
  const entries = await getManyBatched(kv, [
    ...unique.map((fp) => [FP_PREFIX, fp]),
    ...(options.skipDeleted ? unique.map((fp) => [DELETED_PREFIX, fp]) : []),
  ]);
  entries.forEach((e, i) => {
    if (e.versionstamp === null) return;
    if (i < unique.length) stored.add(unique[i]);
    else tombstones.add(unique[i - unique.length]);
  });
  for (const [i, secret] of secrets.entries()) {
    const fingerprint = fingerprints[i];
    if (seen.has(fingerprint) || stored.has(fingerprint)) {
      duplicates++;
      continue;
    }
    seen.add(fingerprint);
    if (tombstones.has(fingerprint)) {
      deleted++;
      continue;
    }
    const id = randomId("k_", 9);
    const record: GeminiKeyRecord = GeminiKeyRecordSchema.parse({
      id,
      label: options.label ?? "",
      sealed: await sealer.seal(secret, `gk:${id}`),
      fingerprint,
      masked: maskSecret(secret),
      enabled: true,
      weight: options.weight ?? 1,
      project: options.project ?? "",
      proxy: options.proxy ? await sealProxy(sealer, id, options.proxy) : null,
      invalid: null,
      cooldowns: {},
      consecutiveErrors: 0,
      createdAt: options.now,
      updatedAt: options.now,
    });
    let op = kv.atomic()
      .check({ key: [FP_PREFIX, fingerprint], versionstamp: null })
      .set([FP_PREFIX, fingerprint], id)
      .set([PREFIX, id], record);
    // Deleted meanwhile (the import), or added back on purpose (the admin: the tombstone goes).
    op = options.skipDeleted
      ? op.check({ key: [DELETED_PREFIX, fingerprint], versionstamp: null })
      : op.delete([DELETED_PREFIX, fingerprint]);
    const res = await op.commit();
    if (res.ok) added.push(record);
    else duplicates++;
  }
  return { added, duplicates, deleted };
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
    return change(parseKey(current));
  });
}

/**
 * Deletes a key and its fingerprint index, leaving a tombstone of the fingerprint so that the
 * start-up import of `GEMINI_KEYS` does not add it again (adding it through the admin API does,
 * and clears the tombstone); false when it did not exist.
 */
export async function deleteGeminiKey(
  kv: Deno.Kv,
  id: string,
  options: { now: number },
): Promise<boolean> {
  for (let attempt = 0; attempt < MAX_OCC_ATTEMPTS; attempt++) {
    const entry = await kv.get<GeminiKeyRecord>([PREFIX, id]);
    if (entry.value === null) return false;
    const fingerprint = entry.value.fingerprint;
    const tombstone: DeletedKey = { id, deletedAt: options.now };
    const res = await kv.atomic()
      .check(entry)
      .delete([PREFIX, id])
      .delete([FP_PREFIX, fingerprint])
      .set([DELETED_PREFIX, fingerprint], tombstone)
      .commit();
    if (res.ok) return true;
    await backoff(attempt);
  }
  throw new ConflictError(`key ${id}`);
}

/**
 * Moves a key to the removed area (keeping its fingerprint index, so a re-import of the same secret
 * does not bring it back silently). `shouldRemove` sees the current record and may veto; returns the
 * removed entry, or null when the key is gone or was vetoed.
 */
export async function removeGeminiKey(
  kv: Deno.Kv,
  id: string,
  options: { reason: string; now: number; shouldRemove?: (r: GeminiKeyRecord) => boolean },
): Promise<RemovedKey | null> {
  for (let attempt = 0; attempt < MAX_OCC_ATTEMPTS; attempt++) {
    const entry = await kv.get<GeminiKeyRecord>([PREFIX, id]);
    if (entry.value === null) return null;
    const record = parseKey(entry.value);
    if (options.shouldRemove && !options.shouldRemove(record)) return null;
    const removed: RemovedKey = { record, removedAt: options.now, reason: options.reason };
    const res = await kv.atomic()
      .check(entry)
      .delete([PREFIX, id])
      .set([REMOVED_PREFIX, id], removed)
      .commit();
    if (res.ok) return removed;
    await backoff(attempt);
  }
  throw new ConflictError(`key ${id}`);
}

/** A stored removed key with its key record repaired like a key record's. */
function repairRemovedKey(v: Record<string, unknown>): Record<string, unknown> {
  const record = v.record;
  if (!record || typeof record !== "object" || Array.isArray(record)) return v;
  return { ...v, record: repairKey(record as Record<string, unknown>) };
}

/** A removed key of a stored value, or the schema's error when it cannot be read even repaired. */
function parseRemovedKey(value: unknown): RemovedKey {
  return parseRecord(RemovedKeySchema, value, repairRemovedKey);
}

/** Reads the removed area, newest removal first (bad records repaired or skipped, and logged). */
export async function listRemovedKeys(kv: Deno.Kv): Promise<RemovedKey[]> {
  const out = await listRecords(
    kv,
    [REMOVED_PREFIX],
    (value) => readRecord(RemovedKeySchema, value, repairRemovedKey),
  );
  return out.sort((a, b) => b.removedAt - a.removedAt);
}

/**
 * Puts a removed key back into the pool as active (invalid mark, cooldowns, error streak and
 * failing-day history cleared: the next request or health check judges it afresh). Null when no
 * removed key has that id.
 */
export async function restoreRemovedKey(
  kv: Deno.Kv,
  id: string,
  now: number,
): Promise<GeminiKeyRecord | null> {
  for (let attempt = 0; attempt < MAX_OCC_ATTEMPTS; attempt++) {
    const entry = await kv.get<RemovedKey>([REMOVED_PREFIX, id]);
    if (entry.value === null) return null;
    const { record } = parseRemovedKey(entry.value);
    const restored: GeminiKeyRecord = {
      ...record,
      invalid: null,
      cooldowns: {},
      consecutiveErrors: 0,
      health: { ...record.health, days: {} },
      updatedAt: now,
    };
    const res = await kv.atomic()
      .check(entry)
      .check({ key: [PREFIX, id], versionstamp: null })
      .delete([REMOVED_PREFIX, id])
      .set([PREFIX, id], restored)
      .set([FP_PREFIX, record.fingerprint], id)
      .commit();
    if (res.ok) return restored;
    await backoff(attempt);
  }
  throw new ConflictError(`removed key ${id}`);
}

/**
 * Deletes a removed key for good (and its fingerprint index, leaving a tombstone like
 * `deleteGeminiKey`); false when it did not exist.
 */
export async function purgeRemovedKey(
  kv: Deno.Kv,
  id: string,
  options: { now: number },
): Promise<boolean> {
  for (let attempt = 0; attempt < MAX_OCC_ATTEMPTS; attempt++) {
    const entry = await kv.get<RemovedKey>([REMOVED_PREFIX, id]);
    if (entry.value === null) return false;
    const { record } = parseRemovedKey(entry.value);
    const fp = await kv.get<string>([FP_PREFIX, record.fingerprint]);
    let op = kv.atomic().check(entry).check(fp).delete([REMOVED_PREFIX, id]);
    if (fp.value === id) {
      op = op.delete([FP_PREFIX, record.fingerprint])
        .set(
          [DELETED_PREFIX, record.fingerprint],
          { id, deletedAt: options.now } satisfies DeletedKey,
        );
    }
    const res = await op.commit();
    if (res.ok) return true;
    await backoff(attempt);
  }
  throw new ConflictError(`removed key ${id}`);
}
