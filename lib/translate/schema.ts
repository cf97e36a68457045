/**
 * JSON Schema -> Gemini schemas (pure). Function `parameters` must be Gemini's OpenAPI-3.0 subset:
 * the API refuses the whole request over one keyword it has no field for (`additionalProperties`,
 * `$schema`, `const`, `propertyNames`, `uniqueItems`, ...), and enum values must be strings. So
 * local `$ref`s are inlined, nullable unions folded, and everything else outside the subset dropped.
 * `response_format` schemas go to `responseJsonSchema`, which takes real JSON Schema.
 */

type Json = Record<string, unknown>;

/** Keywords of Gemini's `Schema` that are copied as they are. */
const KEPT = new Set([
  "title",
  "description",
  "nullable",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
  "minLength",
  "maxLength",
  "pattern",
  "minimum",
  "maximum",
  "propertyOrdering",
]);

/** `format` values Gemini accepts, by type. */
const FORMATS: Record<string, readonly string[]> = {
  string: ["enum", "date-time"],
  integer: ["int32", "int64"],
  number: ["float", "double"],
};

const TYPES = new Set(["string", "number", "integer", "boolean", "array", "object"]);

/** How deep a schema (and `$ref` inlining) may nest before the rest is cut to a plain type. */
const MAX_DEPTH = 24;
/**
 * Schema nodes one conversion may make: inlining `$ref`s and spreading type lists into `anyOf`
 * copies can grow a tiny schema exponentially, so the work is bounded.
 */
export const MAX_SCHEMA_NODES = 5_000;
/** How deep a `response_format` schema may nest. */
const MAX_RESPONSE_SCHEMA_DEPTH = 64;

/** A schema the gateway will not convert (too large once expanded, or nested too deep). */
export class SchemaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SchemaError";
  }
}

/** What one conversion shares: the root (for `$ref`s), the nodes made, the `$ref`s being inlined. */
interface Conversion {
  root: Json;
  nodes: number;
  refs: string[];
}

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function resolveRef(ref: string, root: Json): Json | null {
  const m = /^#\/(\$defs|definitions)\/(.+)$/.exec(ref);
  if (!m) return null;
  const defs = root[m[1]];
  if (!isRecord(defs)) return null;
  const name = m[2].replaceAll("~1", "/").replaceAll("~0", "~");
  const target = defs[name];
  return isRecord(target) ? target : null;
}

function mergeAllOf(parts: unknown[]): Json {
  const out: Json = {};
  const properties: Json = {};
  const required = new Set<string>();
  for (const part of parts) {
    if (!isRecord(part)) continue;
    for (const [k, v] of Object.entries(part)) {
      if (k === "properties" && isRecord(v)) Object.assign(properties, v);
      else if (k === "required" && Array.isArray(v)) v.forEach((r) => required.add(String(r)));
      else if (!(k in out)) out[k] = v;
    }
  }
  if (Object.keys(properties).length) out.properties = properties;
  if (required.size) out.required = [...required];
  return out;
}

function describeValues(description: unknown, values: unknown[]): string {
  const list = `Allowed values: ${values.map((v) => JSON.stringify(v)).join(", ")}`;
  return typeof description === "string" && description ? `${description} (${list})` : list;
}

/** Converts one JSON Schema node to Gemini's OpenAPI subset. */
function convert(node: unknown, cx: Conversion, depth: number): Json {
  if (!isRecord(node)) return {};
  if (++cx.nodes > MAX_SCHEMA_NODES) {
    throw new SchemaError(
      `The schema expands to more than ${MAX_SCHEMA_NODES} nodes (its $refs inlined and type ` +
        "lists spread): simplify it",
    );
  }
  if (depth > MAX_DEPTH) return { type: typeof node.type === "string" ? node.type : "object" };
  const root = cx.root;
  let schema: Json = node;
  let inlined: string | null = null;
  if (typeof schema.$ref === "string") {
    // A definition met again inside itself (a recursive schema) stops there, as a plain object.
    if (cx.refs.includes(schema.$ref)) {
      return typeof schema.description === "string"
        ? { type: "object", description: schema.description }
        : { type: "object" };
    }
    const target = resolveRef(schema.$ref, root);
    const { $ref: _ref, ...rest } = schema;
    if (target) inlined = schema.$ref;
    schema = target ? { ...target, ...rest } : rest;
  }
  if (inlined) cx.refs.push(inlined);
  try {
    return convertInlined(schema, cx, depth);
  } finally {
    if (inlined) cx.refs.pop();
  }
}

