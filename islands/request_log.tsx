/**
 * Island: the request log. Recent requests, newest first (time and request id, user key, model,
 * key, status, latency, tokens, error class), filtered by model, result, user key and key, with
 * older pages loaded on demand; a request id (the one a user quotes) is looked up in the whole log.
 * Nothing of a prompt or an answer is ever logged.
 */
import { useComputed, useSignal } from "@preact/signals";
import { api, errorMessage } from "../lib/ui/api.ts";
import { formatCount, formatDateTime, formatMs } from "../lib/ui/format.ts";
import { useT } from "../lib/ui/i18n.ts";
import type { RequestLogEntryView } from "../lib/ui/wire.ts";

/** Props of `RequestLog`. */
export interface RequestLogProps {
  entries: RequestLogEntryView[];
  hasMore: boolean;
  pageSize: number;
}

/** The filters of the log. */
export interface LogFilter {
  model: string;
  result: "all" | "ok" | "failed";
  user: string;
  key: string;
}

/** Whether an entry passes the filters. */
export function matchesFilter(e: RequestLogEntryView, f: LogFilter): boolean {
  if (f.model && e.model !== f.model) return false;
  if (f.result === "ok" && e.status >= 400) return false;
  if (f.result === "failed" && e.status < 400) return false;
  if (f.user && (e.user_key_name ?? e.user_key_id ?? "") !== f.user) return false;
  const q = f.key.trim().toLowerCase();
  if (q && !(e.key ?? "").toLowerCase().includes(q)) return false;
  return true;
}

function distinct(values: (string | null | undefined)[]): string[] {
  return [...new Set(values.filter((v): v is string => !!v))].sort();
}

