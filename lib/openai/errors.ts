/**
 * OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}`, and the conversion of
 * zod validation issues into a message that names the offending field.
 */
import type * as z from "zod";
import { TranslateError } from "../translate/chat_request.ts";

/** OpenAI's error body. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error that routes turn into an OpenAI-shaped response. */
export class OpenAiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    options: {
      type?: string;
      param?: string | null;
      code?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.name = "OpenAiError";
    this.status = status;
    this.type = options.type ?? typeForStatus(status);
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }

  /** The JSON body of this error. */
  toBody(): OpenAiErrorBody {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }

  /** A `Response` carrying this error. */
  toResponse(): Response {
    return Response.json(this.toBody(), { status: this.status, headers: this.headers });
  }
}

/** The OpenAI error `type` conventionally used with an HTTP status. */
export function typeForStatus(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  if (status === 503) return "service_unavailable_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** Formats a zod path as OpenAI's `param` does: `messages[0].content`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/**
 * The issue to report for `issue`: a union none of whose options fit reports the problem of the
 * option that fit furthest (its deepest issue), so `input[2].type` is named rather than `input`.
 */
function reported(issue: z.core.$ZodIssue): { path: PropertyKey[]; message: string } {
  if (issue.code !== "invalid_union" || !issue.errors.length) return issue;
  let best: z.core.$ZodIssue | null = null;
  for (const option of issue.errors) {
    for (const inner of option) {
      if (!inner.path.length) continue;
      if (!best || inner.path.length > best.path.length) best = inner;
    }
  }
  if (!best) return issue;
  const deeper = reported(best);
  return { path: [...issue.path, ...deeper.path], message: deeper.message };
}

/** Turns the first zod issue into a 400 naming the field and what was wrong with it. */
export function validationError(error: z.ZodError): OpenAiError {
  const issue = reported(error.issues[0]);
  const param = formatPath(issue.path);
  const where = param ? `'${param}'` : "request body";
  return new OpenAiError(400, `Invalid value for ${where}: ${issue.message}`, {
    param: param || null,
    code: "invalid_value",
  });
}

/** Converts a pool failure into the OpenAI error a client sees, with retry hints. */
export function failureToOpenAi(failure: {
  status: number;
  message: string;
  kind: string;
  retryAfterSeconds?: number;
  shouldRetry?: boolean;
}): OpenAiError {
  const headers: Record<string, string> = {};
  if (failure.retryAfterSeconds !== undefined) {
    headers["retry-after"] = String(failure.retryAfterSeconds);
  }
  if (failure.shouldRetry === false) headers["x-should-retry"] = "false";
  let code: string | null = null;
  if (failure.kind === "no_key") code = "no_available_key";
  else if (failure.kind === "upstream") code = "upstream_error";
  else if (failure.kind === "client_closed") code = "client_closed";
  else if (failure.status === 404) code = "model_not_found";
  return new OpenAiError(failure.status, failure.message, { code, headers });
}

/** The OpenAI error of a file helper's error (`FileAccessError`), naming `param` when given. */
export function fileErrorToOpenAi(
  err: { status: number; message: string; code: string; retryAfterSeconds?: number },
  param: string | null = null,
): OpenAiError {
  const headers: Record<string, string> = {};
  if (err.retryAfterSeconds !== undefined) headers["retry-after"] = String(err.retryAfterSeconds);
  return new OpenAiError(err.status, err.message, { code: err.code, param, headers });
}

/**
 * Runs a translation of a request (`lib/translate`), turning its `TranslateError` into the OpenAI
 * error naming the field: a 404 for a file that is gone, else a 400.
 */
export function translating<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TranslateError) {
      throw new OpenAiError(err.code === "file_not_found" ? 404 : 400, err.message, {
        param: err.param,
        code: err.code,
      });
    }
    throw err;
  }
}

/**
 * `err` naming its field as `paramOf` does (the caller's name of a chat request's field, for
 * requests spelled as chat requests); other errors as they are.
 */
export function renamingParam(err: unknown, paramOf: (param: string) => string | null): unknown {
  if (!(err instanceof OpenAiError) || err.param === null) return err;
  return new OpenAiError(err.status, err.message, {
    type: err.type,
    code: err.code,
    headers: err.headers,
    param: paramOf(err.param),
  });
}
