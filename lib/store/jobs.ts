/**
 * Background job bookkeeping in KV: a lock per job `["job_lock", name]` so that instances running
 * the same cron at once do not duplicate work (crons are at-least-once), and the last run of each
 * job `["job_run", name]` for the admin API.
 */
import * as z from "zod";

/** The last run of a job. */
export const JobRunSchema = z.object({
  name: z.string(),
  startedAt: z.number(),
  finishedAt: z.number(),
  ok: z.boolean(),
  /** What the job did (counts), or the error message. */
  report: z.record(z.string(), z.unknown()).nullable(),
  error: z.string().nullable(),
});

/** One job run. */
export type JobRun = z.infer<typeof JobRunSchema>;

/** Takes the lock of job `name` until `now + ttlMs` unless another holder's lock is live. */
export async function tryLockJob(
  kv: Deno.Kv,
  name: string,
  options: { now: number; ttlMs: number },
): Promise<string | null> {
  const key: Deno.KvKey = ["job_lock", name];
  const entry = await kv.get<{ until: number; owner: string }>(key);
  if (entry.value && entry.value.until > options.now) return null;
  const owner = crypto.randomUUID();
  const res = await kv.atomic()
    .check(entry)
    .set(key, { until: options.now + options.ttlMs, owner }, { expireIn: options.ttlMs })
    .commit();
  return res.ok ? owner : null;
}

/** Releases a lock taken by `tryLockJob` (only if still held by `owner`). */
export async function unlockJob(kv: Deno.Kv, name: string, owner: string): Promise<void> {
  const key: Deno.KvKey = ["job_lock", name];
  const entry = await kv.get<{ until: number; owner: string }>(key);
  if (entry.value?.owner !== owner) return;
  await kv.atomic().check(entry).delete(key).commit();
}

/** Stores the outcome of a run. */
export async function saveJobRun(kv: Deno.Kv, run: JobRun): Promise<void> {
  await kv.set(["job_run", run.name], run);
}

/** Reads the last run of every job. */
export async function listJobRuns(kv: Deno.Kv): Promise<JobRun[]> {
  const out: JobRun[] = [];
  for await (const e of kv.list({ prefix: ["job_run"] })) {
    const parsed = JobRunSchema.safeParse(e.value);
    if (parsed.success) out.push(parsed.data);
  }
  return out;
}
