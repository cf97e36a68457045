/**
 * The I/O a chat request needs before it can be translated: its files (owner-checked, pinned to the
 * key that uploaded them, waited on until ACTIVE), the thought signatures behind its tool-call ids
 * (one KV round trip for both), and its http(s) images (fetched safely). Afterwards, inline media
 * too large for Gemini's request limit is moved to the Files API on the same key.
 */
import type { Gateway } from "../gateway.ts";
import {
  assertFileKeyUsable,
  discardUpstreamFiles,
  FileAccessError,
  pollUntilActive,
  streamOf,
  uploadStream,
  waitUntilActive,
} from "../gemini/files.ts";
import type { GenerateContentRequest } from "../gemini/types.ts";
import { MediaFetchError } from "../media/fetch_media.ts";
import { fromBase64 } from "../secrets.ts";
import { lookupChatRefs } from "../store/chat_lookup.ts";
import type { FileRecord } from "../store/files.ts";
import type { Attempt } from "../store/usage.ts";
import {
  type ChatRefs,
  type FileRef,
  type InlineData,
  mediaKey,
  mimeFromFilename,
  type ResolvedRefs,
  type ToolCallRecord,
} from "../translate/chat_request.ts";
import { fileErrorToOpenAi, OpenAiError } from "./errors.ts";
import { urlPath } from "../url_path.ts";

/** Largest request body sent to Gemini with inline media; bigger media goes through Files. */
export const INLINE_REQUEST_LIMIT = 19 * 1024 * 1024;

/** The resolved inputs of a chat request. */
export interface ChatInputs {
  refs: ResolvedRefs;
  /** The key every call of this request must use (it holds the request's files). */
  pinnedKeyId?: string;
}

/** Whether Gemini reads a fetched file of this type inline (documents, text, media). */
function readableFile(mime: string): boolean {
  return /^(image|audio|video|text)\//.test(mime) || mime === "application/pdf" ||
    mime === "application/json";
}

/** http(s) media URLs one request may have fetched. */
export const MAX_MEDIA_URLS = 16;
/** Bytes all of one request's fetched media may take together. */
export const MAX_MEDIA_REQUEST_BYTES = 64 * 1024 * 1024;
/** Fetches of one request under way at once. */
const MEDIA_CONCURRENCY = 4;

/**
 * Fetches a request's media URLs (each once per kind), a few at a time, within a count and a
 * total size; the first failure stops the others.
 */
async function fetchMedia(
  gw: Gateway,
  urls: ChatRefs["urls"],
  signal: AbortSignal,
): Promise<Map<string, InlineData>> {
  const out = new Map<string, InlineData>();
  const unique = new Map<string, ChatRefs["urls"][number]>();
  for (const u of urls) {
    const key = mediaKey(u.kind, u.value);
    if (!unique.has(key)) unique.set(key, u);
  }
  if (unique.size > MAX_MEDIA_URLS) {
    throw new OpenAiError(
      400,
      `A request may have at most ${MAX_MEDIA_URLS} media URLs fetched; this one has ` +
        `${unique.size}: upload large sets with /v1/files`,
      { param: [...unique.values()][MAX_MEDIA_URLS].param, code: "too_many_media_urls" },
    );
  }
  // One failure (or the client's going) stops the fetches still under way.
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  let total = 0;
  const queue = [...unique];
  const fetchOne = async ([key, { value: url, param, kind, filename }]: typeof queue[number]) => {
    try {
      const media = await gw.media.fetch(url, {
        accept: kind === "image" ? (mime) => mime.startsWith("image/") : readableFile,
        signal: stop.signal,
        kind,
        fallbackType: kind === "file"
          ? mimeFromFilename(filename) ?? mimeFromFilename(urlPath(url))
          : null,
      });
      total += media.bytes;
      if (total > MAX_MEDIA_REQUEST_BYTES) {
        throw new OpenAiError(
          413,
          `The media URLs of this request add up to more than ${MAX_MEDIA_REQUEST_BYTES} bytes`,
          { param, code: "media_too_large" },
        );
      }
      out.set(key, { mimeType: media.mimeType, data: media.data });
    } catch (err) {
      if (err instanceof MediaFetchError) {
        throw new OpenAiError(400, err.message, { param, code: err.code });
      }
      throw err;
    }
  };
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await fetchOne(next);
  };
  try {
    await Promise.all(Array.from({ length: Math.min(MEDIA_CONCURRENCY, queue.length) }, worker));
  } catch (err) {
    stop.abort(err);
    throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  return out;
}

/** Resolves a chat request's files, signatures and images. */
export function resolveChatInputs(
  gw: Gateway,
  refs: ChatRefs,
  options: { userId: string; signal: AbortSignal },
): Promise<ChatInputs> {
  // Most requests reference nothing: no lookups to start or wait for.
  if (!refs.fileIds.length && !refs.toolCallHashes.length && !refs.urls.length) {
    return Promise.resolve({ refs: { media: new Map(), files: new Map(), toolCalls: new Map() } });
  }
  return resolveRefs(gw, refs, options);
}

