/**
 * Island: settings sections drawn from the settings schema (JSON Schema made from the server's zod
 * schema), so a field added to the settings shows up without UI changes: switches for booleans,
 * selects for enums, number and text inputs, fieldsets for nested objects, JSON for the rest. Each
 * section saves its changed fields with one `PATCH /admin/api/settings`.
 */
import { useSignal } from "@preact/signals";
import { api, errorMessage } from "../lib/ui/api.ts";
import { type Translator, useT } from "../lib/ui/i18n.ts";
import type { FieldSchema, SettingsView } from "../lib/ui/wire.ts";
import { SaveControls, type SaveStatus } from "./components/controls.tsx";

/** One card of fields. */
export interface SettingsSection {
  id: string;
  fields: string[];
}

/** Props of `SettingsForm`. */
export interface SettingsFormProps {
  schema: FieldSchema;
  values: SettingsView;
  sections: SettingsSection[];
}

/** A schema without its `null` alternative, and whether null is allowed. */
export function unwrapNullable(schema: FieldSchema): { schema: FieldSchema; nullable: boolean } {
  const options = schema.anyOf ?? schema.oneOf;
  if (options) {
    const rest = options.filter((o) => o.type !== "null");
    if (rest.length === 1 && rest.length < options.length) {
      return {
        schema: { ...rest[0], description: schema.description ?? rest[0].description },
        nullable: true,
      };
    }
  }
  if (Array.isArray(schema.type) && schema.type.includes("null")) {
    const type = schema.type.filter((x) => x !== "null");
    return { schema: { ...schema, type: type.length === 1 ? type[0] : type }, nullable: true };
  }
  return { schema, nullable: false };
}

/** How a field is edited. */
export type FieldKind =
  | "boolean"
  | "enum"
  | "integer"
  | "number"
  | "text"
  | "textarea"
  | "object"
  | "map"
  | "json";

/** Picks the control for a schema. */
export function fieldKind(schema: FieldSchema): FieldKind {
  if (schema.enum && schema.enum.every((v) => typeof v === "string")) return "enum";
  if (schema.type === "boolean") return "boolean";
  if (schema.type === "integer") return "integer";
  if (schema.type === "number") return "number";
  if (schema.type === "string") return (schema.maxLength ?? 0) > 200 ? "textarea" : "text";
  if (schema.type === "object" && schema.properties && !schema.additionalProperties) {
    return "object";
  }
  const values = schema.additionalProperties;
  if (
    schema.type === "object" && !schema.properties && typeof values === "object" &&
    (values.type === "string" || values.type === "number" || values.type === "integer")
  ) {
    return "map";
  }
  return "json";
}

/** "maxAttempts" -> "Max attempts"; "anti_truncation" -> "Anti truncation". */
export function humanize(name: string): string {
  const words = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " ").trim()
    .toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function fieldLabel(t: Translator, path: string, schema: FieldSchema): string {
  return t.maybe(`setting.${path}`) ?? schema.description ?? humanize(path.split(".").at(-1)!);
}

function fieldHelp(t: Translator, path: string, schema: FieldSchema): string | undefined {
  const help = t.maybe(`setting.${path}.help`);
  if (help) return help;
  if (t.maybe(`setting.${path}`) && schema.description) return schema.description;
  const { minimum, maximum } = schema;
  if (minimum !== undefined && maximum !== undefined) {
    return t("settings.range", { min: minimum, max: maximum });
  }
  return undefined;
}

interface FieldProps {
  path: string;
  /** The only field of its section: nested fields go without a frame of their own. */
  bare?: boolean;
  schema: FieldSchema;
  value: unknown;
  onChange: (value: unknown) => void;
  onInvalid: (path: string, bad: boolean) => void;
}

