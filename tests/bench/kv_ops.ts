/**
 * KV operations per request, measured in-process (not timed): the gateway is built in this process
 * on a counting wrapper around a `:memory:` `Deno.Kv`, against an in-process fake upstream whose
 * `fetch` records the KV counts at the moment each upstream call starts.
 *
 * Which of the operations before the upstream call the request actually waited for cannot be told
 * from counts alone (a background cache refresh may start, and even finish, before the call). So
 * the wrapper also delays every round trip by a fixed `delayMs`, like a remote KV would: the time
 * from the request's start to its upstream call, divided by that delay, is the number of KV round
 * trips on the request's critical path (parallel ones count once). The gateway's clock is frozen
 * (except in the scenario that moves it on purpose), so cache TTLs expire only where intended.
 *
 * @module
 */
import type { App } from "../../lib/app.ts";
import { openGateway } from "../../lib/bootstrap.ts";
import { parseConfig } from "../../lib/config.ts";
import { type KeyBehavior, startFakeGemini } from "../fakes/fake_gemini.ts";

/** Counts of KV operations. A round trip is one get, getMany, list batch, set, delete or commit. */
export interface KvCounts {
  get: number;
  getMany: number;
  /** `list` calls. */
  list: number;
  /** Batches fetched by list iterators (each is a round trip; 100 entries per batch by default). */
  listBatches: number;
  /** Entries yielded by list iterators. */
  listEntries: number;
  set: number;
  delete: number;
  /** `atomic().commit()` calls. */
  commit: number;
  /** Mutations (set, delete, sum, min, max, enqueue) inside committed atomic operations. */
  mutations: number;
  /** Checks inside committed atomic operations. */
  checks: number;
  /** Round trips started. */
  roundTrips: number;
}

type CountedKind = "get" | "getMany" | "listBatches" | "set" | "delete" | "commit";

/** All counts at zero. */
function zeroCounts(): KvCounts {
  return {
    get: 0,
    getMany: 0,
    list: 0,
    listBatches: 0,
    listEntries: 0,
    set: 0,
    delete: 0,
    commit: 0,
    mutations: 0,
    checks: 0,
    roundTrips: 0,
  };
}

/** `a - b`, field by field. */
function diffCounts(a: KvCounts, b: KvCounts): KvCounts {
  const out = zeroCounts();
  for (const k of Object.keys(out) as (keyof KvCounts)[]) out[k] = a[k] - b[k];
  return out;
}

/** Resolves after `ms` (at once for 0). */
function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

/** Running totals of the KV operations made through a counting `Deno.Kv`. */
export class KvCounter {
  readonly counts: KvCounts = zeroCounts();
  /** Added to every round trip (after the real operation settles). */
  readonly delayMs: number;

  constructor(delayMs = 0) {
    this.delayMs = delayMs;
  }

  /** A copy of the current totals. */
  snapshot(): KvCounts {
    return { ...this.counts };
  }

  /** Counts one round trip of `kind`, and delays its outcome by `delayMs`. */
  async track<T>(kind: CountedKind, promise: Promise<T>): Promise<T> {
    this.counts[kind]++;
    this.counts.roundTrips++;
    try {
      return await promise;
    } finally {
      await sleep(this.delayMs);
    }
  }
}

