/**
 * User keys (`sk-…`) in KV. Only the SHA-256 hash of a key is stored; the record id is a prefix of
 * the hash of the key's first secret, so authenticating a request is one KV round trip: a
 * `getMany` of the record at the id the presented secret derives, and of an alias there.
 *
 * Rotation gives a key a new secret and keeps everything else (id, limits, usage, budgets): the new
 * secret's derived id holds an alias (`[ALIAS, secretId] -> id`), and the old secret stops working
 * at once or, with a grace period, at a set time. Aliases of secrets that no longer work are
 * deleted with the rotation that retires them, and with the key.
 */
import * as z from "zod";
import { randomBytes, sha256Hex, timingSafeEqual, toBase64Url } from "../secrets.ts";
import { updateWithRetry } from "./kv_util.ts";

const PREFIX = "uk";
const ALIAS = "uk_alias";
/** `[DELETED, id] -> { name }`: the name of a deleted key, for its usage totals. */
const DELETED = "uk_deleted";

/** The stored record of one user key. */
export const UserKeyRecordSchema = z.object({
  id: z.string(),
  name: z.string(),
  hash: z.string(),
  /** The first and last characters, enough to recognise a key in a list. */
  prefix: z.string(),
  enabled: z.boolean(),
  /** Requests per minute across all isolates; null means unlimited. */
  rpm: z.number().int().positive().nullable(),
  /** Tokens (input + output) per Pacific day; null means unlimited. */
  tokensPerDay: z.number().int().positive().nullable().default(null),
  /** Answered requests per Pacific day; null means unlimited. */
  requestsPerDay: z.number().int().positive().nullable().default(null),
  /** Tokens (input + output) per Pacific calendar month; null means unlimited. */
  tokensPerMonth: z.number().int().positive().nullable().default(null),
  /** Answered requests per Pacific calendar month; null means unlimited. */
  requestsPerMonth: z.number().int().positive().nullable().default(null),
  /** Requests in flight at once across all isolates; null means unlimited. */
  maxConcurrency: z.number().int().positive().nullable().default(null),
  /** Model ids (a trailing `*` matches a prefix) this key may use; null means every model. */
  models: z.array(z.string()).nullable().default(null),
  /** Client addresses and CIDR ranges this key may be used from; null means any address. */
  allowedIps: z.array(z.string()).nullable().default(null),
  /** When the key stops working (epoch ms); null means never. */
  expiresAt: z.number().nullable().default(null),
  /**
   * The id the current secret's hash derives (`userKeyIdFromHash`), which holds an alias of this
   * record; null while the key has its first secret (whose derived id is the record's own).
   */
  secretId: z.string().nullable().default(null),
  /** After a rotation with a grace period: the previous secret, and until when it still works. */
  previous: z.object({ hash: z.string(), secretId: z.string(), until: z.number() }).nullable()
    .default(null),
  /** When the secret was last rotated (epoch ms); null: never. */
  rotatedAt: z.number().nullable().default(null),
  createdAt: z.number(),
  updatedAt: z.number(),
});

/** One user key as stored (never the secret). */
export type UserKeyRecord = z.infer<typeof UserKeyRecordSchema>;

/** The record id for a key hash. */
export function userKeyIdFromHash(hash: string): string {
  return "uk_" + hash.slice(0, 20);
}

/** Makes a new secret: `sk-` and 32 random bytes in base64url (43 characters). */
export function generateUserKeySecret(): string {
  return "sk-" + toBase64Url(randomBytes(32));
}

/** Options of `createUserKey`. */
export interface CreateUserKeyOptions {
  name: string;
  rpm?: number | null;
  tokensPerDay?: number | null;
  requestsPerDay?: number | null;
  tokensPerMonth?: number | null;
  requestsPerMonth?: number | null;
  maxConcurrency?: number | null;
  models?: string[] | null;
  allowedIps?: string[] | null;
  expiresAt?: number | null;
  now: number;
}

