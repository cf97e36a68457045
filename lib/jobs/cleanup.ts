/**
 * The cleanup job: moves keys that failed for N consecutive days (setting
 * `removeFailingKeysAfterDays`, null turns it off) to the recoverable removed area, trims the
 * request log to its configured size, removes expired file records and the storage counters of
 * stored responses no longer kept, and rolls usage buckets up
 * (minute -> hour -> day) so KV does not grow without bound.
 */
import type { Gateway } from "../gateway.ts";
import { runSteps } from "../steps.ts";
import { consecutiveFailingDays } from "../pool/health.ts";
import { deleteExpiredFiles } from "../store/file_cleanup.ts";
import { deleteStaleResponseUsage } from "../store/responses.ts";
import { listGeminiKeys, removeGeminiKey } from "../store/gemini_keys.ts";
import { trimRequestLog } from "../store/request_log.ts";
import { type RollUpReport, rollUpUsage } from "../store/usage.ts";

/** Expired file records are kept this long past their expiry (late requests get "expired"). */
export const FILE_GRACE_MS = 3_600_000;

/** What the cleanup job did. */
export interface CleanupReport {
  removedKeys: number;
  logEntriesDeleted: number;
  filesDeleted: number;
  responseCountersDeleted: number;
}

/** Moves keys failing for N consecutive days to the removed area; returns how many. */
export async function removeFailingKeys(gw: Gateway): Promise<number> {
  const settings = await gw.settings.get();
  const days = settings.removeFailingKeysAfterDays;
  if (days === null) return 0;
  const now = gw.now();
  let removed = 0;
  for (const key of await listGeminiKeys(gw.kv)) {
    if (!key.invalid || consecutiveFailingDays(key, now) < days) continue;
    const done = await removeGeminiKey(gw.kv, key.id, {
      now,
      reason: `Failed for ${days} days in a row (last error: ${key.invalid.reason})`,
      shouldRemove: (r) => r.invalid !== null && consecutiveFailingDays(r, now) >= days,
    });
    if (done) removed++;
  }
  if (removed) gw.pool.invalidate();
  return removed;
}

/** Runs the cleanup rules once: each runs even when one before it failed; then the run throws. */
export async function runCleanup(gw: Gateway): Promise<CleanupReport> {
  const settings = await gw.settings.get();
  const now = gw.now();
  return await runSteps("Cleanup", {
    removedKeys: () => removeFailingKeys(gw),
    logEntriesDeleted: () => trimRequestLog(gw.kv, settings.requestLogSize),
    filesDeleted: () => deleteExpiredFiles(gw.kv, { now, graceMs: FILE_GRACE_MS }),
    responseCountersDeleted: () => deleteStaleResponseUsage(gw.kv, now),
  });
}

/** Rolls usage buckets up once. */
export function runRollUp(gw: Gateway): Promise<RollUpReport> {
  return rollUpUsage(gw.kv, gw.now());
}
