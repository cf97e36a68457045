/**
 * `/v1/files`: multipart uploads streamed straight into Gemini's resumable upload (never the whole
 * file in memory), metadata in KV, and list / get / delete limited to the user key that uploaded.
 * Every upstream operation on a file goes through the Gemini key that uploaded it.
 */
import { Hono } from "hono";
import * as z from "zod";
import { requestAccount } from "../../lib/accounting.ts";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import {
  assertFileKeyUsable,
  deleteOwnedFile,
  discardUpstreamFiles,
  FileAccessError,
  fileGoneUpstream,
  FILES_MODEL,
  getUpstreamFile,
  uploadStream,
} from "../../lib/gemini/files.ts";
import { MAX_FILE_BYTES, UploadTooLargeError } from "../../lib/gemini/upload.ts";
import {
  boundaryOf,
  MultipartError,
  parseMultipart,
  readPartText,
} from "../../lib/media/multipart.ts";
import { fileErrorToOpenAi, OpenAiError, validationError } from "../../lib/openai/errors.ts";
import type { GatewayFailure } from "../../lib/pool/failover.ts";
import {
  type FileRecord,
  getFile,
  listLiveFiles,
  newFileId,
  putFile,
  setFileState,
} from "../../lib/store/files.ts";
import { mimeFromFilename } from "../../lib/translate/chat_request.ts";
import { expiryOf, fileStateOf, toOpenAiFile } from "../../lib/translate/files.ts";
import { isMimeType } from "../../lib/translate/mime.ts";

const ListQuerySchema = z.object({
  after: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(10_000),
  order: z.enum(["asc", "desc"]).default("desc"),
  purpose: z.string().min(1).optional(),
});

/** Largest page of a file listing actually returned (the client pages on with `after`). */
const MAX_PAGE = 1_000;

/**
 * The MIME type a file is uploaded with: the part's own, unless it is missing, generic or not a
 * plain `type/subtype` (which could not even be sent upstream); then the filename's, or generic.
 */
function uploadType(contentType: string | null | undefined, filename: string): string {
  const declared = contentType?.split(";")[0].trim().toLowerCase();
  const valid = declared && isMimeType(declared) ? declared : undefined;
  if (valid && valid !== "application/octet-stream") return valid;
  return mimeFromFilename(filename) ?? "application/octet-stream";
}

/** A file of the calling user, or a 404 that does not reveal whether it exists for someone else. */
async function ownFile(gw: Gateway, id: string, userId: string): Promise<FileRecord> {
  const record = await getFile(gw.kv, id);
  if (!record || record.userId !== userId || record.expiresAt <= gw.now()) {
    throw new OpenAiError(404, `No such file: '${id}'`, {
      param: "file_id",
      code: "file_not_found",
    });
  }
  return record;
}

/** Why a file can no longer be used (its key is gone), or null. */
async function keyProblem(gw: Gateway, record: FileRecord): Promise<string | null> {
  try {
    await assertFileKeyUsable(gw, { keyId: record.keyId, what: `The file '${record.id}'` });
    return null;
  } catch (err) {
    if (err instanceof FileAccessError) return err.message;
    throw err;
  }
}

/**
 * The error of a deletion Gemini did not carry out: the file stays, and stays its owner's (a file
 * without its record would be open to every user key once its key serves again).
 */
async function notDeleted(
  gw: Gateway,
  record: FileRecord,
  failure: GatewayFailure,
): Promise<OpenAiError> {
  const kept = `The file '${record.id}' could not be deleted at Gemini`;
  const key = (await gw.pool.records()).find((k) => k.id === record.keyId);
  if (key && (!key.enabled || key.invalid)) {
    return new OpenAiError(
      409,
      `${kept}: the Gemini key that holds it is ${key.enabled ? "no longer valid" : "disabled"}. ` +
        "It is kept, still yours, until that key serves again or the file expires " +
        `(${new Date(record.expiresAt).toISOString()})`,
      { param: "file_id", code: "file_key_unavailable" },
    );
  }
  if (failure.kind === "client") {
    return new OpenAiError(failure.status, `${kept}: ${failure.message}`, {
      param: "file_id",
      code: "file_not_deleted",
    });
  }
  return new OpenAiError(
    503,
    `${kept} (${failure.message}); it is kept, still yours: retry the deletion later`,
    {
      param: "file_id",
      code: "file_not_deleted",
      headers: { "retry-after": String(failure.retryAfterSeconds ?? 30) },
    },
  );
}

