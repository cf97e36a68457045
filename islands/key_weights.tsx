/**
 * Island: the weight of every Gemini key, for the rotation page; a change is saved at once.
 */
import { useSignal } from "@preact/signals";
import { api, errorMessage } from "../lib/ui/api.ts";
import { formatCount } from "../lib/ui/format.ts";
import { useT } from "../lib/ui/i18n.ts";
import type { KeyView } from "../lib/ui/wire.ts";
import { WeightInput } from "./components/controls.tsx";
import { StatusBadge } from "./components/status_badge.tsx";

/** Props of `KeyWeights`. */
export interface KeyWeightsProps {
  keys: KeyView[];
}

/** Weights of the keys, editable. */
export function KeyWeights(props: KeyWeightsProps) {
  const t = useT();
  const keys = useSignal(props.keys);
  const notice = useSignal<{ kind: "ok" | "bad"; text: string } | null>(null);
  const total = keys.value.filter((k) => k.enabled).reduce((sum, k) => sum + k.weight, 0);

  async function setWeight(id: string, weight: number) {
    try {
      const updated = await api<KeyView>("PATCH", `/admin/api/keys/${encodeURIComponent(id)}`, {
        weight,
      });
      keys.value = keys.value.map((k) => (k.id === id ? { ...k, ...updated } : k));
      notice.value = { kind: "ok", text: t("common.saved") };
    } catch (err) {
      notice.value = { kind: "bad", text: t("common.error", { message: errorMessage(err) }) };
    }
  }

  if (!keys.value.length) return <p class="muted">{t("dash.noKeys")}</p>;
  return (
    <div>
      {notice.value
        ? (
          <div
            class={notice.value.kind === "ok" ? "muted small" : "notice notice-bad"}
            role="status"
          >
            {notice.value.text}
          </div>
        )
        : null}
      <div class="table-wrap">
        <table class="data responsive">
          <thead>
            <tr>
              <th scope="col">{t("keys.key")}</th>
              <th scope="col">{t("common.status")}</th>
              <th scope="col">{t("keys.weight")}</th>
              <th scope="col" class="num">%</th>
            </tr>
          </thead>
          <tbody>
            {keys.value.map((k) => (
              <tr key={k.id} data-key-id={k.id}>
                <td class="cell-main">
                  <span class="key-text">{k.masked}</span>
                  {k.label ? <span class="cell-sub">{k.label}</span> : null}
                </td>
                <td data-label={t("common.status")}>
                  <StatusBadge status={k.status} enabled={k.enabled} />
                </td>
                <td data-label={t("keys.weight")}>
                  <WeightInput
                    weight={k.weight}
                    name={k.masked}
                    onChange={(w) => {
                      if (w >= 1) setWeight(k.id, w);
                    }}
                  />
                </td>
                <td data-label="%" class="num">
                  {k.enabled && total
                    ? formatCount(Math.round((k.weight / total) * 100), t.lang)
                    : "–"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