function Field(props: FieldProps) {
  const t = useT();
  const { schema, nullable } = unwrapNullable(props.schema);
  const kind = fieldKind(schema);
  const id = `set-${props.path.replaceAll(".", "-")}`;
  const label = fieldLabel(t, props.path, schema);
  const help = fieldHelp(t, props.path, schema);
  const helpId = help ? `${id}-help` : undefined;
  const jsonText = useSignal(JSON.stringify(props.value ?? null, null, 2));

  if (kind === "object") {
    const value = (props.value ?? {}) as Record<string, unknown>;
    return (
      <fieldset data-field={props.path}>
        <legend>{label}</legend>
        {help ? <p class="field-help">{help}</p> : null}
        {Object.entries(schema.properties ?? {}).map(([name, child]) => (
          <Field
            key={name}
            path={`${props.path}.${name}`}
            schema={child}
            value={value[name]}
            onChange={(v) => props.onChange({ ...value, [name]: v })}
            onInvalid={props.onInvalid}
          />
        ))}
      </fieldset>
    );
  }
  if (kind === "boolean") {
    return (
      <div class="field" data-field={props.path}>
        <label class="check" for={id}>
          <input
            id={id}
            type="checkbox"
            class="switch"
            role="switch"
            checked={props.value === true}
            aria-describedby={helpId}
            onChange={(e) => props.onChange(e.currentTarget.checked)}
          />
          <span>{label}</span>
        </label>
        {help ? <span class="field-help" id={helpId}>{help}</span> : null}
      </div>
    );
  }
  if (kind === "map") {
    return (
      <MapField
        bare={props.bare}
        path={props.path}
        label={label}
        help={help}
        numeric={typeof schema.additionalProperties === "object" &&
          schema.additionalProperties.type !== "string"}
        value={(props.value ?? {}) as Record<string, string | number>}
        onChange={props.onChange}
      />
    );
  }
  let control;
  if (kind === "enum") {
    control = (
      <select
        id={id}
        aria-describedby={helpId}
        value={props.value === null || props.value === undefined ? "" : String(props.value)}
        onChange={(e) =>
          props.onChange(e.currentTarget.value === "" ? null : e.currentTarget.value)}
      >
        {nullable || props.value === undefined
          ? <option value="">{t("settings.unset")}</option>
          : null}
        {(schema.enum as string[]).map((v) => (
          <option value={v}>{t.maybe(`setting.${props.path}.${v}`) ?? humanize(v)}</option>
        ))}
      </select>
    );
  } else if (kind === "integer" || kind === "number") {
    control = (
      <input
        id={id}
        type="number"
        aria-describedby={helpId}
        min={schema.minimum ?? schema.exclusiveMinimum}
        max={schema.maximum ?? schema.exclusiveMaximum}
        step={kind === "integer" ? 1 : "any"}
        value={props.value === null || props.value === undefined ? "" : String(props.value)}
        placeholder={nullable ? t("settings.unset") : undefined}
        onInput={(e) => {
          const text = e.currentTarget.value.trim();
          if (text === "" && nullable) {
            props.onInvalid(props.path, false);
            props.onChange(null);
            return;
          }
          const n = Number(text);
          const bad = text === "" || !Number.isFinite(n) ||
            (kind === "integer" && !Number.isInteger(n));
          props.onInvalid(props.path, bad);
          if (!bad) props.onChange(n);
        }}
      />
    );
  } else if (kind === "text" || kind === "textarea") {
    const common = {
      id,
      "aria-describedby": helpId,
      maxLength: schema.maxLength,
      value: typeof props.value === "string" ? props.value : "",
      onInput: (e: { currentTarget: HTMLInputElement | HTMLTextAreaElement }) =>
        props.onChange(e.currentTarget.value === "" && nullable ? null : e.currentTarget.value),
    };
    control = kind === "textarea" ? <textarea {...common} /> : <input type="text" {...common} />;
  } else {
    control = (
      <textarea
        id={id}
        aria-describedby={`${id}-json`}
        spellcheck={false}
        value={jsonText.value}
        onInput={(e) => {
          jsonText.value = e.currentTarget.value;
          try {
            const parsed = JSON.parse(e.currentTarget.value);
            props.onInvalid(props.path, false);
            props.onChange(parsed);
          } catch {
            props.onInvalid(props.path, true);
          }
        }}
      />
    );
  }
  return (
    <div class="field" data-field={props.path}>
      <label for={id}>{label}</label>
      {help ? <span class="field-help" id={helpId}>{help}</span> : null}
      {kind === "json"
        ? <span class="field-help" id={`${id}-json`}>{t("settings.jsonHelp")}</span>
        : null}
      {control}
    </div>
  );
}

