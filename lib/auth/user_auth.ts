/**
 * Authentication of user keys (`sk-…`): hash, one KV `get` by the hash-derived id, a constant-time
 * hash comparison, and a short in-memory cache so revocation reaches every isolate within seconds.
 */
import { sha256Hex, timingSafeEqual } from "../secrets.ts";
import { getUserKey, userKeyIdFromHash, type UserKeyRecord } from "../store/user_keys.ts";

/** How long a lookup (found or not) is trusted; revocation takes effect within this. */
export const USER_KEY_CACHE_MS = 5_000;
const MAX_CACHE_ENTRIES = 10_000;

/** Why a token was refused. */
export type AuthFailure = "missing" | "invalid" | "disabled";

/** Verifies user keys against KV with a bounded, short-lived cache. */
export class UserKeyAuthenticator {
  #kv: Deno.Kv;
  #now: () => number;
  #cache = new Map<string, { at: number; record: UserKeyRecord | null }>();

  constructor(options: { kv: Deno.Kv; now: () => number }) {
    this.#kv = options.kv;
    this.#now = options.now;
  }

  /** The record of a valid, enabled key, or why the token was refused. */
  async verify(token: string | null | undefined): Promise<UserKeyRecord | AuthFailure> {
    if (!token) return "missing";
    const hash = await sha256Hex(token);
    const now = this.#now();
    let hit = this.#cache.get(hash);
    if (!hit || now - hit.at > USER_KEY_CACHE_MS) {
      const record = await getUserKey(this.#kv, userKeyIdFromHash(hash));
      hit = { at: now, record };
      if (this.#cache.size >= MAX_CACHE_ENTRIES) {
        this.#cache.delete(this.#cache.keys().next().value!);
      }
      this.#cache.set(hash, hit);
    }
    const record = hit.record;
    if (!record || !timingSafeEqual(record.hash, hash)) return "invalid";
    if (!record.enabled) return "disabled";
    return record;
  }

  /** Forgets cached lookups (after an admin change on this isolate). */
  invalidate(): void {
    this.#cache.clear();
  }
}

/** The bearer token of an `Authorization` header, or null. */
export function bearerToken(header: string | null | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : null;
}
