/**
 * Usage accounting in KV with `Deno.KvU64` sums (which never conflict).
 *
 * Layout, per key and model:
 * - `["usage", "m", minute, keyId, model, metric]`: minute buckets (the pool's RPM/TPM windows and
 *   the last hour of stats); pruned after `MINUTE_RETENTION_MS` by the roll-up job.
 * - `["usage", "h", hour, keyId, model, metric]`: hour buckets, written directly alongside the
 *   minute ones; rolled up into day buckets after `HOUR_RETENTION_MS`.
 * - `["usage", "d", utcDay, keyId, model, metric]`: day buckets made by the roll-up job.
 * - `["usage", "pd", pacificDay, keyId, model, "att"]`: attempts per Pacific day (the RPD window,
 *   aligned with Google's reset); pruned after two days.
 * - `["usage_total", ...]`: lifetime totals per key, model, user key and overall, and failed
 *   attempts per cause (`["usage_total", "cause", cause]`).
 * - `["usage_cause", hour, cause]`: failed attempts per cause and hour; pruned after
 *   `HOUR_RETENTION_MS`.
 * - User-key budget counters per Pacific day and month (`user_budgets.ts`): pruned after their
 *   period's successor ends.
 *
 * Sum mutations cannot carry `expireIn`, hence the roll-up job instead of expiry.
 */
import { runSteps } from "../steps.ts";
import { pacificDayNumber } from "../pool/calendar.ts";
import { deleteListed, keyBytes, MAX_ATOMIC_KEY_BYTES } from "./kv_util.ts";
import {
  budgetCounterId,
  budgetIncrements,
  isBudgetKey,
  staleBudgetRanges,
} from "./user_budgets.ts";

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** How long minute buckets are kept (the hour buckets hold the same counts). */
export const MINUTE_RETENTION_MS = 2 * HOUR;
/** How long hour buckets are kept before they are rolled up into day buckets. */
export const HOUR_RETENTION_MS = 48 * HOUR;
/** How long day buckets are kept. */
export const DAY_RETENTION_MS = 90 * DAY;

/** Counter names: client requests served, upstream attempts, failed attempts, failed requests, tokens. */
export const METRICS = ["req", "att", "err", "fail", "in", "out", "think"] as const;
/** One counter name. */
export type Metric = typeof METRICS[number];
/** A set of counter values. */
export type Counts = Record<Metric, number>;

/**
 * Why an attempt failed: a 429 for a minute window or for the day's quota, a key Google refuses,
 * an upstream 5xx, a timeout, a network failure, an empty answer, another refusal (a 403 about
 * permission or billing), or Google not serving the key from where it called (its location).
 */
export const ERROR_CAUSES = [
  "rate_limited",
  "daily_quota",
  "invalid_key",
  "server_error",
  "timeout",
  "network",
  "empty_answer",
  "refused",
  "location",
] as const;
/** One cause of failed attempts. */
export type ErrorCause = typeof ERROR_CAUSES[number];
/** Failed attempts per cause. */
export type CauseCounts = Record<ErrorCause, number>;

/** Every cause at zero. */
export function emptyCauseCounts(): CauseCounts {
  return Object.fromEntries(ERROR_CAUSES.map((c) => [c, 0])) as CauseCounts;
}

/** One upstream attempt made for a request. */
export interface Attempt {
  keyId: string;
  ok: boolean;
  /** Why it failed (failed attempts only; absent in tests and older callers). */
  cause?: ErrorCause;
  /** In-memory bookkeeping of the pool (a usage reservation); never stored. */
  reservation?: unknown;
}

/** What one client request did, recorded once when its answer is complete. */
export interface UsageEvent {
  now: number;
  model: string;
  userId: string | null;
  attempts: Attempt[];
  /** True when a key served the request (the last attempt's key). */
  ok: boolean;
  /**
   * True when the client got (part of) an answer from the last attempt's key: a stream that broke
   * after content came is not `ok`, but its tokens count and the user key's budgets are charged.
   * Defaults to `ok`.
   */
  served?: boolean;
  promptTokens: number;
  completionTokens: number;
  thinkingTokens: number;
}

