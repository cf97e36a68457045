/**
 * Island: the background jobs (key health check, cleanup, usage roll-up): when each last ran and
 * how it went, and a button to run one now.
 */
import { useSignal } from "@preact/signals";
import { api, errorMessage } from "../lib/ui/api.ts";
import { formatDateTime } from "../lib/ui/format.ts";
import { useT } from "../lib/ui/i18n.ts";
import type { JobView } from "../lib/ui/wire.ts";

/** Props of `Jobs`. */
export interface JobsProps {
  jobs: JobView[];
}

/**
 * A job's report in one line (`{"checked": 3}` -> "checked: 3"), its fields named in the page's
 * language where the catalogue has them (`name`).
 */
export function reportLine(
  report: unknown,
  name: (field: string) => string = (field) => field,
): string {
  if (report === null || report === undefined) return "";
  if (typeof report !== "object") return String(report);
  return Object.entries(report as Record<string, unknown>)
    .map(([k, v]) => `${name(k)}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join(" · ");
}

/** The jobs list. */
export function Jobs(props: JobsProps) {
  const t = useT();
  const jobs = useSignal(props.jobs);
  const running = useSignal<string | null>(null);
  const error = useSignal<string | null>(null);

  async function run(name: string) {
    running.value = name;
    error.value = null;
    try {
      const last = await api<NonNullable<JobView["last_run"]>>(
        "POST",
        `/admin/api/jobs/${encodeURIComponent(name)}`,
      );
      jobs.value = jobs.value.map((j) => (j.name === name ? { ...j, last_run: last } : j));
    } catch (err) {
      error.value = t("common.error", { message: errorMessage(err) });
    } finally {
      running.value = null;
    }
  }

  return (
    <div>
      {error.value ? <div class="notice notice-bad" role="alert">{error.value}</div> : null}
      <ul class="list-plain">
        {jobs.value.map((j) => (
          <li key={j.name} data-job={j.name}>
            <span>
              <strong>{t.maybe(`jobs.${j.name}`) ?? j.name}</strong>
              <span class="cell-sub">
                {j.last_run
                  ? t(j.last_run.ok ? "jobs.lastOk" : "jobs.lastFailed", {
                    time: formatDateTime(j.last_run.finished_at, t.lang),
                  })
                  : t("jobs.never")}
              </span>
              {j.last_run?.error ? <span class="cell-sub">{j.last_run.error}</span> : null}
              {j.last_run?.report
                ? (
                  <span class="cell-sub mono">
                    {reportLine(j.last_run.report, (k) => t.maybe(`jobs.report.${k}`) ?? k)}
                  </span>
                )
                : null}
            </span>
            <button
              type="button"
              class="btn btn-small"
              disabled={running.value !== null}
              onClick={() => run(j.name)}
            >
              {running.value === j.name ? t("jobs.running") : t("jobs.run")}
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}