/** Builds the file routes. */
export function filesRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.post("/", async (c) => {
    const boundary = boundaryOf(c.req.header("content-type"));
    if (!boundary || !c.req.raw.body) {
      throw new OpenAiError(
        400,
        "Upload a file as multipart/form-data with the fields 'file' and 'purpose'",
        { param: "file", code: "invalid_content_type" },
      );
    }
    const userKey = c.get("userKey");
    const signal = gw.clients.signalOf(c.req.raw);
    const startedAt = gw.now();
    let purpose: string | null = null;
    let uploaded: Awaited<ReturnType<typeof uploadStream>> | null = null;
    let filename = "file";
    let mimeType = "application/octet-stream";
    try {
      for await (const part of parseMultipart(c.req.raw.body, boundary)) {
        if (part.name === "file" && part.filename !== null) {
          if (uploaded) throw new OpenAiError(400, "Send one file per upload", { param: "file" });
          filename = part.filename || "file";
          mimeType = uploadType(part.contentType, filename);
          uploaded = await uploadStream(gw, part.body, {
            mimeType,
            displayName: filename,
            maxBytes: MAX_FILE_BYTES,
            signal,
          });
        } else if (part.name === "purpose") {
          purpose = (await readPartText(part)).trim();
        } else {
          await part.body.cancel();
        }
      }
    } catch (err) {
      // A file already uploaded when the upload fails (a second file, a broken form) has no
      // record, and so no owner: it goes at once.
      if (uploaded) {
        discardUpstreamFiles(gw, { keyId: uploaded.keyId, names: [uploaded.file.name] });
      }
      if (err instanceof MultipartError) {
        throw new OpenAiError(400, err.message, { code: "invalid_multipart" });
      }
      if (err instanceof UploadTooLargeError) {
        throw new OpenAiError(413, `The file is larger than ${MAX_FILE_BYTES} bytes`, {
          param: "file",
          code: "file_too_large",
        });
      }
      if (err instanceof FileAccessError) throw fileErrorToOpenAi(err, "file");
      throw err;
    }
    if (!uploaded) {
      throw new OpenAiError(400, "The upload has no 'file' field with a file name", {
        param: "file",
        code: "missing_file",
      });
    }
    const now = gw.now();
    const record: FileRecord = {
      id: newFileId(now),
      name: uploaded.file.name,
      uri: uploaded.file.uri,
      mimeType: uploaded.file.mimeType ?? mimeType,
      bytes: uploaded.bytes,
      filename,
      purpose: purpose || "user_data",
      userId: userKey.id,
      keyId: uploaded.keyId,
      state: fileStateOf(uploaded.file.state),
      source: "openai",
      createdAt: now,
      expiresAt: expiryOf(uploaded.file.expirationTime, now),
    };
    await putFile(gw.kv, record, now);
    requestAccount(gw, c.req.raw, {
      model: FILES_MODEL,
      userId: userKey.id,
      attempts: uploaded.attempts,
      startedAt,
    })();
    return c.json(toOpenAiFile(record));
  });

  app.get("/", async (c) => {
    const parsed = ListQuerySchema.safeParse(c.req.query());
    if (!parsed.success) throw validationError(parsed.error);
    const q = parsed.data;
    const { files, hasMore } = await listLiveFiles(gw.kv, c.get("userKey").id, {
      ...q,
      limit: Math.min(q.limit, MAX_PAGE),
      now: gw.now(),
    });
    const data = files.map((f) => toOpenAiFile(f));
    return c.json({
      object: "list",
      data,
      has_more: hasMore,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
    });
  });

  app.get("/:id/content", (c) => {
    throw new OpenAiError(
      400,
      `The content of '${c.req.param("id")}' cannot be downloaded: Gemini does not serve ` +
        "uploaded files back",
      { param: "file_id", code: "download_not_supported" },
    );
  });

  app.get("/:id", async (c) => {
    let record = await ownFile(gw, c.req.param("id"), c.get("userKey").id);
    const problem = await keyProblem(gw, record);
    if (!problem && record.state === "PROCESSING") {
      try {
        const { file } = await getUpstreamFile(gw, {
          keyId: record.keyId,
          name: record.name,
          signal: gw.clients.signalOf(c.req.raw),
          what: `The file '${record.id}'`,
        });
        const state = fileStateOf(file.state);
        if (state !== record.state) {
          record = await setFileState(gw.kv, record, { state, now: gw.now() });
        }
      } catch (err) {
        if (err instanceof FileAccessError) throw fileErrorToOpenAi(err, "file_id");
        throw err;
      }
    }
    return c.json(toOpenAiFile(record, problem));
  });

  app.delete("/:id", async (c) => {
    const record = await ownFile(gw, c.req.param("id"), c.get("userKey").id);
    const result = await deleteOwnedFile(gw, record, gw.clients.signalOf(c.req.raw));
    if (result && !result.ok && !fileGoneUpstream(result.failure)) {
      throw await notDeleted(gw, record, result.failure);
    }
    return c.json({ id: record.id, object: "file", deleted: true });
  });

  return app;
}
