/**
 * Tool-call ids that carry Gemini's thought signatures through OpenAI clients (pure).
 *
 * OpenAI clients drop fields they do not know but echo `tool_calls[].id` verbatim, so an id is the
 * one place a signature can ride back. Signatures are long (hundreds of bytes), so the id carries
 * only a hash of it: `call_<12 random>` for a call without one, `call_<12 random><24 hex hash>` for a
 * call with one. The signature itself is kept server-side, keyed by that hash, for a while; when it
 * is gone the request falls back to Google's documented dummy signature.
 */

/** Google's documented stand-in signature for history the model did not produce itself. */
export const DUMMY_THOUGHT_SIGNATURE = "skip_thought_signature_validator";

const PREFIX = "call_";
const RANDOM_LENGTH = 12;
const HASH_LENGTH = 24;
const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** What a tool-call id says about where it came from. */
export type ParsedToolCallId =
  /** Minted by the gateway; `hash` names the stored signature record, if there is one. */
  | { kind: "gateway"; hash: string | null }
  /** Gemini's own function-call id (sent back in `functionCall.id` / `functionResponse.id`). */
  | { kind: "gemini"; id: string };

/** The random part of a new id, from `bytes` random bytes (injected for tests). */
export function randomIdPart(
  bytes: Uint8Array = crypto.getRandomValues(new Uint8Array(12)),
): string {
  let out = "";
  for (let i = 0; i < RANDOM_LENGTH; i++) out += ALPHANUMERIC[bytes[i % bytes.length] % 62];
  return out;
}

/** A tool-call id; with `hash`, one that points at a stored signature. */
export function makeToolCallId(random: string, hash?: string): string {
  return PREFIX + random.slice(0, RANDOM_LENGTH) + (hash ? hash.slice(0, HASH_LENGTH) : "");
}

/** Reads a tool-call id back. */
export function parseToolCallId(id: string): ParsedToolCallId {
  if (!id.startsWith(PREFIX)) return { kind: "gemini", id };
  const rest = id.slice(PREFIX.length);
  if (
    rest.length === RANDOM_LENGTH + HASH_LENGTH && /^[0-9a-f]+$/.test(rest.slice(RANDOM_LENGTH))
  ) {
    return { kind: "gateway", hash: rest.slice(RANDOM_LENGTH) };
  }
  return { kind: "gateway", hash: null };
}

/** The hash under which a signature record is kept: 96 bits of SHA-256, as hex. */
export async function signatureHash(signature: string, geminiId?: string): Promise<string> {
  const data = new TextEncoder().encode(`${signature}\u0000${geminiId ?? ""}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  let hex = "";
  for (const b of digest.subarray(0, HASH_LENGTH / 2)) hex += b.toString(16).padStart(2, "0");
  return hex;
}
