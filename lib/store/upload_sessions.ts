/**
 * Native resumable upload sessions in KV: the gateway hands a Gemini SDK its own upload URL with a
 * random token; `["upload_session", token]` remembers the upstream session URL and the key that
 * opened it (every chunk must use that key), and which user it belongs to.
 */
import * as z from "zod";

const PREFIX = "upload_session";
/** How long an unfinished upload session is kept. */
export const UPLOAD_SESSION_TTL_MS = 2 * 24 * 3_600_000;

/** One upload session. */
export const UploadSessionSchema = z.object({
  /** Upstream session path and query, relative to the Gemini base URL. */
  upstream: z.string(),
  keyId: z.string(),
  userId: z.string(),
  displayName: z.string().optional(),
  createdAt: z.number(),
});

/** An upload session as stored. */
export type UploadSession = z.infer<typeof UploadSessionSchema>;

/** Stores a session under its token. */
export async function putUploadSession(
  kv: Deno.Kv,
  token: string,
  session: UploadSession,
): Promise<void> {
  await kv.set([PREFIX, token], session, { expireIn: UPLOAD_SESSION_TTL_MS });
}

/** Reads a session. */
export async function getUploadSession(kv: Deno.Kv, token: string): Promise<UploadSession | null> {
  const parsed = UploadSessionSchema.safeParse((await kv.get([PREFIX, token])).value);
  return parsed.success ? parsed.data : null;
}

/** Forgets a finished or cancelled session. */
export async function deleteUploadSession(kv: Deno.Kv, token: string): Promise<void> {
  await kv.delete([PREFIX, token]);
}