async function resolveRefs(
  gw: Gateway,
  refs: ChatRefs,
  options: { userId: string; signal: AbortSignal },
): Promise<ChatInputs> {
  const [lookup, media] = await Promise.all([
    lookupChatRefs(gw.kv, gw.toolCalls, {
      fileIds: refs.fileIds.map((r) => r.value),
      hashes: refs.toolCallHashes,
    }),
    refs.urls.length ? fetchMedia(gw, refs.urls, options.signal) : new Map<string, InlineData>(),
  ]);
  const now = gw.now();
  const records = new Map<string, FileRecord>();
  const params = new Map<string, string>();
  for (const ref of refs.fileIds) {
    const record = lookup.files.get(ref.value);
    if (!record || record.userId !== options.userId) {
      throw new OpenAiError(404, `No such file: '${ref.value}'`, {
        param: ref.param,
        code: "file_not_found",
      });
    }
    if (record.expiresAt <= now) {
      throw new OpenAiError(404, `The file '${ref.value}' has expired; upload it again`, {
        param: ref.param,
        code: "file_expired",
      });
    }
    records.set(record.id, record);
    params.set(record.id, ref.param);
  }
  const keyIds = new Set([...records.values()].map((r) => r.keyId));
  if (keyIds.size > 1) {
    throw new OpenAiError(
      400,
      "These files were uploaded through different Gemini keys and cannot be used in one request; " +
        "upload them again in one go",
      { param: "messages", code: "files_on_different_keys" },
    );
  }
  const pinnedKeyId = keyIds.size ? [...keyIds][0] : undefined;
  const files = new Map<string, FileRef>();
  try {
    if (pinnedKeyId) {
      const first = [...records.values()][0];
      await assertFileKeyUsable(gw, { keyId: pinnedKeyId, what: `The file '${first.id}'` });
    }
    const ready = await Promise.all(
      [...records.values()].map((r) =>
        r.state === "ACTIVE" ? r : waitUntilActive(gw, r, { signal: options.signal })
      ),
    );
    for (const r of ready) files.set(r.id, { uri: r.uri, mimeType: r.mimeType });
  } catch (err) {
    if (err instanceof FileAccessError) throw fileErrorToOpenAi(err);
    throw err;
  }
  const toolCalls = new Map<string, ToolCallRecord>(lookup.toolCalls);
  return { refs: { media, files, toolCalls }, pinnedKeyId };
}

function requestSize(body: GenerateContentRequest): number {
  return JSON.stringify(body).length;
}

/** What `offloadLargeInline` did to a request. */
export interface Offload {
  /** The key every call must now use (the one that holds the request's files). */
  pinnedKeyId?: string;
  /** The upload attempts, for the request's accounting. */
  attempts: Attempt[];
  /**
   * Deletes the files made for this request (in the background, once): called when its answer is
   * complete, or will never be. Does nothing when nothing was moved.
   */
  release: () => void;
}

const NOTHING_TO_RELEASE = () => {};

/** Whether `body` holds inline media (what `offloadLargeInline` may move), without copying. */
function hasInlineData(body: GenerateContentRequest): boolean {
  for (const c of body.contents) {
    for (const p of c.parts) if (p.inlineData) return true;
  }
  return false;
}

/**
 * Moves the largest inline media of `body` to the Files API until the request fits Gemini's inline
 * limit (in place). The files are the request's alone: `release` deletes them; should this fail
 * part way, the files made so far are deleted at once. A request without inline media (most
 * chats) is answered at once, without a promise.
 */
export function offloadLargeInline(
  gw: Gateway,
  body: GenerateContentRequest,
  options: { pinnedKeyId?: string; signal: AbortSignal },
): Offload | Promise<Offload> {
  // Only inline media can move; without any, measuring the request (a full JSON copy) is waste.
  if (!hasInlineData(body)) {
    return { pinnedKeyId: options.pinnedKeyId, attempts: [], release: NOTHING_TO_RELEASE };
  }
  return offloadInline(gw, body, options);
}

async function offloadInline(
  gw: Gateway,
  body: GenerateContentRequest,
  options: { pinnedKeyId?: string; signal: AbortSignal },
): Promise<Offload> {
  let pinnedKeyId = options.pinnedKeyId;
  const attempts: Attempt[] = [];
  const parts = body.contents.flatMap((c) => c.parts).filter((p) => p.inlineData);
  let size = requestSize(body);
  if (size <= INLINE_REQUEST_LIMIT) return { pinnedKeyId, attempts, release: NOTHING_TO_RELEASE };
  parts.sort((a, b) => b.inlineData!.data.length - a.inlineData!.data.length);
  // Every upload goes through one key (the first pins the others to it).
  const made: string[] = [];
  let released = false;
  const release = () => {
    if (released || !pinnedKeyId) return;
    released = true;
    discardUpstreamFiles(gw, { keyId: pinnedKeyId, names: made });
  };
  try {
    for (const part of parts) {
      if (size <= INLINE_REQUEST_LIMIT) break;
      const inline = part.inlineData!;
      let bytes: Uint8Array;
      try {
        bytes = fromBase64(inline.data);
      } catch {
        throw new OpenAiError(400, "Inline media is not valid base64", { code: "invalid_base64" });
      }
      const uploaded = await uploadStream(gw, streamOf(bytes), {
        mimeType: inline.mimeType,
        size: bytes.byteLength,
        pinnedKeyId,
        signal: options.signal,
      });
      attempts.push(...uploaded.attempts);
      pinnedKeyId = uploaded.keyId;
      made.push(uploaded.file.name);
      const file = await pollUntilActive(gw, uploaded.file, {
        keyId: uploaded.keyId,
        what: "Uploaded media",
        signal: options.signal,
      }) ?? uploaded.file;
      delete part.inlineData;
      part.fileData = { mimeType: inline.mimeType, fileUri: file.uri };
      size = requestSize(body);
    }
  } catch (err) {
    release();
    if (err instanceof FileAccessError) throw fileErrorToOpenAi(err);
    throw err;
  }
  return { pinnedKeyId, attempts, release: made.length ? release : NOTHING_TO_RELEASE };
}
