/**
 * Which of the gateway's APIs a request path belongs to, for the request log (pure): the label an
 * admin reads to tell a chat app's requests from Codex's or Claude Code's.
 */

/** The APIs a request may use. */
export type ApiName =
  | "chat"
  | "completions"
  | "responses"
  | "messages"
  | "embeddings"
  | "images"
  | "audio"
  | "files"
  | "gemini";

/** The API of a request `path` (no query), or null for one outside the APIs. */
export function apiOf(path: string): ApiName | null {
  if (path.startsWith("/v1beta/") || path.startsWith("/upload/")) return "gemini";
  if (!path.startsWith("/v1/")) return null;
  // Gemini-native calls on /v1 (`/v1/models/{model}:generateContent`).
  if (/^\/v1\/models\/[^/]+:/.test(path)) return "gemini";
  const first = path.slice(4).split("/")[0];
  switch (first) {
    case "chat":
      return "chat";
    case "completions":
    case "responses":
    case "messages":
    case "embeddings":
    case "images":
    case "audio":
    case "files":
      return first;
    default:
      return null;
  }
}