/** Whether `model` is one of `patterns` (exact ids, or prefixes ending in `*`). */
export function modelMatches(patterns: readonly string[], model: string): boolean {
  return patterns.some((p) => p.endsWith("*") ? model.startsWith(p.slice(0, -1)) : p === model);
}

/** Creates a user key; returns the record and the secret, which is never stored. */
export async function createUserKey(
  kv: Deno.Kv,
  options: CreateUserKeyOptions,
): Promise<{ record: UserKeyRecord; secret: string }> {
  const secret = generateUserKeySecret();
  const hash = await sha256Hex(secret);
  const record: UserKeyRecord = {
    id: userKeyIdFromHash(hash),
    name: options.name,
    hash,
    prefix: `${secret.slice(0, 7)}…${secret.slice(-4)}`,
    enabled: true,
    rpm: options.rpm ?? null,
    tokensPerDay: options.tokensPerDay ?? null,
    requestsPerDay: options.requestsPerDay ?? null,
    tokensPerMonth: options.tokensPerMonth ?? null,
    requestsPerMonth: options.requestsPerMonth ?? null,
    maxConcurrency: options.maxConcurrency ?? null,
    models: options.models ?? null,
    allowedIps: options.allowedIps ?? null,
    expiresAt: options.expiresAt ?? null,
    secretId: null,
    previous: null,
    rotatedAt: null,
    createdAt: options.now,
    updatedAt: options.now,
  };
  const res = await kv.atomic()
    .check({ key: [PREFIX, record.id], versionstamp: null })
    .check({ key: [ALIAS, record.id], versionstamp: null })
    .set([PREFIX, record.id], record)
    .commit();
  if (!res.ok) throw new Error("User key id collision; try again");
  return { record, secret };
}

/** Reads one user key record. */
export async function getUserKey(kv: Deno.Kv, id: string): Promise<UserKeyRecord | null> {
  const entry = await kv.get<UserKeyRecord>([PREFIX, id]);
  return entry.value ? UserKeyRecordSchema.parse(entry.value) : null;
}

/** Reads every user key record. */
export async function listUserKeys(kv: Deno.Kv): Promise<UserKeyRecord[]> {
  const out: UserKeyRecord[] = [];
  for await (const entry of kv.list<UserKeyRecord>({ prefix: [PREFIX] })) {
    out.push(UserKeyRecordSchema.parse(entry.value));
  }
  return out;
}

/** Applies `change` to a user key atomically; null when it does not exist. */
export function updateUserKey(
  kv: Deno.Kv,
  id: string,
  change: (record: UserKeyRecord) => UserKeyRecord,
): Promise<UserKeyRecord | null> {
  return updateWithRetry<UserKeyRecord>(kv, [PREFIX, id], (current) => {
    if (current === null) return undefined;
    return change(UserKeyRecordSchema.parse(current));
  });
}

/** The alias keys a record's secrets use (none for a key that was never rotated). */
function aliasKeys(record: UserKeyRecord): Deno.KvKey[] {
  const ids = [record.secretId, record.previous?.secretId];
  return ids.filter((s): s is string => !!s && s !== record.id).map((s) => [ALIAS, s]);
}

/**
 * Deletes a user key and the aliases of its secrets; false when it did not exist. Its name is kept
 * (`deletedUserKeyNames`): its lifetime usage totals stay in the stats.
 */
export async function deleteUserKey(kv: Deno.Kv, id: string): Promise<boolean> {
  for (let round = 0; round < 10; round++) {
    const entry = await kv.get([PREFIX, id]);
    if (entry.value === null) return false;
    const record = UserKeyRecordSchema.parse(entry.value);
    let op = kv.atomic().check(entry).delete([PREFIX, id])
      .set([DELETED, id], { name: record.name });
    for (const key of aliasKeys(record)) op = op.delete(key);
    if ((await op.commit()).ok) return true;
  }
  throw new Error("The user key kept changing while it was being deleted; try again");
}

