/**
 * Authentication of user keys (`sk-…`): hash, one KV round trip by the hash-derived id (two for a
 * rotated key), a constant-time hash comparison, and a short in-memory cache so revocation and
 * rotation reach every isolate within seconds.
 *
 * The cache is keyed by the presented token itself (memory only, never persisted), so a hit costs
 * neither a hash nor a KV read. Lookups are single-flight per token: when an entry expires under
 * load, one KV read serves every request waiting for it. An entry older than `REFRESH_AFTER_MS` is
 * still served while one background read refreshes it; an entry older than `USER_KEY_CACHE_MS` is
 * never served, so a revoked key stops working everywhere within that bound.
 */
import { sha256Hex } from "../secrets.ts";
import { findUserKeyBySecret, type UserKeyRecord } from "../store/user_keys.ts";

/** How long a lookup (found or not) is trusted; revocation takes effect within this. */
export const USER_KEY_CACHE_MS = 5_000;
/** Age after which a cached lookup is refreshed in the background while still being served. */
export const REFRESH_AFTER_MS = 2_500;
const MAX_CACHE_ENTRIES = 10_000;

/** Why a token was refused. */
export type AuthFailure = "missing" | "invalid" | "disabled";

interface CacheEntry {
  /** When the KV read that produced `record` started. */
  at: number;
  /** The key's record when the token matches it, else null. */
  record: UserKeyRecord | null;
  /** When the token stops working (a rotated key's previous secret); null: no end. */
  until: number | null;
}

function outcome(entry: CacheEntry, now: number): UserKeyRecord | AuthFailure {
  const { record } = entry;
  if (!record || entry.until !== null && now >= entry.until) return "invalid";
  if (!record.enabled) return "disabled";
  return record;
}

/** Verifies user keys against KV with a bounded, short-lived cache. */
export class UserKeyAuthenticator {
  #kv: Deno.Kv;
  #now: () => number;
  #cache = new Map<string, CacheEntry>();
  #loading = new Map<string, Promise<CacheEntry>>();
  /** Every read in flight, including those `invalidate` detached from `#loading`. */
  #inFlight = new Set<Promise<unknown>>();
  /** Bumped by `invalidate`, so that reads started before it do not refill the cache. */
  #generation = 0;

  constructor(options: { kv: Deno.Kv; now: () => number }) {
    this.#kv = options.kv;
    this.#now = options.now;
  }

  /** The record of a valid, enabled key, or why the token was refused. */
  verify(token: string | null | undefined): Promise<UserKeyRecord | AuthFailure> {
    if (!token) return Promise.resolve("missing");
    const now = this.#now();
    const hit = this.#cache.get(token);
    if (hit && now - hit.at <= USER_KEY_CACHE_MS) {
      if (now - hit.at > REFRESH_AFTER_MS && !this.#loading.has(token)) {
        this.#load(token).catch((err) =>
          console.error("Refreshing a user key failed:", err?.message ?? err)
        );
      }
      return Promise.resolve(outcome(hit, now));
    }
    return this.#load(token).then((entry) => outcome(entry, this.#now()));
  }

  /** One KV read per token at a time; every caller of the same token shares it. */
  #load(token: string): Promise<CacheEntry> {
    const pending = this.#loading.get(token);
    if (pending) return pending;
    const generation = this.#generation;
    const at = this.#now();
    const load = (async () => {
      const match = await findUserKeyBySecret(this.#kv, await sha256Hex(token));
      const entry: CacheEntry = { at, record: match?.record ?? null, until: match?.until ?? null };
      if (generation === this.#generation) {
        this.#cache.delete(token);
        if (this.#cache.size >= MAX_CACHE_ENTRIES) {
          this.#cache.delete(this.#cache.keys().next().value!);
        }
        this.#cache.set(token, entry);
      }
      return entry;
    })().finally(() => {
      if (this.#loading.get(token) === load) this.#loading.delete(token);
      this.#inFlight.delete(load);
    });
    this.#loading.set(token, load);
    this.#inFlight.add(load);
    return load;
  }

  /** Forgets cached lookups (after an admin change on this isolate). */
  invalidate(): void {
    this.#generation++;
    this.#cache.clear();
    this.#loading.clear();
  }

  /** Waits for the lookups in flight (shutdown and tests leave nothing pending). */
  async settle(): Promise<void> {
    while (this.#inFlight.size) await Promise.allSettled([...this.#inFlight]);
  }
}

/**
 * The credential of an `Authorization: Bearer` header with whatever it holds, spaces included (an
 * admin password may have some), or null.
 */
export function bearerCredential(header: string | null | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(.*?)\s*$/i.exec(header);
  return m && m[1] ? m[1] : null;
}

/**
 * The bearer token of an `Authorization` header (one word, as keys are), or null. One expression
 * of its own rather than `bearerCredential` and a second test: it runs on every API request.
 */
export function bearerToken(header: string | null | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : null;
}