/** Counts with every metric at zero. */
export function emptyCounts(): Counts {
  return { req: 0, att: 0, err: 0, fail: 0, in: 0, out: 0, think: 0 };
}

function sum(key: Deno.KvKey, n: number): Deno.KvMutation {
  return { type: "sum", key, value: new Deno.KvU64(BigInt(Math.round(n))) };
}

/**
 * Requests that share their time minute, model, user key, attempts and outcome: their counters
 * differ only by a factor (the request count) and by the token sums, so a batch keeps one group
 * per shape instead of one set of mutations per request.
 */
interface EventGroup {
  now: number;
  model: string;
  userId: string | null;
  attempts: readonly { keyId: string; ok: boolean; cause?: ErrorCause }[];
  ok: boolean;
  served: boolean;
  /** Requests in the group. */
  n: number;
  promptTokens: number;
  completionTokens: number;
  thinkingTokens: number;
}

/** Calls `add` with every counter key of `g` and the amount it grows by (zero amounts skipped). */
function eachCounter(g: EventGroup, add: (key: Deno.KvKey, n: number) => void): void {
  const minute = Math.floor(g.now / MINUTE);
  const hour = Math.floor(g.now / HOUR);
  const pday = pacificDayNumber(g.now);
  const put = (key: Deno.KvKey, n: number) => {
    if (n > 0) add(key, n);
  };
  const bucketed = (keyId: string, metric: Metric, n: number) => {
    put(["usage", "m", minute, keyId, g.model, metric], n);
    put(["usage", "h", hour, keyId, g.model, metric], n);
    put(["usage_total", "key", keyId, metric], n);
  };
  // Attempts of the same key in one request add up (as several sums on one key would).
  for (const a of g.attempts) {
    bucketed(a.keyId, "att", g.n);
    put(["usage", "pd", pday, a.keyId, g.model, "att"], g.n);
    if (!a.ok) {
      bucketed(a.keyId, "err", g.n);
      if (a.cause) {
        put(["usage_cause", hour, a.cause], g.n);
        put(["usage_total", "cause", a.cause], g.n);
      }
    }
  }
  // The tokens of an answer count on the key that gave it (its TPM window), even one that broke.
  const tokens: [Metric, number][] = g.served
    ? [["in", g.promptTokens], ["out", g.completionTokens], ["think", g.thinkingTokens]]
    : [];
  const servedBy = g.attempts.at(-1)?.keyId ?? "-";
  for (const [metric, n] of tokens) bucketed(servedBy, metric, n);
  if (g.ok) bucketed(servedBy, "req", g.n);
  else bucketed("-", "fail", g.n);
  const totals: [Metric, number][] = [g.ok ? ["req", g.n] : ["fail", g.n], ...tokens];
  // The model, overall and user-key totals count the request's attempts and errors too.
  const errors = g.attempts.filter((a) => !a.ok).length;
  const overall: [Metric, number][] = [
    ...totals,
    ["att", g.attempts.length * g.n],
    ["err", errors * g.n],
  ];
  for (const [metric, n] of overall) {
    put(["usage_total", "model", g.model, metric], n);
    put(["usage_total", "all", metric], n);
    if (g.userId) put(["usage_total", "user", g.userId, metric], n);
  }
  if (g.userId && g.served) {
    const amounts = { tokens: g.promptTokens + g.completionTokens, requests: g.n };
    for (const b of budgetIncrements(g.userId, g.now, amounts)) put(b.key, b.n);
  }
}

function groupOf(event: UsageEvent, n: number): EventGroup {
  return {
    now: event.now,
    model: event.model,
    userId: event.userId,
    attempts: event.attempts.map((a) => ({ keyId: a.keyId, ok: a.ok, cause: a.cause })),
    ok: event.ok,
    served: event.served ?? event.ok,
    n,
    promptTokens: Math.round(event.promptTokens),
    completionTokens: Math.round(event.completionTokens),
    thinkingTokens: Math.round(event.thinkingTokens),
  };
}

