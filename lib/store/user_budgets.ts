/**
 * User-key budgets: tokens and served requests per Pacific day and per Pacific calendar month.
 *
 * Each budget has one KV counter per user key and period, summed by usage accounting in its
 * batches (`[prefix, period, userId]`; the day's tokens keep their original `ul_tok` key). Google
 * resets its daily quotas at midnight America/Los_Angeles, so the budgets' days and months follow
 * that clock too: a month starts at midnight Pacific on its 1st.
 *
 * Only answered requests count: tokens are input + output (thinking included), and a request the
 * gateway could not serve (every key failed) costs the user nothing.
 */
import {
  nextPacificMidnight,
  nextPacificMonthStart,
  pacificDayNumber,
  pacificMonthNumber,
} from "../pool/calendar.ts";
import type { UserKeyRecord } from "./user_keys.ts";

/** One budget: its API name, the record field holding its limit, and its counter. */
export interface Budget {
  /** The API and error name (`tokens_per_day`; refusals answer `<name>_exceeded`). */
  name: "tokens_per_day" | "requests_per_day" | "tokens_per_month" | "requests_per_month";
  field: "tokensPerDay" | "requestsPerDay" | "tokensPerMonth" | "requestsPerMonth";
  metric: "tokens" | "requests";
  period: "day" | "month";
  /** First element of the counter's KV key. */
  prefix: string;
  /** The admin view's field with the current period's usage. */
  usedField: "tokens_today" | "requests_today" | "tokens_this_month" | "requests_this_month";
}

/** Every budget, in the order refusals are checked. */
export const BUDGETS: readonly Budget[] = [
  {
    name: "tokens_per_day",
    field: "tokensPerDay",
    metric: "tokens",
    period: "day",
    prefix: "ul_tok",
    usedField: "tokens_today",
  },
  {
    name: "requests_per_day",
    field: "requestsPerDay",
    metric: "requests",
    period: "day",
    prefix: "ul_req",
    usedField: "requests_today",
  },
  {
    name: "tokens_per_month",
    field: "tokensPerMonth",
    metric: "tokens",
    period: "month",
    prefix: "ul_tok_m",
    usedField: "tokens_this_month",
  },
  {
    name: "requests_per_month",
    field: "requestsPerMonth",
    metric: "requests",
    period: "month",
    prefix: "ul_req_m",
    usedField: "requests_this_month",
  },
];

/** A budget's name. */
export type BudgetName = Budget["name"];

const PREFIXES = new Set(BUDGETS.map((b) => b.prefix));

/** The period number (Pacific day or month) of `budget` at `now`. */
export function budgetPeriod(budget: Budget, now: number): number {
  return budget.period === "day" ? pacificDayNumber(now) : pacificMonthNumber(now);
}

/** When the period of `budget` that holds `now` ends (its counter starts over). */
export function budgetResetAt(budget: Budget, now: number): number {
  return budget.period === "day" ? nextPacificMidnight(now) : nextPacificMonthStart(now);
}

/** The KV key of a user key's counter of `budget` in period `period`. */
export function budgetKey(budget: Budget, period: number, userId: string): Deno.KvKey {
  return [budget.prefix, period, userId];
}

/** Whether `key` is a budget counter's KV key. */
export function isBudgetKey(key: Deno.KvKey): boolean {
  return PREFIXES.has(key[0] as string);
}

/** The in-memory id of a budget counter (from its KV key). */
export function budgetCounterId(key: Deno.KvKey): string {
  return `${String(key[0])}\u0000${String(key[1])}\u0000${String(key[2])}`;
}

/** A counter and what one batch or request adds to it. */
export interface BudgetIncrement {
  key: Deno.KvKey;
  id: string;
  n: number;
}

/**
 * What `requests` answered requests of `userId` at `now`, with `tokens` tokens in all, add to the
 * budget counters (zero amounts left out).
 */
export function budgetIncrements(
  userId: string,
  now: number,
  amounts: { tokens: number; requests: number },
): BudgetIncrement[] {
  const out: BudgetIncrement[] = [];
  for (const b of BUDGETS) {
    const n = amounts[b.metric];
    if (n <= 0) continue;
    const key = budgetKey(b, budgetPeriod(b, now), userId);
    out.push({ key, id: budgetCounterId(key), n });
  }
  return out;
}

