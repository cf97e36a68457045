/**
 * Per-isolate enforcement of user-key limits (requests per minute, concurrent requests, and the
 * budgets of tokens and requests per Pacific day and month) without a KV round trip per request.
 *
 * RPM permits and concurrency slots are leased from the key's shared window record in KV
 * (`lib/store/rate_limits.ts`) in blocks and used up in memory. The leases of all isolates never
 * add up to more than the limit, so there is no overshoot across isolates; the price is that a
 * block one isolate holds is not available to another: permits lapse at the end of their minute,
 * and permits and slots unused for `IDLE_RETURN_MS` are given back (and on `drain()`). A block is
 * a fraction of what is left (`>> 3`), so small limits are leased one request at a time.
 *
 * One lease per key runs at a time on an isolate and serves every request waiting for it; it is
 * one KV commit, checked against this isolate's last view of the record, unless another isolate
 * wrote meanwhile. A block is renewed ahead of need in the background, so steady traffic waits for
 * no KV round trip at all.
 *
 * Budgets (`user_budgets.ts`): the key's counters of the current periods are read from KV in one
 * round trip (refreshed in the background every `BUDGETS_FRESH_MS`), plus what this isolate
 * recorded that the read does not include yet (asked of the usage recorder by versionstamp), so
 * this isolate's own usage counts at once and other isolates' within seconds. A request is
 * admitted while the budget is not used up, so the request that crosses it is served whole, and
 * requests running at the same time may all cross it.
 */
import { pacificDayNumber, pacificMonthNumber } from "../pool/calendar.ts";
import { randomId } from "../secrets.ts";
import {
  type KnownWindow,
  LEASE_MS,
  leaseQuota,
  type QuotaGrant,
  type QuotaRequest,
} from "../store/rate_limits.ts";
import {
  type Budget,
  type BudgetName,
  type BudgetRead,
  budgetResetAt,
  type LimitedBudgets,
  limitedBudgets,
  readBudgets,
} from "../store/user_budgets.ts";
import type { UserKeyRecord } from "../store/user_keys.ts";

const MINUTE = 60_000;
/** Permits leased ahead of need, at most (on top of `>> 3` of what is left). */
const PERMITS_AHEAD = 1_000;
/** Slots held ahead of need, at most (on top of `>> 3` of what is free). */
const SLOTS_AHEAD = 16;
/** Leased permits and slots unused this long (real time) are given back. */
export const IDLE_RETURN_MS = 2_000;
/** How often held leases are checked for idleness. */
const SWEEP_MS = 1_000;
/** A key's budget counters are re-read in the background after this long (real time). */
export const BUDGETS_FRESH_MS = 2_000;
/** Counters read longer ago than this are not used without reading them again. */
const BUDGETS_STALE_MS = 30_000;
/** How long a minute whose permits are all leased out is refused without asking KV again. */
const EXHAUSTED_RECHECK_MS = 1_000;
/** Lease rounds one request goes through before it is refused for contention. */
const MAX_ROUNDS = 8;
/** States kept per isolate at most (idle ones are dropped first). */
const MAX_STATES = 10_000;

/** The outcome of admitting one request. */
export type Admission =
  | {
    allowed: true;
    /** Gives the concurrency slot back when the request is over; null if it took none. */
    release: (() => void) | null;
  }
  | {
    allowed: false;
    limit: "rpm" | "concurrency" | "contention" | BudgetName;
    /** How long until a retry can succeed. */
    retryAfterMs: number;
    /** The value of the limit that was hit. */
    value: number;
  };

