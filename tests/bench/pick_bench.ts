/**
 * The key pool's costs: CPU time of one `pick` with 10 and with 10,000 keys for each strategy
 * (with per-key limits configured, so the limit checks run), and KV operations per chat request in
 * steady state (before the upstream call, and in total with the background refreshes amortized),
 * for a user key without limits and one with RPM, tokens-per-day and concurrency limits.
 *
 * Run: `deno run -A tests/bench/pick_bench.ts [--json path] [--quick]`. Nothing is timed in the
 * KV part: operations are counted on a wrapper around a `:memory:` KV, once with a frozen clock
 * (caches never expire: what a request itself waits for) and once with a simulated clock advancing
 * 100 ms per request (10 requests per second: background refreshes amortized over requests; a
 * refresh that starts before an upstream call is counted there although the request does not
 * wait for it).
 *
 * @module
 */
import { openGateway } from "../../lib/bootstrap.ts";
import { parseConfig } from "../../lib/config.ts";
import { KeyPool } from "../../lib/pool/key_pool.ts";
import type { Strategy } from "../../lib/pool/selection.ts";
import { randomBytes, Sealer } from "../../lib/secrets.ts";
import { addGeminiKeys } from "../../lib/store/gemini_keys.ts";
import { patchModelConfig } from "../../lib/store/models.ts";
import { patchSettings } from "../../lib/store/settings.ts";
import { startFakeGemini } from "../fakes/fake_gemini.ts";

const STRATEGIES: Strategy[] = ["round_robin", "least_used", "adaptive"];
const MODEL = "gemini-2.5-flash";

/** Pick cost of one configuration. */
export interface PickCost {
  keys: number;
  strategy: Strategy;
  picks: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
}

/** KV round trips per request in one scenario. */
export interface KvPerRequest {
  scenario: string;
  requests: number;
  /** Round trips made between a request's arrival and its upstream call, per request. */
  beforeUpstream: number;
  /** Round trips in total per request (accounting and amortized background refreshes included). */
  total: number;
  byKind: Record<string, number>;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Measures `pick` on a pool of `n` keys (real clock, background refreshes included). */
export async function measurePick(
  n: number,
  options: { strategy: Strategy; picks: number; sealer: Sealer },
): Promise<PickCost> {
  const kv = await Deno.openKv(":memory:");
  try {
    const secrets = Array.from({ length: n }, (_, i) => `AIzaBench-${String(i).padStart(8, "0")}`);
    for (let i = 0; i < n; i += 500) {
      await addGeminiKeys(kv, options.sealer, secrets.slice(i, i + 500), {
        now: Date.now(),
        weight: 1 + (i % 3),
      });
    }
    await patchSettings(kv, { strategy: options.strategy });
    // Limits high enough never to refuse, so every pick runs the limit checks.
    await patchModelConfig(kv, MODEL, {
      patch: { limits: { rpm: 1_000_000, tpm: 1_000_000_000, rpd: 1_000_000_000 } },
      now: Date.now(),
    });
    const pool = new KeyPool({ kv, sealer: options.sealer, now: Date.now });
    const none = new Set<string>();
    for (let i = 0; i < 200; i++) await pool.pick(MODEL, none, { estimatedTokens: 50 });
    const times: number[] = [];
    for (let i = 0; i < options.picks; i++) {
      const t = performance.now();
      const picked = await pool.pick(MODEL, none, { estimatedTokens: 50 });
      times.push(performance.now() - t);
      if (!("secret" in picked)) throw new Error("The benchmark pool refused a pick");
    }
    await pool.settle();
    times.sort((a, b) => a - b);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    return {
      keys: n,
      strategy: options.strategy,
      picks: options.picks,
      meanUs: mean * 1000,
      p50Us: quantile(times, 0.5) * 1000,
      p99Us: quantile(times, 0.99) * 1000,
    };
  } finally {
    kv.close();
  }
}

/** Counts KV round trips made through it, by kind. */
class KvCounter {
  counts: Record<string, number> = {};
  total = 0;

  add(kind: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    this.total++;
  }