/** The counter ids of one user key in one Pacific day (and its month), by metric. */
interface DayIds {
  day: number;
  tokens: string[];
  requests: string[];
}

const dayIds = new Map<string, DayIds>();

/**
 * The ids of the counters an answered request of `userId` at `now` adds to, by metric: the same
 * as `budgetIncrements`' ids, made once per user key and day (the recorder runs per request).
 */
export function budgetIdsOf(userId: string, now: number): { tokens: string[]; requests: string[] } {
  const day = pacificDayNumber(now);
  const known = dayIds.get(userId);
  if (known?.day === day) return known;
  if (dayIds.size >= 10_000) dayIds.clear();
  const ids: DayIds = { day, tokens: [], requests: [] };
  for (const b of BUDGETS) {
    ids[b.metric].push(budgetCounterId(budgetKey(b, budgetPeriod(b, now), userId)));
  }
  dayIds.set(userId, ids);
  return ids;
}

/** The budgets a user key has a limit on, and their names joined (one identity per set). */
export interface LimitedBudgets {
  budgets: Budget[];
  names: string;
}

const limitedOf = new WeakMap<UserKeyRecord, LimitedBudgets>();

/** The budgets `userKey` has a limit on (worked out once per record: admission runs per request). */
export function limitedBudgets(userKey: UserKeyRecord): LimitedBudgets {
  let limited = limitedOf.get(userKey);
  if (!limited) {
    const budgets = BUDGETS.filter((b) => userKey[b.field] !== null);
    limited = { budgets, names: budgets.map((b) => b.name).join(",") };
    limitedOf.set(userKey, limited);
  }
  return limited;
}

/** One budget counter as read: its id, its value and the versionstamp it was read at. */
export interface BudgetRead {
  id: string;
  used: number;
  /** Null when the counter did not exist. */
  versionstamp: string | null;
}

function counted(value: unknown): number {
  return value instanceof Deno.KvU64 ? Number(value.value) : 0;
}

/** Reads the counters of `budgets` for `userId` at `now`, in one KV round trip. */
export async function readBudgets(
  kv: Deno.Kv,
  options: { userId: string; budgets: readonly Budget[]; now: number },
): Promise<BudgetRead[]> {
  const keys = options.budgets.map((b) =>
    budgetKey(b, budgetPeriod(b, options.now), options.userId)
  );
  if (!keys.length) return [];
  const entries = await kv.getMany(keys);
  return entries.map((e, i) => ({
    id: budgetCounterId(keys[i]),
    used: counted(e.value),
    versionstamp: e.versionstamp,
  }));
}

/** What a user key used of each budget in the current periods (0 when nothing). */
export type BudgetUsage = Record<Budget["usedField"], number>;

/** A usage with every budget at 0. */
export function emptyBudgetUsage(): BudgetUsage {
  return { tokens_today: 0, requests_today: 0, tokens_this_month: 0, requests_this_month: 0 };
}

/** The current periods' usage of every user key that used something, by user key id. */
export async function listBudgetUsage(kv: Deno.Kv, now: number): Promise<Map<string, BudgetUsage>> {
  const out = new Map<string, BudgetUsage>();
  await Promise.all(BUDGETS.map(async (b) => {
    for await (const e of kv.list({ prefix: [b.prefix, budgetPeriod(b, now)] })) {
      const id = String(e.key[2]);
      let usage = out.get(id);
      if (!usage) out.set(id, usage = emptyBudgetUsage());
      usage[b.usedField] = counted(e.value);
    }
  }));
  return out;
}

/** The current periods' usage of one user key. */
export async function budgetUsageOf(
  kv: Deno.Kv,
  userId: string,
  now: number,
): Promise<BudgetUsage> {
  const reads = await readBudgets(kv, { userId, budgets: BUDGETS, now });
  const usage = emptyBudgetUsage();
  BUDGETS.forEach((b, i) => (usage[b.usedField] = reads[i].used));
  return usage;
}

/**
 * Key ranges of budget counters from periods before the current one's predecessor (the previous
 * day or month is kept, for an isolate whose clock is a little behind), for the roll-up job.
 */
export function staleBudgetRanges(now: number): Deno.KvListSelector[] {
  return BUDGETS.map((b) => ({ start: [b.prefix], end: [b.prefix, budgetPeriod(b, now) - 1] }));
}
