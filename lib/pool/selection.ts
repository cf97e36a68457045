/**
 * Pure key-selection policy: which keys may serve a model now, and smooth weighted round robin
 * among them (each key gets its weight's share, interleaved rather than in bursts).
 */
import type { GeminiKeyRecord } from "../store/gemini_keys.ts";

/** Whether `key` may serve `model` at `now` (enabled, not invalid, not cooling down). */
export function isUsable(key: GeminiKeyRecord, model: string, now: number): boolean {
  if (!key.enabled || key.invalid) return false;
  const all = key.cooldowns["*"];
  const one = key.cooldowns[model];
  return !(all && all.until > now) && !(one && one.until > now);
}

/** When the first currently-cooling, otherwise healthy key becomes usable for `model`; null if none will. */
export function soonestRecovery(
  keys: readonly GeminiKeyRecord[],
  model: string,
  now: number,
): number | null {
  let soonest: number | null = null;
  for (const key of keys) {
    if (!key.enabled || key.invalid) continue;
    const until = Math.max(key.cooldowns["*"]?.until ?? 0, key.cooldowns[model]?.until ?? 0);
    if (until > now && (soonest === null || until < soonest)) soonest = until;
  }
  return soonest;
}

/** Smooth weighted round robin (as in nginx): remembers a running weight per key id. */
export class WeightedRoundRobin {
  #current = new Map<string, number>();

  /** Picks one of `candidates` (already filtered to usable ones); null when there are none. */
  pick<T extends { id: string; weight: number }>(candidates: readonly T[]): T | null {
    let best: T | null = null;
    let bestWeight = -Infinity;
    let total = 0;
    for (const c of candidates) {
      const w = (this.#current.get(c.id) ?? 0) + c.weight;
      this.#current.set(c.id, w);
      total += c.weight;
      if (w > bestWeight) {
        best = c;
        bestWeight = w;
      }
    }
    if (best) this.#current.set(best.id, bestWeight - total);
    return best;
  }

  /** Forgets keys that no longer exist. */
  retain(ids: ReadonlySet<string>): void {
    for (const id of this.#current.keys()) if (!ids.has(id)) this.#current.delete(id);
  }
}
