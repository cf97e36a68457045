/**
 * Island: the user keys page. Create a key (its secret is shown once, with a copy button) with its
 * limits (requests per minute, budgets of tokens and requests per day and month, concurrent
 * requests, allowed models, expiry), edit them, rotate its secret (keeping the old one working for a
 * while if asked), edit
 * those limits, enable or disable it, see its usage, revoke it.
 */
import { type Signal, useSignal } from "@preact/signals";
import { api, errorMessage } from "../lib/ui/api.ts";
import { formatCount, formatDateTime, parseLimit } from "../lib/ui/format.ts";
import { type Translator, useT } from "../lib/ui/i18n.ts";
import type { CreatedUserKey, UserKeyView } from "../lib/ui/wire.ts";
import { ConfirmButton, EnabledSwitch } from "./components/controls.tsx";
import { CopyButton } from "./copy_button.tsx";

/** Props of `UserKeys`. */
export interface UserKeysProps {
  keys: UserKeyView[];
}

/** The limit fields of a user key as the form edits them (text, as typed). */
export interface LimitDraft {
  rpm: string;
  tokensPerDay: string;
  requestsPerDay: string;
  tokensPerMonth: string;
  requestsPerMonth: string;
  maxConcurrency: string;
  models: string;
  /** Allowed client addresses and CIDR ranges, as typed (comma or space separated). */
  allowedIps: string;
  /** `datetime-local` value, in the viewer's time zone. */
  expires: string;
}

