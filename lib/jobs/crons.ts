/**
 * Every `Deno.cron` of the gateway, registered at module top level (Deno Deploy discovers crons by
 * evaluating top-level code; imported by `main.ts` before `Deno.serve`), each with an explicit
 * `backoffSchedule` so local runs and Deploy retry alike. Handlers wait for `main.ts` to hand over
 * the gateway with `provideCronGateway`; a cron that fires first (or in a process that never
 * starts a gateway) gives up after `GATEWAY_WAIT_MS`.
 *
 * Schedules are UTC. Names: at most 64 characters of letters, digits, spaces, `-` and `_`.
 */
import type { Gateway } from "../gateway.ts";
import { type JobName, runJob } from "./run.ts";

/** How long a cron handler waits for the gateway before skipping the run. */
export const GATEWAY_WAIT_MS = 30_000;

/** Crons registered below: at most 10 (Deploy's free-plan limit). */
export const CRON_NAMES = [
  "gateway key health check",
  "gateway cleanup",
  "gateway usage rollup",
] as const;

let provide: (gw: Gateway) => void = () => {};
const ready = new Promise<Gateway>((resolve) => (provide = resolve));

/** Hands the running gateway to the cron handlers (called once by `main.ts`). */
export function provideCronGateway(gw: Gateway): void {
  provide(gw);
}

async function waitForGateway(): Promise<Gateway | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<null>((
    resolve,
  ) => (timer = setTimeout(resolve, GATEWAY_WAIT_MS, null)));
  try {
    return await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function handle(name: string, job: JobName): Promise<void> {
  const gw = await waitForGateway();
  if (!gw) {
    console.warn(`Cron '${name}' skipped: no gateway was started in this process`);
    return;
  }
  const run = await runJob(gw, job);
  const counts = Object.values(run?.report ?? {}).filter((v) => typeof v === "number" && v > 0);
  if (counts.length) console.log(`Cron '${name}':`, JSON.stringify(run?.report));
}

Deno.cron(
  CRON_NAMES[0],
  "*/10 * * * *",
  { backoffSchedule: [60_000] },
  () => handle(CRON_NAMES[0], "health-check"),
);

Deno.cron(
  CRON_NAMES[1],
  "17 * * * *",
  { backoffSchedule: [60_000, 300_000] },
  () => handle(CRON_NAMES[1], "cleanup"),
);

Deno.cron(
  CRON_NAMES[2],
  "5,35 * * * *",
  { backoffSchedule: [60_000, 300_000] },
  () => handle(CRON_NAMES[2], "usage-rollup"),
);
