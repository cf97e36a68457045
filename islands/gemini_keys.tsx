/**
 * Island: the Gemini keys page. Batch add from pasted text with a report of added, duplicate and
 * rejected keys; a filterable list with status (reason, end time, last health check), enable
 * switch, weight, label, project, usage, test now and delete; bulk actions with progress; and the
 * removed area with restore. Keys are only ever shown masked.
 */
import { type Signal, useComputed, useSignal } from "@preact/signals";
import { api, errorMessage } from "../lib/ui/api.ts";
import { formatCount, formatDateTime } from "../lib/ui/format.ts";
import { type Translator, useT } from "../lib/ui/i18n.ts";
import type { AddKeysResult, KeyCheck, KeyView, RemovedKey } from "../lib/ui/wire.ts";
import { ConfirmButton, EnabledSwitch, WeightInput } from "./components/controls.tsx";
import { StatusBadge } from "./components/status_badge.tsx";

/** Props of `GeminiKeys`. */
export interface GeminiKeysProps {
  keys: KeyView[];
  /** Warnings about projects many keys share. */
  warnings: string[];
  /** The removed area; null when this gateway has none. */
  removed: RemovedKey[] | null;
}

type Notice = { kind: "ok" | "bad" | "warn"; text: string; items?: string[] } | null;
type TestResult = { ok: boolean; text: string };

const BULK_ACTIONS = [
  ["test", "keys.testSelected"],
  ["enable", "keys.enableSelected"],
  ["disable", "keys.disableSelected"],
  ["reset", "keys.restoreSelected"],
] as const;

