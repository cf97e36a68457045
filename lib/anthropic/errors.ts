/**
 * Anthropic-shaped errors for `/v1/messages`: `{"type": "error", "error": {"type", "message"}}`.
 * Routes throw `OpenAiError` as everywhere; the app answers it in this shape on Anthropic's paths.
 */
import type { OpenAiError } from "../openai/errors.ts";
import { urlPath } from "../url_path.ts";

/** Anthropic's error body. */
export interface AnthropicErrorBody {
  type: "error";
  error: { type: string; message: string };
}

/** Anthropic's error `type` for an HTTP status. */
export function anthropicErrorType(status: number): string {
  if (status === 400) return "invalid_request_error";
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 413) return "request_too_large";
  if (status === 429) return "rate_limit_error";
  if (status === 503 || status === 529) return "overloaded_error";
  if (status >= 500) return "api_error";
  return "invalid_request_error";
}

/** Anthropic's error `type` for an OpenAI error `type` (of an error inside a chat stream). */
export function anthropicTypeOf(openAiType: string): string {
  switch (openAiType) {
    case "invalid_request_error":
    case "authentication_error":
    case "permission_error":
    case "not_found_error":
    case "rate_limit_error":
      return openAiType;
    case "service_unavailable_error":
      return "overloaded_error";
    default:
      return "api_error";
  }
}

/**
 * The Anthropic body of an error. Anthropic's errors have no `param`: the field leads the message,
 * as in Anthropic's own (`messages[1].content[0]: ...`).
 */
export function anthropicErrorBody(
  err: { status: number; message: string; param?: string | null },
): AnthropicErrorBody {
  const message = err.param && !err.message.includes(err.param)
    ? `${err.param}: ${err.message}`
    : err.message;
  return { type: "error", error: { type: anthropicErrorType(err.status), message } };
}

/** An `OpenAiError` answered in Anthropic's shape (its status and headers kept). */
export function anthropicErrorResponse(err: OpenAiError): Response {
  return Response.json(anthropicErrorBody(err), { status: err.status, headers: err.headers });
}

/**
 * Whether `req` is on Anthropic's API surface, or comes from Anthropic's SDK (which sends its API
 * version): its errors take Anthropic's shape.
 */
export function isAnthropicRequest(req: Request): boolean {
  const path = urlPath(req.url);
  if (path === "/v1/messages" || path.startsWith("/v1/messages/")) return true;
  return path.startsWith("/v1/") && req.headers.has("anthropic-version");
}
