/**
 * The key health check: probes keys with a models call (free: it costs no generation quota),
 * restores invalid keys that work again, confirms invalid ones (their failing days feed the N-day
 * cleanup rule), clears error streaks of keys that answer, and marks keys invalid that Google
 * refuses. Probed each run: every invalid key; other enabled keys once a day. A key resting for a
 * model after upstream errors is left to run out its rest: a models call says nothing about that
 * model.
 */
import type { Deadline } from "../deadlines.ts";
import type { Gateway } from "../gateway.ts";
import { UpstreamTimeoutError } from "../gemini/client.ts";
import { classifyHttpFailure } from "../gemini/errors.ts";
import { redactSecret } from "../pool/failover.ts";
import { noteHealthDay } from "../pool/health.ts";
import {
  type GeminiKeyRecord,
  type KeyHealth,
  listGeminiKeys,
  openGeminiKey,
  openProxy,
  updateGeminiKey,
} from "../store/gemini_keys.ts";

/** Keys probed per run, at most. */
export const HEALTH_BATCH = 200;
/** Probes in flight at once. */
export const HEALTH_CONCURRENCY = 8;
/** How often a key that looks healthy is probed anyway. */
export const HEALTHY_RECHECK_MS = 24 * 3_600_000;

/** What one probe found. */
export type ProbeResult = "ok" | "invalid" | "rate_limited" | "error";

/** What a health-check run did. */
export interface HealthReport {
  checked: number;
  restored: number;
  invalid: number;
  errors: number;
  skipped: boolean;
}

function isDue(key: GeminiKeyRecord, now: number): boolean {
  if (!key.enabled) return false;
  if (key.invalid) return true;
  return key.health.checkedAt === null || now - key.health.checkedAt >= HEALTHY_RECHECK_MS;
}

/** Probes one key: GET /v1beta/models?pageSize=1 with it (through its proxy, if it has one). */
export async function probeKey(
  gw: Gateway,
  key: GeminiKeyRecord,
): Promise<{ result: ProbeResult; message: string }> {
  const secret = await openGeminiKey(gw.sealer, key);
  // The client's timeout covers the response head only: the body gets one of its own, or an
  // upstream that stalls mid-body would hold this probe, and the whole job, forever.
  const body = new AbortController();
  let deadline: Deadline | null = null;
  try {
    const res = await gw.client.send(secret, {
      method: "GET",
      path: "/v1beta/models",
      query: "pageSize=1",
      // The record's own proxy: a key is probed the way it is used, even before the pool has
      // loaded the change.
      proxy: await openProxy(gw.sealer, key),
    }, body.signal);
    const deadlines = gw.client.deadlines;
    deadline = deadlines.start(() => body.abort(new UpstreamTimeoutError(deadlines.timeoutMs)));
    const text = await res.text();
    if (res.ok) return { result: "ok", message: "The models call succeeded" };
    const failure = classifyHttpFailure(res.status, text);
    const message = redactSecret(failure.reason, { secret, masked: key.masked });
    if (failure.kind === "key_invalid") return { result: "invalid", message };
    if (failure.kind === "rate_limited") return { result: "rate_limited", message };
    return { result: "error", message: `HTTP ${res.status}: ${message}` };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { result: "error", message: redactSecret(message, { secret, masked: key.masked }) };
  } finally {
    if (deadline) gw.client.deadlines.clear(deadline);
  }
}

/** A key record updated with what a probe found (restored, confirmed or newly invalid). */
export function applyProbe(
  r: GeminiKeyRecord,
  probe: { result: ProbeResult; message: string },
  now: number,
): GeminiKeyRecord {
  let health: KeyHealth = {
    ...r.health,
    checkedAt: now,
    result: probe.result,
    message: probe.message,
  };
  if (probe.result === "ok" || probe.result === "rate_limited") {
    // A 429 proves the key itself is valid.
    health = noteHealthDay(health, { now, ok: true });
    return {
      ...r,
      invalid: null,
      consecutiveErrors: probe.result === "ok" ? 0 : r.consecutiveErrors,
      health,
      updatedAt: now,
    };
  }
  if (probe.result === "invalid") {
    health = noteHealthDay(health, { now, ok: false });
    return {
      ...r,
      invalid: r.invalid ?? { reason: `Health check: ${probe.message}`, at: now },
      health,
      updatedAt: now,
    };
  }
  return { ...r, health };
}

/** Runs one health check over the keys that are due (all of them with `all`). */
export async function runHealthCheck(
  gw: Gateway,
  options: { all?: boolean; force?: boolean } = {},
): Promise<HealthReport> {
  const report: HealthReport = { checked: 0, restored: 0, invalid: 0, errors: 0, skipped: false };
  const settings = await gw.settings.get();
  if (!settings.healthChecks && !options.force) return { ...report, skipped: true };
  const now = gw.now();
  const due = (await listGeminiKeys(gw.kv))
    .filter((k) => options.all ? k.enabled : isDue(k, now))
    .sort((a, b) =>
      Number(!!b.invalid) - Number(!!a.invalid) ||
      (a.health.checkedAt ?? 0) - (b.health.checkedAt ?? 0)
    )
    .slice(0, HEALTH_BATCH);
  let next = 0;
  const worker = async () => {
    while (next < due.length) {
      const key = due[next++];
      const probe = await probeKey(gw, key);
      const updated = await updateGeminiKey(gw.kv, key.id, (r) => applyProbe(r, probe, gw.now()));
      report.checked++;
      if (probe.result === "error") report.errors++;
      if (probe.result === "invalid") report.invalid++;
      if (key.invalid && updated && !updated.invalid) report.restored++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(HEALTH_CONCURRENCY, due.length) }, worker));
  if (report.checked) gw.pool.invalidate();
  return report;
}