  wrap(kv: Deno.Kv): Deno.Kv {
    const add = (kind: string) => this.add(kind);
    return new Proxy(kv, {
      get(target, prop) {
        if (prop === "get" || prop === "getMany" || prop === "set" || prop === "delete") {
          return (...args: unknown[]) => {
            add(prop);
            return (target[prop] as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        if (prop === "list") {
          return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) => {
            const iter = target.list(selector, options);
            const batch = Math.max(1, options?.batchSize ?? options?.limit ?? 100);
            const next = iter.next.bind(iter);
            let calls = 0;
            iter.next = () => {
              if (calls++ % batch === 0) add("list batch");
              return next();
            };
            return iter;
          };
        }
        if (prop === "atomic") {
          return () => {
            const op = target.atomic();
            const commit = op.commit.bind(op);
            op.commit = () => {
              add("commit");
              return commit();
            };
            return op;
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }
}

/** Counts KV round trips per chat request through the whole gateway, in steady state. */
export async function measureKvPerRequest(
  options: {
    scenario: string;
    userLimits: Record<string, unknown>;
    strategy: Strategy;
    requests: number;
    /** Simulated time between requests; 0 freezes the clock, so no cache ever refreshes. */
    stepMs: number;
  },
): Promise<KvPerRequest> {
  const keys = Array.from({ length: 10 }, (_, i) => `AIzaBenchKv-key-${i}`);
  const fake = await startFakeGemini({
    keys: Object.fromEntries(keys.map((k) => [k, { kind: "ok" as const }])),
    quiet: true,
  });
  const raw = await Deno.openKv(":memory:");
  const counter = new KvCounter();
  const kv = counter.wrap(raw);
  let t = Date.UTC(2026, 10, 26, 12, 0, 0);
  let atUpstream = -1;
  const upstream: typeof fetch = (input, init) => {
    if (atUpstream < 0) atUpstream = counter.total;
    return fetch(input, init);
  };
  try {
    const config = parseConfig({
      GEMINI_BASE_URL: fake.url,
      ADMIN_PASSWORD: "bench-admin-password",
      GEMINI_KEYS: keys.join(","),
      KV_PATH: ":memory:",
    });
    const { app } = await openGateway(config, {
      kv,
      encryptionKey: "bench-encryption-key-0123456789",
      now: () => t,
      fetch: upstream,
    });
    const admin = (method: string, path: string, body: unknown) =>
      app.fetch(
        new Request(`http://gw${path}`, {
          method,
          headers: {
            authorization: "Bearer bench-admin-password",
            "content-type": "application/json",
          },
          body: JSON.stringify(body),
        }),
      );
    await admin("PATCH", "/admin/api/settings", { strategy: options.strategy });
    await admin("PATCH", `/admin/api/models/${MODEL}`, { rpm: 100_000 });
    const created = await (await admin("POST", "/admin/api/user-keys", {
      name: "bench",
      ...options.userLimits,
    })).json() as { key: string };
    const chat = async () => {
      const res = await app.fetch(
        new Request("http://gw/v1/chat/completions", {
          method: "POST",
          headers: {
            authorization: `Bearer ${created.key}`,
            "content-type": "application/json",
          },
          body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }] }),
        }),
      );
      if (res.status !== 200) throw new Error(`Benchmark request failed: ${res.status}`);
      await res.text();
      t += options.stepMs;
    };
    for (let i = 0; i < 30; i++) await chat();
    await app.drain();
    // Past every cache TTL once, so the measurement starts from warm, fresh caches.
    t += 10_000;
    for (let i = 0; i < 5; i++) await chat();
    await app.drain();
    let before = 0;
    const start = counter.total;
    const startKinds = { ...counter.counts };
    for (let i = 0; i < options.requests; i++) {
      atUpstream = -1;
      const at = counter.total;
      await chat();
      before += atUpstream - at;
      await app.drain();
    }
    const byKind: Record<string, number> = {};
    for (const [k, v] of Object.entries(counter.counts)) {
      const d = v - (startKinds[k] ?? 0);
      if (d) byKind[k] = Math.round((d / options.requests) * 100) / 100;
    }
    await app.drain();
    return {
      scenario: options.scenario,
      requests: options.requests,
      beforeUpstream: before / options.requests,
      total: (counter.total - start) / options.requests,
      byKind,
    };
  } finally {
    raw.close();
    await fake.close();
  }
}

function pad(text: string, n: number): string {
  return text.length >= n ? text : text + " ".repeat(n - text.length);
}

/** Everything `pick_bench` measures. */
export interface PickBenchReport {
  picks: PickCost[];
  kv: KvPerRequest[];
}

/** Runs every measurement (`quick`: fewer picks and requests). */
export async function runPickBench(options: { quick?: boolean } = {}): Promise<PickBenchReport> {
  const quick = options.quick === true;
  const sealer = await Sealer.fromPassphrase("bench-passphrase-0123456789", randomBytes(16));
  const picks: PickCost[] = [];
  for (const n of [10, 10_000]) {
    for (const strategy of STRATEGIES) {
      picks.push(await measurePick(n, { strategy, picks: quick ? 2_000 : 20_000, sealer }));
    }
  }
  const kv: KvPerRequest[] = [];
  const requests = quick ? 50 : 200;
  const limited = { rpm: 100_000, tokens_per_day: 1_000_000_000, max_concurrency: 100 };
  for (const stepMs of [0, 100]) {
    const when = stepMs ? "10 req/s, refreshes amortized" : "frozen clock, caches fresh";
    for (const strategy of STRATEGIES) {
      kv.push(
        await measureKvPerRequest({
          scenario: `${strategy}, no user limits, ${when}`,
          userLimits: {},
          strategy,
          requests,
          stepMs,
        }),
      );
    }
    kv.push(
      await measureKvPerRequest({
        scenario: `round_robin, rpm+tokens/day+concurrency, ${when}`,
        userLimits: limited,
        strategy: "round_robin",
        requests,
        stepMs,
      }),
    );
  }
  return { picks, kv };
}

/** The report as text tables. */
export function formatPickBench(report: PickBenchReport): string {
  const lines = ["Pick cost (one KeyPool.pick, limits configured, warm caches):"];
  lines.push(
    `  ${pad("keys", 8)}${pad("strategy", 14)}${pad("mean µs", 10)}${pad("p50 µs", 10)}p99 µs`,
  );
  for (const p of report.picks) {
    lines.push(
      `  ${pad(String(p.keys), 8)}${pad(p.strategy, 14)}${pad(p.meanUs.toFixed(1), 10)}${
        pad(p.p50Us.toFixed(1), 10)
      }${p.p99Us.toFixed(1)}`,
    );
  }
  lines.push("", "KV round trips per chat request (started before the upstream call / in total):");
  for (const r of report.kv) {
    lines.push(
      `  ${pad(r.scenario, 72)} ${r.beforeUpstream.toFixed(2)} / ${r.total.toFixed(2)}  ${
        JSON.stringify(r.byKind)
      }`,
    );
  }
  return lines.join("\n");
}

async function main(args: string[]): Promise<void> {
  const report = await runPickBench({ quick: args.includes("--quick") });
  console.log(formatPickBench(report));
  const jsonAt = args.indexOf("--json");
  if (jsonAt >= 0 && args[jsonAt + 1]) {
    await Deno.writeTextFile(args[jsonAt + 1], JSON.stringify(report, null, 2));
  }
}

if (import.meta.main) await main(Deno.args);
