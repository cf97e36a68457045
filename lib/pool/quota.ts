/**
 * Reads a Gemini 429 (pure): which quotas were hit (per minute, per day, tokens), the limits they
 * name (`quotaValue`, learned instead of trusted from a table), and how long to rest.
 */
import { parseGoogleError } from "../gemini/errors.ts";
import { type Limits, MAX_LIMIT_VALUE } from "../store/models.ts";

/** One violated quota of a 429. */
export interface QuotaViolation {
  quotaId: string;
  /** The limit Google named, or null when absent or not a number. */
  value: number | null;
}

/** What a 429 says. */
export interface QuotaReport {
  violations: QuotaViolation[];
  /** Every violation is a per-day quota: the project×model is done until Pacific midnight. */
  perDayOnly: boolean;
  /** At least one violation is a per-day quota (a second such 429 in a row parks the key). */
  mentionsPerDay: boolean;
  /** A violated quota is "0": the project has no quota at all for the model. */
  noQuota: boolean;
  /** Limits named by the violations (rpm, tpm, rpd), to remember for the project and model. */
  learned: Partial<Limits>;
}

/** Which limit a quota id measures, or null when it is one we do not track. */
export function limitOfQuotaId(quotaId: string): keyof Limits | null {
  const tokens = /Tokens/i.test(quotaId);
  if (/PerMinute/i.test(quotaId)) return tokens ? "tpm" : "rpm";
  if (/PerDay/i.test(quotaId) && !tokens) return "rpd";
  return null;
}

/**
 * A `quotaValue` as a limit worth remembering, or null (pure): a whole number from 1 to
 * `MAX_LIMIT_VALUE`. A fraction under 1 is no usable limit, and anything larger is none in
 * practice; neither may reach a stored record, whose schema refuses them.
 */
function learnableLimit(value: number): number | null {
  const n = Math.floor(value);
  return Number.isFinite(n) && n >= 1 && n <= MAX_LIMIT_VALUE ? n : null;
}

/** Parses the quota details of a 429 body (any text; unknown shapes give an empty report). */
export function readQuotaFailure(body: string): QuotaReport {
  const err = parseGoogleError(body);
  const violations: QuotaViolation[] = [];
  for (const d of err?.error.details ?? []) {
    if (!String(d["@type"] ?? "").endsWith("google.rpc.QuotaFailure")) continue;
    if (!Array.isArray(d.violations)) continue;
    for (const v of d.violations) {
      if (!v || typeof v !== "object") continue;
      const rec = v as Record<string, unknown>;
      const raw = rec.quotaValue;
      const n = typeof raw === "string" || typeof raw === "number" ? Number(raw) : NaN;
      violations.push({
        quotaId: String(rec.quotaId ?? ""),
        value: Number.isFinite(n) ? n : null,
      });
    }
  }
  const learned: Partial<Limits> = {};
  for (const v of violations) {
    const which = limitOfQuotaId(v.quotaId);
    const value = which && v.value !== null ? learnableLimit(v.value) : null;
    if (which && value !== null) learned[which] = value;
  }
  const perDay = violations.filter((v) => /PerDay/i.test(v.quotaId));
  return {
    violations,
    perDayOnly: violations.length > 0 && perDay.length === violations.length,
    mentionsPerDay: perDay.length > 0,
    noQuota: violations.some((v) => v.value === 0),
    learned,
  };
}
