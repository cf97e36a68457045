/**
 * Per-key, per-model limits (RPM, input TPM, RPD) and the usage windows they are checked against,
 * without a KV round trip on the hot path.
 *
 * Usage of a key is what KV says (minute and Pacific-day buckets, read in the background every
 * few seconds, so other isolates' traffic shows up) plus what this isolate reserved that KV does
 * not hold yet. Each pick reserves one request and the estimated input tokens; when the request's
 * usage is written to KV the reservation is corrected to the real token count and marked
 * committed, and it is dropped from the local view once a KV read that started after the commit
 * has been applied. The per-minute figure is a sliding-window estimate (the current minute plus the
 * previous one weighted by how much of it still lies within the last 60 s), which never exceeds the
 * limit in any aligned minute either.
 */
import type { Limits } from "../store/models.ts";
import type { RecentUsage } from "../store/usage.ts";
import { nextPacificMidnight, pacificDayNumber } from "./calendar.ts";

const MINUTE = 60_000;
/** A reservation never written to KV (its request never finished accounting) is dropped after this. */
export const RESERVATION_TTL_MS = 10 * MINUTE;

/**
 * The limits that apply to a key (or project) for a model: per dimension, an admin override for
 * the project wins, then what a 429 taught us, then the model's configured default.
 */
export function effectiveLimits(
  layers: { override?: Partial<Limits>; learned?: Partial<Limits>; defaults?: Partial<Limits> },
): Limits {
  const pick = (d: keyof Limits) =>
    layers.override?.[d] ?? layers.learned?.[d] ?? layers.defaults?.[d] ?? null;
  return { rpm: pick("rpm"), tpm: pick("tpm"), rpd: pick("rpd") };
}

/** Whether `limits` has any limit set. */
export function hasLimits(limits: Limits): boolean {
  return limits.rpm !== null || limits.tpm !== null || limits.rpd !== null;
}

/** Usage of a key or project for one model, as limits see it. */
export interface WindowUsage {
  /** Requests in the sliding minute. */
  rpm: number;
  /** Input tokens in the sliding minute. */
  tpm: number;
  /** Requests in the current Pacific day. */
  rpd: number;
  /** Raw counts of the current and previous minute, for recovery-time arithmetic. */
  cur: { att: number; in: number };
  prev: { att: number; in: number };
}

/** An empty usage. */
export function noUsage(): WindowUsage {
  return { rpm: 0, tpm: 0, rpd: 0, cur: { att: 0, in: 0 }, prev: { att: 0, in: 0 } };
}

/** Adds `b` into `a` (a project's usage is the sum over its keys). */
export function addUsage(a: WindowUsage, b: WindowUsage): WindowUsage {
  a.rpm += b.rpm;
  a.tpm += b.tpm;
  a.rpd += b.rpd;
  a.cur.att += b.cur.att;
  a.cur.in += b.cur.in;
  a.prev.att += b.prev.att;
  a.prev.in += b.prev.in;
  return a;
}

/** Whether one more request costing `tokens` input tokens would exceed `limits`. */
export function wouldExceed(usage: WindowUsage, limits: Limits, tokens: number): boolean {
  if (limits.rpm !== null && usage.rpm + 1 > limits.rpm + 1e-9) return true;
  if (limits.rpd !== null && usage.rpd + 1 > limits.rpd) return true;
  // A request bigger than the whole TPM limit may still go alone into an empty window.
  if (limits.tpm !== null && usage.tpm > 0 && usage.tpm + tokens > limits.tpm + 1e-9) return true;
  return false;
}

/**
 * When one more request costing `tokens` fits again (epoch ms), assuming no other traffic: the
 * window slides (or the Pacific day ends). `now` itself when it fits already.
 */
