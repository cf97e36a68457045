/**
 * The request log in KV: one small, redacted entry per completed client request (no prompt, no
 * answer, no secret: the Gemini key only masked, the user key only by id).
 *
 * Entries are written in pages, not one KV row each: every usage flush (about once a second, see
 * `lib/accounting.ts`) packs the entries it holds into as few pages as fit in a KV value, under
 * `["rlog", newest start time, page id]`, entries newest first inside (a long stream finishes long
 * after it started, so pages overlap in time). Pages instead of a row per request
 * saved about 15 µs of CPU per request (`tests/bench/inprocess.ts`, non-stream chat: 51 → 37 µs).
 * Pages expire after a week, and the cleanup job trims the log to its newest N entries.
 * Rows written one per entry by older versions are still read and trimmed.
 */
import * as z from "zod";
import { randomId } from "../secrets.ts";

const PREFIX = "rlog";
/** How long an entry lives at most, whatever N is. */
export const REQUEST_LOG_TTL_MS = 7 * 86_400_000;
/** A page's JSON text stays under this many characters (a KV value holds 64 KiB; UTF-16 worst case). */
const PAGE_CHARS = 30_000;

/** One logged request. */
export const RequestLogEntrySchema = z.object({
  id: z.string(),
  /** When the request started (epoch ms). */
  t: z.number(),
  userId: z.string().nullable(),
  model: z.string(),
  /** The key that served it (or the last one tried), masked; null when none was tried. */
  keyId: z.string().nullable(),
  key: z.string().nullable(),
  status: z.number(),
  latencyMs: z.number(),
  inputTokens: z.number(),
  outputTokens: z.number(),
  /** Upstream attempts made. */
  attempts: z.number(),
  /** Failure class (`client`, `no_key`, `upstream`, `stream_error`, `client_closed`...) or null. */
  errorClass: z.string().nullable(),
  /** The request's `X-Request-Id` (null in entries of versions that did not log it). */
  requestId: z.string().nullable().default(null),
  /** The API it used (`chat`, `responses`, `messages`, `gemini`, ...; null in older entries). */
  api: z.string().nullable().default(null),
});

/** A request log entry. */
export type RequestLogEntry = z.infer<typeof RequestLogEntrySchema>;
/** An entry before it is written (its id is given by its page). */
export type NewRequestLogEntry = Omit<RequestLogEntry, "id">;

const nullableString = z.string().nullable();
/** An entry in a page: the fields of `RequestLogEntry` after `id`, in order. */
const RowSchema = z.tuple([
  z.number(),
  nullableString,
  z.string(),
  nullableString,
  nullableString,
  z.number(),
  z.number(),
  z.number(),
  z.number(),
  z.number(),
  nullableString,
  // Added later: rows written before have 11 elements.
  nullableString.optional(),
]).rest(z.unknown());
// Rows keep 12 elements, and what came later goes in arrays beside them: a version that reads a
// row with more elements than it knows would drop the whole page (a rolling deploy, a rollback).
// `.rest` lets this version read rows of later ones.
type Row = z.infer<typeof RowSchema>;
/** A page's value (stored as JSON text). */
const PageSchema = z.object({
  rows: z.array(RowSchema),
  /** Each row's API (added later), by position. */
  api: z.array(nullableString).optional(),
});

/** A page's stored text. */
function pageText(entries: readonly NewRequestLogEntry[]): string {
  return JSON.stringify({ rows: entries.map(rowOf), api: entries.map((e) => e.api) });
}

function rowOf(e: NewRequestLogEntry): Row {
  return [
    e.t,
    e.userId,
    e.model,
    e.keyId,
    e.key,
    e.status,
    e.latencyMs,
    e.inputTokens,
    e.outputTokens,
    e.attempts,
    e.errorClass,
    e.requestId,
  ];
}

function entryOf(id: string, r: Row, api: string | null): RequestLogEntry {
  return {
    id,
    t: r[0],
    userId: r[1],
    model: r[2],
    keyId: r[3],
    key: r[4],
    status: r[5],
    latencyMs: r[6],
    inputTokens: r[7],
    outputTokens: r[8],
    attempts: r[9],
    errorClass: r[10],
    requestId: r[11] ?? null,
    api,
  };
}

/** The KV mutation of one page of `entries` (newest first inside). */
function pageMutation(entries: NewRequestLogEntry[]): Deno.KvMutation {
  const sorted = [...entries].sort((a, b) => b.t - a.t);
  return {
    type: "set",
    key: [PREFIX, sorted[0].t, randomId("r", 6)],
    value: pageText(sorted),
    expireIn: REQUEST_LOG_TTL_MS,
  };
}