/** Runs `task` over `items` with at most `limit` at a time, reporting progress. */
export async function eachLimited<T>(
  items: T[],
  task: (item: T) => Promise<void>,
  options: { limit: number; onProgress?: (done: number) => void },
): Promise<void> {
  const { limit, onProgress } = options;
  let next = 0;
  let done = 0;
  async function worker() {
    while (next < items.length) {
      const item = items[next++];
      await task(item);
      onProgress?.(++done);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** UTC days in a row, up to today (or yesterday when today is not recorded yet), that only failed. */
export function failingDays(days: Record<string, string> | undefined, now: number): number {
  if (!days) return 0;
  const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  let t = now;
  if (!(dayOf(t) in days)) t -= 86_400_000;
  let n = 0;
  while (days[dayOf(t)] === "fail") {
    n++;
    t -= 86_400_000;
  }
  return n;
}

function NoticeBox(props: { notice: Notice; testid?: string }) {
  const n = props.notice;
  if (!n) return null;
  return (
    <div
      class={`notice notice-${n.kind}`}
      role={n.kind === "bad" ? "alert" : "status"}
      data-testid={props.testid}
    >
      {n.text}
      {n.items?.length ? <ul>{n.items.map((item, i) => <li key={i}>{item}</li>)}</ul> : null}
    </div>
  );
}

function keyPath(id: string, suffix = ""): string {
  return `/admin/api/keys/${encodeURIComponent(id)}${suffix}`;
}

function AddKeys(props: { onAdded: (res: AddKeysResult) => Promise<void> }) {
  const t = useT();
  const text = useSignal("");
  const weight = useSignal("1");
  const label = useSignal("");
  const project = useSignal("");
  const proxy = useSignal("");
  const adding = useSignal(false);
  const notice = useSignal<Notice>(null);

  async function add(e: Event) {
    e.preventDefault();
    if (!text.value.trim()) return;
    adding.value = true;
    notice.value = null;
    try {
      const body: Record<string, unknown> = { keys: [text.value] };
      const w = Number(weight.value);
      if (weight.value && Number.isInteger(w)) body.weight = w;
      if (label.value.trim()) body.label = label.value.trim();
      if (project.value.trim()) body.project = project.value.trim();
      if (proxy.value.trim()) body.proxy = proxy.value.trim();
      const res = await api<AddKeysResult>("POST", "/admin/api/keys", body);
      const rejected = res.rejected ?? [];
      notice.value = {
        kind: rejected.length || !res.added || res.warnings?.length ? "warn" : "ok",
        text: t("keys.report", {
          added: res.added,
          duplicates: res.duplicates,
          rejected: rejected.length,
        }),
        items: [
          ...rejected.map((r) => t("keys.rejectedItem", { key: r.key, reason: r.reason })),
          ...(res.warnings ?? []),
        ],
      };
      text.value = "";
      await props.onAdded(res);
    } catch (err) {
      notice.value = { kind: "bad", text: t("common.error", { message: errorMessage(err) }) };
    } finally {
      adding.value = false;
    }
  }

  return (
    <section class="card" aria-labelledby="add-keys-title">
      <h2 id="add-keys-title">{t("keys.addTitle")}</h2>
      <form onSubmit={add}>
        <div class="field">
          <label for="keys-input">{t("keys.paste")}</label>
          <span class="field-help" id="keys-help">{t("keys.addHelp")}</span>
          <textarea
            id="keys-input"
            name="keys"
            aria-describedby="keys-help"
            value={text.value}
            onInput={(e) => (text.value = e.currentTarget.value)}
            autocomplete="off"
            spellcheck={false}
            placeholder="AIzaSy…"
          />
        </div>
        <div class="field">
          <label for="keys-proxy">{t("keys.proxy")}</label>
          <input
            id="keys-proxy"
            type="text"
            maxLength={2000}
            placeholder={t("keys.proxyPlaceholder")}
            aria-describedby="keys-proxy-help"
            value={proxy.value}
            onInput={(e) => (proxy.value = e.currentTarget.value)}
            autocomplete="off"
          />
          <span class="field-help" id="keys-proxy-help">{t("keys.proxyHelp")}</span>
        </div>
        <div class="field-row">
          <div class="field">
            <label for="keys-weight">{t("keys.weight")}</label>
            <input
              id="keys-weight"
              type="number"
              min={1}
              max={100}
              value={weight.value}
              onInput={(e) => (weight.value = e.currentTarget.value)}
            />
          </div>
          <div class="field">
            <label for="keys-label">{t("keys.label")}</label>
            <input
              id="keys-label"
              type="text"
              maxLength={100}
              value={label.value}
              onInput={(e) => (label.value = e.currentTarget.value)}
            />
          </div>
          <div class="field">
            <label for="keys-project">{t("keys.projectLong")}</label>
            <input
              id="keys-project"
              type="text"
              maxLength={100}
              placeholder={t("keys.projectPlaceholder")}
              value={project.value}
              onInput={(e) => (project.value = e.currentTarget.value)}
            />
          </div>
          <div class="field">
            <button
              type="submit"
              class="btn btn-primary"
              disabled={adding.value || !text.value.trim()}
            >
              {adding.value ? t("keys.adding") : t("keys.add")}
            </button>
          </div>
        </div>
      </form>
      <NoticeBox notice={notice.value} testid="add-report" />
    </section>
  );
}

/**
 * A key's outbound proxy: the current one shown (never its login) as the placeholder; typing a URL
 * sets it, the clear button goes direct again.
 */
function ProxyInput(props: {
  t: Translator;
  k: KeyView;
  onChange: (proxy: string | null) => void;
}) {
  const { t, k } = props;
  return (
    <span class="proxy-line">
      <input
        type="text"
        class="input-project"
        aria-label={`${t("keys.proxy")} ${k.masked}`}
        placeholder={k.proxy ?? t("keys.proxyDirect")}
        title={k.proxy ?? undefined}
        value=""
        maxLength={2000}
        autocomplete="off"
        onChange={(e) => {
          const value = e.currentTarget.value.trim();
          e.currentTarget.value = "";
          if (value) props.onChange(value);
        }}
      />
      {k.proxy
        ? (
          <button
            type="button"
            class="btn btn-small"
            aria-label={t("keys.proxyClear", { key: k.masked })}
            onClick={() => props.onChange(null)}
          >
            ×
          </button>
        )
        : null}
    </span>
  );
}

function HealthLine(props: { t: Translator; k: KeyView; now: number }) {
  const { t, k } = props;
  const h = k.health;
  if (!h?.checked_at && !h?.result) return null;
  const days = failingDays(h.days, props.now);
  return (
    <span class="cell-sub" data-health={h.result ?? ""}>
      {t("keys.lastCheck", {
        time: formatDateTime(h.checked_at, t.lang),
        result: t.maybe(`keys.health.${h.result}`) ?? h.result ?? "–",
      })}
      {days > 0 ? ` · ${t("keys.failingDays", { n: days })}` : ""}
    </span>
  );
}

function Removed(props: { removed: Signal<RemovedKey[]>; onRestored: () => Promise<void> }) {
  const t = useT();
  const confirming = useSignal<string | null>(null);
  const notice = useSignal<Notice>(null);
  const list = props.removed.value;

  async function restore(id: string) {
    try {
      await api<KeyView>("POST", `/admin/api/removed-keys/${encodeURIComponent(id)}/restore`);
      props.removed.value = props.removed.value.filter((r) => r.id !== id);
      notice.value = null;
      await props.onRestored();
    } catch (err) {
      notice.value = { kind: "bad", text: t("common.error", { message: errorMessage(err) }) };
    }
  }

  async function purge(id: string) {
    confirming.value = null;
    try {
      await api<null>("DELETE", `/admin/api/removed-keys/${encodeURIComponent(id)}`);
      props.removed.value = props.removed.value.filter((r) => r.id !== id);
    } catch (err) {
      notice.value = { kind: "bad", text: t("common.error", { message: errorMessage(err) }) };
    }
  }

  return (
    <section class="card" aria-labelledby="removed-title" data-testid="removed-keys">
      <h2 id="removed-title">{t("keys.removedTitle")}</h2>
      <p class="muted small">{t("keys.removedHelp")}</p>
      <NoticeBox notice={notice.value} />
      {list.length === 0 ? <p class="muted">{t("keys.removedNone")}</p> : (
        <div class="table-wrap">
          <table class="data responsive">
            <thead>
              <tr>
                <th scope="col">{t("keys.key")}</th>
                <th scope="col">{t("keys.removedAt")}</th>
                <th scope="col">{t("keys.reason")}</th>
                <th scope="col">{t("common.actions")}</th>
              </tr>
            </thead>
            <tbody>
              {list.map((r) => (
                <tr key={r.id} data-removed-id={r.id}>
                  <td class="cell-main">
                    <span class="key-text">{r.masked}</span>
                    {r.label || r.project
                      ? (
                        <span class="cell-sub">
                          {[r.label, r.project].filter(Boolean).join(" · ")}
                        </span>
                      )
                      : null}
                  </td>
                  <td data-label={t("keys.removedAt")} class="small">
                    {formatDateTime(r.removed_at, t.lang)}
                  </td>
                  <td data-label={t("keys.reason")} class="small">
                    <span class="clamp-2" title={r.reason}>{r.reason}</span>
                  </td>
                  <td data-label={t("common.actions")}>
                    <div class="actions">
                      <button type="button" class="btn btn-small" onClick={() => restore(r.id)}>
                        {t("keys.restore")}
                      </button>
                      <ConfirmButton
                        armed={confirming.value === r.id}
                        label={t("keys.deleteForGood")}
                        ariaLabel={`${t("keys.deleteForGood")} ${r.masked}`}
                        onArm={() => (confirming.value = r.id)}
                        onConfirm={() => purge(r.id)}
                      />
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** The Gemini keys page. */
export function GeminiKeys(props: GeminiKeysProps) {
  const t = useT();
  const keys = useSignal<KeyView[]>(props.keys);
  const warnings = useSignal<string[]>(props.warnings);
  const removed = useSignal<RemovedKey[]>(props.removed ?? []);
  const listNotice = useSignal<Notice>(null);
  const query = useSignal("");
  const statusFilter = useSignal("all");
  const selected = useSignal<Set<string>>(new Set());
  const confirming = useSignal<string | null>(null);
  const progress = useSignal<{ done: number; total: number; label: string } | null>(null);
  const tests = useSignal<Record<string, TestResult>>({});
  const now = Date.now();

  const shown = useComputed(() => {
    const q = query.value.trim().toLowerCase();
    return keys.value.filter((k) => {
      const state = k.enabled ? k.status : "disabled";
      if (statusFilter.value !== "all" && state !== statusFilter.value) return false;
      return !q || [k.label, k.masked, k.project ?? ""].some((s) => s.toLowerCase().includes(q));
    });
  });

  async function reload() {
    const res = await api<{ data: KeyView[]; warnings?: string[] }>("GET", "/admin/api/keys");
    keys.value = res.data;
    warnings.value = res.warnings ?? [];
    const ids = new Set(res.data.map((k) => k.id));
    selected.value = new Set([...selected.value].filter((id) => ids.has(id)));
  }

  function replace(updated: KeyView) {
    keys.value = keys.value.map((k) => (k.id === updated.id ? { ...k, ...updated } : k));
  }

  async function patch(id: string, change: Record<string, unknown>) {
    try {
      replace(await api<KeyView>("PATCH", keyPath(id), change));
      listNotice.value = null;
      if ("project" in change) await reload();
    } catch (err) {
      listNotice.value = { kind: "bad", text: t("common.error", { message: errorMessage(err) }) };
      await reload().catch(() => {});
    }
  }

  async function test(id: string): Promise<TestResult> {
    let result: TestResult;
    try {
      const res = await api<KeyCheck>("POST", keyPath(id, "/check"));
      replace(res.key);
      result = res.result === "ok"
        ? { ok: true, text: t("keys.testOk") }
        : { ok: false, text: t("keys.testFailed", { reason: res.message ?? res.result }) };
    } catch (err) {
      result = { ok: false, text: t("keys.testFailed", { reason: errorMessage(err) }) };
    }
    tests.value = { ...tests.value, [id]: result };
    return result;
  }

  async function remove(id: string) {
    confirming.value = null;
    try {
      await api<null>("DELETE", keyPath(id));
      keys.value = keys.value.filter((k) => k.id !== id);
      const next = new Set(selected.value);
      next.delete(id);
      selected.value = next;
    } catch (err) {
      listNotice.value = { kind: "bad", text: t("common.error", { message: errorMessage(err) }) };
    }
  }

  async function bulk(action: "enable" | "disable" | "reset" | "delete" | "test") {
    const ids = [...selected.value];
    if (!ids.length) return;
    confirming.value = null;
    const label = action === "test" ? t("keys.testingLabel") : t("keys.working");
    progress.value = { done: 0, total: ids.length, label };
    const failures: string[] = [];
    let ok = 0;
    await eachLimited(ids, async (id) => {
      try {
        if (action === "test") {
          if ((await test(id)).ok) ok++;
        } else if (action === "delete") {
          await api<null>("DELETE", keyPath(id));
        } else {
          const change = action === "reset"
            ? { status: "active" }
            : { enabled: action === "enable" };
          await api<KeyView>("PATCH", keyPath(id), change);
        }
      } catch (err) {
        failures.push(errorMessage(err));
      }
    }, { limit: 4, onProgress: (done) => (progress.value = { done, total: ids.length, label }) });
    progress.value = null;
    if (action === "test") {
      listNotice.value = {
        kind: ok === ids.length ? "ok" : "warn",
        text: t("keys.testDone", { total: ids.length, ok, failed: ids.length - ok }),
      };
    } else {
      listNotice.value = failures.length
        ? {
          kind: "bad",
          text: t("common.error", { message: failures[0] }),
          items: failures.slice(1, 5),
        }
        : null;
    }
    if (action === "delete") selected.value = new Set();
    await reload().catch((err) => {
      listNotice.value = { kind: "bad", text: t("common.error", { message: errorMessage(err) }) };
    });
  }

  function toggleSelected(id: string, on: boolean) {
    const next = new Set(selected.value);
    if (on) next.add(id);
    else next.delete(id);
    selected.value = next;
  }

  const allShownSelected = shown.value.length > 0 &&
    shown.value.every((k) => selected.value.has(k.id));
  const busy = progress.value !== null;

  return (
    <div>
      <AddKeys
        onAdded={async () => {
          await reload();
        }}
      />

      <section class="card" aria-labelledby="keys-list-title">
        <div class="card-head">
          <h2 id="keys-list-title">{t("keys.title")}</h2>
          <span class="muted small">
            {t("keys.count", { shown: shown.value.length, total: keys.value.length })}
          </span>
        </div>
        {warnings.value.length
          ? (
            <NoticeBox
              notice={{ kind: "warn", text: t("keys.projectWarning"), items: warnings.value }}
            />
          )
          : null}
        <div class="toolbar">
          <div class="field">
            <label for="keys-search">{t("common.search")}</label>
            <input
              id="keys-search"
              type="search"
              placeholder={t("keys.searchPlaceholder")}
              value={query.value}
              onInput={(e) => (query.value = e.currentTarget.value)}
            />
          </div>
          <div class="field field-narrow">
            <label for="keys-status">{t("keys.filterStatus")}</label>
            <select
              id="keys-status"
              value={statusFilter.value}
              onChange={(e) => (statusFilter.value = e.currentTarget.value)}
            >
              <option value="all">{t("common.all")}</option>
              {["active", "cooldown", "invalid", "disabled"].map((s) => (
                <option value={s}>{t.maybe(`keys.status.${s}`) ?? s}</option>
              ))}
            </select>
          </div>
        </div>
        {shown.value.length
          ? (
            <label class="check select-all">
              <input
                type="checkbox"
                checked={allShownSelected}
                onChange={(e) =>
                  selected.value = e.currentTarget.checked
                    ? new Set([...selected.value, ...shown.value.map((k) => k.id)])
                    : new Set()}
              />
              <span>{t("common.selectAll")}</span>
            </label>
          )
          : null}
        {selected.value.size
          ? (
            <div class="bulkbar" role="group" aria-label={t("keys.bulk")}>
              <strong>{t("common.selected", { n: selected.value.size })}</strong>
              {BULK_ACTIONS.map(([action, label]) => (
                <button
                  key={action}
                  type="button"
                  class="btn btn-small"
                  disabled={busy}
                  onClick={() => bulk(action)}
                >
                  {t(label)}
                </button>
              ))}
              <ConfirmButton
                armed={confirming.value === "*bulk"}
                label={t("keys.deleteSelected")}
                disabled={busy}
                onArm={() => (confirming.value = "*bulk")}
                onConfirm={() => bulk("delete")}
                onCancel={() => (confirming.value = null)}
              />
            </div>
          )
          : null}
        {progress.value
          ? (
            <div class="field" role="status" data-testid="bulk-progress">
              <span>
                {t("keys.progress", {
                  what: progress.value.label,
                  done: progress.value.done,
                  total: progress.value.total,
                })}
              </span>
              <progress max={progress.value.total} value={progress.value.done} />
            </div>
          )
          : null}
        <NoticeBox notice={listNotice.value} testid="list-notice" />
        {keys.value.length === 0
          ? <p class="muted">{t("keys.none")}</p>
          : shown.value.length === 0
          ? <p class="muted">{t("keys.noMatch")}</p>
          : (
            <div class="table-wrap">
              <table class="data responsive">
                <thead>
                  <tr>
                    <th scope="col">{t("keys.key")}</th>
                    <th scope="col">{t("common.status")}</th>
                    <th scope="col">{t("common.enabled")}</th>
                    <th scope="col">{t("keys.weight")}</th>
                    <th scope="col">{t("keys.projectProxy")}</th>
                    <th scope="col" class="num">{t("keys.usage")}</th>
                    <th scope="col">{t("common.actions")}</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.value.map((k) => (
                    <tr key={k.id} data-key-id={k.id} data-masked={k.masked}>
                      <td class="cell-main">
                        <label class="check">
                          <input
                            type="checkbox"
                            checked={selected.value.has(k.id)}
                            onChange={(e) => toggleSelected(k.id, e.currentTarget.checked)}
                            aria-label={t("common.select", { name: k.masked })}
                          />
                          <span class="key-text">{k.masked}</span>
                        </label>
                        <input
                          type="text"
                          class="input-inline"
                          aria-label={`${t("keys.label")} ${k.masked}`}
                          placeholder={t("keys.label")}
                          value={k.label}
                          maxLength={100}
                          onChange={(e) => patch(k.id, { label: e.currentTarget.value })}
                        />
                      </td>
                      <td data-label={t("common.status")}>
                        <StatusBadge
                          status={k.status}
                          cause={k.status_cause}
                          enabled={k.enabled}
                          reason={k.status_reason}
                          until={k.status_until}
                        />
                        <HealthLine t={t} k={k} now={now} />
                        {tests.value[k.id]
                          ? (
                            <span
                              class={`cell-sub test-${tests.value[k.id].ok ? "ok" : "bad"}`}
                              data-test-result={tests.value[k.id].ok ? "ok" : "failed"}
                              role="status"
                            >
                              {tests.value[k.id].text}
                            </span>
                          )
                          : null}
                      </td>
                      <td data-label={t("common.enabled")}>
                        <EnabledSwitch
                          checked={k.enabled}
                          name={k.masked}
                          onChange={(enabled) => patch(k.id, { enabled })}
                        />
                      </td>
                      <td data-label={t("keys.weight")}>
                        <WeightInput
                          weight={k.weight}
                          name={k.masked}
                          onChange={(weight) => patch(k.id, { weight })}
                        />
                      </td>
                      <td data-label={t("keys.project")}>
                        <input
                          type="text"
                          class="input-project"
                          aria-label={`${t("keys.project")} ${k.masked}`}
                          placeholder="–"
                          value={k.project ?? ""}
                          maxLength={100}
                          onChange={(e) =>
                            patch(k.id, { project: e.currentTarget.value.trim() || null })}
                        />
                        <ProxyInput
                          t={t}
                          k={k}
                          onChange={(proxy) => patch(k.id, { proxy })}
                        />
                      </td>
                      <td data-label={t("keys.usage")} class="num small nowrap">
                        {t("keys.usageLine", {
                          req: formatCount(k.usage?.requests ?? 0, t.lang),
                          err: formatCount(k.usage?.errors ?? 0, t.lang),
                          tok: formatCount(
                            (k.usage?.input_tokens ?? 0) + (k.usage?.output_tokens ?? 0),
                            t.lang,
                          ),
                        })}
                      </td>
                      <td data-label={t("common.actions")}>
                        <div class="actions">
                          <button
                            type="button"
                            class="btn btn-small"
                            disabled={busy}
                            aria-label={`${t("keys.test")} ${k.masked}`}
                            onClick={() => test(k.id)}
                          >
                            {t("keys.test")}
                          </button>
                          {k.status !== "active"
                            ? (
                              <button
                                type="button"
                                class="btn btn-small"
                                onClick={() => patch(k.id, { status: "active" })}
                              >
                                {t("keys.resetStatus")}
                              </button>
                            )
                            : null}
                          <ConfirmButton
                            armed={confirming.value === k.id}
                            label={t("common.delete")}
                            ariaLabel={`${t("common.delete")} ${k.masked}`}
                            onArm={() => (confirming.value = k.id)}
                            onConfirm={() => remove(k.id)}
                            onCancel={() => (confirming.value = null)}
                          />
                        </div>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
      </section>

      {props.removed !== null ? <Removed removed={removed} onRestored={reload} /> : null}
    </div>
  );
}
