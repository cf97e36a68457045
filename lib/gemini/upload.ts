/**
 * Gemini's resumable upload protocol, streamed: a session is started with JSON metadata, then the
 * bytes go up in 8 MiB chunks (Google's chunk granularity), the last one finalizing. Memory stays
 * at one chunk whatever the file size.
 */
import type { GeminiClient } from "./client.ts";
import * as z from "zod";

/** Upload chunk size: a multiple of Google's `x-goog-upload-chunk-granularity` (8 MiB). */
export const UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024;
/** Gemini's per-file limit. */
export const MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024;

/** The `File` resource Gemini returns. */
export const GeminiFileSchema = z.looseObject({
  name: z.string(),
  displayName: z.string().optional(),
  mimeType: z.string().optional(),
  sizeBytes: z.string().optional(),
  createTime: z.string().optional(),
  expirationTime: z.string().optional(),
  uri: z.string(),
  state: z.string().optional(),
  error: z.unknown().optional(),
});

/** A Gemini file resource. */
export type GeminiFile = z.infer<typeof GeminiFileSchema>;

/** An upstream answer that was not a success. */
export interface UploadFailure {
  ok: false;
  status: number;
  body: string;
}

/** Thrown when the bytes exceed the allowed size; the upstream session is cancelled. */
export class UploadTooLargeError extends Error {
  constructor(limit: number) {
    super(`The file is larger than ${limit} bytes`);
    this.name = "UploadTooLargeError";
  }
}

/** Starts a resumable upload; resolves to the absolute upstream session URL. */
export async function startUpload(
  client: GeminiClient,
  apiKey: string,
  options: {
    mimeType: string;
    displayName?: string;
    size?: number;
    path?: string;
    body?: string;
    signal?: AbortSignal;
  },
): Promise<{ ok: true; sessionUrl: string; response: Response } | UploadFailure> {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-goog-upload-protocol": "resumable",
    "x-goog-upload-command": "start",
    "x-goog-upload-header-content-type": options.mimeType,
  };
  if (options.size !== undefined) {
    headers["x-goog-upload-header-content-length"] = String(options.size);
  }
  const body = options.body ??
    JSON.stringify({ file: options.displayName ? { displayName: options.displayName } : {} });
  const res = await client.send(apiKey, {
    method: "POST",
    path: options.path ?? "/upload/v1beta/files",
    body,
    headers,
  }, options.signal);
  if (!res.ok) return { ok: false, status: res.status, body: await res.text() };
  const sessionUrl = res.headers.get("x-goog-upload-url");
  await res.body?.cancel();
  if (!sessionUrl || !client.isUpstreamUrl(sessionUrl)) {
    return { ok: false, status: 502, body: "Upstream did not return a usable upload URL" };
  }
  return { ok: true, sessionUrl, response: res };
}

/** Options of `uploadChunks`. */
export interface UploadChunksOptions {
  /** The key the session was opened with. */
  apiKey: string;
  /** The absolute upstream session URL. */
  sessionUrl: string;
  /** Offset of the first byte in the upstream session (for a client's later chunk). */
  startOffset?: number;
  /** Whether the last chunk finalizes the upload. */
  finalize: boolean;
  /** Bytes accepted from `source`, at most. */
  maxBytes: number;
  signal?: AbortSignal;
}

/** The result of streaming bytes to a session. */
export interface UploadChunksResult {
  /** The last upstream answer (its body unread). */
  response: Response;
  /** Bytes sent. */
  bytes: number;
}

/**
 * Streams `source` to the upload session in chunks; every chunk but the last is exactly
 * `UPLOAD_CHUNK_BYTES`. Resolves with the last upstream answer, or the first one that failed.
 */
export async function uploadChunks(
  client: GeminiClient,
  source: ReadableStream<Uint8Array>,
  options: UploadChunksOptions,
): Promise<UploadChunksResult> {
  const { apiKey, sessionUrl } = options;
  const reader = source.getReader();
  const buffer = new Uint8Array(UPLOAD_CHUNK_BYTES);
  let filled = 0;
  let carry: Uint8Array | null = null;
  let offset = options.startOffset ?? 0;
  let sent = 0;
  let ended = false;

  const send = async (bytes: Uint8Array, last: boolean): Promise<Response> => {
    const command = last ? (options.finalize ? "upload, finalize" : "upload") : "upload";
    // Sent as a one-chunk stream: fetch copies a Uint8Array body, which for 8 MiB chunks leaves
    // tens of MB of garbage per upload; a stream body is read from our buffer as it is.
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        if (bytes.byteLength) controller.enqueue(bytes);
        controller.close();
      },
    });
    const res = await client.send(apiKey, {
      method: "POST",
      path: "",
      url: sessionUrl,
      body,
      headers: { "x-goog-upload-command": command, "x-goog-upload-offset": String(offset) },
    }, options.signal);
    offset += bytes.byteLength;
    sent += bytes.byteLength;
    return res;
  };

  try {
    while (true) {
      // Fill the buffer from the carried bytes and the source.
      while (filled < buffer.length) {
        let chunk: Uint8Array | null = carry;
        carry = null;
        if (!chunk) {
          const next = await reader.read();
          if (next.done) {
            ended = true;
            break;
          }
          chunk = next.value;
        }
        const take = Math.min(chunk.byteLength, buffer.length - filled);
        buffer.set(chunk.subarray(0, take), filled);
        filled += take;
        if (take < chunk.byteLength) carry = chunk.subarray(take);
        if (sent + filled > options.maxBytes) throw new UploadTooLargeError(options.maxBytes);
      }
      // A full buffer may still be the last one: look one chunk ahead to know.
      if (!ended && !carry) {
        const next = await reader.read();
        if (next.done) ended = true;
        else carry = next.value;
      }
      const last = ended && !carry;
      const res = await send(buffer.subarray(0, filled), last);
      filled = 0;
      if (!res.ok || last) return { response: res, bytes: sent };
      const status = res.headers.get("x-goog-upload-status");
      await res.body?.cancel();
      if (status && status !== "active") {
        return {
          response: new Response(`Upload session is ${status}`, { status: 502 }),
          bytes: sent,
        };
      }
    }
  } catch (err) {
    if (err instanceof UploadTooLargeError) {
      await client.send(apiKey, {
        method: "POST",
        path: "",
        url: sessionUrl,
        headers: { "x-goog-upload-command": "cancel" },
      }).then((r) => r.body?.cancel()).catch(() => {});
    }
    throw err;
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** Reads the `file` of a final upload answer. */
export async function finalFile(res: Response): Promise<GeminiFile | null> {
  const text = await res.text();
  try {
    const json = JSON.parse(text);
    const parsed = GeminiFileSchema.safeParse(json?.file ?? json);
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
