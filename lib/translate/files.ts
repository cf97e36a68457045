/**
 * Stored files -> OpenAI file objects, and Gemini file resources -> stored fields (pure).
 */
import type { FileRecord, FileState } from "../store/files.ts";

/** OpenAI's file object. */
export interface OpenAiFile {
  id: string;
  object: "file";
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: "uploaded" | "processed" | "error";
  expires_at: number;
  status_details: string | null;
}

/** Gemini's file state, normalized to the three the gateway tracks. */
export function fileStateOf(state: string | undefined): FileState {
  return state === "ACTIVE" || state === "FAILED" ? state : "PROCESSING";
}

/** When a Gemini file expires, in epoch ms (48 hours from `now` when it does not say). */
export function expiryOf(expirationTime: string | undefined, now: number): number {
  const t = expirationTime ? Date.parse(expirationTime) : NaN;
  return Number.isFinite(t) ? t : now + 48 * 3_600_000;
}

/** The OpenAI view of a stored file; `problem` explains a file that can no longer be used. */
export function toOpenAiFile(record: FileRecord, problem: string | null = null): OpenAiFile {
  const status = problem || record.state === "FAILED"
    ? "error"
    : record.state === "ACTIVE"
    ? "processed"
    : "uploaded";
  return {
    id: record.id,
    object: "file",
    bytes: record.bytes,
    created_at: Math.floor(record.createdAt / 1000),
    filename: record.filename,
    purpose: record.purpose,
    status,
    expires_at: Math.floor(record.expiresAt / 1000),
    status_details: problem ??
      (record.state === "FAILED" ? "Gemini could not process the file" : null),
  };
}
