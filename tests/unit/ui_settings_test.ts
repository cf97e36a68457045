/**
 * The schema-driven settings form: every patchable settings field gets a control and a section,
 * and the control chosen for each kind of schema.
 */
import assert from "node:assert/strict";
import * as z from "zod";
import { fieldKind, humanize, unwrapNullable } from "../../islands/settings_form.tsx";
import { SettingsPatchSchema } from "../../lib/store/settings.ts";
import { translator } from "../../lib/ui/i18n.ts";
import { groupFields, sectionOf, settingsSchema } from "../../lib/ui/settings_layout.ts";
import type { FieldSchema } from "../../lib/ui/wire.ts";

Deno.test("every patchable settings field appears in exactly one section, with a translated label", () => {
  const schema = settingsSchema({});
  const fields = Object.keys(SettingsPatchSchema.shape);
  assert.deepEqual(Object.keys(schema.properties ?? {}).sort(), [...fields].sort());
  const sections = groupFields(fields);
  const placed = sections.flatMap((s) => s.fields);
  assert.deepEqual([...placed].sort(), [...fields].sort());
  assert.equal(sectionOf("strategy"), "rotation");
  assert.equal(sectionOf("aliases"), "aliases");
  // The stored responses' two settings sit together.
  assert.equal(sectionOf("responsesStorageMb"), sectionOf("responsesRetentionDays"));
  for (const lang of ["en", "zh-CN"] as const) {
    const t = translator(lang);
    for (const f of fields) {
      assert.ok(t.maybe(`setting.${f}`), `add "setting.${f}" (${lang}) to lib/ui/i18n.ts`);
    }
  }
});

Deno.test("fields are placed by name, so fields added later land somewhere sensible", () => {
  assert.equal(sectionOf("thinkingLevel"), "thinking");
  assert.equal(sectionOf("includeThoughts"), "thinking");
  assert.equal(sectionOf("antiTruncationRounds"), "antiTruncation");
  assert.equal(sectionOf("promptInjectionPosition"), "injection");
  assert.equal(sectionOf("safetyThreshold"), "safety");
  assert.equal(sectionOf("limitMultiplier"), "limits");
  assert.equal(sectionOf("somethingNew"), "other");
  assert.deepEqual(groupFields(["somethingNew", "strategy"]).map((s) => s.id), [
    "rotation",
    "other",
  ]);
});

Deno.test("each kind of schema gets its control", () => {
  const kindOf = (s: z.ZodType) =>
    fieldKind(unwrapNullable(z.toJSONSchema(s, { io: "input" }) as FieldSchema).schema);
  assert.equal(kindOf(z.boolean()), "boolean");
  assert.equal(kindOf(z.enum(["a", "b"])), "enum");
  assert.equal(kindOf(z.number().int().min(1)), "integer");
  assert.equal(kindOf(z.number()), "number");
  assert.equal(kindOf(z.string().max(100)), "text");
  assert.equal(kindOf(z.string().max(8000)), "textarea");
  assert.equal(kindOf(z.object({ on: z.boolean() })), "object");
  assert.equal(kindOf(z.record(z.string(), z.string())), "map");
  assert.equal(kindOf(z.array(z.string())), "json");
  const nullable = unwrapNullable(
    z.toJSONSchema(z.number().int().nullable(), { io: "input" }) as FieldSchema,
  );
  assert.equal(nullable.nullable, true);
  assert.equal(fieldKind(nullable.schema), "integer");
  assert.equal(humanize("maxAttempts"), "Max attempts");
  assert.equal(humanize("anti_truncation"), "Anti truncation");
});
