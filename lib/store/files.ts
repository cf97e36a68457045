/**
 * Uploaded files in KV: one record per file under `["file", id]`, an owner index
 * `["file_by_user", userId, id]` for listing, and a name index `["file_by_name", geminiName]` for
 * requests that name the upstream file. Every entry expires with the upstream file (48 hours).
 */
import * as z from "zod";
import { getManyBatched } from "./kv_util.ts";

const FILE = "file";
const BY_USER = "file_by_user";
const BY_NAME = "file_by_name";
/** Kept a little past the upstream expiry, so a late request gets "expired", not "unknown". */
const GRACE_MS = 3_600_000;

/** Upstream processing state of a file. */
export const FileStateSchema = z.enum(["PROCESSING", "ACTIVE", "FAILED"]);

/** A file's upstream state. */
export type FileState = z.infer<typeof FileStateSchema>;

/** The stored record of one uploaded file. */
export const FileRecordSchema = z.object({
  /** The gateway's id, `file-...`. */
  id: z.string(),
  /** Gemini's resource name, `files/abc123`. */
  name: z.string(),
  /** Gemini's file URI, used in `fileData.fileUri`. */
  uri: z.string(),
  mimeType: z.string(),
  bytes: z.number().int().nonnegative(),
  filename: z.string(),
  purpose: z.string(),
  /** The user key that uploaded it: only that key may see or use it. */
  userId: z.string(),
  /** The Gemini key that uploaded it: every request that uses it must go through this key. */
  keyId: z.string(),
  state: FileStateSchema,
  /** Which API uploaded it: OpenAI's `/v1/files` or Gemini's native upload. */
  source: z.enum(["openai", "native"]),
  createdAt: z.number(),
  expiresAt: z.number(),
});

/** One uploaded file as stored. */
export type FileRecord = z.infer<typeof FileRecordSchema>;

/** The KV key of a file record (for batched lookups). */
export function fileKey(id: string): Deno.KvKey {
  return [FILE, id];
}

/** A new time-ordered file id: `file-` + creation time + randomness. */
export function newFileId(now: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let rand = "";
  for (const b of crypto.getRandomValues(new Uint8Array(16))) rand += alphabet[b % 36];
  return `file-${now.toString(36).padStart(9, "0")}${rand}`;
}

/** Parses a stored value; null when absent or of another shape. */
export function toFileRecord(value: unknown): FileRecord | null {
  const parsed = FileRecordSchema.safeParse(value);
  return parsed.success ? parsed.data : null;
}

/** Stores a file record and its indexes, expiring with the upstream file. */
export async function putFile(kv: Deno.Kv, record: FileRecord, now: number): Promise<void> {
  const expireIn = Math.max(60_000, record.expiresAt - now + GRACE_MS);
  const res = await kv.atomic()
    .set(fileKey(record.id), record, { expireIn })
    .set([BY_USER, record.userId, record.id], record.id, { expireIn })
    .set([BY_NAME, record.name], record.id, { expireIn })
    .commit();
  if (!res.ok) throw new Error(`Storing file ${record.id} failed`);
}

/** Reads one file record. */
export async function getFile(kv: Deno.Kv, id: string): Promise<FileRecord | null> {
  return toFileRecord((await kv.get(fileKey(id))).value);
}

/** Reads the record of an upstream file by its Gemini name (`files/abc`). */
export async function getFileByName(kv: Deno.Kv, name: string): Promise<FileRecord | null> {
  const id = (await kv.get<string>([BY_NAME, name])).value;
  return id ? await getFile(kv, id) : null;
}

/** Options of `listFiles`. */
export interface ListFilesOptions {
  /** Only ids after this one (in the listing order). */
  after?: string;
  limit: number;
  order: "asc" | "desc";
}

/**
 * Lists a user's files, newest first by default; `hasMore` tells whether a next page exists, and
 * `cursor` is the id to list on `after` (the page's last index entry, even without a record).
 */
export async function listFiles(
  kv: Deno.Kv,
  userId: string,
  options: ListFilesOptions,
): Promise<{ files: FileRecord[]; hasMore: boolean; cursor: string | null }> {
  const reverse = options.order === "desc";
  const selector: Deno.KvListSelector = options.after
    ? reverse
      ? { prefix: [BY_USER, userId], end: [BY_USER, userId, options.after] }
      : { prefix: [BY_USER, userId], start: [BY_USER, userId, options.after + "\u0000"] }
    : { prefix: [BY_USER, userId] };
  const ids: string[] = [];
  for await (const entry of kv.list<string>(selector, { reverse, limit: options.limit + 1 })) {
    ids.push(entry.value);
  }
  const hasMore = ids.length > options.limit;
  const page = ids.slice(0, options.limit);
  const files: FileRecord[] = [];
  for (const e of await getManyBatched(kv, page.map(fileKey))) {
    const r = toFileRecord(e.value);
    if (r) files.push(r);
  }
  return { files, hasMore, cursor: page.at(-1) ?? null };
}

/**
 * A page of a user's files that are still live at `now` (and of `purpose`, when given): reads on
 * until the page is full, so expired or filtered records never shorten it; `hasMore` is true only
 * when another such file follows.
 */
export async function listLiveFiles(
  kv: Deno.Kv,
  userId: string,
  q: ListFilesOptions & { now: number; purpose?: string },
): Promise<{ files: FileRecord[]; hasMore: boolean }> {
  const out: FileRecord[] = [];
  let after = q.after;
  while (true) {
    // One more than the page: it tells whether another matching file follows.
    const page = await listFiles(kv, userId, { after, limit: q.limit + 1, order: q.order });
    for (const f of page.files) {
      if (f.expiresAt > q.now && (!q.purpose || f.purpose === q.purpose)) out.push(f);
    }
    if (out.length > q.limit) return { files: out.slice(0, q.limit), hasMore: true };
    if (!page.hasMore || page.cursor === null) return { files: out, hasMore: false };
    after = page.cursor;
  }
}

/** Updates the upstream state of a file (after polling it). */
export async function setFileState(
  kv: Deno.Kv,
  record: FileRecord,
  options: { state: FileState; now: number },
): Promise<FileRecord> {
  const next = { ...record, state: options.state };
  await kv.set(fileKey(record.id), next, {
    expireIn: Math.max(60_000, record.expiresAt - options.now + GRACE_MS),
  });
  return next;
}

/**
 * Removes a file record and its indexes. The name index goes only while it names this record: a
 * newer file may have the same Gemini name (a name chosen at upload, reused once the first file is
 * gone), and it keeps its owner.
 */
export async function deleteFile(kv: Deno.Kv, record: FileRecord): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const byName = await kv.get<string>([BY_NAME, record.name]);
    const op = kv.atomic()
      .delete(fileKey(record.id))
      .delete([BY_USER, record.userId, record.id]);
    if (byName.value === record.id) op.check(byName).delete([BY_NAME, record.name]);
    if ((await op.commit()).ok) return;
  }
  throw new Error(`Deleting file ${record.id} failed: its name index kept changing`);
}