/** Patches an atomic operation so that its mutations, checks and commit are counted. */
function countAtomic(op: Deno.AtomicOperation, counter: KvCounter): Deno.AtomicOperation {
  let mutations = 0;
  let checks = 0;
  const check = op.check.bind(op);
  const mutate = op.mutate.bind(op);
  const set = op.set.bind(op);
  const del = op.delete.bind(op);
  const sum = op.sum.bind(op);
  const min = op.min.bind(op);
  const max = op.max.bind(op);
  const enqueue = op.enqueue.bind(op);
  const commit = op.commit.bind(op);
  op.check = (...c) => {
    checks += c.length;
    check(...c);
    return op;
  };
  op.mutate = (...m) => {
    mutations += m.length;
    mutate(...m);
    return op;
  };
  op.set = (key, value, options) => {
    mutations++;
    set(key, value, options);
    return op;
  };
  op.delete = (key) => {
    mutations++;
    del(key);
    return op;
  };
  op.sum = (key, n) => {
    mutations++;
    sum(key, n);
    return op;
  };
  op.min = (key, n) => {
    mutations++;
    min(key, n);
    return op;
  };
  op.max = (key, n) => {
    mutations++;
    max(key, n);
    return op;
  };
  op.enqueue = (value, options) => {
    mutations++;
    enqueue(value, options);
    return op;
  };
  op.commit = () => {
    counter.counts.mutations += mutations;
    counter.counts.checks += checks;
    return counter.track("commit", commit());
  };
  return op;
}

/** Patches a list iterator so that its batches and entries are counted. */
function countList<T>(
  iter: Deno.KvListIterator<T>,
  options: Deno.KvListOptions | undefined,
  counter: KvCounter,
): Deno.KvListIterator<T> {
  counter.counts.list++;
  const batch = Math.max(1, Math.min(500, options?.batchSize ?? options?.limit ?? 100));
  const next = iter.next.bind(iter);
  let calls = 0;
  iter.next = async () => {
    // The iterator fetches a new batch on the first call and after each full batch.
    const fetches = calls++ % batch === 0;
    const result = await (fetches ? counter.track("listBatches", next()) : next());
    if (!result.done) counter.counts.listEntries++;
    return result;
  };
  return iter;
}

