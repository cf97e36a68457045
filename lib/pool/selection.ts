/**
 * Pure key-selection policy: which keys may serve a model (static state: enabled, not invalid, no
 * cooldown of the key or its project), and the three strategies that choose among them, all
 * honouring weights:
 *
 * - `round_robin`: position `p` of a rotation shared by every isolate (positions are leased from KV
 *   in blocks) maps to slot `p * step mod W` of the cumulative weights, `W` their sum and `step`
 *   coprime with `W` near `W / golden ratio`: every `W` consecutive positions give each key exactly
 *   its weight, interleaved rather than in bursts.
 * - `least_used`: the key with the fewest requests in the current sliding minute per unit of
 *   weight; ties broken at random.
 * - `adaptive`: two keys drawn at random in proportion to weight, the better scored one wins
 *   (recent success rate, latency, remaining headroom): the best key does not take all traffic,
 *   and a poor key still gets a trickle that lets it prove itself again.
 *
 * Dynamic checks (already tried, over a limit) are done by `accept` only on the keys a strategy
 * looks at, so a pick costs O(log n) for round robin and adaptive, and one tight pass for least used.
 */
import type { Cooldown, GeminiKeyRecord } from "../store/gemini_keys.ts";

/** A strategy name, as settings hold it. */
export type Strategy = "round_robin" | "least_used" | "adaptive";

function activeUntil(cooldowns: Record<string, Cooldown> | undefined, model: string, now: number) {
  if (!cooldowns) return 0;
  const all = cooldowns["*"]?.until ?? 0;
  const one = cooldowns[model]?.until ?? 0;
  const until = Math.max(all, one);
  return until > now ? until : 0;
}

/** When the cooldowns of `key` (and its project's) for `model` end; 0 when none is active. */
export function cooldownEnd(
  key: GeminiKeyRecord,
  model: string,
  options: { now: number; projectCooldowns?: Record<string, Cooldown> },
): number {
  return Math.max(
    activeUntil(key.cooldowns, model, options.now),
    activeUntil(options.projectCooldowns, model, options.now),
  );
}

/** Whether `key` may serve `model` at `now` (enabled, not invalid, neither it nor its project resting). */
export function isUsable(
  key: GeminiKeyRecord,
  model: string,
  options: { now: number; projectCooldowns?: Record<string, Cooldown> },
): boolean {
  if (!key.enabled || key.invalid) return false;
  return cooldownEnd(key, model, options) === 0;
}

