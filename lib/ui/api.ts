/**
 * The islands' way to the admin JSON API: same-origin fetch with the session cookie and the
 * session's CSRF token (from `<meta name="csrf-token">`), OpenAI-shaped errors turned into
 * `ApiError`, and a return to the login page when the session has ended.
 */

/** The header the CSRF token travels in (must match `CSRF_HEADER` on the server). */
export const CSRF_HEADER = "x-csrf-token";

/** An error answer of the admin API. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string | null;
  readonly param: string | null;

  constructor(
    status: number,
    message: string,
    options: { code?: string | null; param?: string | null } = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = options.code ?? null;
    this.param = options.param ?? null;
  }
}

function csrfToken(): string {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]');
  return meta?.content ?? "";
}

/** Calls the admin API; resolves with the parsed JSON (null for 204), rejects with `ApiError`. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (method !== "GET") headers[CSRF_HEADER] = csrfToken();
  if (body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (err) {
    throw new ApiError(0, err instanceof Error ? err.message : String(err), { code: "network" });
  }
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const error = (json as { error?: { message?: string; code?: string; param?: string } } | null)
      ?.error;
    if (res.status === 401) {
      const next = location.pathname + location.search;
      location.assign(`/admin/login?next=${encodeURIComponent(next)}`);
    }
    throw new ApiError(res.status, error?.message ?? `HTTP ${res.status}`, {
      code: error?.code,
      param: error?.param,
    });
  }
  return json as T;
}

/** The message to show for a failed call. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