/** Converts a node whose own `$ref` is inlined already (see `convert`). */
function convertInlined(node: Json, cx: Conversion, depth: number): Json {
  const root = cx.root;
  let schema = node;
  if (Array.isArray(schema.allOf)) {
    const { allOf, ...rest } = schema;
    const members = allOf.map((m) => {
      if (!isRecord(m) || typeof m.$ref !== "string") return m;
      const { $ref, ...own } = m;
      return { ...resolveRef($ref, root), ...own };
    });
    schema = mergeAllOf([rest, ...members]);
  }

  const out: Json = {};
  let nullable = schema.nullable === true;

  // type: a string, or a list that may include "null".
  let type: string | null = null;
  if (typeof schema.type === "string") type = schema.type;
  else if (Array.isArray(schema.type)) {
    const types = schema.type.filter((t): t is string => typeof t === "string");
    if (types.includes("null")) nullable = true;
    const rest = types.filter((t) => t !== "null");
    if (rest.length === 1) type = rest[0];
    else if (rest.length > 1) {
      out.anyOf = rest.map((t) => convert({ ...schema, type: t }, cx, depth + 1));
    }
  }
  if (type === "null") {
    type = "string";
    nullable = true;
  }

  // anyOf / oneOf: null members become `nullable`, a single remaining member is inlined.
  const union = Array.isArray(schema.anyOf)
    ? schema.anyOf
    : Array.isArray(schema.oneOf)
    ? schema.oneOf
    : null;
  if (union && !out.anyOf) {
    const members = union.filter((m) => {
      if (isRecord(m) && m.type === "null") {
        nullable = true;
        return false;
      }
      return true;
    }).map((m) => convert(m, cx, depth + 1));
    if (members.length === 1) {
      const { description, ...single } = members[0];
      Object.assign(out, single);
      if (description !== undefined && schema.description === undefined) {
        out.description = description;
      }
    } else if (members.length > 1) out.anyOf = members;
  }

  if (type !== null && TYPES.has(type)) out.type = type;
  for (const key of KEPT) {
    if (schema[key] !== undefined && key !== "nullable") out[key] = schema[key];
  }
  const t = typeof out.type === "string" ? out.type : null;
  if (typeof schema.format === "string" && t && FORMATS[t]?.includes(schema.format)) {
    out.format = schema.format;
  }

  // enum and const: Gemini enums are strings only; other values are described instead.
  const values = Array.isArray(schema.enum)
    ? schema.enum
    : schema.const !== undefined
    ? [schema.const]
    : null;
  if (values) {
    const nonNull = values.filter((v) => v !== null);
    if (nonNull.length < values.length) nullable = true;
    if (nonNull.length && nonNull.every((v) => typeof v === "string")) {
      out.enum = nonNull;
      if (!out.type) out.type = "string";
    } else if (nonNull.length) {
      out.description = describeValues(out.description, nonNull);
    }
  }

  if (isRecord(schema.properties)) {
    const properties: Json = {};
    for (const [name, value] of Object.entries(schema.properties)) {
      properties[name] = convert(value, cx, depth + 1);
    }
    if (Object.keys(properties).length) {
      out.properties = properties;
      if (!out.type) out.type = "object";
      if (Array.isArray(schema.required)) {
        const required = schema.required.filter((r): r is string =>
          typeof r === "string" && r in properties
        );
        if (required.length) out.required = required;
      }
    }
  }
  if (schema.items !== undefined) {
    const items = Array.isArray(schema.items) ? schema.items[0] : schema.items;
    out.items = isRecord(items) ? convert(items, cx, depth + 1) : { type: "string" };
    if (!out.type) out.type = "array";
  } else if (out.type === "array") {
    out.items = { type: "string" };
  }
  if (nullable) out.nullable = true;
  return out;
}

/**
 * An OpenAI function's `parameters` as Gemini's `parameters`, or undefined when the function takes
 * no arguments (an empty object schema is refused by Gemini, so it is left out). Throws a
 * `SchemaError` for a schema too large to convert.
 */
export function toGeminiParameters(schema: unknown): Json | undefined {
  if (!isRecord(schema)) return undefined;
  const out = convert(schema, { root: schema, nodes: 0, refs: [] }, 0);
  if (!isRecord(out.properties) || Object.keys(out.properties).length === 0) return undefined;
  return out;
}

const JSON_SCHEMA_DROPPED = new Set(["$schema", "strict"]);
/** Keywords whose value maps names to schemas (the names are data, not keywords). */
const SCHEMA_MAPS = new Set(["properties", "$defs", "definitions", "patternProperties"]);
/** Keywords whose value is one schema or a list of schemas. */
const SCHEMA_VALUES = new Set([
  "items",
  "prefixItems",
  "additionalProperties",
  "anyOf",
  "oneOf",
  "allOf",
  "not",
]);

/**
 * A `response_format` JSON schema for `responseJsonSchema`: meta keywords removed, the rest kept.
 * Throws a `SchemaError` for one nested deeper than `MAX_RESPONSE_SCHEMA_DEPTH`.
 */
export function toResponseJsonSchema(schema: unknown, depth = 0): unknown {
  if (!isRecord(schema)) return schema;
  if (depth > MAX_RESPONSE_SCHEMA_DEPTH) {
    throw new SchemaError(`The schema nests deeper than ${MAX_RESPONSE_SCHEMA_DEPTH} levels`);
  }
  const inner = (s: unknown) => toResponseJsonSchema(s, depth + 1);
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) {
    if (JSON_SCHEMA_DROPPED.has(k)) continue;
    if (SCHEMA_MAPS.has(k) && isRecord(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([name, s]) => [name, inner(s)]));
    } else if (SCHEMA_VALUES.has(k)) {
      out[k] = Array.isArray(v) ? v.map(inner) : inner(v);
    } else out[k] = v;
  }
  return out;
}
