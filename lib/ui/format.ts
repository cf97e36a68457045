/**
 * Number, time and ratio formatting for the UI, in the page's language (used on the server and in
 * the browser alike).
 */
import type { Lang } from "./i18n.ts";

/** A count with thousands separators; large values shortened (12.3k, 4.5M). */
export function formatCount(n: number, lang: Lang): string {
  if (!Number.isFinite(n)) return "–";
  const abs = Math.abs(n);
  if (abs >= 1_000_000) return `${trim(n / 1_000_000)}M`;
  if (abs >= 10_000) return `${trim(n / 1_000)}k`;
  return new Intl.NumberFormat(lang).format(n);
}

function trim(n: number): string {
  return n.toFixed(n >= 100 ? 0 : 1).replace(/\.0$/, "");
}

/** A share as a percentage with one decimal, or "–" when there is nothing to divide. */
export function formatPercent(part: number, whole: number): string {
  if (!whole) return "–";
  return `${(Math.round((part / whole) * 1000) / 10).toFixed(1)}%`;
}

/** A date and time, short, in the page's language and the viewer's time zone. */
export function formatDateTime(iso: string | number | null | undefined, lang: Lang): string {
  if (iso === null || iso === undefined) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "–";
  return new Intl.DateTimeFormat(lang, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  }).format(d);
}

/** A time of day with seconds. */
export function formatTime(ms: number, lang: Lang): string {
  return new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    .format(new Date(ms));
}

/** A duration in milliseconds as "850 ms" or "1.2 s". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

/** Parses a limit as typed: empty means unlimited (null); else a whole number above 0, or undefined. */
export function parseLimit(text: string): number | null | undefined {
  const trimmed = text.trim();
  if (!trimmed) return null;
  const n = Number(trimmed);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}
