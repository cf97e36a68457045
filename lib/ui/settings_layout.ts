/**
 * Where each settings field appears in the UI: rotation fields on the models and rotation page, the
 * rest in named sections of the settings page. Fields are placed by name, so fields that other
 * parts of the gateway add later land in a sensible section (or "other") without UI changes; the
 * form itself comes from the settings schema.
 */
import * as z from "zod";
import { SettingsPatchSchema } from "../store/settings.ts";
import type { FieldSchema } from "./wire.ts";

/** The sections, in page order. */
export const SECTION_IDS = [
  "rotation",
  "aliases",
  "thinking",
  "injection",
  "antiTruncation",
  "safety",
  "limits",
  "cleanup",
  "other",
] as const;
/** One section. */
export type SectionId = typeof SECTION_IDS[number];

const EXPLICIT: Record<string, SectionId> = {
  strategy: "rotation",
  maxAttempts: "rotation",
  defaultCooldownSeconds: "rotation",
  aliases: "aliases",
  requestLogSize: "cleanup",
  responsesStorageMb: "cleanup",
  projectKeyWarning: "limits",
  healthChecks: "cleanup",
  removeFailingKeysAfterDays: "cleanup",
};

const PATTERNS: [RegExp, SectionId][] = [
  [/strateg|rotation|attempt|cooldown|failover|retr(y|ies)/i, "rotation"],
  [/alias/i, "aliases"],
  [/truncat/i, "antiTruncation"],
  [/think|thought|reasoning|budget/i, "thinking"],
  [/inject|prompt|system_?instruction/i, "injection"],
  [/safety|harm|block/i, "safety"],
  [/clean|prune|retention|remov|health|check/i, "cleanup"],
  [/limit|rpm|rpd|tpm|quota|multiplier/i, "limits"],
];

/** The section a settings field belongs to. */
export function sectionOf(field: string): SectionId {
  if (Object.hasOwn(EXPLICIT, field)) return EXPLICIT[field];
  for (const [pattern, section] of PATTERNS) if (pattern.test(field)) return section;
  return "other";
}

/** Groups fields into sections (in page order), leaving out empty ones. */
export function groupFields(
  fields: string[],
  only?: (id: SectionId) => boolean,
): { id: SectionId; fields: string[] }[] {
  return SECTION_IDS
    .filter((id) => !only || only(id))
    .map((id) => ({ id, fields: fields.filter((f) => sectionOf(f) === id) }))
    .filter((s) => s.fields.length > 0);
}

function inferSchema(value: unknown): FieldSchema {
  if (typeof value === "boolean") return { type: "boolean" };
  if (typeof value === "number") return { type: Number.isInteger(value) ? "integer" : "number" };
  if (typeof value === "string") return { type: "string" };
  return {};
}

/**
 * The JSON Schema of what `PATCH /admin/api/settings` accepts, made from its zod schema (only
 * patchable fields are shown). Should the schema not convert, fields are inferred from the values.
 */
export function settingsSchema(values: Record<string, unknown>): FieldSchema {
  try {
    const schema = z.toJSONSchema(SettingsPatchSchema, { io: "input", unrepresentable: "any" });
    return { type: "object", properties: { ...(schema as FieldSchema).properties } };
  } catch (err) {
    console.error("The settings schema cannot be shown as JSON Schema:", String(err));
    const properties: Record<string, FieldSchema> = {};
    for (const [name, value] of Object.entries(values)) properties[name] = inferSchema(value);
    return { type: "object", properties };
  }
}