const DeletedUserKeySchema = z.object({ name: z.string() });

/** The names of deleted user keys by id (a record that does not parse is left out). */
export async function deletedUserKeyNames(kv: Deno.Kv): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  for await (const entry of kv.list({ prefix: [DELETED] })) {
    const parsed = DeletedUserKeySchema.safeParse(entry.value);
    if (parsed.success) names.set(String(entry.key[1]), parsed.data.name);
  }
  return names;
}

/** The user key a secret with SHA-256 `hash` belongs to, and until when it works (null: no end). */
export interface SecretMatch {
  record: UserKeyRecord;
  /** Set when `hash` is a rotated key's previous secret, still in its grace period. */
  until: number | null;
}

function matchSecret(record: UserKeyRecord | null, hash: string): SecretMatch | null {
  if (!record) return null;
  if (timingSafeEqual(record.hash, hash)) return { record, until: null };
  const p = record.previous;
  return p && timingSafeEqual(p.hash, hash) ? { record, until: p.until } : null;
}

/**
 * Finds the user key of a presented secret by its hash: one round trip, plus one more for a key
 * that was rotated (its alias, then its record). Null when no key has this secret.
 */
export async function findUserKeyBySecret(kv: Deno.Kv, hash: string): Promise<SecretMatch | null> {
  const derived = userKeyIdFromHash(hash);
  const [direct, alias] = await kv.getMany<[unknown, unknown]>([[PREFIX, derived], [
    ALIAS,
    derived,
  ]]);
  const own = matchSecret(
    direct.value === null ? null : UserKeyRecordSchema.parse(direct.value),
    hash,
  );
  if (own || typeof alias.value !== "string") return own;
  return matchSecret(await getUserKey(kv, alias.value), hash);
}

/** How long a rotated key's previous secret may keep working, at most. */
export const MAX_ROTATION_GRACE_MS = 7 * 86_400_000;

/**
 * Gives user key `id` a new secret, keeping its id, limits and usage. The previous secret stops
 * working at once (`graceMs` 0) or after `graceMs`; a secret retired by an earlier rotation stops
 * now. Returns the record and the new secret (never stored), or null when the key does not exist.
 */
export async function rotateUserKey(
  kv: Deno.Kv,
  id: string,
  options: { graceMs: number; now: number },
): Promise<{ record: UserKeyRecord; secret: string } | null> {
  for (let round = 0; round < 10; round++) {
    const entry = await kv.get([PREFIX, id]);
    if (entry.value === null) return null;
    const current = UserKeyRecordSchema.parse(entry.value);
    const secret = generateUserKeySecret();
    const hash = await sha256Hex(secret);
    const secretId = userKeyIdFromHash(hash);
    const record: UserKeyRecord = {
      ...current,
      hash,
      secretId,
      prefix: `${secret.slice(0, 7)}…${secret.slice(-4)}`,
      previous: options.graceMs > 0
        ? {
          hash: current.hash,
          secretId: current.secretId ?? current.id,
          until: options.now + options.graceMs,
        }
        : null,
      rotatedAt: options.now,
      updatedAt: options.now,
    };
    const keep = new Set(aliasKeys(record).map((k) => String(k[1])));
    let op = kv.atomic()
      .check(entry)
      // A secret whose derived id is taken (by a record or an alias) is drawn again.
      .check({ key: [PREFIX, secretId], versionstamp: null })
      .check({ key: [ALIAS, secretId], versionstamp: null })
      .set([PREFIX, id], record)
      .set([ALIAS, secretId], id);
    for (const key of aliasKeys(current)) {
      if (!keep.has(String(key[1]))) op = op.delete(key);
    }
    if ((await op.commit()).ok) return { record, secret };
  }
  throw new Error("The user key kept changing while it was being rotated; try again");
}
