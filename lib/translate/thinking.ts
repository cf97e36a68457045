/**
 * Thinking per model family (pure): a static table keyed by model prefix (gemini_protocol.md §11)
 * that says whether a model thinks, whether it takes a token budget (2.5) or a level (3.x), which
 * values it accepts, and what each OpenAI `reasoning_effort` becomes. Every value produced is one
 * the model accepts; for a model the table does not know, no thinkingConfig is sent at all.
 */
import type { ThinkingConfig } from "../gemini/types.ts";
import type { ReasoningEffort } from "../openai/chat_schema.ts";
import type { ThinkingSuffix } from "./models.ts";

/** A thinking level as Gemini spells it. */
export type ThinkingLevel = "MINIMAL" | "LOW" | "MEDIUM" | "HIGH";

/** The efforts every family maps (`xhigh` and `max` behave like `high`). */
type Effort = "none" | "minimal" | "low" | "medium" | "high";

/** How one family of models is steered. */
export type ThinkingFamily =
  /** Cannot think, or we do not know how: never send a thinkingConfig. */
  | { kind: "none" }
  /** Thinks, controls unknown (e.g. `-latest` aliases): only `includeThoughts` is sent. */
  | { kind: "opaque" }
  /** Gemini 2.5: `thinkingBudget` in tokens. */
  | {
    kind: "budget";
    min: number;
    max: number;
    /** Whether a budget of 0 (no thinking) is accepted. */
    canDisable: boolean;
    efforts: Record<Effort, number>;
  }
  /** Gemini 3: `thinkingLevel`. */
  | { kind: "level"; levels: readonly ThinkingLevel[]; efforts: Record<Effort, ThinkingLevel> };

const NONE: ThinkingFamily = { kind: "none" };

/** The table, most specific entry first; the first matching pattern wins. */
export const THINKING_TABLE: readonly { pattern: RegExp; family: ThinkingFamily }[] = [
  // Image, speech and live variants do not think (or reject thinkingConfig).
  { pattern: /-(image|tts|live|native-audio)(-|$)/, family: NONE },
  {
    pattern: /^gemini-2\.5-pro/,
    family: {
      kind: "budget",
      min: 128,
      max: 32_768,
      canDisable: false,
      efforts: { none: 128, minimal: 128, low: 1_024, medium: 8_192, high: 32_768 },
    },
  },
  {
    pattern: /^gemini-2\.5-flash-lite/,
    family: {
      kind: "budget",
      min: 512,
      max: 24_576,
      canDisable: true,
      efforts: { none: 0, minimal: 512, low: 1_024, medium: 8_192, high: 24_576 },
    },
  },
  {
    pattern: /^gemini-2\.5-flash/,
    family: {
      kind: "budget",
      min: 1,
      max: 24_576,
      canDisable: true,
      efforts: { none: 0, minimal: 512, low: 1_024, medium: 8_192, high: 24_576 },
    },
  },
  {
    pattern: /^gemini-3(\.\d+)?-flash/,
    family: {
      kind: "level",
      levels: ["MINIMAL", "LOW", "MEDIUM", "HIGH"],
      efforts: { none: "MINIMAL", minimal: "MINIMAL", low: "LOW", medium: "MEDIUM", high: "HIGH" },
    },
  },
  {
    // Gemini 3 Pro rejects MEDIUM (seen December 2025).
    pattern: /^gemini-3-pro/,
    family: {
      kind: "level",
      levels: ["LOW", "HIGH"],
      efforts: { none: "LOW", minimal: "LOW", low: "LOW", medium: "HIGH", high: "HIGH" },
    },
  },
  {
    pattern: /^gemini-3\.\d+-pro/,
    family: {
      kind: "level",
      levels: ["LOW", "MEDIUM", "HIGH"],
      efforts: { none: "LOW", minimal: "LOW", low: "LOW", medium: "MEDIUM", high: "HIGH" },
    },
  },
  {
    // A newer generation we have no row for: only the two levels every Gemini 3 model takes.
    pattern: /^gemini-([3-9]|\d{2,})(\.\d+)?-/,
    family: {
      kind: "level",
      levels: ["LOW", "HIGH"],
      efforts: { none: "LOW", minimal: "LOW", low: "LOW", medium: "HIGH", high: "HIGH" },
    },
  },
  { pattern: /^gemini-(flash|flash-lite|pro)-latest$/, family: { kind: "opaque" } },
];

/** `thinkingFamily` by model name (the table is matched once per name, not once per request). */
const familyOf = new Map<string, ThinkingFamily>();

/** The thinking family of a model id. */
export function thinkingFamily(model: string): ThinkingFamily {
  let family = familyOf.get(model);
  if (family === undefined) {
    family = THINKING_TABLE.find((row) => row.pattern.test(model))?.family ?? NONE;
    // Model names come from requests: the memo is bounded.
    if (familyOf.size >= 1000) familyOf.clear();
    familyOf.set(model, family);
  }
  return family;
}

/** Whether the model needs a thought signature on the first function call of each step. */
export function requiresThoughtSignatures(model: string): boolean {
  const kind = thinkingFamily(model).kind;
  return kind === "level" || kind === "opaque";
}

