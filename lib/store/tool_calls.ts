/**
 * Thought signatures behind tool-call ids: `["tool_call", hash]` -> `{signature, geminiId, model}`
 * for a week, plus a bounded in-memory copy so the next turn on the same isolate needs no KV read.
 */
import * as z from "zod";
import type { Background } from "../background.ts";

const PREFIX = "tool_call";
/** How long a signature stays usable; afterwards the dummy signature stands in. */
export const TOOL_CALL_TTL_MS = 7 * 24 * 3_600_000;
/** Records kept in memory per isolate. */
const MEMORY_LIMIT = 5_000;
/** KV values must stay far below 64 KiB; a signature longer than this is not stored. */
const MAX_SIGNATURE_CHARS = 48_000;

/** A stored tool-call record. */
export const ToolCallRecordSchema = z.object({
  signature: z.string().optional(),
  geminiId: z.string().optional(),
  /** The upstream model that made the call (its signature is valid for that model only). */
  model: z.string().optional(),
});

/** One stored tool-call record. */
export type StoredToolCall = z.infer<typeof ToolCallRecordSchema>;

/** The KV key of a tool-call record (for batched lookups). */
export function toolCallKey(hash: string): Deno.KvKey {
  return [PREFIX, hash];
}

/** Remembers tool-call records in memory at once and in KV in the background. */
export class ToolCallStore {
  #kv: Deno.Kv;
  #background: Background;
  #memory = new Map<string, StoredToolCall>();

  constructor(options: { kv: Deno.Kv; background: Background }) {
    this.#kv = options.kv;
    this.#background = options.background;
  }

  /** Keeps a record; returns false when it is too large to keep. */
  remember(hash: string, record: StoredToolCall): boolean {
    if ((record.signature?.length ?? 0) > MAX_SIGNATURE_CHARS) return false;
    this.#memory.delete(hash);
    this.#memory.set(hash, record);
    if (this.#memory.size > MEMORY_LIMIT) this.#memory.delete(this.#memory.keys().next().value!);
    this.#background.run(
      "Storing a thought signature",
      () => this.#kv.set(toolCallKey(hash), record, { expireIn: TOOL_CALL_TTL_MS }),
    );
    return true;
  }

  /** The record in memory, if this isolate made or saw it. */
  peek(hash: string): StoredToolCall | undefined {
    return this.#memory.get(hash);
  }

  /** Adds records read from KV to memory. */
  learn(hash: string, value: unknown): StoredToolCall | undefined {
    const parsed = ToolCallRecordSchema.safeParse(value);
    if (!parsed.success) return undefined;
    this.#memory.set(hash, parsed.data);
    return parsed.data;
  }
}
