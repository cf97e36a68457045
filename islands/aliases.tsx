/**
 * Island: model aliases (a name clients may ask for -> the model that serves it), edited as rows
 * and saved as a whole with `PUT /admin/api/aliases`.
 */
import { useSignal } from "@preact/signals";
import { api, errorMessage } from "../lib/ui/api.ts";
import { useT } from "../lib/ui/i18n.ts";
import { SaveControls, type SaveStatus } from "./components/controls.tsx";

/** Props of `Aliases`. */
export interface AliasesProps {
  aliases: Record<string, string>;
  /** Model ids to suggest. */
  models: string[];
}

/** The alias editor. */
export function Aliases(props: AliasesProps) {
  const t = useT();
  const rows = useSignal<[string, string][]>(Object.entries(props.aliases));
  const status = useSignal<SaveStatus>(null);
  const saving = useSignal(false);

  function set(i: number, col: 0 | 1, value: string) {
    rows.value = rows.value.map((r, j) => {
      if (j !== i) return r;
      const next: [string, string] = [r[0], r[1]];
      next[col] = value;
      return next;
    });
  }

  async function save(e: Event) {
    e.preventDefault();
    saving.value = true;
    status.value = null;
    try {
      const aliases = Object.fromEntries(
        rows.value.map(([a, m]) => [a.trim(), m.trim()]).filter(([a, m]) => a && m),
      );
      const res = await api<{ aliases: Record<string, string> }>("PUT", "/admin/api/aliases", {
        aliases,
      });
      rows.value = Object.entries(res.aliases);
      status.value = { kind: "ok", text: t("common.saved") };
    } catch (err) {
      status.value = { kind: "bad", text: t("common.error", { message: errorMessage(err) }) };
    } finally {
      saving.value = false;
    }
  }

  return (
    <form onSubmit={save} data-testid="aliases-form">
      <datalist id="alias-models">
        {props.models.map((m) => <option key={m} value={m} />)}
      </datalist>
      {rows.value.length === 0 ? <p class="muted">{t("models.noAliases")}</p> : null}
      {rows.value.map(([alias, model], i) => (
        <div class="field-row map-row" key={i}>
          <div class="field">
            <label for={`alias-${i}`}>{t("models.aliasFrom")}</label>
            <input
              id={`alias-${i}`}
              type="text"
              maxLength={128}
              value={alias}
              onInput={(e) => set(i, 0, e.currentTarget.value)}
            />
          </div>
          <div class="field">
            <label for={`alias-model-${i}`}>{t("models.aliasTo")}</label>
            <input
              id={`alias-model-${i}`}
              type="text"
              list="alias-models"
              maxLength={128}
              value={model}
              onInput={(e) => set(i, 1, e.currentTarget.value)}
            />
          </div>
          <div class="field">
            <button
              type="button"
              class="btn btn-small btn-danger"
              aria-label={`${t("common.delete")} ${alias}`}
              onClick={() => (rows.value = rows.value.filter((_, j) => j !== i))}
            >
              {t("common.delete")}
            </button>
          </div>
        </div>
      ))}
      <div class="actions">
        <button
          type="button"
          class="btn btn-small"
          onClick={() => (rows.value = [...rows.value, ["", ""]])}
        >
          {t("models.addAlias")}
        </button>
        <SaveControls saving={saving.value} status={status.value} />
      </div>
    </form>
  );
}