/** The admin's thinking defaults (settings). */
export interface ThinkingDefaults {
  /** `auto`: let the model decide; `off`: as little thinking as the model allows; `budget`: a fixed budget. */
  mode: "auto" | "off" | "budget";
  budget: number;
  includeThoughts: boolean;
}

/** What a request asked of thinking. */
export interface ThinkingRequest {
  effort?: ReasoningEffort | null;
  /** An explicit `extra_body.google.thinking_config`, already case-normalized. */
  explicit?: { budget?: number | null; level?: string | null; includeThoughts?: boolean | null };
  suffix?: ThinkingSuffix | null;
}

/** A thinking request the model cannot honour in any form (the client's fault). */
export class ThinkingConfigError extends Error {
  readonly param: string;

  constructor(message: string, param: string) {
    super(message);
    this.name = "ThinkingConfigError";
    this.param = param;
  }
}

function effortOf(effort: ReasoningEffort): Effort {
  return effort === "xhigh" || effort === "max" ? "high" : effort;
}

const LEVEL_ORDER: readonly ThinkingLevel[] = ["MINIMAL", "LOW", "MEDIUM", "HIGH"];

/** The nearest accepted level at or above `wanted` (or the highest accepted). */
function nearestLevel(levels: readonly ThinkingLevel[], wanted: ThinkingLevel): ThinkingLevel {
  const from = LEVEL_ORDER.indexOf(wanted);
  for (let i = from; i < LEVEL_ORDER.length; i++) {
    if (levels.includes(LEVEL_ORDER[i])) return LEVEL_ORDER[i];
  }
  return levels[levels.length - 1];
}

function budgetToLevel(
  family: Extract<ThinkingFamily, { kind: "level" }>,
  budget: number,
): ThinkingLevel | null {
  if (budget < 0) return null;
  if (budget === 0) return family.levels[0];
  if (budget < 1_024) return nearestLevel(family.levels, "MINIMAL");
  if (budget <= 4_096) return nearestLevel(family.levels, "LOW");
  if (budget <= 16_384) return nearestLevel(family.levels, "MEDIUM");
  return nearestLevel(family.levels, "HIGH");
}

function clampBudget(family: Extract<ThinkingFamily, { kind: "budget" }>, budget: number): number {
  if (budget === -1) return -1;
  if (budget === 0) return family.canDisable ? 0 : family.min;
  return Math.min(family.max, Math.max(family.min, budget));
}

function parseLevel(text: string, param: string): ThinkingLevel {
  const upper = text.trim().toUpperCase();
  if ((LEVEL_ORDER as readonly string[]).includes(upper)) return upper as ThinkingLevel;
  throw new ThinkingConfigError(
    `Unknown thinking level '${text}'; use one of minimal, low, medium, high`,
    param,
  );
}

/**
 * The thinkingConfig to send for `model`, or undefined to send none. Precedence: an explicit
 * thinking_config, then a model suffix, then `reasoning_effort`, then the admin defaults.
 */
export function thinkingConfigFor(
  model: string,
  request: ThinkingRequest,
  defaults: ThinkingDefaults,
): ThinkingConfig | undefined {
  const family = thinkingFamily(model);
  const explicit = request.explicit ?? {};
  const param = "extra_body.google.thinking_config";
  if (explicit.budget != null && explicit.level != null) {
    throw new ThinkingConfigError(
      "Send either thinking_budget or thinking_level, not both",
      param,
    );
  }
  if (family.kind === "none") return undefined;

  let includeThoughts = explicit.includeThoughts ?? defaults.includeThoughts;
  if (request.suffix === "thinking" || request.suffix === "maxthinking") {
    includeThoughts = explicit.includeThoughts ?? true;
  }
  if (family.kind === "opaque") return includeThoughts ? { includeThoughts: true } : undefined;

  // What to aim for, as a budget or a level, before fitting it to the family.
  let budget: number | null = null;
  let level: ThinkingLevel | null = null;
  if (explicit.budget != null) budget = explicit.budget;
  else if (explicit.level != null) level = parseLevel(explicit.level, `${param}.thinking_level`);
  else if (request.suffix === "nothinking") level = "MINIMAL";
  else if (request.suffix === "maxthinking") level = "HIGH";
  else if (request.effort) {
    const effort = effortOf(request.effort);
    if (family.kind === "budget") budget = family.efforts[effort];
    else level = family.efforts[effort];
  } else if (defaults.mode === "off") {
    if (family.kind === "budget") budget = family.efforts.none;
    else level = family.efforts.none;
  } else if (defaults.mode === "budget") budget = defaults.budget;

  const out: ThinkingConfig = {};
  if (family.kind === "budget") {
    if (level !== null) {
      const effort: Effort = level === "MINIMAL"
        ? (request.suffix === "nothinking" ? "none" : "minimal")
        : level === "LOW"
        ? "low"
        : level === "MEDIUM"
        ? "medium"
        : "high";
      budget = family.efforts[effort];
    }
    if (budget !== null) out.thinkingBudget = clampBudget(family, budget);
    if (out.thinkingBudget === 0) includeThoughts = false;
  } else {
    if (budget !== null) level = budgetToLevel(family, budget);
    if (level !== null) out.thinkingLevel = nearestLevel(family.levels, level);
  }
  if (includeThoughts) out.includeThoughts = true;
  return Object.keys(out).length ? out : undefined;
}
