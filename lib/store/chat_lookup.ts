/**
 * The one KV round trip a chat request may make before its upstream call: the files it references
 * and the thought signatures behind its tool-call ids, read together (batches of ten, in parallel).
 */
import { fileKey, type FileRecord, toFileRecord } from "./files.ts";
import { type StoredToolCall, toolCallKey, type ToolCallStore } from "./tool_calls.ts";
import { getManyBatched } from "./kv_util.ts";

/** What a chat request's references resolved to. */
export interface ChatLookup {
  files: Map<string, FileRecord>;
  toolCalls: Map<string, StoredToolCall>;
}

/** Reads files by id and tool-call records by hash (memory first for the latter). */
export async function lookupChatRefs(
  kv: Deno.Kv,
  store: ToolCallStore,
  refs: { fileIds: readonly string[]; hashes: readonly string[] },
): Promise<ChatLookup> {
  const out: ChatLookup = { files: new Map(), toolCalls: new Map() };
  const keys: { key: Deno.KvKey; apply: (value: unknown) => void }[] = [];
  for (const id of new Set(refs.fileIds)) {
    keys.push({
      key: fileKey(id),
      apply: (v) => {
        const r = toFileRecord(v);
        if (r) out.files.set(id, r);
      },
    });
  }
  for (const hash of new Set(refs.hashes)) {
    const known = store.peek(hash);
    if (known) {
      out.toolCalls.set(hash, known);
      continue;
    }
    keys.push({
      key: toolCallKey(hash),
      apply: (v) => {
        const r = v === null ? undefined : store.learn(hash, v);
        if (r) out.toolCalls.set(hash, r);
      },
    });
  }
  const entries = await getManyBatched(kv, keys.map((k) => k.key));
  entries.forEach((e, i) => keys[i].apply(e.value));
  return out;
}
