/**
 * `/admin/api/jobs`: the background jobs the crons run (key health check, cleanup, usage roll-up),
 * their last runs, and running one now.
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { isJobName, JOBS, runJob } from "../../../lib/jobs/run.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { type JobRun, listJobRuns } from "../../../lib/store/jobs.ts";

function runView(run: JobRun) {
  return {
    name: run.name,
    started_at: new Date(run.startedAt).toISOString(),
    finished_at: new Date(run.finishedAt).toISOString(),
    ok: run.ok,
    report: run.report,
    error: run.error,
  };
}

/** Builds the job routes. */
export function jobsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const runs = new Map((await listJobRuns(gw.kv)).map((r) => [r.name, r]));
    return c.json({
      data: Object.keys(JOBS).map((name) => {
        const run = runs.get(name);
        return { name, last_run: run ? runView(run) : null };
      }),
    });
  });

  app.post("/:name", async (c) => {
    const name = c.req.param("name");
    if (!isJobName(name)) {
      throw new OpenAiError(404, `No job named '${name}'; jobs: ${Object.keys(JOBS).join(", ")}`, {
        code: "job_not_found",
      });
    }
    const run = await runJob(gw, name);
    if (!run) {
      throw new OpenAiError(409, `The job '${name}' is already running`, {
        code: "job_running",
      });
    }
    return c.json(runView(run));
  });

  return app;
}
