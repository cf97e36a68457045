/**
 * The load generator of the benchmark: N concurrent workers in this process, each looping `fetch`
 * until the cell's time is up or its request cap is reached, reading every body fully and checking
 * that it is a complete answer.
 *
 * @module
 */

/** One HTTP target: where to POST what, and how to tell a complete answer. */
export interface Target {
  url: string;
  headers: Record<string, string>;
  body: string;
  /** Returns why the answer is wrong, or null when it is a complete, successful answer. */
  check: (status: number, text: string) => string | null;
}

/** How one cell is run. */
export interface CellOptions {
  /** Concurrent workers (clients), each with one request in flight at a time. */
  concurrency: number;
  /** How long new requests are started. */
  durationMs: number;
  /** Requests started at most. */
  maxRequests: number;
  /** The HTTP client (connection pool) to use. */
  client?: Deno.HttpClient;
}

/** What one cell measured. */
export interface CellStats {
  /** Successful requests. */
  ok: number;
  /** Failed requests (bad status, incomplete body, network error). */
  errors: number;
  /** Failure messages with their counts (at most 20 distinct). */
  errorSamples: Record<string, number>;
  /** From the first request started to the last one finished, in ms. */
  elapsedMs: number;
  /** Successful requests per second. */
  rps: number;
  /** Latency to the last byte of the body, in ms. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Latency to the first body chunk, in ms (the stream's time to first token). */
  ttfbP50Ms: number;
  /** Whether the request cap (rather than the duration) ended the cell. */
  capped: boolean;
}

/** The `q` quantile (0..1) of sorted values (nearest rank); NaN when empty. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Sends one request and reads its body fully; returns [ttfb, total] in ms or an error message. */
async function once(
  target: Target,
  client: Deno.HttpClient | undefined,
  decoder: TextDecoder,
): Promise<{ ttfb: number; total: number } | string> {
  const t0 = performance.now();
  let res: Response;
  try {
    // Typed separately: with the `dom` lib, the `client` field fails the literal's excess check.
    const init: RequestInit & { client?: Deno.HttpClient } = {
      method: "POST",
      headers: target.headers,
      body: target.body,
      client,
    };
    res = await fetch(target.url, init);
  } catch (err) {
    return `fetch failed: ${err instanceof Error ? err.message : String(err)}`;
  }
  let ttfb = NaN;
  let text = "";
  try {
    if (res.body) {
      const reader = res.body.getReader();
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        if (Number.isNaN(ttfb)) ttfb = performance.now() - t0;
        text += decoder.decode(value, { stream: true });
      }
      text += decoder.decode();
    }
  } catch (err) {
    return `body broke: ${err instanceof Error ? err.message : String(err)}`;
  }
  const total = performance.now() - t0;
  const problem = target.check(res.status, text);
  if (problem !== null) return problem;
  return { ttfb: Number.isNaN(ttfb) ? total : ttfb, total };
}

/** The raw measurements of one run of a cell. */
export interface CellSamples {
  /** Latency to the last byte of each successful request, in ms. */
  latencies: Float64Array;
  /** Latency to the first body chunk of each successful request, in ms. */
  ttfbs: Float64Array;
  errors: number;
  errorSamples: Record<string, number>;
  elapsedMs: number;
  capped: boolean;
}

/** The statistics of one or more runs of a cell, their requests pooled. */
export function statsOf(runs: readonly CellSamples[]): CellStats {
  const pool = (pick: (r: CellSamples) => Float64Array) => {
    const all = new Float64Array(runs.reduce((n, r) => n + pick(r).length, 0));
    let at = 0;
    for (const r of runs) {
      all.set(pick(r), at);
      at += pick(r).length;
    }
    return all.sort();
  };
  const sorted = pool((r) => r.latencies);
  const sortedTtfb = pool((r) => r.ttfbs);
  const errorSamples: Record<string, number> = {};
  for (const r of runs) {
    for (const [k, n] of Object.entries(r.errorSamples)) {
      errorSamples[k] = (errorSamples[k] ?? 0) + n;
    }
  }
  const ok = sorted.length;
  const elapsedMs = runs.reduce((t, r) => t + r.elapsedMs, 0);
  return {
    ok,
    errors: runs.reduce((n, r) => n + r.errors, 0),
    errorSamples,
    elapsedMs,
    rps: elapsedMs > 0 ? (ok * 1000) / elapsedMs : 0,
    p50Ms: quantile(sorted, 0.5),
    p90Ms: quantile(sorted, 0.9),
    p99Ms: quantile(sorted, 0.99),
    maxMs: ok ? sorted[ok - 1] : NaN,
    ttfbP50Ms: quantile(sortedTtfb, 0.5),
    capped: runs.some((r) => r.capped),
  };
}

/** Runs one cell and returns its statistics. */
export async function runCell(target: Target, options: CellOptions): Promise<CellStats> {
  return statsOf([await runSamples(target, options)]);
}

/** Runs one cell and returns its raw measurements (see `statsOf`). */
export async function runSamples(target: Target, options: CellOptions): Promise<CellSamples> {
  const latencies = new Float64Array(options.maxRequests);
  const ttfbs = new Float64Array(options.maxRequests);
  const errorSamples: Record<string, number> = {};
  let started = 0;
  let ok = 0;
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + options.durationMs;

  async function worker(): Promise<void> {
    const decoder = new TextDecoder();
    while (started < options.maxRequests && performance.now() < deadline) {
      started++;
      const result = await once(target, options.client, decoder);
      if (typeof result === "string") {
        errors++;
        const key = result.slice(0, 300);
        if (key in errorSamples || Object.keys(errorSamples).length < 20) {
          errorSamples[key] = (errorSamples[key] ?? 0) + 1;
        }
      } else {
        latencies[ok] = result.total;
        ttfbs[ok] = result.ttfb;
        ok++;
      }
    }
  }

  await Promise.all(Array.from({ length: options.concurrency }, () => worker()));
  return {
    latencies: latencies.slice(0, ok),
    ttfbs: ttfbs.slice(0, ok),
    errors,
    errorSamples,
    elapsedMs: performance.now() - t0,
    capped: started >= options.maxRequests,
  };
}