/** The KV mutations that store `entries`: as few pages as fit in KV values. */
export function requestLogMutations(entries: readonly NewRequestLogEntry[]): Deno.KvMutation[] {
  const out: Deno.KvMutation[] = [];
  let page: NewRequestLogEntry[] = [];
  let chars = 0;
  for (const e of entries) {
    // The row's JSON text as the page will hold it (escapes included: a control character in a
    // client's model name takes six), and its API.
    const size = JSON.stringify(rowOf(e)).length + (e.api?.length ?? 0) + 8;
    if (page.length && chars + size > PAGE_CHARS) {
      out.push(pageMutation(page));
      page = [];
      chars = 0;
    }
    page.push(e);
    chars += size;
  }
  if (page.length) out.push(pageMutation(page));
  return out;
}

/** The entries of a stored page (or of a row written by an older version), newest first. */
function entriesOf(entry: Deno.KvEntry<unknown>): RequestLogEntry[] {
  const pageId = String(entry.key[2]);
  if (typeof entry.value !== "string") {
    const old = RequestLogEntrySchema.safeParse(entry.value);
    return old.success ? [old.data] : [];
  }
  let json: unknown;
  try {
    json = JSON.parse(entry.value);
  } catch {
    return [];
  }
  const page = PageSchema.safeParse(json);
  if (!page.success) return [];
  const apis = page.data.api ?? [];
  return page.data.rows.map((r, i) => entryOf(`${pageId}.${i}`, r, apis[i] ?? null));
}

/** Newest first; entries of one millisecond by id, so that every entry has one place. */
const newestFirst = (a: RequestLogEntry, b: RequestLogEntry) =>
  b.t - a.t || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

/**
 * The newest entries first, at most `limit`, optionally those after a cursor (`before`, epoch ms:
 * older than it; with `beforeId`, the entry of that id: also the entries of the same millisecond
 * that come after it) and only those of one `X-Request-Id`.
 */
export async function readRequestLog(
  kv: Deno.Kv,
  options: { limit: number; before?: number; beforeId?: string; requestId?: string },
): Promise<RequestLogEntry[]> {
  const { limit, before, beforeId, requestId } = options;
  const afterCursor = (entry: RequestLogEntry) =>
    before === undefined || entry.t < before ||
    (entry.t === before && beforeId !== undefined && entry.id < beforeId);
  const out: RequestLogEntry[] = [];
  // Pages come newest start time first; a page may hold entries older than later pages' newest,
  // so reading stops only when no page left can hold one of the `limit` newest.
  for await (const e of kv.list({ prefix: [PREFIX] }, { reverse: true, batchSize: 100 })) {
    if (out.length >= limit) {
      out.sort(newestFirst);
      out.length = limit;
      if (Number(e.key[1]) < out[limit - 1].t) break;
    }
    for (const entry of entriesOf(e)) {
      if (!afterCursor(entry)) continue;
      if (requestId !== undefined && entry.requestId !== requestId) continue;
      out.push(entry);
    }
  }
  return out.sort(newestFirst).slice(0, limit);
}

/** Deletes every entry but the newest `keep` (by page); returns how many were deleted. */
export async function trimRequestLog(kv: Deno.Kv, keep: number): Promise<number> {
  let kept = 0;
  let deleted = 0;
  let op = kv.atomic();
  let pending = 0;
  const flush = async () => {
    if (pending) await op.commit();
    op = kv.atomic();
    pending = 0;
  };
  for await (const e of kv.list({ prefix: [PREFIX] }, { reverse: true, batchSize: 500 })) {
    const entries = entriesOf(e);
    if (kept + entries.length <= keep) {
      kept += entries.length;
      continue;
    }
    const left = Math.max(0, keep - kept);
    kept += left;
    deleted += entries.length - left;
    if (left === 0 || typeof e.value !== "string") op = op.delete(e.key);
    else {
      // The page on the boundary keeps its newest entries (its key, the newest time, stays).
      const expireIn = Math.max(60_000, Number(e.key[1]) + REQUEST_LOG_TTL_MS - Date.now());
      op = op.set(e.key, pageText(entries.slice(0, left)), { expireIn });
    }
    if (++pending >= 500) await flush();
  }
  await flush();
  return deleted;
}
