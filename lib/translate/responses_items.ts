/**
 * `GET /v1/responses/{id}/input_items` (pure): the items a stored answer was made from (every
 * earlier turn's input and output, then its own input), as OpenAI lists them, and one page of
 * them.
 */
import * as z from "zod";
import type { InputItem } from "../openai/responses_schema.ts";

/** A listed item: an input item as OpenAI shows it, or an earlier answer's output item. */
export type ListedItem = { id: string; type: string } & Record<string, unknown>;

/** One stored turn: its answer's id, its input items and its output items (as answered). */
export interface ListedTurn {
  id: string;
  input: InputItem[];
  output: unknown[];
}

/** The id prefix of each kind of input item (output items keep the ids they were given). */
const PREFIX: Partial<Record<InputItem["type"], string>> = {
  message: "msg",
  function_call: "fc",
  function_call_output: "fco",
  custom_tool_call: "ctc",
  custom_tool_call_output: "ctco",
};

/**
 * An input item as OpenAI lists it, with an id made from its turn's answer and its place in that
 * turn (the same item has the same id in the listing of every later answer); null for the echoes
 * of reasoning and searches, whose earlier answer lists the items themselves.
 */
function listedInput(item: InputItem, turnId: string, index: number): ListedItem | null {
  const prefix = PREFIX[item.type];
  if (!prefix) return null;
  const id = `${prefix}_${turnId.replace(/^resp_/, "")}_${index}`;
  if (item.type !== "message") return { id, ...item, status: "completed" };
  const content = typeof item.content !== "string"
    ? item.content
    : item.role === "assistant"
    ? [{ type: "output_text", text: item.content, annotations: [] }]
    : [{ type: "input_text", text: item.content }];
  return { id, type: "message", role: item.role, content, status: "completed" };
}

function isListed(item: unknown): item is ListedItem {
  if (typeof item !== "object" || item === null) return false;
  const { id, type } = item as Record<string, unknown>;
  return typeof id === "string" && typeof type === "string";
}

/** Everything the last of `turns` was answered from, oldest first. */
export function inputItemsOf(turns: ListedTurn[]): ListedItem[] {
  const items: ListedItem[] = [];
  for (const [t, turn] of turns.entries()) {
    for (const [i, item] of turn.input.entries()) {
      const listed = listedInput(item, turn.id, i);
      if (listed) items.push(listed);
    }
    if (t < turns.length - 1) items.push(...turn.output.filter(isListed));
  }
  return items;
}

/** The query of `GET /v1/responses/{id}/input_items`. */
export const InputItemsQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  order: z.enum(["asc", "desc"]).default("desc"),
  after: z.string().min(1).optional(),
  before: z.string().min(1).optional(),
});

/** The query of `GET /v1/responses/{id}/input_items`. */
export type InputItemsQuery = z.infer<typeof InputItemsQuerySchema>;

/** A page of items, or the cursor that names no item. */
export type ItemsPage =
  | { ok: true; data: ListedItem[]; has_more: boolean }
  | { ok: false; param: "after" | "before"; id: string };

/**
 * The page of `items` (oldest first) the query asks for: in its order, after and/or before the
 * items its cursors name, at most `limit` of them (the nearest to a lone `before`).
 */
export function pageOf(items: ListedItem[], q: InputItemsQuery): ItemsPage {
  const ordered = q.order === "asc" ? items : items.toReversed();
  let start = 0;
  let end = ordered.length;
  for (const param of ["after", "before"] as const) {
    const id = q[param];
    if (id === undefined) continue;
    const at = ordered.findIndex((item) => item.id === id);
    if (at < 0) return { ok: false, param, id };
    if (param === "after") start = at + 1;
    else end = at;
  }
  const window = ordered.slice(start, Math.max(start, end));
  const fromEnd = q.before !== undefined && q.after === undefined;
  const data = fromEnd ? window.slice(-q.limit) : window.slice(0, q.limit);
  return { ok: true, data, has_more: window.length > q.limit };
}