/** A `Deno.Kv` that forwards every call to `kv` and counts the operations in `counter`. */
export function countingKv(kv: Deno.Kv, counter: KvCounter): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop) {
      switch (prop) {
        case "get":
          return (key: Deno.KvKey, options?: { consistency?: Deno.KvConsistencyLevel }) =>
            counter.track("get", target.get(key, options));
        case "getMany":
          return (
            keys: readonly Deno.KvKey[],
            options?: { consistency?: Deno.KvConsistencyLevel },
          ) => counter.track("getMany", target.getMany(keys, options));
        case "set":
          return (key: Deno.KvKey, value: unknown, options?: { expireIn?: number }) =>
            counter.track("set", target.set(key, value, options));
        case "delete":
          return (key: Deno.KvKey) => counter.track("delete", target.delete(key));
        case "list":
          return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) =>
            countList(target.list(selector, options), options, counter);
        case "atomic":
          return () => countAtomic(target.atomic(), counter);
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** Min, mean and max of some numbers. */
export interface Spread {
  min: number;
  mean: number;
  max: number;
}

/** One measured scenario. */
export interface KvOpsRow {
  scenario: string;
  requests: number;
  /** KV round trips the request waited for before its upstream call (from the injected delay). */
  beforeUpstream: Spread;
  /** KV round trips started before the upstream call (including background ones not awaited). */
  issuedBeforeUpstream: Spread;
  /** All KV round trips of the request, background usage writes included. */
  total: Spread;
  /** Mean per request of each kind of operation. */
  perRequest: KvCounts;
  /** Whether this row is held to the target (steady state, not the cold first request). */
  targeted: boolean;
  /** `max(beforeUpstream) <= 1`. */
  pass: boolean;
}

/** The KV measurement. */
export interface KvOpsReport {
  requestsPerScenario: number;
  warmupPerScenario: number;
  /** Injected latency per round trip, in ms. */
  delayMs: number;
  rows: KvOpsRow[];
}

interface Sample {
  /** Round trips waited for before the upstream call. */
  before: number;
  /** Round trips started before the upstream call. */
  issued: number;
  total: KvCounts;
}

/** Mean, min, max of values. */
function spread(values: number[]): Spread {
  if (values.length === 0) return { min: NaN, mean: NaN, max: NaN };
  let sum = 0;
  for (const v of values) sum += v;
  return { min: Math.min(...values), mean: sum / values.length, max: Math.max(...values) };
}

/** Builds a row from samples. */
function rowOf(scenario: string, samples: Sample[], targeted: boolean): KvOpsRow {
  const mean = zeroCounts();
  for (const s of samples) {
    for (const k of Object.keys(mean) as (keyof KvCounts)[]) mean[k] += s.total[k];
  }
  for (const k of Object.keys(mean) as (keyof KvCounts)[]) mean[k] /= samples.length || 1;
  const beforeUpstream = spread(samples.map((s) => s.before));
  return {
    scenario,
    requests: samples.length,
    beforeUpstream,
    issuedBeforeUpstream: spread(samples.map((s) => s.issued)),
    total: spread(samples.map((s) => s.total.roundTrips)),
    perRequest: mean,
    targeted,
    pass: beforeUpstream.max <= 1,
  };
}

/** Options of {@linkcode measureKvOps}. */
export interface KvOpsOptions {
  /** Measured sequential requests per scenario. */
  requests: number;
  /** Unmeasured requests before each scenario. */
  warmup: number;
  /** The chat body (OpenAI shape, without `stream`). */
  chatBody: Record<string, unknown>;
  /** Injected latency per KV round trip, in ms (default 10). */
  delayMs?: number;
}

/** The in-process gateway under measurement and what observes it. */
interface Harness {
  app: App;
  counter: KvCounter;
  /** KV counts and time (performance.now) at the start of each upstream call since the reset. */
  marks: { counts: KvCounts; at: number }[];
  adminPassword: string;
  chatBody: Record<string, unknown>;
  /** The gateway's clock: frozen at `baseMs + offsetMs`; moved forward to let cache TTLs expire. */
  clock: { baseMs: number; offsetMs: number };
}

/** Creates a user key through the admin API of the in-process app and returns its secret. */
async function createKey(h: Harness, body: Record<string, unknown>): Promise<string> {
  const res = await h.app.fetch(
    new Request("http://gateway.test/admin/api/user-keys", {
      method: "POST",
      headers: { authorization: `Bearer ${h.adminPassword}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    }),
  );
  const json: unknown = await res.json();
  if (res.status !== 201 || !json || typeof json !== "object" || !("key" in json)) {
    throw new Error(`Creating a user key failed: ${res.status} ${JSON.stringify(json)}`);
  }
  return String(json.key);
}

/**
 * Sends one chat request, reads it fully, waits for background work, and counts its KV ops. With
 * `fresh` (an isolate's first request, sent the moment start-up is done) background work is not
 * waited for first, and what start-up began loading counts where the request waits for it.
 */
async function one(
  h: Harness,
  userKey: string,
  stream: boolean,
  fresh = false,
): Promise<Sample> {
  if (!fresh) await h.app.drain();
  h.marks.length = 0;
  const body = stream
    ? { ...h.chatBody, stream: true, stream_options: { include_usage: true } }
    : h.chatBody;
  const req = new Request("http://gateway.test/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${userKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const s0 = h.counter.snapshot();
  const t0 = performance.now();
  const res = await h.app.fetch(req);
  const text = await res.text();
  const complete = stream ? text.endsWith("data: [DONE]\n\n") : text.includes('"choices"');
  if (res.status !== 200 || !complete) {
    throw new Error(`Chat request failed: ${res.status} ${text.slice(0, 300)}`);
  }
  await h.app.drain();
  const s2 = h.counter.snapshot();
  if (h.marks.length !== 1) throw new Error(`Expected 1 upstream call, saw ${h.marks.length}`);
  const mark = h.marks[0];
  const issued = mark.counts.roundTrips - s0.roundTrips;
  // Each waited-for round trip adds at least `delayMs`; the request's own work adds less than that.
  const waited = Math.floor((mark.at - t0) / h.counter.delayMs);
  return {
    // Round trips started before the request (a fresh isolate's start-up loads) count if waited.
    before: fresh ? waited : Math.min(waited, issued),
    issued,
    total: diffCounts(s2, s0),
  };
}

/** Warms up, then measures `requests` sequential requests; `stepMs` moves the clock per request. */
async function scenario(
  h: Harness,
  options: KvOpsOptions,
  name: string,
  userKey: string,
  stream: boolean,
  stepMs = 0,
): Promise<KvOpsRow> {
  for (let i = 0; i < options.warmup; i++) await one(h, userKey, stream);
  const samples: Sample[] = [];
  for (let i = 0; i < options.requests; i++) {
    h.clock.offsetMs += stepMs;
    samples.push(await one(h, userKey, stream));
  }
  return rowOf(name, samples, true);
}

/** Runs the scenarios and returns one row each. */
export async function measureKvOps(options: KvOpsOptions): Promise<KvOpsReport> {
  const keys = ["kv-bench-1", "kv-bench-2", "kv-bench-3"];
  const behaviors: Record<string, KeyBehavior> = {};
  for (const k of keys) behaviors[k] = { kind: "ok" };
  const fake = await startFakeGemini({ keys: behaviors, quiet: true });
  const kv = await Deno.openKv(":memory:");
  const counter = new KvCounter(options.delayMs ?? 10);
  const marks: Harness["marks"] = [];
  const clock = { baseMs: Date.now(), offsetMs: 0 };
  const upstreamFetch: typeof fetch = (input, init) => {
    marks.push({ counts: counter.snapshot(), at: performance.now() });
    return fetch(input, init);
  };
  const adminPassword = crypto.randomUUID();
  const encryptionKey = crypto.randomUUID().replaceAll("-", "");
  const apps: App[] = [];
  // An isolate of the gateway on the counted database (each call: a new one).
  const open = async () => {
    const opened = await openGateway(
      parseConfig({
        GEMINI_BASE_URL: fake.url,
        KV_PATH: ":memory:",
        ADMIN_PASSWORD: adminPassword,
        ENCRYPTION_KEY: encryptionKey,
        GEMINI_KEYS: keys.join(","),
      }),
      {
        kv: countingKv(kv, counter),
        encryptionKey,
        fetch: upstreamFetch,
        now: () => clock.baseMs + clock.offsetMs,
      },
    );
    apps.push(opened.app);
    return opened.app;
  };
  try {
    const app = await open();
    const h: Harness = { app, counter, marks, adminPassword, chatBody: options.chatBody, clock };
    const plain = await createKey(h, { name: "bench" });
    const limited = await createKey(h, { name: "limited", rpm: 100_000 });
    // The audit log entries of those admin calls are written in the background: not counted here.
    await app.gateway.background.drain();
    const rows: KvOpsRow[] = [];
    // A new isolate on the same database, its first chat sent the moment start-up is done (on
    // Deno Deploy the request that starts an isolate waits for it): the user key is not cached,
    // and what start-up began loading (settings, key pool, recent usage, round-robin positions)
    // may still be on its way.
    const fresh = await open();
    rows.push(
      rowOf(
        "new isolate, first request (cold caches)",
        [await one({ ...h, app: fresh }, plain, false, true)],
        false,
      ),
    );
    rows.push(await scenario(h, options, "no rpm limit, non-stream", plain, false));
    rows.push(await scenario(h, options, "no rpm limit, stream", plain, true));
    rows.push(await scenario(h, options, "rpm limit, non-stream", limited, false));
    rows.push(await scenario(h, options, "rpm limit, stream", limited, true));
    // Time moving 1 s per request: the caches' TTLs (2 s key pool, 5 s settings and user keys)
    // expire during the run, as they do in steady state under real traffic.
    rows.push(
      await scenario(h, options, "no rpm limit, non-stream, clock +1 s/req", plain, false, 1000),
    );
    return {
      requestsPerScenario: options.requests,
      warmupPerScenario: options.warmup,
      delayMs: counter.delayMs,
      rows,
    };
  } finally {
    for (const app of apps) await app.drain();
    kv.close();
    await fake.close();
  }
}