interface KeyState {
  userId: string;
  rpm: number | null;
  maxConcurrency: number | null;
  /** The minute `permits` belong to. */
  minute: number;
  /** Leased permits of `minute` not used yet. */
  permits: number;
  /** Permits left in KV for `minute` after the last lease (null: unknown or unlimited). */
  permitsLeft: number | null;
  /** The minute KV had no permits left in, and when that was seen (performance.now()). */
  exhaustedMinute: number;
  exhaustedAt: number;
  lastGrant: number;
  /** Slots held in KV by this isolate, and those in use. */
  slots: number;
  inFlight: number;
  /** Slots free in KV after the last lease (null: unknown or unlimited). */
  slotsFree: number | null;
  holdUntil: number;
  known: KnownWindow | null;
  lease: Promise<void> | null;
  /** The last lease ran out of retries. */
  contention: boolean;
  waitPermits: number;
  waitSlots: number;
  /** performance.now() of the last admission or release. */
  lastUse: number;
}

interface BudgetState {
  /** Which budgets (`LimitedBudgets.names`), in which Pacific day and month, `reads` holds. */
  names: string;
  day: number;
  month: number;
  budgets: Budget[];
  /** The counters as last read, in the order of `budgets`. */
  reads: BudgetRead[];
  /** performance.now() when the read began; -Infinity before the first read. */
  readAt: number;
  loading: Promise<void> | null;
}

/** Options of `UserLimiter`. */
export interface UserLimiterOptions {
  kv: Deno.Kv;
  now: () => number;
  /** What this isolate recorded on a budget counter that a read at `versionstamp` lacks. */
  budgetSince: (id: string, versionstamp: string | null) => number;
}

const UNLIMITED: Admission = { allowed: true, release: null };

/** Whether a key's held slots are due for renewal (past half their lease). */
function holdDue(s: KeyState, now: number): boolean {
  return s.holdUntil > 0 && now > s.holdUntil - LEASE_MS / 2;
}

/** Leases and local accounting of user-key limits for one isolate. */
export class UserLimiter {
  #options: UserLimiterOptions;
  #holder = randomId("h", 9);
  #states = new Map<string, KeyState>();
  #budgets = new Map<string, BudgetState>();
  #pending = new Set<Promise<unknown>>();
  #sweep: ReturnType<typeof setInterval> | null = null;

  constructor(options: UserLimiterOptions) {
    this.#options = options;
  }

  /** Admits one request of `key` (expiry is checked by the caller), or says which limit refused. */
  async admit(key: UserKeyRecord): Promise<Admission> {
    const window = key.rpm !== null || key.maxConcurrency !== null;
    const limited = limitedBudgets(key);
    const budgets = limited.budgets;
    if (!window && !budgets.length) return UNLIMITED;
    const now = this.#options.now();
    const used = budgets.length ? this.#budgetsUsed(key.id, limited, now) : null;
    if (Array.isArray(used)) {
      const refusal = budgetRefusal(key, budgets, used, now);
      if (refusal) return refusal;
    }
    // The window and a budget read that is due run side by side: one round trip, not two. The
    // read's failure is handled below, once the window is done (never left unhandled meanwhile).
    if (used && !Array.isArray(used)) used.catch(() => {});
    const admitted = window ? await this.#admitWindow(key) : UNLIMITED;
    if (used && !Array.isArray(used)) {
      let counts: number[];
      try {
        counts = await used;
      } catch (err) {
        // The request is not admitted: its permit and slot go back.
        if (admitted.allowed) this.#giveBackLocal(key, admitted);
        throw err;
      }
      const refusal = budgetRefusal(key, budgets, counts, now);
      if (refusal) {
        if (admitted.allowed) this.#giveBackLocal(key, admitted);
        return refusal;
      }
    }
    return admitted;
  }

  #state(key: UserKeyRecord): KeyState {
    let s = this.#states.get(key.id);
    if (!s) {
      if (this.#states.size >= MAX_STATES) this.#forgetIdle();
      s = {
        userId: key.id,
        rpm: key.rpm,
        maxConcurrency: key.maxConcurrency,
        minute: -1,
        permits: 0,
        permitsLeft: null,
        exhaustedMinute: -1,
        exhaustedAt: 0,
        lastGrant: 0,
        slots: 0,
        inFlight: 0,
        slotsFree: null,
        holdUntil: 0,
        known: null,
        lease: null,
        contention: false,
        waitPermits: 0,
        waitSlots: 0,
        lastUse: performance.now(),
      };
      this.#states.set(key.id, s);
    }
    s.rpm = key.rpm;
    s.maxConcurrency = key.maxConcurrency;
    return s;
  }

