/**
 * Island: the models the upstream offers merged with the gateway's configuration: enable or
 * disable each model (what `/v1/models` lists and clients may use) and set its default per-key
 * limits (RPM, TPM, RPD); reset a model to the defaults.
 */
import { useComputed, useSignal } from "@preact/signals";
import { api, errorMessage } from "../lib/ui/api.ts";
import { announceLimitsChanged } from "../lib/ui/events.ts";
import { parseLimit } from "../lib/ui/format.ts";
import { useT } from "../lib/ui/i18n.ts";
import type { ModelView } from "../lib/ui/wire.ts";
import { EnabledSwitch } from "./components/controls.tsx";

/** Props of `ModelsTable`. */
export interface ModelsTableProps {
  models: ModelView[];
  upstreamError: string | null;
}

const DIMS = ["rpm", "tpm", "rpd"] as const;

/** The models table. */
export function ModelsTable(props: ModelsTableProps) {
  const t = useT();
  const models = useSignal(props.models);
  const query = useSignal("");
  const error = useSignal<string | null>(null);
  const shown = useComputed(() => {
    const q = query.value.trim().toLowerCase();
    return models.value.filter((m) =>
      !q || m.id.toLowerCase().includes(q) || (m.display_name ?? "").toLowerCase().includes(q)
    );
  });
  const path = (id: string) => `/admin/api/models/${encodeURIComponent(id)}`;

  async function patch(id: string, change: Record<string, unknown>) {
    try {
      const updated = await api<ModelView>("PATCH", path(id), change);
      models.value = models.value.map((m) => (m.id === id ? { ...m, ...updated } : m));
      error.value = null;
      announceLimitsChanged();
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    }
  }

  async function reset(id: string) {
    try {
      await api<null>("DELETE", path(id));
      const res = await api<{ data: ModelView[] }>("GET", "/admin/api/models");
      models.value = res.data;
      error.value = null;
      announceLimitsChanged();
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    }
  }

  return (
    <div>
      {props.upstreamError
        ? (
          <div class="notice notice-warn" role="status">
            {t("models.upstreamError", { message: props.upstreamError })}
          </div>
        )
        : null}
      {error.value ? <div class="notice notice-bad" role="alert">{error.value}</div> : null}
      {models.value.length === 0 ? <p class="muted">{t("models.noModels")}</p> : (
        <>
          <div class="toolbar">
            <div class="field">
              <label for="models-search">{t("common.search")}</label>
              <input
                id="models-search"
                type="search"
                value={query.value}
                onInput={(e) => (query.value = e.currentTarget.value)}
              />
            </div>
          </div>
          <div class="table-wrap">
            <table class="data responsive">
              <thead>
                <tr>
                  <th scope="col">{t("models.model")}</th>
                  <th scope="col">{t("common.enabled")}</th>
                  <th scope="col">{t("models.limitsPerKey")}</th>
                  <th scope="col">{t("common.actions")}</th>
                </tr>
              </thead>
              <tbody>
                {shown.value.map((m) => (
                  <tr key={m.id} data-model={m.id}>
                    <td class="cell-main">
                      <span class="mono">{m.id}</span>
                      {m.display_name ? <span class="cell-sub">{m.display_name}</span> : null}
                      {m.listed_upstream === false
                        ? <span class="badge">{t("models.notListed")}</span>
                        : null}
                    </td>
                    <td data-label={t("common.enabled")}>
                      <EnabledSwitch
                        checked={m.enabled}
                        name={m.id}
                        onChange={(enabled) => patch(m.id, { enabled })}
                      />
                    </td>
                    <td data-label={t("models.limitsPerKey")}>
                      <div class="limit-inputs">
                        {DIMS.map((d) => (
                          <label key={d} class="limit-input">
                            <span>{d.toUpperCase()}</span>
                            <input
                              type="number"
                              min={1}
                              placeholder="–"
                              value={m.limits[d] ?? ""}
                              aria-label={`${t(`models.${d}` as const)} ${m.id}`}
                              onChange={(e) => {
                                const input = e.currentTarget;
                                // A value the browser could not read as a number reads as "".
                                const v = input.validity.badInput
                                  ? undefined
                                  : parseLimit(input.value);
                                if (v !== undefined) patch(m.id, { [d]: v });
                                else {
                                  error.value = t("users.badField", {
                                    field: t(`models.${d}` as const),
                                  });
                                }
                              }}
                            />
                          </label>
                        ))}
                      </div>
                    </td>
                    <td data-label={t("common.actions")}>
                      {m.configured
                        ? (
                          <button
                            type="button"
                            class="btn btn-small"
                            aria-label={`${t("models.reset")} ${m.id}`}
                            onClick={() => reset(m.id)}
                          >
                            {t("models.reset")}
                          </button>
                        )
                        : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </div>
  );
}
