/**
 * The key pool of one isolate: a cached snapshot of the key records from KV (refreshed in the
 * background, so picking a key costs no KV round trip), the decrypted secrets, selection, and the
 * health-state changes that failures cause (written to KV, where other isolates pick them up).
 */
import { CachedValue } from "../cache.ts";
import type { Sealer } from "../secrets.ts";
import {
  type GeminiKeyRecord,
  listGeminiKeys,
  openGeminiKey,
  updateGeminiKey,
} from "../store/gemini_keys.ts";
import { isUsable, soonestRecovery, WeightedRoundRobin } from "./selection.ts";

/** How long a snapshot is served before a background refresh; other isolates' changes show up within this. */
export const SNAPSHOT_TTL_MS = 2_000;
/** Consecutive upstream errors after which a key rests briefly. */
export const ERROR_STREAK_LIMIT = 3;
/** How long a key rests after an error streak. */
export const ERROR_STREAK_COOLDOWN_MS = 30_000;

/** A key chosen for one upstream attempt. */
export interface PoolKey {
  id: string;
  secret: string;
  masked: string;
}

/** Why no key could be picked. */
export interface NoKey {
  /** Keys configured at all. */
  total: number;
  /** Epoch ms when a cooling key recovers; null when none will by itself. */
  retryAt: number | null;
}

/** Options of `KeyPool`. */
export interface KeyPoolOptions {
  kv: Deno.Kv;
  sealer: Sealer;
  now: () => number;
}

/** Selects keys and records what happened to them. */
export class KeyPool {
  #kv: Deno.Kv;
  #sealer: Sealer;
  #now: () => number;
  #records: CachedValue<GeminiKeyRecord[]>;
  #secrets = new Map<string, { sealed: string; secret: string }>();
  #rr = new WeightedRoundRobin();

  constructor(options: KeyPoolOptions) {
    this.#kv = options.kv;
    this.#sealer = options.sealer;
    this.#now = options.now;
    this.#records = new CachedValue({
      load: () => this.#load(),
      ttlMs: SNAPSHOT_TTL_MS,
      now: options.now,
    });
  }

  async #load(): Promise<GeminiKeyRecord[]> {
    const records = await listGeminiKeys(this.#kv);
    const ids = new Set(records.map((r) => r.id));
    for (const r of records) {
      const known = this.#secrets.get(r.id);
      if (known?.sealed !== r.sealed) {
        this.#secrets.set(r.id, { sealed: r.sealed, secret: await openGeminiKey(this.#sealer, r) });
      }
    }
    for (const id of this.#secrets.keys()) if (!ids.has(id)) this.#secrets.delete(id);
    this.#rr.retain(ids);
    return records;
  }

  /** The key records, from cache when fresh enough; a stale cache is served while it refreshes. */
  records(): Promise<GeminiKeyRecord[]> {
    return this.#records.get();
  }

  /** Forces the next access to read KV (after an admin change on this isolate). */
  invalidate(): void {
    this.#records.invalidate();
  }

  /** Waits for a refresh in flight, so that tests and shutdown leave nothing pending. */
  settle(): Promise<void> {
    return this.#records.settle();
  }

  /** Picks a key for `model`, skipping `exclude`; returns why not when none can serve. */
  async pick(model: string, exclude: ReadonlySet<string>): Promise<PoolKey | NoKey> {
    const records = await this.records();
    const now = this.#now();
    const candidates = records.filter((r) => !exclude.has(r.id) && isUsable(r, model, now));
    const chosen = this.#rr.pick(candidates);
    if (!chosen) return { total: records.length, retryAt: soonestRecovery(records, model, now) };
    const secret = this.#secrets.get(chosen.id)?.secret;
    if (secret === undefined) {
      this.invalidate();
      return { total: records.length, retryAt: now + 1000 };
    }
    return { id: chosen.id, secret, masked: chosen.masked };
  }

  #patchLocal(updated: GeminiKeyRecord | null): void {
    const records = this.#records.peek();
    if (!updated || !records) return;
    this.#records.set(records.map((r) => r.id === updated.id ? updated : r));
  }

  /** Marks a key invalid: it is not used again until an admin restores it. */
  async markInvalid(id: string, reason: string): Promise<void> {
    const now = this.#now();
    this.#patchLocal(
      await updateGeminiKey(this.#kv, id, (r) => ({
        ...r,
        invalid: { reason, at: now },
        updatedAt: now,
      })),
    );
  }

  /** Rests a key for one model (or all, with `"*"`) until `until`. */
  async coolDown(
    id: string,
    options: { model: string; until: number; reason: string },
  ): Promise<void> {
    const now = this.#now();
    this.#patchLocal(
      await updateGeminiKey(this.#kv, id, (r) => {
        const cooldowns = Object.fromEntries(
          Object.entries(r.cooldowns).filter(([, c]) => c.until > now),
        );
        const existing = cooldowns[options.model];
        if (existing && existing.until >= options.until) return undefined;
        cooldowns[options.model] = { until: options.until, reason: options.reason };
        return { ...r, cooldowns, updatedAt: now };
      }),
    );
  }

  /** Counts an upstream error; after a streak the key rests briefly for every model. */
  async noteError(id: string, reason: string): Promise<void> {
    const now = this.#now();
    this.#patchLocal(
      await updateGeminiKey(this.#kv, id, (r) => {
        const streak = r.consecutiveErrors + 1;
        const cooldowns = { ...r.cooldowns };
        if (streak >= ERROR_STREAK_LIMIT) {
          cooldowns["*"] = {
            until: now + ERROR_STREAK_COOLDOWN_MS,
            reason: `${streak} upstream errors in a row: ${reason}`,
          };
        }
        return { ...r, consecutiveErrors: streak, cooldowns, updatedAt: now };
      }),
    );
  }

  /** Clears an error streak after a success (writes only when there was one). */
  async noteSuccess(id: string): Promise<void> {
    const cached = this.#records.peek()?.find((r) => r.id === id);
    if (cached && cached.consecutiveErrors === 0) return;
    this.#patchLocal(
      await updateGeminiKey(
        this.#kv,
        id,
        (r) => r.consecutiveErrors === 0 ? undefined : { ...r, consecutiveErrors: 0 },
      ),
    );
  }
}
