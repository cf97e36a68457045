/**
 * Text output of the benchmark: aligned tables of the load cells, the target ratios and the KV
 * operations per request.
 *
 * @module
 */
import type { CellStats } from "./load_gen.ts";
import type { KvOpsReport } from "./kv_ops.ts";

/** The three paths compared. */
export type PathName = "upstream direct" | "bare forwarder" | "gateway";
/** The two request modes. */
export type Mode = "non-stream" | "stream";

/** One measured cell: a path, a mode and a client count. */
export interface CellResult {
  mode: Mode;
  clients: number;
  path: PathName;
  stats: CellStats;
  /** CPU time the proxy process (forwarder or gateway) used per request, in µs; null if unknown. */
  proxyCpuUsPerReq: number | null;
  /** CPU time the fake upstream used per request, in µs; null if unknown. */
  upstreamCpuUsPerReq: number | null;
  /** CPU time this load-generating process used per request, in µs; null if unknown. */
  loadgenCpuUsPerReq: number | null;
  /** Share of all CPUs that processes outside the benchmark used during the cell, in %. */
  otherLoadPct: number | null;
}

/** One target ratio. */
export interface RatioResult {
  mode: Mode;
  name: string;
  value: number;
  op: ">=" | "<=";
  target: number;
  pass: boolean;
}

/** Formats rows as a table; `right` marks the columns aligned right. */
export function table(header: string[], rows: string[][], right: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** A number with `digits` decimals, or "-" when not finite. */
export function fmt(value: number | null, digits = 1): string {
  return value === null || !Number.isFinite(value) ? "-" : value.toFixed(digits);
}

/** The load table. */
export function cellsTable(cells: CellResult[]): string {
  const rows = cells.map((c) => [
    c.mode,
    String(c.clients),
    c.path,
    fmt(c.stats.rps, 0),
    fmt(c.stats.p50Ms, 2),
    fmt(c.stats.p90Ms, 2),
    fmt(c.stats.p99Ms, 2),
    fmt(c.stats.maxMs, 1),
    c.mode === "stream" ? fmt(c.stats.ttfbP50Ms, 2) : "",
    String(c.stats.ok) + (c.stats.capped ? "*" : ""),
    String(c.stats.errors),
    fmt(c.proxyCpuUsPerReq, 0),
    fmt(c.upstreamCpuUsPerReq, 0),
    fmt(c.otherLoadPct, 0),
  ]);
  return table(
    [
      "mode",
      "clients",
      "path",
      "req/s",
      "p50 ms",
      "p90 ms",
      "p99 ms",
      "max ms",
      "ttfb p50",
      "requests",
      "errors",
      "proxy cpu µs/req",
      "fake cpu µs/req",
      "other load %",
    ],
    rows,
    [false, true, false, true, true, true, true, true, true, true, true, true, true, true],
  );
}

/** The target table. */
export function ratiosTable(ratios: RatioResult[]): string {
  return table(
    ["mode", "ratio", "value", "target", "result"],
    ratios.map((r) => [
      r.mode,
      r.name,
      fmt(r.value, 3),
      `${r.op} ${r.target.toFixed(2)}`,
      r.pass ? "PASS" : "FAIL",
    ]),
    [false, false, true, false, false],
  );
}

/** The KV table. */
export function kvTable(report: KvOpsReport): string {
  const rows = report.rows.map((r) => {
    const p = r.perRequest;
    const kinds = [
      p.get ? `get ${fmt(p.get, 2)}` : "",
      p.getMany ? `getMany ${fmt(p.getMany, 2)}` : "",
      p.list ? `list ${fmt(p.list, 2)} (${fmt(p.listBatches, 2)} batches)` : "",
      p.set ? `set ${fmt(p.set, 2)}` : "",
      p.delete ? `delete ${fmt(p.delete, 2)}` : "",
      p.commit ? `commit ${fmt(p.commit, 2)} (${fmt(p.mutations, 1)} mutations)` : "",
    ].filter((s) => s !== "").join(", ");
    return [
      r.scenario,
      String(r.requests),
      `${fmt(r.beforeUpstream.min, 0)} / ${fmt(r.beforeUpstream.mean, 2)} / ${
        fmt(r.beforeUpstream.max, 0)
      }`,
      fmt(r.issuedBeforeUpstream.mean, 2),
      fmt(r.total.mean, 2),
      kinds,
      r.targeted ? (r.pass ? "PASS" : "FAIL") : "(info)",
    ];
  });
  return table(
    [
      "scenario",
      "reqs",
      "awaited before upstream min/avg/max",
      "issued before",
      "total/req",
      "per request (mean)",
      "<= 1",
    ],
    rows,
    [false, true, true, true, true, false, false],
  );
}