/** The keys that may serve one model, with their weights laid out for the strategies. */
export interface Candidates {
  keys: GeminiKeyRecord[];
  /** `cum[i]` is the sum of the weights of keys `0..i`. */
  cum: Float64Array;
  /** `weights[i]` is the weight of key `i` (a flat copy, for tight loops). */
  weights: Float64Array;
  total: number;
  /** Round-robin stride: coprime with `total`, near `total / golden ratio`. */
  step: number;
  /** The time at which a resting key becomes usable (the set must be rebuilt then); Infinity if none. */
  validUntil: number;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** The round-robin stride for total weight `w`. */
export function strideFor(w: number): number {
  if (w <= 2) return 1;
  const target = Math.round(w * 0.6180339887);
  for (let d = 0; d < w; d++) {
    for (const s of [target - d, target + d]) if (s > 0 && s < w && gcd(s, w) === 1) return s;
  }
  return 1;
}

/** Builds the candidate set of `model` from `keys` (`projectCooldowns` by project label). */
export function buildCandidates(
  keys: readonly GeminiKeyRecord[],
  model: string,
  options: {
    now: number;
    projectCooldowns: (project: string) => Record<string, Cooldown> | undefined;
  },
): Candidates {
  const chosen: GeminiKeyRecord[] = [];
  let validUntil = Infinity;
  for (const key of keys) {
    if (!key.enabled || key.invalid) continue;
    const projectCooldowns = key.project ? options.projectCooldowns(key.project) : undefined;
    const end = cooldownEnd(key, model, { now: options.now, projectCooldowns });
    if (end) validUntil = Math.min(validUntil, end);
    else chosen.push(key);
  }
  const cum = new Float64Array(chosen.length);
  const weights = new Float64Array(chosen.length);
  let total = 0;
  chosen.forEach((k, i) => {
    weights[i] = k.weight;
    cum[i] = total += k.weight;
  });
  return { keys: chosen, cum, weights, total, step: strideFor(total), validUntil };
}

/** The index of the key owning slot `s` (0 <= s < total). */
export function slotOwner(cum: Float64Array, s: number): number {
  let lo = 0;
  let hi = cum.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cum[mid] > s) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** What a strategy may ask about candidates while choosing. */
export interface PickContext {
  /** Whether candidate `i` may be used for this request (not tried yet, not over a limit). */
  accept(i: number): boolean;
  /** A number in [0, 1). */
  random(): number;
}

/** Round robin: the owner of the slot at `position`, or the next acceptable one. */
export function pickRoundRobin(
  c: Candidates,
  ctx: PickContext & { position(): number },
): number {
  const n = c.keys.length;
  if (!n) return -1;
  const tries = Math.min(n, 8);
  let last = 0;
  for (let t = 0; t < tries; t++) {
    const p = ctx.position();
    const slot = ((p % c.total) * c.step) % c.total;
    last = slotOwner(c.cum, slot);
    if (ctx.accept(last)) return last;
  }
  for (let j = 1; j < n; j++) {
    const i = (last + j) % n;
    if (ctx.accept(i)) return i;
  }
  return -1;
}

/**
 * Least used: the fewest requests in the sliding minute (`cur[i] + prev[i] * prevWeight`) per
 * unit of weight; the scan starts at a random index so ties go to a random key.
 */
export function pickLeastUsed(
  c: Candidates,
  ctx: PickContext & { cur: Float64Array; prev: Float64Array; prevWeight: number },
): number {
  const n = c.keys.length;
  if (!n) return -1;
  const { weights } = c;
  const { cur, prev, prevWeight } = ctx;
  const start = Math.floor(ctx.random() * n);
  let best = -1;
  let bestScore = Infinity;
  for (let pass = 0; pass < 2; pass++) {
    const from = pass === 0 ? start : 0;
    const to = pass === 0 ? n : start;
    for (let i = from; i < to; i++) {
      const score = (cur[i] + prev[i] * prevWeight + 1) / weights[i];
      if (score < bestScore && ctx.accept(i)) {
        best = i;
        bestScore = score;
      }
    }
  }
  return best;
}

/** Adaptive: two weighted random draws, the better scored wins. */
export function pickAdaptive(
  c: Candidates,
  ctx: PickContext & { score(i: number): number },
): number {
  const n = c.keys.length;
  if (!n) return -1;
  const drawn: number[] = [];
  // The same key may be drawn twice: then it serves whatever its score (its trickle of traffic).
  for (let t = 0; t < 8 && drawn.length < 2; t++) {
    const i = slotOwner(c.cum, Math.floor(ctx.random() * c.total));
    if (drawn.includes(i) || ctx.accept(i)) drawn.push(i);
    if (n === 1) break;
  }
  if (!drawn.length) {
    const start = Math.floor(ctx.random() * n);
    for (let j = 0; j < n; j++) {
      const i = (start + j) % n;
      if (ctx.accept(i)) return i;
    }
    return -1;
  }
  if (drawn.length === 1) return drawn[0];
  return ctx.score(drawn[1]) > ctx.score(drawn[0]) ? drawn[1] : drawn[0];
}

/** Recent behaviour of one key on this isolate, for the adaptive score. */
export interface KeyStats {
  /** Exponentially weighted success rate in [0, 1]; starts at 1. */
  success: number;
  /** Exponentially weighted latency in ms; null until measured. */
  latencyMs: number | null;
}

/** How fast the adaptive statistics follow new outcomes. */
export const STATS_ALPHA = 0.2;

/** Updates `stats` with one outcome. */
export function updateStats(
  stats: KeyStats,
  outcome: { ok: boolean; latencyMs?: number },
): KeyStats {
  const success = stats.success + STATS_ALPHA * ((outcome.ok ? 1 : 0) - stats.success);
  let latencyMs = stats.latencyMs;
  if (outcome.ok && outcome.latencyMs !== undefined) {
    latencyMs = latencyMs === null
      ? outcome.latencyMs
      : latencyMs + STATS_ALPHA * (outcome.latencyMs - latencyMs);
  }
  return { success, latencyMs };
}

/**
 * The adaptive score of a key (higher is better): success rate squared, times a latency factor
 * (1 at 0 ms, 0.5 at 2 s), times remaining headroom (0.25 when a limit is nearly reached, 1 when
 * unused or unlimited).
 */
export function adaptiveScore(stats: KeyStats | undefined, headroom: number): number {
  const success = stats?.success ?? 1;
  const latency = stats?.latencyMs ?? 0;
  return success * success * (1 / (1 + latency / 2000)) * (0.25 + 0.75 * headroom);
}