  /** Takes a permit and a slot (as the key's limits require) from what this isolate holds. */
  #takeLocal(s: KeyState, minute: number): boolean {
    if (s.minute !== minute) {
      // Permits of a past minute are void (KV's count started over too).
      s.minute = minute;
      s.permits = 0;
      s.permitsLeft = null;
    }
    if (s.rpm !== null && s.permits <= 0) return false;
    if (s.maxConcurrency !== null && s.inFlight >= Math.min(s.slots, s.maxConcurrency)) {
      return false;
    }
    if (s.rpm !== null) s.permits--;
    if (s.maxConcurrency !== null) s.inFlight++;
    s.lastUse = performance.now();
    return true;
  }

  async #admitWindow(key: UserKeyRecord): Promise<Admission> {
    const s = this.#state(key);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const now = this.#options.now();
      const minute = Math.floor(now / MINUTE);
      if (this.#takeLocal(s, minute)) {
        this.#ahead(s, now);
        return { allowed: true, release: s.maxConcurrency === null ? null : this.#releaser(s) };
      }
      const lacksPermit = s.rpm !== null && s.permits <= 0;
      const lacksSlot = s.maxConcurrency !== null &&
        s.inFlight >= Math.min(s.slots, s.maxConcurrency);
      if (
        lacksPermit && s.exhaustedMinute === minute &&
        performance.now() - s.exhaustedAt < EXHAUSTED_RECHECK_MS
      ) return this.#refuse(s, "rpm", now);
      if (round > 0) {
        if (s.contention) {
          return { allowed: false, limit: "contention", retryAfterMs: 1000, value: 0 };
        }
        if (lacksPermit && s.permitsLeft === 0) {
          s.exhaustedMinute = minute;
          s.exhaustedAt = performance.now();
          return this.#refuse(s, "rpm", now);
        }
        if (lacksSlot && s.slotsFree === 0) return this.#refuse(s, "concurrency", now);
      }
      if (lacksPermit) s.waitPermits++;
      if (lacksSlot) s.waitSlots++;
      try {
        await this.#lease(s, {});
      } finally {
        if (lacksPermit) s.waitPermits--;
        if (lacksSlot) s.waitSlots--;
      }
    }
    return { allowed: false, limit: "contention", retryAfterMs: 1000, value: 0 };
  }

  #refuse(s: KeyState, limit: "rpm" | "concurrency", now: number): Admission {
    if (limit === "rpm") {
      return {
        allowed: false,
        limit,
        retryAfterMs: (Math.floor(now / MINUTE) + 1) * MINUTE - now,
        value: s.rpm!,
      };
    }
    return { allowed: false, limit, retryAfterMs: 1000, value: s.maxConcurrency! };
  }

  #releaser(s: KeyState): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      s.inFlight--;
      s.lastUse = performance.now();
    };
  }

  /** Undoes an admission that a later check refused (the permit and slot stay leased here). */
  #giveBackLocal(key: UserKeyRecord, admitted: Admission & { allowed: true }): void {
    const s = this.#states.get(key.id);
    if (!s || key.rpm === null && key.maxConcurrency === null) return;
    if (key.rpm !== null) s.permits++;
    admitted.release?.();
  }

  /** Leases the next block in the background before it is needed; renews a hold in time. */
  #ahead(s: KeyState, now: number): void {
    if (s.lease) return;
    const low = s.rpm !== null && s.permitsLeft !== null && s.permitsLeft >= 8 &&
      s.permits <= s.lastGrant >> 1;
    const renew = s.slots > 0 && holdDue(s, now);
    if (low || renew) {
      this.#lease(s, { renew }).catch((err) =>
        console.error("Leasing user-key limits failed:", err?.message ?? err)
      );
    }
    this.#armSweep();
  }

  /** Runs one lease for `s` (or joins the one running) and applies its grant. */
  #lease(s: KeyState, options: { renew?: boolean; giveBack?: boolean }): Promise<void> {
    if (s.lease) return s.lease;
    let req: QuotaRequest;
    if (options.giveBack) {
      req = {
        holder: this.#holder,
        rpm: s.rpm,
        maxConcurrency: s.maxConcurrency,
        permits: { need: 0, ahead: 0 },
        giveBack: { minute: s.minute, permits: s.permits },
        slots: s.maxConcurrency === null ? null : { need: s.inFlight, ahead: 0 },
      };
      // What is being given back is no longer this isolate's from now on: a request arriving
      // meanwhile must lease, not take a slot the grant is about to drop.
      s.permits = 0;
      if (s.maxConcurrency !== null) s.slots = Math.min(s.slots, s.inFlight);
    } else {
      req = {
        holder: this.#holder,
        rpm: s.rpm,
        maxConcurrency: s.maxConcurrency,
        permits: { need: s.rpm === null ? 0 : s.waitPermits, ahead: PERMITS_AHEAD },
        slots: s.maxConcurrency === null
          ? null
          : { need: Math.max(s.slots, s.inFlight + s.waitSlots), ahead: SLOTS_AHEAD },
        renew: options.renew,
      };
    }
    const run = (async () => {
      const res = await leaseQuota(this.#options.kv, s.userId, {
        req,
        now: this.#options.now,
        known: s.known,
      });
      if (!res) {
        s.contention = true;
        s.known = null;
        return;
      }
      s.contention = false;
      s.known = res.known;
      this.#apply(s, res.grant);
    })().finally(() => {
      if (s.lease === run) s.lease = null;
      this.#pending.delete(run);
      // A give-back that left requests running without their slots held in KV (the grant is
      // smaller than what runs): lease them back at once, so other isolates cannot take them.
      if (options.giveBack && s.maxConcurrency !== null && s.inFlight > s.slots && !s.lease) {
        this.#lease(s, {}).catch((err) =>
          console.error("Leasing user-key limits failed:", err?.message ?? err)
        );
      }
    });
    s.lease = run;
    this.#pending.add(run);
    return run;
  }

  #apply(s: KeyState, grant: QuotaGrant): void {
    if (grant.minute > s.minute) {
      s.minute = grant.minute;
      s.permits = 0;
    }
    if (grant.minute === s.minute) {
      s.permits += grant.permits;
      s.permitsLeft = grant.permitsLeft;
      s.lastGrant = grant.permits;
    }
    s.slots = grant.slots;
    s.slotsFree = grant.slotsFree;
    s.holdUntil = grant.holdUntil;
  }

  #armSweep(): void {
    if (this.#sweep !== null) return;
    const sweep = setInterval(() => this.#returnIdle(false), SWEEP_MS);
    // Idle leases lapse by themselves; they must not keep the process alive.
    Deno.unrefTimer(sweep);
    this.#sweep = sweep;
  }

  /**
   * Gives back what idle keys hold (every key's unused leases when `all`), and renews the hold of
   * slots still in use before it lapses (a request running longer than a lease, with no other
   * request to renew it, would otherwise let other isolates take its slot).
   */
  #returnIdle(all: boolean): Promise<unknown> {
    const at = performance.now();
    const now = this.#options.now();
    const minute = Math.floor(now / MINUTE);
    const returns: Promise<void>[] = [];
    let holding = false;
    for (const s of this.#states.values()) {
      if (s.lease) {
        holding = true;
        continue;
      }
      if (!all && s.inFlight > 0 && holdDue(s, now)) {
        holding = true;
        returns.push(
          this.#lease(s, { renew: true }).catch((err) =>
            console.error("Renewing user-key slots failed:", err?.message ?? err)
          ),
        );
        continue;
      }
      if (s.minute !== minute) s.permits = 0;
      const spare = s.permits > 0 || s.slots > s.inFlight;
      if (spare && (all || at - s.lastUse >= IDLE_RETURN_MS)) {
        returns.push(
          this.#lease(s, { giveBack: true }).catch((err) =>
            console.error("Returning user-key leases failed:", err?.message ?? err)
          ),
        );
      } else if (spare || s.inFlight > 0 || s.slots > 0) holding = true;
    }
    if (!holding && !returns.length && this.#sweep !== null) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
    return Promise.all(returns);
  }

  #forgetIdle(): void {
    for (const [id, s] of this.#states) {
      if (!s.lease && s.inFlight === 0 && s.slots === 0 && s.permits === 0) {
        this.#states.delete(id);
      }
    }
  }

  /**
   * What `userId` used of `budgets` in their current periods (in that order): numbers when known
   * well enough, else after one KV read.
   */
  #budgetsUsed(
    userId: string,
    limited: LimitedBudgets,
    now: number,
  ): number[] | Promise<number[]> {
    const day = pacificDayNumber(now);
    const month = pacificMonthNumber(now);
    let b = this.#budgets.get(userId);
    if (!b || b.names !== limited.names || b.day !== day || b.month !== month) {
      if (this.#budgets.size >= MAX_STATES) this.#budgets.clear();
      b = {
        names: limited.names,
        day,
        month,
        budgets: limited.budgets,
        reads: [],
        readAt: -Infinity,
        loading: null,
      };
      this.#budgets.set(userId, b);
    }
    const state = b;
    const used = () =>
      state.reads.map((r) => r.used + this.#options.budgetSince(r.id, r.versionstamp));
    const age = performance.now() - state.readAt;
    if (age <= BUDGETS_FRESH_MS) return used();
    const load = state.loading ?? this.#readBudgets(userId, state, now);
    if (age <= BUDGETS_STALE_MS) {
      load.catch((err) => console.error("Reading user-key budgets failed:", err?.message ?? err));
      return used();
    }
    return load.then(used);
  }

  #readBudgets(userId: string, b: BudgetState, now: number): Promise<void> {
    const startedAt = performance.now();
    const read = readBudgets(this.#options.kv, { userId, budgets: b.budgets, now });
    const run = read.then((reads) => {
      b.reads = reads;
      b.readAt = startedAt;
    }).finally(() => {
      b.loading = null;
      this.#pending.delete(run);
    });
    b.loading = run;
    this.#pending.add(run);
    return run;
  }

  /** Waits for KV work in flight and stops the idle sweep (tests); leases stay held. */
  async drain(): Promise<void> {
    this.#stopSweep();
    while (this.#pending.size) await Promise.allSettled([...this.#pending]);
    this.#stopSweep();
  }

  /** Gives back every unused lease, so other isolates can use them at once (shutdown). */
  async close(): Promise<void> {
    await this.drain();
    await this.#returnIdle(true);
    await this.drain();
  }

  #stopSweep(): void {
    if (this.#sweep !== null) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
  }
}

/** The first of `budgets` that `used` (in the same order) has used up, as a refusal, or null. */
function budgetRefusal(
  key: UserKeyRecord,
  budgets: readonly Budget[],
  used: readonly number[],
  now: number,
): Admission | null {
  for (let i = 0; i < budgets.length; i++) {
    const limit = key[budgets[i].field];
    if (limit !== null && used[i] >= limit) {
      return {
        allowed: false,
        limit: budgets[i].name,
        retryAfterMs: budgetResetAt(budgets[i], now) - now,
        value: limit,
      };
    }
  }
  return null;
}
