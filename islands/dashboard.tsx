/**
 * Island: the dashboard. Totals and success rate, requests and tokens over the last hour or day,
 * requests per key and per model, key states and the keys at risk; refreshed from
 * `/admin/api/stats` and `/admin/api/keys` every few seconds while the page is visible.
 */
import { useSignal } from "@preact/signals";
import { useEffect } from "preact/hooks";
import { api, errorMessage } from "../lib/ui/api.ts";
import { formatCount, formatMs, formatPercent, formatTime } from "../lib/ui/format.ts";
import { type MessageKey, useT } from "../lib/ui/i18n.ts";
import type { EffectiveLimit, KeyView, RequestLogEntryView, StatsView } from "../lib/ui/wire.ts";
import { Chart } from "./components/chart.tsx";
import { LimitsTable } from "./components/limits_table.tsx";
import { StatusBadge } from "./components/status_badge.tsx";
import { failingDays } from "./gemini_keys.tsx";

/** Props of `Dashboard`. */
export interface DashboardProps {
  stats: StatsView;
  keys: KeyView[];
  /** The pool's effective limits per model; null when the gateway does not report them. */
  limits: EffectiveLimit[] | null;
  /** Recent requests (for latency); null when there is no request log. */
  recent: RequestLogEntryView[] | null;
  /** Failing days after which the cleanup removes a key; null: never. */
  removeAfterDays: number | null;
  /** Epoch ms the data was read at. */
  at: number;
  refreshSeconds: number;
}

/** Median and 95th percentile latency of the successful requests among `entries`. */
export function latencyStats(
  entries: RequestLogEntryView[],
): { p50: number; p95: number; n: number } | null {
  const ms = entries.filter((e) => e.status < 400).map((e) => e.latency_ms).sort((a, b) => a - b);
  if (!ms.length) return null;
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.ceil(q * ms.length) - 1)];
  return { p50: at(0.5), p95: at(0.95), n: ms.length };
}

/** How many recent requests the latency figures are taken from. */
export const RECENT = 200;

/** Key state counts: disabled keys count as disabled whatever their health. */
export function keyStateCounts(keys: KeyView[]): Record<string, number> {
  const counts: Record<string, number> = { active: 0, cooldown: 0, invalid: 0, disabled: 0 };
  for (const k of keys) {
    const state = k.enabled ? k.status : "disabled";
    counts[state] = (counts[state] ?? 0) + 1;
  }
  return counts;
}

/** Keys that are failing or resting: invalid, cooling down, or with errors in a row. */
export function keysAtRisk(keys: KeyView[]): KeyView[] {
  const rank = (k: KeyView) => (k.status === "invalid" ? 0 : k.status === "cooldown" ? 1 : 2);
  return keys
    .filter((k) => k.enabled && (k.status !== "active" || (k.consecutive_errors ?? 0) > 0))
    .sort((a, b) => rank(a) - rank(b) || (b.consecutive_errors ?? 0) - (a.consecutive_errors ?? 0));
}

