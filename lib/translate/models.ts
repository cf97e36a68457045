/**
 * Model names as clients send them -> the upstream model (pure): a leading `models/` removed,
 * admin-defined aliases applied, a `-search` suffix split off into Google Search, and thinking
 * suffixes (`-thinking`, `-nothinking`, `-maxthinking`) into a thinking directive.
 */

/**
 * The longest model name a request may give: real ones are far shorter, and usage counters carry
 * the name in their KV keys (2 KiB at most each, 80 KiB per atomic write).
 */
export const MAX_MODEL_NAME = 128;

/** What a model-name suffix asks of thinking. */
export type ThinkingSuffix = "thinking" | "nothinking" | "maxthinking";

/** A client's model name, resolved. */
export interface ResolvedModel {
  /** The upstream model id, e.g. `gemini-2.5-flash`. */
  model: string;
  /** The thinking directive of a suffix, if the name carried one. */
  suffix: ThinkingSuffix | null;
  /** The name ended in `-search`: the answer may use Google Search. */
  search: boolean;
  /** The alias that was applied, if any. */
  alias: string | null;
}

/** The alias `name` is in `aliases`, or undefined (never an object's built-in, `constructor`). */
export function aliasOf(
  aliases: Readonly<Record<string, string>>,
  name: string,
): string | undefined {
  return Object.hasOwn(aliases, name) ? aliases[name] : undefined;
}

/** The client's model id as Gemini's path wants it (a leading `models/` removed). */
export function normalizeModel(model: string): string {
  return model.trim().replace(/^models\//, "");
}

const SUFFIXES: readonly ThinkingSuffix[] = ["nothinking", "maxthinking", "thinking"];

/** Largest alias chain followed (an alias may point at another alias). */
const MAX_ALIAS_HOPS = 4;

function applyAliases(
  name: string,
  aliases: Readonly<Record<string, string>>,
): { name: string; alias: string | null } {
  let current = name;
  let alias: string | null = null;
  for (let hop = 0; hop < MAX_ALIAS_HOPS; hop++) {
    const target = aliasOf(aliases, current);
    if (target === undefined || target === current) break;
    alias ??= current;
    current = normalizeModel(target);
  }
  return { name: current, alias };
}

/**
 * Resolves a client's model name: aliases first (so an alias may point at a suffixed name such as
 * `gemini-2.5-flash-nothinking`), then a `-search` suffix and a thinking suffix (in either order),
 * then aliases of the bare name.
 */
export function resolveModel(
  requested: string,
  aliases: Readonly<Record<string, string>> = {},
): ResolvedModel {
  const first = applyAliases(normalizeModel(requested), aliases);
  let name = first.name;
  let search = false;
  const dropSearch = () => {
    if (!search && name.endsWith("-search") && name.length > 7) {
      search = true;
      name = name.slice(0, -7);
    }
  };
  dropSearch();
  let suffix: ThinkingSuffix | null = null;
  for (const s of SUFFIXES) {
    if (name.endsWith(`-${s}`) && name.length > s.length + 1) {
      suffix = s;
      name = name.slice(0, -(s.length + 1));
      break;
    }
  }
  dropSearch();
  const second = suffix || search ? applyAliases(name, aliases) : { name, alias: null };
  return { model: second.name, suffix, search, alias: first.alias ?? second.alias };
}

/**
 * The upstream model of a request to an endpoint with a Gemini default (embeddings, images,
 * audio): aliases apply, and an OpenAI model name (`openai`) or none at all means `fallback`.
 */
export function defaultedModel(
  requested: string | null | undefined,
  options: { aliases: Readonly<Record<string, string>>; fallback: string; openai: RegExp },
): string {
  const resolved = resolveModel(requested ?? options.fallback, options.aliases);
  return !resolved.alias && options.openai.test(resolved.model) ? options.fallback : resolved.model;
}

/** Validation of an alias map: names and targets are model-like ids, no alias shadows itself. */
export function aliasProblem(aliases: Readonly<Record<string, string>>): string | null {
  const id = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;
  for (const [name, target] of Object.entries(aliases)) {
    if (!id.test(name)) return `Alias name '${name}' is not a valid model id`;
    if (!id.test(target)) return `Alias target '${target}' of '${name}' is not a valid model id`;
    if (normalizeModel(target) === normalizeModel(name)) {
      return `Alias '${name}' points at itself`;
    }
    // A chain of aliases that comes back to where it started resolves nowhere.
    let current = normalizeModel(target);
    for (let hop = 0; hop < MAX_ALIAS_HOPS; hop++) {
      const next = aliasOf(aliases, current);
      if (next === undefined) break;
      current = normalizeModel(next);
      if (current === normalizeModel(name)) {
        return `Aliases '${name}' and '${target}' lead back to each other`;
      }
    }
  }
  return null;
}

/** An alias as `/v1/models` lists it. */
export interface AliasModelEntry {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
  display_name: string;
}

/** The aliases whose target is among `visible` models, as model-list entries. */
export function aliasModels(
  aliases: Readonly<Record<string, string>>,
  visible: readonly { id: string }[],
): AliasModelEntry[] {
  const ids = new Set(visible.map((m) => m.id));
  const out: AliasModelEntry[] = [];
  for (const name of Object.keys(aliases).sort()) {
    const target = resolveModel(name, aliases);
    if (ids.has(name) || !ids.has(target.model)) continue;
    out.push({
      id: name,
      object: "model",
      created: 0,
      owned_by: "gateway",
      display_name: `${name} (alias of ${aliases[name]})`,
    });
  }
  return out;
}
