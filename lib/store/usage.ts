/**
 * Usage accounting in KV with `Deno.KvU64` sums (which never conflict): per key and model in minute
 * and hour buckets, plus lifetime totals per key, model and user key.
 */

const MINUTE = 60_000;
const HOUR = 3_600_000;

/** Counter names: client requests served, upstream attempts, failed attempts, failed requests, tokens. */
export const METRICS = ["req", "att", "err", "fail", "in", "out", "think"] as const;
/** One counter name. */
export type Metric = typeof METRICS[number];
/** A set of counter values. */
export type Counts = Record<Metric, number>;

/** One upstream attempt made for a request. */
export interface Attempt {
  keyId: string;
  ok: boolean;
}

/** What one client request did, recorded once when its answer is complete. */
export interface UsageEvent {
  now: number;
  model: string;
  userId: string | null;
  attempts: Attempt[];
  /** True when a key served the request (the last attempt's key). */
  ok: boolean;
  promptTokens: number;
  completionTokens: number;
  thinkingTokens: number;
}

/** Counts with every metric at zero. */
export function emptyCounts(): Counts {
  return { req: 0, att: 0, err: 0, fail: 0, in: 0, out: 0, think: 0 };
}

/** Builds the KV mutations of one usage event (pure, so the layout is testable). */
export function usageMutations(event: UsageEvent): Deno.KvMutation[] {
  const minute = Math.floor(event.now / MINUTE);
  const hour = Math.floor(event.now / HOUR);
  const out: Deno.KvMutation[] = [];
  // Sum mutations cannot carry expireIn: old buckets are pruned by a job instead.
  const add = (key: Deno.KvKey, n: number) => {
    if (n <= 0) return;
    out.push({ type: "sum", key, value: new Deno.KvU64(BigInt(Math.round(n))) });
  };
  const bucketed = (keyId: string, metric: Metric, n: number) => {
    add(["usage", "m", minute, keyId, event.model, metric], n);
    add(["usage", "h", hour, keyId, event.model, metric], n);
    add(["usage_total", "key", keyId, metric], n);
  };
  for (const a of event.attempts) {
    bucketed(a.keyId, "att", 1);
    if (!a.ok) bucketed(a.keyId, "err", 1);
  }
  const served = event.ok ? event.attempts.at(-1)?.keyId ?? "-" : "-";
  const totals: [Metric, number][] = event.ok
    ? [["req", 1], ["in", event.promptTokens], ["out", event.completionTokens], [
      "think",
      event.thinkingTokens,
    ]]
    : [["fail", 1]];
  for (const [metric, n] of totals) {
    bucketed(served, metric, n);
    add(["usage_total", "model", event.model, metric], n);
    add(["usage_total", "all", metric], n);
    if (event.userId) add(["usage_total", "user", event.userId, metric], n);
  }
  return out;
}

/** Writes one usage event in a single atomic operation. */
export async function recordUsage(kv: Deno.Kv, event: UsageEvent): Promise<void> {
  const mutations = usageMutations(event);
  if (mutations.length === 0) return;
  await kv.atomic().mutate(...mutations).commit();
}

function addTo(target: Counts, metric: unknown, value: unknown): void {
  if (typeof metric === "string" && metric in target && value instanceof Deno.KvU64) {
    target[metric as Metric] += Number(value.value);
  }
}

async function totalsBy(kv: Deno.Kv, scope: string): Promise<Record<string, Counts>> {
  const out: Record<string, Counts> = {};
  for await (const e of kv.list({ prefix: ["usage_total", scope] })) {
    const [, , id, metric] = e.key;
    addTo(out[String(id)] ??= emptyCounts(), metric, e.value);
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
}

/** Reads totals and time series. */
export async function readUsageStats(kv: Deno.Kv, now: number): Promise<UsageStats> {
  const [keys, models, users, all, minutes, hours] = await Promise.all([
    totalsBy(kv, "key"),
    totalsBy(kv, "model"),
    totalsBy(kv, "user"),
    (async () => {
      const c = emptyCounts();
      for await (const e of kv.list({ prefix: ["usage_total", "all"] })) {
        addTo(c, e.key[2], e.value);
      }
      return c;
    })(),
    series(kv, { unit: "m", size: MINUTE, count: 60, now }),
    series(kv, { unit: "h", size: HOUR, count: 24, now }),
  ]);
  return { totals: all, keys, models, users, minutes, hours };
}