/** Rows of name -> value (e.g. model aliases), edited as pairs of inputs. */
function MapField(props: {
  bare?: boolean;
  path: string;
  label: string;
  help?: string;
  numeric: boolean;
  value: Record<string, string | number>;
  onChange: (value: Record<string, string | number>) => void;
}) {
  const t = useT();
  const rows = useSignal<[string, string][]>(
    Object.entries(props.value).map(([k, v]) => [k, String(v)]),
  );
  const id = `set-${props.path.replaceAll(".", "-")}`;
  const keyLabel = t.maybe(`setting.${props.path}.key`) ?? t("settings.mapKey");
  const valueLabel = t.maybe(`setting.${props.path}.value`) ?? t("settings.mapValue");

  function update(next: [string, string][]) {
    rows.value = next;
    const out: Record<string, string | number> = {};
    for (const [k, v] of next) {
      if (k.trim() && v.trim()) out[k.trim()] = props.numeric ? Number(v) : v.trim();
    }
    props.onChange(out);
  }

  return (
    <fieldset data-field={props.path} id={id} class={props.bare ? "bare" : undefined}>
      <legend class={props.bare ? "visually-hidden" : undefined}>{props.label}</legend>
      {props.help ? <p class="field-help">{props.help}</p> : null}
      {rows.value.map(([k, v], i) => (
        <div class="field-row map-row" key={i}>
          <div class="field">
            <label for={`${id}-k${i}`}>{keyLabel}</label>
            <input
              id={`${id}-k${i}`}
              type="text"
              value={k}
              onInput={(e) =>
                update(rows.value.map((r, j) => (j === i ? [e.currentTarget.value, r[1]] : r)))}
            />
          </div>
          <div class="field">
            <label for={`${id}-v${i}`}>{valueLabel}</label>
            <input
              id={`${id}-v${i}`}
              type={props.numeric ? "number" : "text"}
              value={v}
              onInput={(e) =>
                update(rows.value.map((r, j) => (j === i ? [r[0], e.currentTarget.value] : r)))}
            />
          </div>
          <div class="field">
            <button
              type="button"
              class="btn btn-small btn-danger"
              aria-label={`${t("common.delete")} ${k}`}
              onClick={() => update(rows.value.filter((_, j) => j !== i))}
            >
              {t("common.delete")}
            </button>
          </div>
        </div>
      ))}
      <div class="field">
        <button
          type="button"
          class="btn btn-small"
          onClick={() => update([...rows.value, ["", ""]])}
        >
          {t("settings.mapAdd")}
        </button>
      </div>
    </fieldset>
  );
}

function Section(
  props: { section: SettingsSection; schema: FieldSchema; saved: { value: SettingsView } },
) {
  const t = useT();
  const draft = useSignal<SettingsView>({ ...props.saved.value });
  const invalid = useSignal<Set<string>>(new Set());
  const status = useSignal<SaveStatus>(null);
  const saving = useSignal(false);
  const properties = props.schema.properties ?? {};
  const fields = props.section.fields.filter((f) => f in properties);
  const changed = fields.filter((f) =>
    JSON.stringify(draft.value[f]) !== JSON.stringify(props.saved.value[f])
  );

  async function save(e: Event) {
    e.preventDefault();
    if (invalid.value.size) {
      status.value = {
        kind: "bad",
        text: t("settings.invalidJson", { field: [...invalid.value].join(", ") }),
      };
      return;
    }
    if (!changed.length) return;
    saving.value = true;
    status.value = null;
    try {
      const patch = Object.fromEntries(changed.map((f) => [f, draft.value[f]]));
      const next = await api<SettingsView>("PATCH", "/admin/api/settings", patch);
      props.saved.value = next;
      draft.value = { ...next };
      status.value = { kind: "ok", text: t("common.saved") };
    } catch (err) {
      status.value = { kind: "bad", text: t("common.error", { message: errorMessage(err) }) };
    } finally {
      saving.value = false;
    }
  }

  return (
    <section
      class="card"
      aria-labelledby={`sec-${props.section.id}`}
      data-section={props.section.id}
    >
      <h2 id={`sec-${props.section.id}`}>
        {t.maybe(`settings.section.${props.section.id}`) ?? humanize(props.section.id)}
      </h2>
      {fields.length === 0 ? <p class="muted">{t("settings.nothing")}</p> : (
        <form onSubmit={save}>
          {fields.map((f) => (
            <Field
              key={f}
              bare={fields.length === 1}
              path={f}
              schema={properties[f]}
              value={draft.value[f]}
              onChange={(v) => (draft.value = { ...draft.value, [f]: v })}
              onInvalid={(path, bad) => {
                const next = new Set(invalid.value);
                if (bad) next.add(path);
                else next.delete(path);
                invalid.value = next;
              }}
            />
          ))}
          <div class="actions">
            <SaveControls saving={saving.value} status={status.value} disabled={!changed.length} />
          </div>
        </form>
      )}
    </section>
  );
}

/** Settings sections with their own save buttons. */
export function SettingsForm(props: SettingsFormProps) {
  const saved = useSignal<SettingsView>(props.values);
  return (
    <div class="settings-form">
      {props.sections.map((section) => (
        <Section key={section.id} section={section} schema={props.schema} saved={saved} />
      ))}
    </div>
  );
}