/** Builds the KV mutations of one usage event (pure, so the layout is testable). */
export function usageMutations(event: UsageEvent): Deno.KvMutation[] {
  const out: Deno.KvMutation[] = [];
  eachCounter(groupOf(event, 1), (key, n) => out.push(sum(key, n)));
  return out;
}

/** Writes one usage event (and any `extra` mutations, e.g. a log entry) in one atomic operation. */
export async function recordUsage(
  kv: Deno.Kv,
  event: UsageEvent,
  options: { extra?: Deno.KvMutation[] } = {},
): Promise<void> {
  const mutations = [...usageMutations(event), ...(options.extra ?? [])];
  if (mutations.length === 0) return;
  await kv.atomic().mutate(...mutations).commit();
}

/** Most mutations put in one atomic operation (KV allows 1000). */
const MAX_BATCH_MUTATIONS = 800;
/** Most bytes (keys and values, estimated) put in one atomic operation (KV allows 800 KiB). */
const MAX_BATCH_BYTES = 512 * 1024;

/** One atomic operation's worth of a flushed batch. */
export interface BatchChunk {
  mutations: Deno.KvMutation[];
  /** What this chunk adds to user-key budget counters: `budgetCounterId` -> amount. */
  budgets: Map<string, number>;
}

/** An upper bound of a flat value's stored size (strings counted as UTF-8 at worst). */
function valueBytes(value: unknown): number {
  if (typeof value === "string") return value.length * 3 + 64;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return JSON.stringify(value ?? null).length * 3 + 64;
  }
  let n = 64;
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === "string") n += (k.length + v.length) * 3 + 8;
    else if (v === null || typeof v === "number" || typeof v === "boolean") n += k.length * 3 + 16;
    else n += (k.length + JSON.stringify(v).length) * 3 + 8;
  }
  return n;
}

/**
 * Usage events summed in memory until they are written together. Counters are `sum`s, which add
 * up, so a batch writes exactly what one atomic operation per event would have written.
 */
export class UsageBatch {
  #groups = new Map<string, EventGroup>();
  #extra: Deno.KvMutation[] = [];
  #events = 0;

  /** Events added so far. */
  get events(): number {
    return this.#events;
  }

  /** Distinct event shapes held (what the batch's size in KV mutations grows with). */
  get groups(): number {
    return this.#groups.size;
  }

  /** Adds mutations to write with the batch's counters, after them (request-log pages). */
  addExtra(mutations: readonly Deno.KvMutation[]): void {
    this.#extra.push(...mutations);
  }

  /** Adds one event. */
  add(event: UsageEvent): void {
    this.#events++;
    // Gateway-made ids first, the client-chosen model last: no two shapes share an id.
    let id = `${Math.floor(event.now / MINUTE)}\u0000${event.userId ?? ""}\u0000${
      event.ok ? 1 : event.served ? 2 : 0
    }`;
    for (const a of event.attempts) {
      id += `\u0000${a.ok ? "+" : `-${a.cause ?? ""}-`}${a.keyId}`;
    }
    id += `\u0001${event.model}`;
    const g = this.#groups.get(id);
    if (!g) {
      this.#groups.set(id, groupOf(event, 1));
      return;
    }
    g.n++;
    g.promptTokens += Math.round(event.promptTokens);
    g.completionTokens += Math.round(event.completionTokens);
    g.thinkingTokens += Math.round(event.thinkingTokens);
  }

