/**
 * Calendar arithmetic for quotas: Google resets daily quotas at midnight America/Los_Angeles, so
 * "today" for a quota is the Pacific calendar day. Computed with `Intl.DateTimeFormat`, which knows
 * the daylight-saving rules; no fixed offsets.
 */

const DAY_MS = 86_400_000;
const PACIFIC = "America/Los_Angeles";

const pacificFormat = new Intl.DateTimeFormat("en-US", {
  timeZone: PACIFIC,
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});

interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

function pacificWallClock(ms: number): WallClock {
  const out: Record<string, number> = {};
  for (const part of pacificFormat.formatToParts(new Date(ms))) {
    if (part.type !== "literal") out[part.type] = Number(part.value);
  }
  return {
    year: out.year,
    month: out.month,
    day: out.day,
    hour: out.hour,
    minute: out.minute,
    second: out.second,
  };
}

/** Minutes Pacific time is behind UTC at instant `ms` (480 in winter, 420 in summer). */
function pacificOffsetMinutes(ms: number): number {
  const w = pacificWallClock(ms);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return Math.round((Math.floor(ms / 1000) * 1000 - asUtc) / 60_000);
}

function dayNumberOf(ms: number): number {
  const w = pacificWallClock(ms);
  return Math.floor(Date.UTC(w.year, w.month - 1, w.day) / DAY_MS);
}

/** The last day computed and the instants it spans: the hot path asks many times per day. */
let lastDay = { day: 0, from: 0, to: 0 };

/** The Pacific calendar day of `ms`, as days since 1970-01-01 (a stable bucket number). */
export function pacificDayNumber(ms: number): number {
  if (ms >= lastDay.from && ms < lastDay.to) return lastDay.day;
  const day = dayNumberOf(ms);
  lastDay = { day, from: pacificDayStart(day), to: pacificDayStart(day + 1) };
  return day;
}

/** The Pacific calendar day of `ms` as `YYYY-MM-DD`. */
export function pacificDate(ms: number): string {
  return new Date(pacificDayNumber(ms) * DAY_MS).toISOString().slice(0, 10);
}

/** The first instant of the Pacific day numbered `day` (see `pacificDayNumber`), in epoch ms. */
export function pacificDayStart(day: number): number {
  const wallMidnight = day * DAY_MS;
  // Two passes: the offset at the guess may differ from the offset at the answer across DST.
  let guess = wallMidnight + pacificOffsetMinutes(wallMidnight) * 60_000;
  guess = wallMidnight + pacificOffsetMinutes(guess) * 60_000;
  return guess;
}

/** The next midnight America/Los_Angeles after `ms` (when Google's daily quotas reset). */
export function nextPacificMidnight(ms: number): number {
  return pacificDayStart(pacificDayNumber(ms) + 1);
}

/** The UTC calendar day of `ms` as `YYYY-MM-DD`. */
export function utcDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The UTC calendar day before `date` (`YYYY-MM-DD`). */
export function previousUtcDate(date: string): string {
  return utcDate(Date.parse(`${date}T00:00:00Z`) - DAY_MS);
}

/** The month of the last day asked for (`pacificMonthNumber` runs once per answered request). */
let lastMonth = { day: Number.NaN, month: 0 };

/**
 * The Pacific calendar month of `ms`, as `year * 12 + month - 1` of its Pacific date (a stable
 * bucket number).
 */
export function pacificMonthNumber(ms: number): number {
  const day = pacificDayNumber(ms);
  if (day !== lastMonth.day) {
    const date = new Date(day * DAY_MS);
    lastMonth = { day, month: date.getUTCFullYear() * 12 + date.getUTCMonth() };
  }
  return lastMonth.month;
}

/** The first instant (midnight Pacific on the 1st) of the month numbered `month`, in epoch ms. */
export function pacificMonthStart(month: number): number {
  const year = Math.floor(month / 12);
  return pacificDayStart(Date.UTC(year, month - year * 12, 1) / DAY_MS);
}

/** The next start of a Pacific calendar month after `ms`. */
export function nextPacificMonthStart(ms: number): number {
  return pacificMonthStart(pacificMonthNumber(ms) + 1);
}
