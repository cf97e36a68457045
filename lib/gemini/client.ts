/**
 * The upstream HTTP client: sends one request to Gemini with exactly one credential
 * (`x-goog-api-key`), a timeout for the response headers, and the client's abort signal.
 */

/** One request to the Gemini API, relative to the configured base URL. */
export interface UpstreamRequest {
  method: "GET" | "POST" | "DELETE" | "PATCH";
  /** Path beginning with `/`, e.g. `/v1beta/models/gemini-2.5-flash:generateContent`. */
  path: string;
  /** Query string without `?` (never holds a key). */
  query?: string;
  body?: BodyInit | null;
  /** Extra headers; `authorization`, `x-goog-api-key` and `host` are dropped if present. */
  headers?: Record<string, string>;
}

/** Options of `GeminiClient`. */
export interface GeminiClientOptions {
  baseUrl: string;
  fetch: typeof fetch;
  timeoutMs: number;
}

/** Thrown when the upstream did not send response headers in time. */
export class UpstreamTimeoutError extends Error {
  constructor(ms: number) {
    super(`Upstream did not answer within ${ms} ms`);
    this.name = "UpstreamTimeoutError";
  }
}

const DROPPED_HEADERS = new Set(["authorization", "x-goog-api-key", "host", "content-length"]);

/** Calls the Gemini REST API with one key per request. */
export class GeminiClient {
  #options: GeminiClientOptions;

  constructor(options: GeminiClientOptions) {
    this.#options = options;
  }

  /** The absolute URL of an upstream path. */
  url(path: string, query?: string): string {
    return this.#options.baseUrl + path + (query ? `?${query}` : "");
  }

  /**
   * Sends `request` with `apiKey`. Rejects with `UpstreamTimeoutError` when headers take longer
   * than the timeout, or with the abort reason when `signal` (the client going away) fires.
   */
  async send(apiKey: string, request: UpstreamRequest, signal?: AbortSignal): Promise<Response> {
    const headers = new Headers();
    for (const [name, value] of Object.entries(request.headers ?? {})) {
      if (!DROPPED_HEADERS.has(name.toLowerCase())) headers.set(name, value);
    }
    headers.set("x-goog-api-key", apiKey);
    if (request.body && typeof request.body === "string" && !headers.has("content-type")) {
      headers.set("content-type", "application/json");
    }
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#options.timeoutMs);
    try {
      return await this.#options.fetch(this.url(request.path, request.query), {
        method: request.method,
        headers,
        body: request.body,
        signal: controller.signal,
        // A streamed upload body needs half-duplex.
        ...(request.body instanceof ReadableStream ? { duplex: "half" } : {}),
      } as RequestInit);
    } catch (err) {
      if (timedOut) throw new UpstreamTimeoutError(this.#options.timeoutMs);
      throw err;
    } finally {
      // The abort listener stays: a body still streaming must stop when the client goes away.
      clearTimeout(timer);
    }
  }
}
