/**
 * Key health history (pure): what each UTC day showed about a key, kept for the N-day cleanup rule
 * ("keys failing for N consecutive days move to the removed area").
 */
import type { GeminiKeyRecord, KeyHealth } from "../store/gemini_keys.ts";
import { previousUtcDate, utcDate } from "./calendar.ts";

/** Days of history kept per key. */
export const HEALTH_DAYS_KEPT = 30;

/**
 * Adds one observation: a day is `ok` once the key worked at least once that day, `fail` when it
 * was only seen failing. Keeps the last `HEALTH_DAYS_KEPT` days.
 */
export function noteHealthDay(health: KeyHealth, options: { now: number; ok: boolean }): KeyHealth {
  const day = utcDate(options.now);
  const days = { ...health.days };
  if (options.ok) days[day] = "ok";
  else if (days[day] !== "ok") days[day] = "fail";
  const kept = Object.keys(days).sort().slice(-HEALTH_DAYS_KEPT);
  return { ...health, days: Object.fromEntries(kept.map((d) => [d, days[d]])) };
}

/**
 * How many consecutive days, ending today (or yesterday, when today has no observation yet), the
 * key was seen only failing.
 */
export function consecutiveFailingDays(key: GeminiKeyRecord, now: number): number {
  let day = utcDate(now);
  if (!(day in key.health.days)) day = previousUtcDate(day);
  let n = 0;
  while (key.health.days[day] === "fail") {
    n++;
    day = previousUtcDate(day);
  }
  return n;
}