  /**
   * The batch as atomic operations within KV's limits: the counters summed per KV key (user-key
   * token counters first), then the extra mutations in the order they were added.
   */
  chunks(): BatchChunk[] {
    const sums = new Map<string, { key: Deno.KvKey; n: number }>();
    const budgets: { key: Deno.KvKey; n: number; id: string }[] = [];
    const budgetIndex = new Map<string, number>();
    for (const g of this.#groups.values()) {
      eachCounter(g, (key, n) => {
        if (isBudgetKey(key)) {
          const id = budgetCounterId(key);
          const i = budgetIndex.get(id);
          if (i === undefined) {
            budgetIndex.set(id, budgets.length);
            budgets.push({ key, n, id });
          } else budgets[i].n += n;
          return;
        }
        const id = JSON.stringify(key);
        const s = sums.get(id);
        if (s) s.n += n;
        else sums.set(id, { key, n });
      });
    }
    const out: BatchChunk[] = [];
    let chunk: BatchChunk = { mutations: [], budgets: new Map() };
    let bytes = 0;
    let keys = 0;
    const push = (m: Deno.KvMutation, valueBytes: number) => {
      const k = keyBytes(m.key);
      if (
        chunk.mutations.length >= MAX_BATCH_MUTATIONS || bytes + k + valueBytes > MAX_BATCH_BYTES ||
        keys + k > MAX_ATOMIC_KEY_BYTES
      ) {
        out.push(chunk);
        chunk = { mutations: [], budgets: new Map() };
        bytes = 0;
        keys = 0;
      }
      chunk.mutations.push(m);
      bytes += k + valueBytes;
      keys += k;
    };
    for (const b of budgets) {
      push(sum(b.key, b.n), 16);
      chunk.budgets.set(b.id, (chunk.budgets.get(b.id) ?? 0) + b.n);
    }
    for (const s of sums.values()) push(sum(s.key, s.n), 16);
    for (const m of this.#extra) push(m, m.type === "set" ? valueBytes(m.value) : 16);
    if (chunk.mutations.length) out.push(chunk);
    return out;
  }
}

/**
 * Writes `chunks` in order, one atomic operation each; returns each chunk's versionstamp. A chunk
 * KV can never take (a mutation breaks KV's limits: a `TypeError` before anything is written) is
 * written in halves, and so on down to the mutations that break the limits, which alone are
 * dropped and logged (its versionstamp is that of its last part written, or null when none was).
 * Stops at the first other failure of a whole chunk and reports which chunks were done.
 */
export async function commitChunks(
  kv: Deno.Kv,
  chunks: readonly BatchChunk[],
): Promise<{ written: (string | null)[]; error: unknown | null }> {
  const written: (string | null)[] = [];
  for (const chunk of chunks) {
    try {
      written.push(await commitAll(kv, chunk.mutations));
    } catch (error) {
      if (!(error instanceof TypeError)) return { written, error };
      const split = await commitSplitting(kv, chunk.mutations);
      console.error(
        `Usage accounting dropped ${split.dropped.length} of ${chunk.mutations.length} updates ` +
          "KV cannot take:",
        split.dropped[0] ?? error.message,
      );
      written.push(split.versionstamp);
    }
  }
  return { written, error: null };
}

async function commitAll(kv: Deno.Kv, mutations: Deno.KvMutation[]): Promise<string> {
  const res = await kv.atomic().mutate(...mutations).commit();
  if (!res.ok) throw new Error("A usage write was refused by KV");
  return res.versionstamp;
}

/**
 * Writes `mutations` in halves until each part is taken or is one mutation KV refuses. Parts are
 * not retried later (some are written already): a part that fails for another reason is dropped
 * too.
 */
async function commitSplitting(
  kv: Deno.Kv,
  mutations: Deno.KvMutation[],
): Promise<{ versionstamp: string | null; dropped: string[] }> {
  if (mutations.length > 1) {
    const half = Math.ceil(mutations.length / 2);
    const a = await commitSplittingPart(kv, mutations.slice(0, half));
    const b = await commitSplittingPart(kv, mutations.slice(half));
    return {
      versionstamp: b.versionstamp ?? a.versionstamp,
      dropped: [...a.dropped, ...b.dropped],
    };
  }
  return { versionstamp: null, dropped: mutations.length ? ["a mutation KV refused"] : [] };
}

async function commitSplittingPart(
  kv: Deno.Kv,
  mutations: Deno.KvMutation[],
): Promise<{ versionstamp: string | null; dropped: string[] }> {
  try {
    return { versionstamp: await commitAll(kv, mutations), dropped: [] };
  } catch (error) {
    if (error instanceof TypeError && mutations.length > 1) {
      return await commitSplitting(kv, mutations);
    }
    const what = error instanceof Error ? error.message : String(error);
    return { versionstamp: null, dropped: mutations.map(() => what) };
  }
}

function valueOf(value: unknown): number {
  return value instanceof Deno.KvU64 ? Number(value.value) : 0;
}

function addTo(target: Counts, metric: unknown, value: unknown): void {
  if (typeof metric === "string" && metric in target && value instanceof Deno.KvU64) {
    target[metric as Metric] += Number(value.value);
  }
}

/** Usage of one key and model in one window, as the pool's limit tracker reads it. */
export interface WindowCount {
  keyId: string;
  model: string;
  /** Upstream attempts. */
  att: number;
  /** Input tokens of served requests. */
  in: number;
}

/** Recent usage per key and model: the given minute buckets and one Pacific day. */
export interface RecentUsage {
  minutes: Map<number, WindowCount[]>;
  day: number;
  dayCounts: WindowCount[];
}

/** Reads the minute buckets `minutes` and the Pacific-day bucket `day` (for the pool's windows). */
export async function readRecentUsage(
  kv: Deno.Kv,
  options: { minutes: number[]; day: number },
): Promise<RecentUsage> {
  const collect = async (prefix: Deno.KvKey, metricIndex: number) => {
    const byKey = new Map<string, WindowCount>();
    for await (const e of kv.list({ prefix }, { batchSize: 1000 })) {
      const keyId = String(e.key[metricIndex - 2]);
      const model = String(e.key[metricIndex - 1]);
      const metric = e.key[metricIndex];
      if (metric !== "att" && metric !== "in") continue;
      const id = `${keyId}\u0000${model}`;
      let c = byKey.get(id);
      if (!c) byKey.set(id, c = { keyId, model, att: 0, in: 0 });
      c[metric] += valueOf(e.value);
    }
    return [...byKey.values()];
  };
  const [dayCounts, ...minuteCounts] = await Promise.all([
    collect(["usage", "pd", options.day], 5),
    ...options.minutes.map((m) => collect(["usage", "m", m], 5)),
  ]);
  return {
    minutes: new Map(options.minutes.map((m, i) => [m, minuteCounts[i]])),
    day: options.day,
    dayCounts,
  };
}

/** Lifetime totals per key, model or user key (by id), without the time series. */
export async function readUsageTotals(
  kv: Deno.Kv,
  scope: "key" | "model" | "user",
): Promise<Record<string, Counts>> {
  const out: Record<string, Counts> = {};
  for await (const e of kv.list({ prefix: ["usage_total", scope] })) {
    const [, , id, metric] = e.key;
    addTo(out[String(id)] ??= emptyCounts(), metric, e.value);
  }
  return out;
}

/** The usage totals of one key, model or user key (`readUsageTotals` for one id). */
export async function readUsageTotal(
  kv: Deno.Kv,
  scope: "key" | "model" | "user",
  id: string,
): Promise<Counts> {
  const out = emptyCounts();
  for await (const e of kv.list({ prefix: ["usage_total", scope, id] })) {
    addTo(out, e.key[3], e.value);
  }
  return out;
}

async function series(
  kv: Deno.Kv,
  options: { unit: "m" | "h"; size: number; count: number; now: number },
): Promise<{ t: number; counts: Counts }[]> {
  const last = Math.floor(options.now / options.size);
  const first = last - options.count + 1;
  const buckets = new Map<number, Counts>();
  for (let b = first; b <= last; b++) buckets.set(b, emptyCounts());
  const iter = kv.list({
    start: ["usage", options.unit, first],
    end: ["usage", options.unit, last + 1],
  });
  for await (const e of iter) {
    const [, , bucket, , , metric] = e.key;
    const counts = buckets.get(Number(bucket));
    if (counts) addTo(counts, metric, e.value);
  }
  return [...buckets].map(([b, counts]) => ({ t: b * options.size, counts }));
}

/** Daily series: rolled-up day buckets plus the hour buckets not rolled up yet. */
async function daySeries(
  kv: Deno.Kv,
  options: { count: number; now: number },
): Promise<{ t: number; counts: Counts }[]> {
  const last = Math.floor(options.now / DAY);
  const first = last - options.count + 1;
  const buckets = new Map<number, Counts>();
  for (let b = first; b <= last; b++) buckets.set(b, emptyCounts());
  for await (const e of kv.list({ start: ["usage", "d", first], end: ["usage", "d", last + 1] })) {
    const counts = buckets.get(Number(e.key[2]));
    if (counts) addTo(counts, e.key[5], e.value);
  }
  const firstHour = (first * DAY) / HOUR;
  for await (
    const e of kv.list({
      start: ["usage", "h", firstHour],
      end: ["usage", "h", Number.MAX_SAFE_INTEGER],
    })
  ) {
    const counts = buckets.get(Math.floor((Number(e.key[2]) * HOUR) / DAY));
    if (counts) addTo(counts, e.key[5], e.value);
  }
  return [...buckets].map(([b, counts]) => ({ t: b * DAY, counts }));
}

/** Usage statistics for the admin API. */
export interface UsageStats {
  totals: Counts;
  keys: Record<string, Counts>;
  models: Record<string, Counts>;
  users: Record<string, Counts>;
  /** The last 60 minutes, oldest first; `t` is the bucket start in epoch milliseconds. */
  minutes: { t: number; counts: Counts }[];
  /** The last 24 hours, oldest first. */
  hours: { t: number; counts: Counts }[];
  /** The last 30 UTC days, oldest first. */
  days: { t: number; counts: Counts }[];
  /** Failed attempts per cause: in the last 24 hours (this hour included), and in all. */
  causes: { day: CauseCounts; total: CauseCounts };
}

function addCause(target: CauseCounts, cause: unknown, value: unknown): void {
  if ((ERROR_CAUSES as readonly unknown[]).includes(cause) && value instanceof Deno.KvU64) {
    target[cause as ErrorCause] += Number(value.value);
  }
}

/** Failed attempts per cause, in the last 24 hours and in all. */
async function readCauses(kv: Deno.Kv, now: number): Promise<UsageStats["causes"]> {
  const day = emptyCauseCounts();
  const total = emptyCauseCounts();
  const firstHour = Math.floor(now / HOUR) - 23;
  await Promise.all([
    (async () => {
      const range = { start: ["usage_cause", firstHour], end: ["usage_cause", firstHour + 24] };
      for await (const e of kv.list(range)) addCause(day, e.key[2], e.value);
    })(),
    (async () => {
      for await (const e of kv.list({ prefix: ["usage_total", "cause"] })) {
        addCause(total, e.key[2], e.value);
      }
    })(),
  ]);
  return { day, total };
}

/** Reads totals and time series. */
export async function readUsageStats(kv: Deno.Kv, now: number): Promise<UsageStats> {
  const [keys, models, users, all, minutes, hours, days, causes] = await Promise.all([
    readUsageTotals(kv, "key"),
    readUsageTotals(kv, "model"),
    readUsageTotals(kv, "user"),
    (async () => {
      const c = emptyCounts();
      for await (const e of kv.list({ prefix: ["usage_total", "all"] })) {
        addTo(c, e.key[2], e.value);
      }
      return c;
    })(),
    series(kv, { unit: "m", size: MINUTE, count: 60, now }),
    series(kv, { unit: "h", size: HOUR, count: 24, now }),
    daySeries(kv, { count: 30, now }),
    readCauses(kv, now),
  ]);
  return { totals: all, keys, models, users, minutes, hours, days, causes };
}

/** What one roll-up pass did. */
export interface RollUpReport {
  minuteBucketsDeleted: number;
  /** Hour buckets of failed attempts per cause older than `HOUR_RETENTION_MS`. */
  causeBucketsDeleted: number;
  hourBucketsRolledUp: number;
  dayBucketsDeleted: number;
  pacificDayBucketsDeleted: number;
  /** Budget counters of user keys (tokens and requests per day and month) of past periods. */
  budgetCountersDeleted: number;
}

const ROLL_BATCH = 100;

/**
 * Moves hour buckets older than `beforeHour` into UTC day buckets: each batch sums into the day
 * bucket and deletes the hour entries in one atomic operation that checks those entries did not
 * change, so two concurrent runs cannot count an hour twice.
 */
async function rollUpHours(kv: Deno.Kv, beforeHour: number): Promise<number> {
  let rolled = 0;
  for (let pass = 0; pass < 1000; pass++) {
    const entries: Deno.KvEntry<unknown>[] = [];
    for await (
      const e of kv.list({ start: ["usage", "h"], end: ["usage", "h", beforeHour] }, {
        limit: ROLL_BATCH,
      })
    ) entries.push(e);
    if (!entries.length) break;
    // One atomic operation per batch of entries whose keys fit KV's limit (each entry's key is
    // checked and deleted, and its day bucket's key summed).
    let op = kv.atomic();
    let bytes = 0;
    let inOp = 0;
    const commit = async () => {
      if (inOp && (await op.commit()).ok) rolled += inOp;
      op = kv.atomic();
      bytes = 0;
      inOp = 0;
    };
    for (const e of entries) {
      const [, , hour, keyId, model, metric] = e.key;
      const day = Math.floor((Number(hour) * HOUR) / DAY);
      const dayKey = ["usage", "d", day, keyId, model, metric] as Deno.KvKey;
      const size = 2 * keyBytes(e.key) + keyBytes(dayKey);
      if (bytes + size > MAX_ATOMIC_KEY_BYTES) await commit();
      op = op.check(e).delete(e.key);
      const n = valueOf(e.value);
      if (n > 0) op = op.mutate(sum(dayKey, n));
      bytes += size;
      inOp++;
    }
    await commit();
  }
  return rolled;
}

async function deleteBudgetCounters(kv: Deno.Kv, now: number): Promise<number> {
  let n = 0;
  for (const range of staleBudgetRanges(now)) n += await deleteListed(kv, range);
  return n;
}

/**
 * Prunes and rolls up usage buckets (see the layout above); safe to run concurrently and
 * repeatedly. Each step runs even when one before it failed; then the run throws what failed.
 */
export async function rollUpUsage(kv: Deno.Kv, now: number): Promise<RollUpReport> {
  const minuteCut = Math.floor((now - MINUTE_RETENTION_MS) / MINUTE);
  const hourCut = Math.floor((now - HOUR_RETENTION_MS) / HOUR);
  const dayCut = Math.floor((now - DAY_RETENTION_MS) / DAY);
  const pdayCut = pacificDayNumber(now) - 1;
  return await runSteps("Usage roll-up", {
    minuteBucketsDeleted: () =>
      deleteListed(kv, { start: ["usage", "m"], end: ["usage", "m", minuteCut] }),
    hourBucketsRolledUp: () => rollUpHours(kv, hourCut),
    causeBucketsDeleted: () =>
      deleteListed(kv, { start: ["usage_cause"], end: ["usage_cause", hourCut] }),
    dayBucketsDeleted: () =>
      deleteListed(kv, { start: ["usage", "d"], end: ["usage", "d", dayCut] }),
    pacificDayBucketsDeleted: () =>
      deleteListed(kv, { start: ["usage", "pd"], end: ["usage", "pd", pdayCut] }),
    budgetCountersDeleted: () => deleteBudgetCounters(kv, now),
  });
}
