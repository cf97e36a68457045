/**
 * Island: Google Cloud projects as the keys' project labels name them. Keys of one project share
 * its quota, so a project's cooldowns rest all its keys; limits learned from 429s can be forgotten
 * and admin limit overrides (e.g. for a paid tier) set per model.
 */
import { useSignal } from "@preact/signals";
import { api, errorMessage } from "../lib/ui/api.ts";
import { announceLimitsChanged } from "../lib/ui/events.ts";
import { formatCount, formatDateTime, parseLimit } from "../lib/ui/format.ts";
import { type Translator, useT } from "../lib/ui/i18n.ts";
import type { LimitsView, ProjectView } from "../lib/ui/wire.ts";

/** Props of `Projects`. */
export interface ProjectsProps {
  projects: ProjectView[];
  keysWithoutProject: number;
}

const DIMS = ["rpm", "tpm", "rpd"] as const;

function limitsText(t: Translator, l: Partial<LimitsView>): string {
  return DIMS.filter((d) => l[d] != null)
    .map((d) => `${formatCount(l[d] as number, t.lang)} ${d.toUpperCase()}`)
    .join(" · ") || t("common.unlimited");
}

function Project(props: { p: ProjectView; onChange: (p: ProjectView | null) => void }) {
  const t = useT();
  const { p } = props;
  const error = useSignal<string | null>(null);
  const model = useSignal("");
  const draft = useSignal<Record<string, string>>({ rpm: "", tpm: "", rpd: "" });
  const path = `/admin/api/projects/${encodeURIComponent(p.name)}`;

  async function send(body: Record<string, unknown>) {
    try {
      props.onChange(await api<ProjectView>("PATCH", path, body));
      error.value = null;
      announceLimitsChanged();
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    }
  }

  async function forget() {
    try {
      await api<null>("DELETE", path);
      props.onChange({ ...p, cooldowns: [], learned: {}, limits: {} });
      error.value = null;
      announceLimitsChanged();
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    }
  }

  async function addOverride(e: Event) {
    e.preventDefault();
    const limits: Record<string, number | null> = {};
    for (const d of DIMS) {
      const v = parseLimit(draft.value[d]);
      if (v === undefined) {
        error.value = t("users.badField", { field: d.toUpperCase() });
        return;
      }
      limits[d] = v;
    }
    if (!model.value.trim()) return;
    await send({ limits: { [model.value.trim()]: limits } });
    model.value = "";
    draft.value = { rpm: "", tpm: "", rpd: "" };
  }

  const learned = Object.entries(p.learned ?? {}) as [string, Partial<LimitsView>][];
  const overrides = Object.entries(p.limits ?? {});
  return (
    <li class="project" data-project={p.name}>
      <div class="card-head">
        <h3>
          {p.name} <span class="badge">{t("projects.keys", { n: p.key_count })}</span>
        </h3>
        {p.cooldowns.length || Object.keys(p.learned ?? {}).length ||
            Object.keys(p.limits ?? {}).length
          ? (
            <button
              type="button"
              class="btn btn-small"
              aria-label={`${t("projects.forget")} ${p.name}`}
              onClick={forget}
            >
              {t("projects.forget")}
            </button>
          )
          : null}
      </div>
      {p.warning ? <div class="notice notice-warn">{p.warning}</div> : null}
      {error.value ? <div class="notice notice-bad" role="alert">{error.value}</div> : null}
      <p class="small mono">{p.keys.map((k) => k.masked).join(" · ")}</p>
      {p.cooldowns.length
        ? (
          <div class="field">
            <strong class="small">{t("projects.cooldowns")}</strong>
            <ul class="list-plain small">
              {p.cooldowns.map((c) => (
                <li key={c.model}>
                  <span class="mono">{c.model}</span>
                  <span>{t("common.until", { time: formatDateTime(c.until, t.lang) })}</span>
                </li>
              ))}
            </ul>
            <button
              type="button"
              class="btn btn-small"
              onClick={() => send({ clear_cooldowns: true })}
            >
              {t("projects.clearCooldowns")}
            </button>
          </div>
        )
        : null}
      {learned.length
        ? (
          <div class="field">
            <strong class="small">{t("projects.learned")}</strong>
            <ul class="list-plain small">
              {learned.map(([m, l]) => (
                <li key={m}>
                  <span class="mono">{m}</span>
                  <span>{limitsText(t, l)}</span>
                </li>
              ))}
            </ul>
            <button
              type="button"
              class="btn btn-small"
              onClick={() => send({ clear_learned: true })}
            >
              {t("projects.forgetLearned")}
            </button>
          </div>
        )
        : null}
      <div class="field">
        <strong class="small">{t("projects.overrides")}</strong>
        {overrides.length
          ? (
            <ul class="list-plain small">
              {overrides.map(([m, l]) => (
                <li key={m}>
                  <span class="mono">{m}</span>
                  <span>
                    {limitsText(t, l)}{" "}
                    <button
                      type="button"
                      class="btn btn-small btn-danger"
                      aria-label={`${t("common.delete")} ${m}`}
                      onClick={() => send({ limits: { [m]: null } })}
                    >
                      {t("common.delete")}
                    </button>
                  </span>
                </li>
              ))}
            </ul>
          )
          : <span class="muted small">{t("common.none")}</span>}
      </div>
      <form onSubmit={addOverride} class="field-row">
        <div class="field">
          <label for={`ov-${p.name}-model`}>{t("models.model")}</label>
          <input
            id={`ov-${p.name}-model`}
            type="text"
            placeholder="gemini-2.5-pro"
            value={model.value}
            onInput={(e) => (model.value = e.currentTarget.value)}
          />
        </div>
        {DIMS.map((d) => (
          <div class="field" key={d}>
            <label for={`ov-${p.name}-${d}`}>{d.toUpperCase()}</label>
            <input
              id={`ov-${p.name}-${d}`}
              type="number"
              min={1}
              placeholder="–"
              value={draft.value[d]}
              onInput={(e) => (draft.value = { ...draft.value, [d]: e.currentTarget.value })}
            />
          </div>
        ))}
        <div class="field">
          <button type="submit" class="btn btn-small" disabled={!model.value.trim()}>
            {t("projects.setOverride")}
          </button>
        </div>
      </form>
    </li>
  );
}

/** The projects list. */
export function Projects(props: ProjectsProps) {
  const t = useT();
  const projects = useSignal(props.projects);
  return (
    <div>
      <p class="muted small">
        {t("projects.withoutProject", { n: props.keysWithoutProject })}
      </p>
      {projects.value.length === 0
        ? <p class="muted">{t("projects.none")}</p>
        : (
          <ul class="list-plain projects">
            {projects.value.map((p) => (
              <Project
                key={p.name}
                p={p}
                onChange={(next) =>
                  projects.value = next
                    ? projects.value.map((x) => (x.name === p.name ? { ...x, ...next } : x))
                    : projects.value.filter((x) => x.name !== p.name)}
              />
            ))}
          </ul>
        )}
    </div>
  );
}