/** An ISO time as a `datetime-local` value in the viewer's time zone. */
export function toLocalInput(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${
    pad(d.getMinutes())
  }`;
}

/** The numeric limits: the draft's field, the API's field and the id suffix of their inputs. */
const COUNT_FIELDS = [
  ["rpm", "rpm", "rpm"],
  ["tokensPerDay", "tokens_per_day", "tpd"],
  ["requestsPerDay", "requests_per_day", "rpd"],
  ["tokensPerMonth", "tokens_per_month", "tpmo"],
  ["requestsPerMonth", "requests_per_month", "rpmo"],
  ["maxConcurrency", "max_concurrency", "conc"],
] as const;

/** The draft of an existing key. */
export function draftOf(k: UserKeyView): LimitDraft {
  const draft = { ...EMPTY };
  for (const [field, name] of COUNT_FIELDS) {
    const v = k[name];
    draft[field] = v == null ? "" : String(v);
  }
  draft.models = (k.models ?? []).join(", ");
  draft.allowedIps = (k.allowed_ips ?? []).join(", ");
  draft.expires = toLocalInput(k.expires_at);
  return draft;
}

/** The API fields of a draft, or the name of the first field that is not valid. */
export function limitsBody(
  d: LimitDraft,
): { ok: true; body: Record<string, unknown> } | { ok: false; field: keyof LimitDraft } {
  const body: Record<string, unknown> = {};
  for (const [field, name] of COUNT_FIELDS) {
    const v = parseLimit(d[field]);
    if (v === undefined) return { ok: false, field };
    body[name] = v;
  }
  const models = d.models.split(/[\s,]+/).map((m) => m.trim()).filter(Boolean);
  // No list means every model (an empty list would allow none).
  body.models = models.length ? models : null;
  const ips = d.allowedIps.split(/[\s,]+/).map((m) => m.trim()).filter(Boolean);
  body.allowed_ips = ips.length ? ips : null;
  if (d.expires.trim()) {
    const t = new Date(d.expires).getTime();
    if (Number.isNaN(t)) return { ok: false, field: "expires" };
    body.expires_at = new Date(t).toISOString();
  } else body.expires_at = null;
  return { ok: true, body };
}

/** The API field each draft field sets. */
const API_FIELD: Record<keyof LimitDraft, string> = {
  ...Object.fromEntries(COUNT_FIELDS.map(([field, name]) => [field, name])),
  models: "models",
  allowedIps: "allowed_ips",
  expires: "expires_at",
} as Record<keyof LimitDraft, string>;

/**
 * The API fields of the draft fields that differ from `original` (what the form showed), or the
 * first field that is not valid: a save changes only what was edited, so what the form cannot show
 * exactly (an expiry's seconds) stays as it is, and another admin's change to other fields too.
 */
export function changedBody(
  original: LimitDraft,
  d: LimitDraft,
): { ok: true; body: Record<string, unknown> } | { ok: false; field: keyof LimitDraft } {
  const parsed = limitsBody(d);
  if (!parsed.ok) return parsed;
  const body: Record<string, unknown> = {};
  for (const field of Object.keys(API_FIELD) as (keyof LimitDraft)[]) {
    if (d[field] !== original[field]) body[API_FIELD[field]] = parsed.body[API_FIELD[field]];
  }
  return { ok: true, body };
}

/** The list limits: the draft's field, the id suffix, and the label, placeholder and help texts. */
const LIST_FIELDS = [
  ["models", "models", "users.models", "users.modelsPlaceholder", "users.modelsHelp"],
  ["allowedIps", "ips", "users.allowedIps", "users.allowedIpsPlaceholder", "users.allowedIpsHelp"],
] as const;

function LimitFields(props: { t: Translator; idPrefix: string; draft: Signal<LimitDraft> }) {
  const { t, draft } = props;
  const set = (
    field: keyof LimitDraft,
    value: string,
  ) => (draft.value = { ...draft.value, [field]: value });
  const id = (f: string) => `${props.idPrefix}-${f}`;
  return (
    <div class="field-grid">
      {COUNT_FIELDS.map(([field, , suffix]) => (
        <div class="field" key={field}>
          <label for={id(suffix)}>{fieldLabel(t, field)}</label>
          <input
            id={id(suffix)}
            type="number"
            min={1}
            placeholder={t("common.unlimited")}
            value={draft.value[field]}
            onInput={(e) => set(field, e.currentTarget.value)}
          />
        </div>
      ))}
      {LIST_FIELDS.map(([field, suffix, label, placeholder, help]) => (
        <div class="field" key={field}>
          <label for={id(suffix)}>{t(label)}</label>
          <input
            id={id(suffix)}
            type="text"
            placeholder={t(placeholder)}
            aria-describedby={id(`${suffix}-help`)}
            value={draft.value[field]}
            onInput={(e) =>
              set(field, e.currentTarget.value)}
          />
          <span class="field-help" id={id(`${suffix}-help`)}>{t(help)}</span>
        </div>
      ))}
      <div class="field">
        <label for={id("exp")}>{t("users.expires")}</label>
        <input
          id={id("exp")}
          type="datetime-local"
          value={draft.value.expires}
          onInput={(e) => set("expires", e.currentTarget.value)}
        />
        <span class="field-help">{t("users.expiresHelp")}</span>
      </div>
    </div>
  );
}

const EMPTY: LimitDraft = {
  rpm: "",
  tokensPerDay: "",
  requestsPerDay: "",
  tokensPerMonth: "",
  requestsPerMonth: "",
  maxConcurrency: "",
  models: "",
  allowedIps: "",
  expires: "",
};

function fieldLabel(t: Translator, field: keyof LimitDraft): string {
  return {
    rpm: t("users.rpm"),
    tokensPerDay: t("users.tokensPerDay"),
    requestsPerDay: t("users.requestsPerDay"),
    tokensPerMonth: t("users.tokensPerMonth"),
    requestsPerMonth: t("users.requestsPerMonth"),
    maxConcurrency: t("users.maxConcurrency"),
    models: t("users.models"),
    allowedIps: t("users.allowedIps"),
    expires: t("users.expires"),
  }[field];
}

/** Budgets as the list shows them: limit, what was used of it, the line's text. */
const BUDGET_LINES = [
  ["tokens_per_day", "tokens_today", "users.tpdShort"],
  ["requests_per_day", "requests_today", "users.rpdShort"],
  ["tokens_per_month", "tokens_this_month", "users.tpmoShort"],
  ["requests_per_month", "requests_this_month", "users.rpmoShort"],
] as const;

function limitsSummary(t: Translator, k: UserKeyView): string[] {
  const out: string[] = [];
  out.push(k.rpm === null ? t("users.noRpm") : t("users.rpmShort", { n: k.rpm }));
  for (const [limit, used, text] of BUDGET_LINES) {
    const n = k[limit];
    if (n == null) continue;
    out.push(t(text, { used: formatCount(k[used] ?? 0, t.lang), n: formatCount(n, t.lang) }));
  }
  if (k.max_concurrency != null) out.push(t("users.concShort", { n: k.max_concurrency }));
  if (k.models?.length) out.push(k.models.join(", "));
  if (k.allowed_ips?.length) out.push(t("users.ipsShort", { ips: k.allowed_ips.join(", ") }));
  if (k.expires_at) {
    out.push(t("users.expiresShort", { time: formatDateTime(k.expires_at, t.lang) }));
  }
  return out;
}

/** Grace periods offered for a rotation: seconds the previous secret keeps working. */
const GRACE_CHOICES = [
  [0, "users.grace.0"],
  [3600, "users.grace.3600"],
  [86_400, "users.grace.86400"],
  [604_800, "users.grace.604800"],
] as const;

/** Rotation of a key's secret: a new one (shown once), the old one stopped now or after a grace. */
function Rotate(props: { t: Translator; k: UserKeyView; onRotated: (k: CreatedUserKey) => void }) {
  const { t, k } = props;
  const grace = useSignal<number>(0);
  const armed = useSignal(false);
  const busy = useSignal(false);
  const error = useSignal<string | null>(null);
  async function rotate() {
    armed.value = false;
    busy.value = true;
    try {
      props.onRotated(
        await api<CreatedUserKey>(
          "POST",
          `/admin/api/user-keys/${encodeURIComponent(k.id)}/rotate`,
          { grace_seconds: grace.value },
        ),
      );
      error.value = null;
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    } finally {
      busy.value = false;
    }
  }
  const id = `uk-${k.id}-grace`;
  return (
    <div class="rotate" role="group" aria-label={t("users.rotateTitle", { name: k.name })}>
      <h3>{t("users.rotate")}</h3>
      <p class="muted small">{t("users.rotateHelp")}</p>
      <div class="field">
        <label for={id}>{t("users.grace")}</label>
        <select
          id={id}
          value={String(grace.value)}
          onChange={(e) => (grace.value = Number(e.currentTarget.value))}
        >
          {GRACE_CHOICES.map(([g, label]) => <option key={g} value={String(g)}>{t(label)}</option>)}
        </select>
      </div>
      {k.previous_valid_until
        ? (
          <p class="small">
            {t("users.previousUntil", { time: formatDateTime(k.previous_valid_until, t.lang) })}
          </p>
        )
        : null}
      <div class="actions">
        <ConfirmButton
          armed={armed.value}
          disabled={busy.value}
          label={t("users.rotate")}
          confirmLabel={t("users.confirmRotate")}
          ariaLabel={t("users.rotateTitle", { name: k.name })}
          onArm={() => (armed.value = true)}
          onConfirm={rotate}
          onCancel={() => (armed.value = false)}
        />
      </div>
      {error.value ? <div class="notice notice-bad" role="alert">{error.value}</div> : null}
    </div>
  );
}

function Editor(props: {
  t: Translator;
  k: UserKeyView;
  onSaved: (k: UserKeyView) => void;
  onRotated: (k: CreatedUserKey) => void;
  onClose: () => void;
}) {
  const { t, k } = props;
  const original = draftOf(k);
  const draft = useSignal<LimitDraft>(original);
  const name = useSignal(k.name);
  const error = useSignal<string | null>(null);
  const saving = useSignal(false);
  async function save(e: Event) {
    e.preventDefault();
    const parsed = changedBody(original, draft.value);
    if (!parsed.ok) {
      error.value = t("users.badField", { field: fieldLabel(t, parsed.field) });
      return;
    }
    saving.value = true;
    try {
      props.onSaved(
        await api<UserKeyView>(
          "PATCH",
          `/admin/api/user-keys/${encodeURIComponent(k.id)}`,
          { ...(name.value.trim() !== k.name ? { name: name.value.trim() } : {}), ...parsed.body },
        ),
      );
      props.onClose();
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    } finally {
      saving.value = false;
    }
  }
  return (
    <>
      <form onSubmit={save} class="editor" aria-label={t("users.editLimits", { name: k.name })}>
        <div class="field">
          <label for={`uk-${k.id}-name`}>{t("users.name")}</label>
          <input
            id={`uk-${k.id}-name`}
            type="text"
            required
            maxLength={100}
            value={name.value}
            onInput={(e) => (name.value = e.currentTarget.value)}
          />
        </div>
        <LimitFields t={t} idPrefix={`uk-${k.id}`} draft={draft} />
        {error.value ? <div class="notice notice-bad" role="alert">{error.value}</div> : null}
        <div class="actions">
          <button type="submit" class="btn btn-primary btn-small" disabled={saving.value}>
            {saving.value ? t("common.saving") : t("common.save")}
          </button>
          <button type="button" class="btn btn-small" onClick={props.onClose}>
            {t("common.cancel")}
          </button>
        </div>
      </form>
      <Rotate t={t} k={k} onRotated={props.onRotated} />
    </>
  );
}

/** The user keys page. */
export function UserKeys(props: UserKeysProps) {
  const t = useT();
  const keys = useSignal<UserKeyView[]>(props.keys);
  const name = useSignal("");
  const draft = useSignal<LimitDraft>(EMPTY);
  const creating = useSignal(false);
  const created = useSignal<CreatedUserKey | null>(null);
  const error = useSignal<string | null>(null);
  const confirming = useSignal<string | null>(null);
  const editing = useSignal<string | null>(null);

  async function create(e: Event) {
    e.preventDefault();
    error.value = null;
    const parsed = limitsBody(draft.value);
    if (!parsed.ok) {
      error.value = t("users.badField", { field: fieldLabel(t, parsed.field) });
      return;
    }
    creating.value = true;
    try {
      const body = { name: name.value.trim(), ...parsed.body };
      const res = await api<CreatedUserKey>("POST", "/admin/api/user-keys", body);
      created.value = res;
      const { key: _secret, ...view } = res;
      keys.value = [...keys.value, view];
      name.value = "";
      draft.value = EMPTY;
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    } finally {
      creating.value = false;
    }
  }

  async function patch(id: string, change: Record<string, unknown>) {
    try {
      const updated = await api<UserKeyView>(
        "PATCH",
        `/admin/api/user-keys/${encodeURIComponent(id)}`,
        change,
      );
      keys.value = keys.value.map((k) => (k.id === id ? { ...k, ...updated } : k));
      error.value = null;
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    }
  }

  function replace(u: UserKeyView) {
    keys.value = keys.value.map((x) => (x.id === u.id ? { ...x, ...u } : x));
  }

  async function revoke(id: string) {
    confirming.value = null;
    try {
      await api<null>("DELETE", `/admin/api/user-keys/${encodeURIComponent(id)}`);
      keys.value = keys.value.filter((k) => k.id !== id);
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    }
  }

  return (
    <div>
      <section class="card" aria-labelledby="create-title">
        <h2 id="create-title">{t("users.createTitle")}</h2>
        <p class="muted small">{t("users.createHelp")}</p>
        <form onSubmit={create}>
          <div class="field">
            <label for="uk-name">{t("users.name")}</label>
            <input
              id="uk-name"
              type="text"
              required
              maxLength={100}
              value={name.value}
              onInput={(e) => (name.value = e.currentTarget.value)}
            />
          </div>
          <LimitFields t={t} idPrefix="uk-new" draft={draft} />
          <button
            type="submit"
            class="btn btn-primary"
            disabled={creating.value || !name.value.trim()}
          >
            {t("users.create")}
          </button>
        </form>
        {error.value ? <div class="notice notice-bad" role="alert">{error.value}</div> : null}
      </section>

      {created.value
        ? (
          <section class="card secret" aria-labelledby="secret-title" data-testid="new-secret">
            <h2 id="secret-title">{t("users.secretTitle")}</h2>
            <p>{t("users.secretHelp")}</p>
            <div class="copy-line">
              <code data-secret>{created.value.key}</code>
              <CopyButton text={created.value.key} />
            </div>
            <button type="button" class="btn" onClick={() => (created.value = null)}>
              {t("users.secretDone")}
            </button>
          </section>
        )
        : null}

      <section class="card" aria-labelledby="uk-list-title">
        <h2 id="uk-list-title">{t("users.title")}</h2>
        {keys.value.length === 0 ? <p class="muted">{t("users.none")}</p> : (
          <div class="table-wrap">
            <table class="data responsive">
              <thead>
                <tr>
                  <th scope="col">{t("users.name")}</th>
                  <th scope="col">{t("common.enabled")}</th>
                  <th scope="col">{t("users.limits")}</th>
                  <th scope="col" class="num">{t("keys.usage")}</th>
                  <th scope="col">{t("common.created")}</th>
                  <th scope="col">{t("common.actions")}</th>
                </tr>
              </thead>
              <tbody>
                {keys.value.flatMap((k) => [
                  <tr key={k.id} data-user-key={k.id}>
                    <td class="cell-main">
                      <strong>{k.name}</strong>
                      {k.expired
                        ? <span class="badge badge-invalid">{t("users.expired")}</span>
                        : null}
                      <span class="cell-sub key-text">{k.prefix}</span>
                      {k.previous_valid_until
                        ? (
                          <span class="cell-sub small">
                            {t("users.previousUntil", {
                              time: formatDateTime(k.previous_valid_until, t.lang),
                            })}
                          </span>
                        )
                        : null}
                    </td>
                    <td data-label={t("common.enabled")}>
                      <EnabledSwitch
                        checked={k.enabled}
                        name={k.name}
                        onChange={(enabled) => patch(k.id, { enabled })}
                      />
                    </td>
                    <td data-label={t("users.limits")} class="small">
                      {limitsSummary(t, k).map((line, i) => <span key={i} class="line">{line}
                      </span>)}
                    </td>
                    <td data-label={t("keys.usage")} class="num small nowrap">
                      {t("users.usageLine", {
                        req: formatCount(k.usage?.requests ?? 0, t.lang),
                        tok: formatCount(
                          (k.usage?.input_tokens ?? 0) + (k.usage?.output_tokens ?? 0),
                          t.lang,
                        ),
                      })}
                    </td>
                    <td data-label={t("common.created")} class="small">
                      {formatDateTime(k.created_at, t.lang)}
                    </td>
                    <td data-label={t("common.actions")}>
                      <div class="actions">
                        <button
                          type="button"
                          class="btn btn-small"
                          aria-expanded={editing.value === k.id}
                          aria-label={t("users.editLimits", { name: k.name })}
                          onClick={() => (editing.value = editing.value === k.id ? null : k.id)}
                        >
                          {t("users.edit")}
                        </button>
                        <ConfirmButton
                          armed={confirming.value === k.id}
                          label={t("users.revoke")}
                          confirmLabel={t("users.confirmRevoke")}
                          ariaLabel={`${t("users.revoke")} ${k.name}`}
                          onArm={() => (confirming.value = k.id)}
                          onConfirm={() => revoke(k.id)}
                          onCancel={() => (confirming.value = null)}
                        />
                      </div>
                    </td>
                  </tr>,
                  editing.value === k.id
                    ? (
                      <tr key={`${k.id}-edit`} class="editor-row">
                        <td colSpan={6} class="cell-main">
                          <Editor
                            t={t}
                            k={k}
                            onSaved={replace}
                            onRotated={(r) => {
                              const { key: _secret, ...view } = r;
                              replace(view);
                              created.value = r;
                              editing.value = null;
                            }}
                            onClose={() => (editing.value = null)}
                          />
                        </td>
                      </tr>
                    )
                    : null,
                ])}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </div>
  );
}