/** The request log. */
export function RequestLog(props: RequestLogProps) {
  const t = useT();
  const entries = useSignal(props.entries);
  const hasMore = useSignal(props.hasMore);
  const filter = useSignal<LogFilter>({ model: "", result: "all", user: "", key: "" });
  const loading = useSignal(false);
  const error = useSignal<string | null>(null);
  /** The request id looked up in the whole log ("" for the newest requests). */
  const requestId = useSignal("");
  const shown = useComputed(() => entries.value.filter((e) => matchesFilter(e, filter.value)));
  const set = (change: Partial<LogFilter>) => (filter.value = { ...filter.value, ...change });

  async function load(reset: boolean) {
    loading.value = true;
    try {
      const last = entries.value.at(-1);
      const query = new URLSearchParams({ limit: String(props.pageSize) });
      if (!reset && last) {
        query.set("before", last.time);
        query.set("before_id", last.id);
      }
      if (requestId.value) query.set("request_id", requestId.value);
      const res = await api<{ data: RequestLogEntryView[]; has_more?: boolean }>(
        "GET",
        `/admin/api/request-log?${query}`,
      );
      entries.value = reset ? res.data : [...entries.value, ...res.data];
      hasMore.value = res.has_more ?? false;
      error.value = null;
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    } finally {
      loading.value = false;
    }
  }

  return (
    <section class="card" aria-labelledby="log-title">
      <div class="card-head">
        <h2 id="log-title">{t("logs.title")}</h2>
        <div class="actions">
          <a
            class="btn btn-small"
            href="/admin/api/request-log?limit=1000&format=csv"
            download
          >
            {t("logs.downloadCsv")}
          </a>
          <button
            type="button"
            class="btn btn-small"
            disabled={loading.value}
            onClick={() => load(true)}
          >
            {t("common.refresh")}
          </button>
        </div>
      </div>
      <div class="toolbar">
        <div class="field field-narrow">
          <label for="log-model">{t("logs.filterModel")}</label>
          <select
            id="log-model"
            value={filter.value.model}
            onChange={(e) => set({ model: e.currentTarget.value })}
          >
            <option value="">{t("common.all")}</option>
            {distinct(entries.value.map((e) => e.model)).map((m) => (
              <option key={m} value={m}>{m}</option>
            ))}
          </select>
        </div>
        <div class="field field-narrow">
          <label for="log-result">{t("logs.filterStatus")}</label>
          <select
            id="log-result"
            value={filter.value.result}
            onChange={(e) => set({ result: e.currentTarget.value as LogFilter["result"] })}
          >
            <option value="all">{t("common.all")}</option>
            <option value="ok">{t("logs.filterOk")}</option>
            <option value="failed">{t("logs.filterFailed")}</option>
          </select>
        </div>
        <div class="field field-narrow">
          <label for="log-user">{t("logs.user")}</label>
          <select
            id="log-user"
            value={filter.value.user}
            onChange={(e) => set({ user: e.currentTarget.value })}
          >
            <option value="">{t("common.all")}</option>
            {distinct(entries.value.map((e) => e.user_key_name ?? e.user_key_id)).map((u) => (
              <option key={u} value={u}>{u}</option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="log-request-id">{t("logs.requestId")}</label>
          <input
            id="log-request-id"
            type="search"
            class="mono"
            value={requestId.value}
            onChange={(e) => {
              requestId.value = e.currentTarget.value.trim();
              load(true);
            }}
          />
        </div>
        <div class="field">
          <label for="log-key">{t("logs.key")}</label>
          <input
            id="log-key"
            type="search"
            placeholder={t("keys.searchPlaceholder")}
            value={filter.value.key}
            onInput={(e) => set({ key: e.currentTarget.value })}
          />
        </div>
      </div>
      {error.value ? <div class="notice notice-bad" role="alert">{error.value}</div> : null}
      {shown.value.length === 0 ? <p class="muted">{t("logs.none")}</p> : (
        <div class="table-wrap">
          <table class="data responsive" data-testid="request-log">
            <thead>
              <tr>
                <th scope="col">{t("logs.time")}</th>
                <th scope="col">{t("logs.model")}</th>
                <th scope="col">{t("logs.user")}</th>
                <th scope="col">{t("logs.key")}</th>
                <th scope="col">{t("logs.statusCode")}</th>
                <th scope="col" class="num">{t("logs.latency")}</th>
                <th scope="col" class="num">{t("logs.tokens")}</th>
              </tr>
            </thead>
            <tbody>
              {shown.value.map((e) => (
                <tr key={e.id} data-status={e.status}>
                  <td class="cell-main small">
                    {formatDateTime(e.time, t.lang)}
                    {e.request_id
                      ? (
                        <span class="cell-sub mono" title={t("logs.requestId")}>
                          {e.request_id}
                        </span>
                      )
                      : null}
                  </td>
                  <td data-label={t("logs.model")} class="mono">
                    {e.model}
                    {e.api ? <span class="cell-sub" title="API">{e.api}</span> : null}
                  </td>
                  <td data-label={t("logs.user")}>{e.user_key_name ?? e.user_key_id ?? "–"}</td>
                  <td data-label={t("logs.key")} class="key-text">{e.key ?? "–"}</td>
                  <td data-label={t("logs.statusCode")}>
                    <span class={`badge badge-${e.status < 400 ? "active" : "invalid"}`}>
                      {e.status}
                    </span>
                    {e.error_class ? <span class="cell-sub">{e.error_class}</span> : null}
                    {(e.attempts ?? 1) > 1
                      ? <span class="cell-sub">{t("logs.attempts", { n: e.attempts ?? 1 })}</span>
                      : null}
                  </td>
                  <td data-label={t("logs.latency")} class="num">{formatMs(e.latency_ms)}</td>
                  <td data-label={t("logs.tokens")} class="num nowrap">
                    {formatCount(e.input_tokens, t.lang)} / {formatCount(e.output_tokens, t.lang)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {hasMore.value
        ? (
          <button type="button" class="btn" disabled={loading.value} onClick={() => load(false)}>
            {loading.value ? t("common.loading") : t("logs.more")}
          </button>
        )
        : null}
    </section>
  );
}
