/**
 * User keys (`sk-…`) in KV. Only the SHA-256 hash of a key is stored; the record id is a prefix of
 * that hash, so authenticating a request is a single `get`.
 */
import * as z from "zod";
import { randomBytes, sha256Hex, toBase64Url } from "../secrets.ts";
import { updateWithRetry } from "./kv_util.ts";

const PREFIX = "uk";

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
  /** When the key stops working (epoch ms); null means never. */
  expiresAt: z.number().nullable().default(null),
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
    expiresAt: options.expiresAt ?? null,
    createdAt: options.now,
    updatedAt: options.now,
  };
  const res = await kv.atomic()
    .check({ key: [PREFIX, record.id], versionstamp: null })
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

/** Deletes a user key; false when it did not exist. */
export async function deleteUserKey(kv: Deno.Kv, id: string): Promise<boolean> {
  const entry = await kv.get([PREFIX, id]);
  if (entry.value === null) return false;
  await kv.delete([PREFIX, id]);
  return true;
}
