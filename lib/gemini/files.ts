/**
 * Files on the upstream, always through the key that uploaded them: a file lives in that key's
 * Google Cloud project and no other key can see it. Checking that key, polling a file until it is
 * `ACTIVE`, and uploading bytes (for inline media too large to send inline).
 */
import type { Gateway } from "../gateway.ts";
import { type FailoverResult, runWithFailover } from "../pool/failover.ts";
import type { Attempt } from "../store/usage.ts";
import { deleteFile, type FileRecord, type FileState, setFileState } from "../store/files.ts";
import { fileStateOf } from "../translate/files.ts";
import { isMimeType } from "../translate/mime.ts";
import { failoverOptions } from "./generate.ts";
import {
  finalFile,
  type GeminiFile,
  GeminiFileSchema,
  MAX_FILE_BYTES,
  startUpload,
  uploadChunks,
} from "./upload.ts";

/** The pool bookkeeping name of file operations. */
export const FILES_MODEL = "files";
/** How long a request waits for a file to become ACTIVE. */
export const ACTIVE_WAIT_MS = 120_000;

/** A neutral error of the file helpers; routes turn it into their API's shape. */
export class FileAccessError extends Error {
  readonly status: number;
  readonly code: string;
  readonly retryAfterSeconds?: number;

  constructor(
    status: number,
    message: string,
    options: { code: string; retryAfterSeconds?: number },
  ) {
    super(message);
    this.name = "FileAccessError";
    this.status = status;
    this.code = options.code;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/**
 * Throws when the key that holds a file cannot serve right now: a clear 4xx when it is gone for
 * good (deleted, disabled, invalid: upload the file again), 503 with a retry hint while it rests.
 */
export async function assertFileKeyUsable(
  gw: Gateway,
  options: { keyId: string; what: string; advice?: string },
): Promise<void> {
  const { keyId, what } = options;
  const record = (await gw.pool.records()).find((r) => r.id === keyId);
  if (!record || !record.enabled || record.invalid) {
    const why = !record ? "was removed" : !record.enabled ? "is disabled" : "is no longer valid";
    throw new FileAccessError(
      400,
      `${what} is stored with a Gemini key that ${why}; ${
        options.advice ?? "upload the file again"
      }`,
      { code: "file_key_unavailable" },
    );
  }
}

/** The message of a failure on a pinned key, made specific when the key itself went bad. */
export async function pinnedFailure(
  gw: Gateway,
  options: {
    keyId: string;
    what: string;
    failure: { status: number; message: string; kind: string; retryAfterSeconds?: number };
    /** What to do when the key is gone for good (default: upload the file again). */
    advice?: string;
  },
): Promise<FileAccessError> {
  const { keyId, what, failure } = options;
  if (failure.kind === "no_key" || failure.kind === "upstream") {
    await assertFileKeyUsable(gw, { keyId, what, advice: options.advice });
    if (failure.kind === "no_key") {
      return new FileAccessError(
        503,
        `${what} is stored with a Gemini key that is resting after rate limits or errors; retry ` +
          "shortly",
        { code: "file_key_busy", retryAfterSeconds: failure.retryAfterSeconds ?? 30 },
      );
    }
  }
  return new FileAccessError(failure.status, failure.message, { code: "upstream_error" });
}

/**
 * What a file helper throws when failover ended because its caller went away: the caller's own
 * abort (the helpers are steps of a request, which accounts for the client leaving itself).
 */
function aborted(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new DOMException("The operation was aborted", "AbortError");
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    // An abort that came before this pause (e.g. during a poll) fires no event any more.
    if (signal?.aborted) return reject(signal.reason ?? new Error("Aborted"));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason ?? new Error("Aborted"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Whether a failed call on a file's own key says the file is gone at Gemini (deleted there, or
 * expired): a 403 or 404 about the file. Only then, or after a success, may its record go.
 */
export function fileGoneUpstream(failure: { kind: string; status: number }): boolean {
  return failure.kind === "client" && (failure.status === 403 || failure.status === 404);
}

/**
 * Deletes the file of `record` at Gemini and, once Gemini has let go of it (deleted, or no longer
 * there), its record: while the file is still there, a file without a record (an owner) would be
 * open to every user key. A file whose key was removed from the pool can no longer be reached by
 * anyone: its record just goes, and the answer is null. Otherwise Google's answer.
 */
export async function deleteOwnedFile(
  gw: Gateway,
  record: FileRecord,
  signal?: AbortSignal,
): Promise<FailoverResult<string> | null> {
  if (!(await gw.pool.records()).some((k) => k.id === record.keyId)) {
    await deleteFile(gw.kv, record);
    return null;
  }
  const result = await upstreamFileCall(gw, {
    method: "DELETE",
    keyId: record.keyId,
    name: record.name,
    signal,
  });
  if (result.ok || fileGoneUpstream(result.failure)) await deleteFile(gw.kv, record);
  return result;
}

/**
 * Reads or deletes a file at Gemini through the key that holds it; Google's answer (text) is the
 * value.
 */
export async function upstreamFileCall(
  gw: Gateway,
  options: { method: "GET" | "DELETE"; keyId: string; name: string; signal?: AbortSignal },
): Promise<FailoverResult<string>> {
  const failover = await failoverOptions(gw, {
    model: FILES_MODEL,
    pinnedKeyId: options.keyId,
    signal: options.signal,
  });
  return await runWithFailover(gw.pool, failover, async (key) => {
    const res = await gw.client.send(key.secret, {
      method: options.method,
      path: `/v1beta/${options.name}`,
    }, options.signal);
    const text = await res.text();
    return res.ok ? { ok: true, value: text } : { ok: false, status: res.status, body: text };
  });
}

/**
 * Deletes, in the background and through the key that holds them, upstream files the gateway made
 * for one request only (inline media moved to the Files API): best effort, as they would expire
 * in 48 hours anyway; a failure is logged.
 */
export function discardUpstreamFiles(
  gw: Gateway,
  options: { keyId: string; names: readonly string[] },
): void {
  if (!options.names.length) return;
  gw.background.run("Deleting a request's temporary upstream files", async () => {
    const failed: string[] = [];
    for (const name of options.names) {
      const result = await upstreamFileCall(gw, { method: "DELETE", keyId: options.keyId, name });
      if (!result.ok && !fileGoneUpstream(result.failure)) {
        failed.push(`${name} (${result.failure.message})`);
      }
    }
    if (failed.length) throw new Error(`not deleted: ${failed.join(", ")}`);
  });
}

/** Reads a file's upstream resource through its key. */
export async function getUpstreamFile(
  gw: Gateway,
  options: { keyId: string; name: string; signal?: AbortSignal; what: string },
): Promise<{ file: GeminiFile; attempts: Attempt[] }> {
  const failover = await failoverOptions(gw, {
    model: FILES_MODEL,
    pinnedKeyId: options.keyId,
    signal: options.signal,
  });
  const result = await runWithFailover(gw.pool, failover, async (key) => {
    const res = await gw.client.send(key.secret, {
      method: "GET",
      path: `/v1beta/${options.name}`,
    }, options.signal);
    const text = await res.text();
    if (!res.ok) return { ok: false, status: res.status, body: text };
    const parsed = GeminiFileSchema.safeParse(JSON.parse(text));
    return parsed.success
      ? { ok: true, value: parsed.data }
      : { ok: false, status: 502, body: "Upstream sent an unexpected file shape" };
  });
  if (!result.ok) {
    if (result.failure.kind === "client_closed") throw aborted(options.signal);
    throw await pinnedFailure(gw, {
      keyId: options.keyId,
      what: options.what,
      failure: result.failure,
    });
  }
  return { file: result.value, attempts: result.attempts };
}

/**
 * Polls an upstream file through its key until it is ACTIVE, with growing pauses that end early
 * when `signal` aborts. Throws a FileAccessError when the file FAILED (400 `file_failed`) or is
 * still PROCESSING after `maxWaitMs` (409 `file_processing`). `onState` sees each state change;
 * returns the last upstream resource read (none when `file` was ACTIVE already).
 */
export async function pollUntilActive(
  gw: Gateway,
  file: { name: string; state?: string },
  options: {
    keyId: string;
    what: string;
    signal?: AbortSignal;
    maxWaitMs?: number;
    onState?: (state: FileState) => Promise<void>;
  },
): Promise<GeminiFile | undefined> {
  const { what } = options;
  let state = fileStateOf(file.state);
  let latest: GeminiFile | undefined;
  let waited = 0;
  let pause = 250;
  while (state !== "ACTIVE") {
    if (state === "FAILED") {
      throw new FileAccessError(400, `${what} failed processing upstream`, { code: "file_failed" });
    }
    if (waited > 0) {
      if (waited >= (options.maxWaitMs ?? ACTIVE_WAIT_MS)) {
        throw new FileAccessError(
          409,
          `${what} is still being processed upstream; retry in a minute`,
          { code: "file_processing" },
        );
      }
    }
    latest = (await getUpstreamFile(gw, {
      keyId: options.keyId,
      name: file.name,
      signal: options.signal,
      what,
    })).file;
    const next = fileStateOf(latest.state);
    if (next !== state) await options.onState?.(next);
    state = next;
    if (state === "PROCESSING") {
      await delay(pause, options.signal);
      waited += pause;
      pause = Math.min(pause * 2, 5_000);
    }
  }
  return latest;
}

/** Waits until a file is ACTIVE (polling with growing pauses); returns the updated record. */
export async function waitUntilActive(
  gw: Gateway,
  record: FileRecord,
  options: { signal?: AbortSignal; maxWaitMs?: number } = {},
): Promise<FileRecord> {
  let current = record;
  await pollUntilActive(gw, record, {
    keyId: record.keyId,
    what: `The file '${record.id}'`,
    signal: options.signal,
    maxWaitMs: options.maxWaitMs,
    onState: async (state) => {
      current = await setFileState(gw.kv, current, { state, now: gw.now() });
    },
  });
  return current;
}

/** An uploaded file and the key that holds it. */
export interface UploadedFile {
  file: GeminiFile;
  keyId: string;
  bytes: number;
  attempts: Attempt[];
}

/**
 * Uploads a byte stream as a new upstream file: the session is opened with failover (or on
 * `pinnedKeyId`), the bytes then go up through the key that opened it.
 */
export async function uploadStream(
  gw: Gateway,
  source: ReadableStream<Uint8Array>,
  options: {
    mimeType: string;
    displayName?: string;
    size?: number;
    pinnedKeyId?: string;
    maxBytes?: number;
    signal?: AbortSignal;
  },
): Promise<UploadedFile> {
  if (!isMimeType(options.mimeType)) {
    // It would go into an upload header: refused here, before any key is asked.
    await source.cancel().catch(() => {});
    throw new FileAccessError(
      400,
      `${JSON.stringify(options.mimeType.slice(0, 100))} is not a valid MIME type (type/subtype)`,
      { code: "invalid_mime_type" },
    );
  }
  const failover = await failoverOptions(gw, {
    model: FILES_MODEL,
    pinnedKeyId: options.pinnedKeyId,
    signal: options.signal,
  });
  const started = await runWithFailover(gw.pool, failover, async (key) => {
    const r = await startUpload(gw.client, key.secret, {
      mimeType: options.mimeType,
      displayName: options.displayName,
      size: options.size,
      signal: options.signal,
    });
    return r.ok ? { ok: true, value: r.sessionUrl } : r;
  });
  if (!started.ok) {
    await source.cancel().catch(() => {});
    if (started.failure.kind === "client_closed") throw aborted(options.signal);
    if (options.pinnedKeyId) {
      throw await pinnedFailure(gw, {
        keyId: options.pinnedKeyId,
        what: "This request's files",
        failure: started.failure,
      });
    }
    throw new FileAccessError(started.failure.status, started.failure.message, {
      code: started.failure.kind === "no_key" ? "no_available_key" : "upstream_error",
      retryAfterSeconds: started.failure.retryAfterSeconds,
    });
  }
  const key = started.key;
  const { response, bytes } = await uploadChunks(gw.client, source, {
    apiKey: key.secret,
    sessionUrl: started.value,
    finalize: true,
    maxBytes: options.maxBytes ?? MAX_FILE_BYTES,
    signal: options.signal,
  });
  if (!response.ok) {
    const text = await response.text();
    throw new FileAccessError(502, `Uploading to Gemini failed: ${text.slice(0, 300)}`, {
      code: "upstream_error",
    });
  }
  const file = await finalFile(response);
  if (!file) {
    throw new FileAccessError(502, "Gemini did not describe the uploaded file", {
      code: "upstream_error",
    });
  }
  return { file, keyId: key.id, bytes, attempts: started.attempts };
}

/** A byte array as a one-chunk stream. */
export function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}