/** The causes of failed attempts that occurred, most frequent first. */
export function causeRows(byCause: Record<string, number> | undefined): [string, number][] {
  return Object.entries(byCause ?? {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
}

const CAUSE_KEYS: Record<string, MessageKey> = {
  rate_limited: "cause.rate_limited",
  daily_quota: "cause.daily_quota",
  invalid_key: "cause.invalid_key",
  server_error: "cause.server_error",
  timeout: "cause.timeout",
  network: "cause.network",
  empty_answer: "cause.empty_answer",
  refused: "cause.refused",
  location: "cause.location",
};

function Stat(props: { label: string; value: string; sub?: string; id: string }) {
  return (
    <div class="stat" data-stat={props.id}>
      <div class="stat-label">{props.label}</div>
      <div class="stat-value">{props.value}</div>
      {props.sub ? <div class="stat-sub">{props.sub}</div> : null}
    </div>
  );
}

function RemovalLine(props: { k: KeyView; now: number; removeAfterDays: number | null }) {
  const t = useT();
  const days = failingDays(props.k.health?.days, props.now);
  if (!days) return null;
  const left = props.removeAfterDays === null || props.k.status !== "invalid"
    ? null
    : Math.max(0, props.removeAfterDays - days);
  return (
    <span class="cell-sub" data-failing-days={days}>
      {t("keys.failingDays", { n: days })}
      {left !== null ? ` · ${t("dash.removalIn", { n: left })}` : ""}
    </span>
  );
}

/** The dashboard. */
export function Dashboard(props: DashboardProps) {
  const t = useT();
  const stats = useSignal(props.stats);
  const keys = useSignal(props.keys);
  const limits = useSignal(props.limits);
  const recent = useSignal(props.recent);
  const at = useSignal(props.at);
  const range = useSignal<"hour" | "day" | "month">("hour");
  const error = useSignal<string | null>(null);
  const busy = useSignal(false);

  async function refresh() {
    if (busy.value) return;
    busy.value = true;
    try {
      const [s, k, l, r] = await Promise.all([
        api<StatsView>("GET", "/admin/api/stats"),
        api<{ data: KeyView[] }>("GET", "/admin/api/keys"),
        props.limits ? api<{ data: EffectiveLimit[] }>("GET", "/admin/api/limits?scopes=0") : null,
        props.recent
          ? api<{ data: RequestLogEntryView[] }>("GET", `/admin/api/request-log?limit=${RECENT}`)
          : null,
      ]);
      stats.value = s;
      keys.value = k.data;
      if (l) limits.value = l.data;
      if (r) recent.value = r.data;
      at.value = Date.now();
      error.value = null;
    } catch (err) {
      error.value = errorMessage(err);
    } finally {
      busy.value = false;
    }
  }

  useEffect(() => {
    const id = setInterval(() => {
      if (document.visibilityState === "visible") refresh();
    }, props.refreshSeconds * 1000);
    return () => clearInterval(id);
  }, []);

  const s = stats.value;
  const total = s.totals;
  const counts = keyStateCounts(keys.value);
  const risky = keysAtRisk(keys.value);
  const buckets = range.value === "hour"
    ? s.minutes
    : range.value === "day"
    ? s.hours
    : s.days ?? s.hours;
  const x = buckets.map((b) => Date.parse(b.t));
  const count = (n: number) => formatCount(n, t.lang);
  const latency = recent.value ? latencyStats(recent.value) : null;
  const now = at.value;
  const topKeys = [...s.keys].sort((a, b) => b.requests - a.requests).slice(0, 12);
  const topModels = [...s.models].sort((a, b) => b.requests - a.requests).slice(0, 10);
  const causes = causeRows(s.errors_by_cause?.last_24h);

  return (
    <div class="dashboard">
      <div class="card-head">
        <div class="segmented" role="group" aria-label={t("dash.range")}>
          <button
            type="button"
            aria-pressed={range.value === "hour"}
            onClick={() => (range.value = "hour")}
          >
            {t("dash.lastHour")}
          </button>
          <button
            type="button"
            aria-pressed={range.value === "day"}
            onClick={() => (range.value = "day")}
          >
            {t("dash.lastDay")}
          </button>
          {s.days
            ? (
              <button
                type="button"
                aria-pressed={range.value === "month"}
                onClick={() => (range.value = "month")}
              >
                {t("dash.lastMonth")}
              </button>
            )
            : null}
        </div>
        <div class="actions">
          <span class="muted small" data-updated={at.value}>
            {t("dash.updated", { time: formatTime(at.value, t.lang) })} ·{" "}
            {t("dash.autoRefresh", { s: props.refreshSeconds })}
          </span>
          <button type="button" class="btn btn-small" onClick={refresh} disabled={busy.value}>
            {busy.value ? t("common.loading") : t("common.refresh")}
          </button>
        </div>
      </div>
      {error.value
        ? (
          <div class="notice notice-bad" role="alert">
            {t("common.error", { message: error.value })}
          </div>
        )
        : null}

      <div class="stats">
        <Stat id="requests" label={t("dash.requests")} value={count(total.requests)} />
        <Stat id="failed" label={t("dash.failed")} value={count(total.failed_requests)} />
        <Stat
          id="success"
          label={t("dash.successRate")}
          value={formatPercent(total.requests, total.requests + total.failed_requests)}
          sub={total.attempts
            ? t("dash.errorsOfAttempts", {
              errors: count(total.errors),
              attempts: count(total.attempts),
            })
            : undefined}
        />
        <Stat id="tokens-in" label={t("dash.tokensIn")} value={count(total.input_tokens)} />
        <Stat
          id="tokens-out"
          label={t("dash.tokensOut")}
          value={count(total.output_tokens)}
          sub={total.thinking_tokens
            ? `${t("dash.thinking")}: ${count(total.thinking_tokens)}`
            : undefined}
        />
        {latency
          ? (
            <Stat
              id="latency"
              label={t("dash.latency")}
              value={formatMs(latency.p50)}
              sub={t("dash.latencySub", { p95: formatMs(latency.p95), n: latency.n })}
            />
          )
          : null}
        <Stat
          id="keys"
          label={t("dash.keyStates")}
          value={`${counts.active}/${keys.value.length}`}
          sub={`${t("dash.keysCooldown")} ${counts.cooldown} · ${
            t("dash.keysInvalid")
          } ${counts.invalid} · ${t("dash.keysDisabled")} ${counts.disabled}`}
        />
      </div>

      <div class="grid">
        <section class="card">
          <Chart
            title={t("dash.chartRequests")}
            kind="time"
            x={x}
            series={[
              { label: t("dash.seriesRequests"), values: buckets.map((b) => b.requests), color: 1 },
              {
                label: t("dash.seriesFailed"),
                values: buckets.map((b) => b.failed_requests),
                color: 2,
              },
            ]}
            emptyText={t("dash.noTraffic")}
            formatValue={count}
          />
        </section>
        <section class="card">
          <Chart
            title={t("dash.chartTokens")}
            kind="time"
            x={x}
            series={[
              { label: t("dash.seriesIn"), values: buckets.map((b) => b.input_tokens), color: 1 },
              { label: t("dash.seriesOut"), values: buckets.map((b) => b.output_tokens), color: 3 },
            ]}
            emptyText={t("dash.noTraffic")}
            formatValue={count}
          />
        </section>
        <section class="card">
          <Chart
            title={t("dash.chartKeys")}
            kind="bars"
            x={[]}
            categories={topKeys.map((k) => k.masked ?? k.id)}
            series={[{
              label: t("dash.seriesRequests"),
              values: topKeys.map((k) => k.requests),
              color: 1,
            }]}
            emptyText={t("dash.noTraffic")}
            formatValue={count}
          />
        </section>
        <section class="card">
          <Chart
            title={t("dash.chartModels")}
            kind="bars"
            x={[]}
            categories={topModels.map((m) => m.model)}
            series={[{
              label: t("dash.seriesRequests"),
              values: topModels.map((m) => m.requests),
              color: 3,
            }]}
            emptyText={t("dash.noTraffic")}
            formatValue={count}
          />
        </section>
      </div>

      {limits.value
        ? (
          <section class="card" aria-labelledby="limits-title">
            <h2 id="limits-title">{t("limits.title")}</h2>
            <p class="muted small">{t("limits.help")}</p>
            <LimitsTable limits={limits.value} />
          </section>
        )
        : null}

      <section class="card" aria-labelledby="causes-title" data-testid="causes">
        <h2 id="causes-title">{t("dash.causes")}</h2>
        <p class="muted small">{t("dash.causesHelp")}</p>
        {causes.length === 0 ? <p class="muted">{t("dash.causesNone")}</p> : (
          <ul class="list-plain">
            {causes.map(([cause, n]) => (
              <li key={cause}>
                <span>{CAUSE_KEYS[cause] ? t(CAUSE_KEYS[cause]) : cause}</span>
                <span class="num">{count(n)}</span>
              </li>
            ))}
          </ul>
        )}
      </section>

      <section class="card" aria-labelledby="risk-title">
        <h2 id="risk-title">{t("dash.atRisk")}</h2>
        {keys.value.length === 0
          ? <p class="muted">{t("dash.noKeys")}</p>
          : risky.length === 0
          ? <p class="muted">{t("dash.atRiskNone")}</p>
          : (
            <ul class="list-plain">
              {risky.map((k) => (
                <li key={k.id}>
                  <span>
                    <span class="key-text">{k.masked}</span>
                    {k.label ? <span class="cell-sub">{k.label}</span> : null}
                  </span>
                  <span>
                    <StatusBadge
                      status={k.status}
                      cause={k.status_cause}
                      enabled={k.enabled}
                      reason={k.status_reason}
                      until={k.status_until}
                    />
                    {(k.consecutive_errors ?? 0) > 0
                      ? (
                        <span class="cell-sub">
                          {t("dash.consecutiveErrors", { n: k.consecutive_errors ?? 0 })}
                        </span>
                      )
                      : null}
                    <RemovalLine k={k} now={now} removeAfterDays={props.removeAfterDays} />
                  </span>
                </li>
              ))}
            </ul>
          )}
      </section>
    </div>
  );
}