export function fitsAgainAt(
  usage: WindowUsage,
  limits: Limits,
  options: { tokens: number; now: number },
): number {
  const { now, tokens } = options;
  let at = now;
  if (limits.rpd !== null && usage.rpd + 1 > limits.rpd) {
    at = Math.max(at, nextPacificMidnight(now));
  }
  const minute = Math.floor(now / MINUTE);
  const ms = (f: number) => Math.ceil(Math.max(0, Math.min(1, f)) * MINUTE - 1e-6);
  const slide = (cur: number, prev: number, room: number): number => {
    // Within this minute: prev * (1 - f) + cur <= room.
    if (cur <= room && prev > 0) {
      const f = 1 - (room - cur) / prev;
      return minute * MINUTE + ms(f);
    }
    if (cur <= room) return now;
    // Next minute: cur becomes prev.
    const f = 1 - room / cur;
    return (minute + 1) * MINUTE + ms(f);
  };
  if (limits.rpm !== null && usage.rpm + 1 > limits.rpm + 1e-9) {
    at = Math.max(at, slide(usage.cur.att, usage.prev.att, limits.rpm - 1));
  }
  if (limits.tpm !== null && usage.tpm > 0 && usage.tpm + tokens > limits.tpm + 1e-9) {
    at = Math.max(at, slide(usage.cur.in, usage.prev.in, Math.max(0, limits.tpm - tokens)));
  }
  return at;
}

interface Counter {
  att: number;
  in: number;
}

/** One request's claim on a key's windows, held until KV has it. */
export interface Reservation {
  keyId: string;
  model: string;
  minute: number;
  day: number;
  tokens: number;
  createdAt: number;
  /** Sequence number of the commit that wrote it to KV; null while in flight. */
  committed: number | null;
}

/** model -> keyId -> counter */
type ByModel<T> = Map<string, Map<string, T>>;

function bump(map: ByModel<Counter>, model: string, keyId: string, att: number, tokens: number) {
  let m = map.get(model);
  if (!m) map.set(model, m = new Map());
  const c = m.get(keyId);
  if (c) {
    c.att += att;
    c.in += tokens;
  } else m.set(keyId, { att, in: tokens });
}

function add(to: Map<string, Counter>[], counts: Map<string, Counter> | undefined): void {
  if (counts) to.push(counts);
}

/** The usage of every key for one model at one instant; cheap per-key lookups for a pick. */
export class ModelWindow {
  #parts: {
    cur: Map<string, Counter>[];
    prev: Map<string, Counter>[];
    day: Map<string, Counter>[];
  };
  #weight: number;

  constructor(
    parts: {
      cur: Map<string, Counter>[];
      prev: Map<string, Counter>[];
      day: Map<string, Counter>[];
    },
    prevWeight: number,
  ) {
    this.#parts = parts;
    this.#weight = prevWeight;
  }

  /** Full usage of `keyId`. */
  usage(keyId: string): WindowUsage {
    const u = noUsage();
    for (const m of this.#parts.cur) {
      const c = m.get(keyId);
      if (c) {
        u.cur.att += c.att;
        u.cur.in += c.in;
      }
    }
    for (const m of this.#parts.prev) {
      const c = m.get(keyId);
      if (c) {
        u.prev.att += c.att;
        u.prev.in += c.in;
      }
    }
    for (const m of this.#parts.day) u.rpd += m.get(keyId)?.att ?? 0;
    u.rpm = u.cur.att + u.prev.att * this.#weight;
    u.tpm = u.cur.in + u.prev.in * this.#weight;
    return u;
  }
}

/** Recent usage per key and model: the last KV snapshot plus local reservations KV lacks. */
export class UsageTracker {
  #kvMinutes = new Map<number, ByModel<Counter>>();
  #kvDay: { day: number; counts: ByModel<Counter> } = { day: -1, counts: new Map() };
  #localMinutes = new Map<number, ByModel<Counter>>();
  #localDays = new Map<number, ByModel<Counter>>();
  #reservations = new Set<Reservation>();
  #tick = 0;
  #snapshotTick = 0;
  #changed = new Map<string, number>();
  #seq = 0;

  /** Counts one request (and its estimated tokens) for `keyId` and `model` now. */
  reserve(keyId: string, model: string, options: { now: number; tokens: number }): Reservation {
    const r: Reservation = {
      keyId,
      model,
      minute: Math.floor(options.now / MINUTE),
      day: pacificDayNumber(options.now),
      tokens: Math.max(0, Math.round(options.tokens)),
      createdAt: options.now,
      committed: null,
    };
    this.#apply(r, 1, r.tokens);
    this.#reservations.add(r);
    this.#changed.set(model, ++this.#tick);
    return r;
  }

