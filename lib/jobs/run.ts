/**
 * Runs a named background job once, under a KV lock (so instances running the same cron at once do
 * not duplicate it), and records its outcome for the admin API. Shared by the crons and by
 * `POST /admin/api/jobs/{name}`.
 */
import type { Gateway } from "../gateway.ts";
import { type JobRun, saveJobRun, tryLockJob, unlockJob } from "../store/jobs.ts";
import { runCleanup, runRollUp } from "./cleanup.ts";
import { runHealthCheck } from "./health_check.ts";

/** The jobs, by the name the admin API and the crons use. */
export const JOBS = {
  "health-check": (gw: Gateway) => runHealthCheck(gw),
  "cleanup": (gw: Gateway) => runCleanup(gw),
  "usage-rollup": (gw: Gateway) => runRollUp(gw),
} as const;

/** A job name. */
export type JobName = keyof typeof JOBS;

/** How long a job's lock is held at most (a crashed run frees it after this). */
export const JOB_LOCK_MS = 10 * 60_000;

/** Whether `name` names a job. */
export function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOBS, name);
}

/** Runs job `name` once; null when another instance holds its lock. Failures are recorded, then rethrown. */
export async function runJob(gw: Gateway, name: JobName): Promise<JobRun | null> {
  const startedAt = gw.now();
  const owner = await tryLockJob(gw.kv, name, { now: startedAt, ttlMs: JOB_LOCK_MS });
  if (!owner) return null;
  try {
    const report = await JOBS[name](gw);
    const run: JobRun = {
      name,
      startedAt,
      finishedAt: gw.now(),
      ok: true,
      report: { ...report },
      error: null,
    };
    await saveJobRun(gw.kv, run);
    return run;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    await saveJobRun(gw.kv, {
      name,
      startedAt,
      finishedAt: gw.now(),
      ok: false,
      report: null,
      error: message,
    });
    throw err;
  } finally {
    await unlockJob(gw.kv, name, owner);
  }
}