  #apply(r: Reservation, att: number, tokens: number): void {
    let minute = this.#localMinutes.get(r.minute);
    if (!minute) this.#localMinutes.set(r.minute, minute = new Map());
    bump(minute, r.model, r.keyId, att, tokens);
    let day = this.#localDays.get(r.day);
    if (!day) this.#localDays.set(r.day, day = new Map());
    bump(day, r.model, r.keyId, att, 0);
  }

  /** Takes back a reservation whose request was never sent (its caller left first). */
  cancel(r: Reservation): void {
    if (!this.#reservations.delete(r) || r.committed !== null) return;
    this.#apply(r, -1, -r.tokens);
    this.#changed.set(r.model, ++this.#tick);
  }

  /**
   * Marks reservations as written to KV, with `tokens` the real input tokens each one used (the
   * served attempt has the request's prompt tokens, failed attempts none).
   */
  commit(entries: { reservation: Reservation; tokens: number }[]): void {
    const seq = ++this.#seq;
    for (const { reservation: r, tokens } of entries) {
      if (!this.#reservations.has(r) || r.committed !== null) continue;
      const real = Math.max(0, Math.round(tokens));
      if (real !== r.tokens) {
        this.#apply(r, 0, real - r.tokens);
        r.tokens = real;
      }
      r.committed = seq;
    }
  }

  /** A marker to take before reading KV; pass it to `applySnapshot` with what was read. */
  mark(): number {
    return this.#seq;
  }

  /** Replaces the KV view and drops reservations KV now holds (committed at or before `mark`). */
  applySnapshot(snapshot: RecentUsage, options: { mark: number; now: number }): void {
    const minutes = new Map<number, ByModel<Counter>>();
    for (const [minute, counts] of snapshot.minutes) {
      const map: ByModel<Counter> = new Map();
      for (const c of counts) bump(map, c.model, c.keyId, c.att, c.in);
      minutes.set(minute, map);
    }
    this.#kvMinutes = minutes;
    const day: ByModel<Counter> = new Map();
    for (const c of snapshot.dayCounts) bump(day, c.model, c.keyId, c.att, 0);
    this.#kvDay = { day: snapshot.day, counts: day };
    for (const r of this.#reservations) {
      const inKv = r.committed !== null && r.committed <= options.mark;
      const stale = r.committed === null && options.now - r.createdAt > RESERVATION_TTL_MS;
      if (inKv || stale) {
        this.#apply(r, -1, -r.tokens);
        this.#reservations.delete(r);
      }
    }
    this.#prune(options.now);
    this.#snapshotTick = ++this.#tick;
    // Older per-model changes are covered by the snapshot tick (keeps this map bounded).
    this.#changed.clear();
  }

  #prune(now: number): void {
    const minute = Math.floor(now / MINUTE);
    const day = pacificDayNumber(now);
    for (const m of this.#localMinutes.keys()) if (m < minute - 1) this.#localMinutes.delete(m);
    for (const d of this.#localDays.keys()) if (d < day) this.#localDays.delete(d);
    for (const r of this.#reservations) {
      if (r.minute < minute - 1 && r.day < day) this.#reservations.delete(r);
    }
  }

  /** The window of `model` at `now`. */
  window(model: string, now: number): ModelWindow {
    const minute = Math.floor(now / MINUTE);
    const day = pacificDayNumber(now);
    const cur: Map<string, Counter>[] = [];
    const prev: Map<string, Counter>[] = [];
    const days: Map<string, Counter>[] = [];
    add(cur, this.#kvMinutes.get(minute)?.get(model));
    add(cur, this.#localMinutes.get(minute)?.get(model));
    add(prev, this.#kvMinutes.get(minute - 1)?.get(model));
    add(prev, this.#localMinutes.get(minute - 1)?.get(model));
    if (this.#kvDay.day === day) add(days, this.#kvDay.counts.get(model));
    add(days, this.#localDays.get(day)?.get(model));
    return new ModelWindow({ cur, prev, day: days }, 1 - (now - minute * MINUTE) / MINUTE);
  }

  /**
   * A number that changes whenever the request counts of `model` may have changed (a reservation
   * or a new KV snapshot), for caches derived from `window`.
   */
  version(model: string): number {
    return Math.max(this.#changed.get(model) ?? 0, this.#snapshotTick);
  }

  /** Reservations held (for tests and the admin view). */
  get pending(): number {
    return this.#reservations.size;
  }
}
