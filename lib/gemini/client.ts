/**
 * The upstream HTTP client: sends one request to Gemini with exactly one credential
 * (`x-goog-api-key`), a timeout for the response headers, and the client's abort signal.
 */
import { Deadlines } from "../deadlines.ts";
import { H1Client } from "./h1.ts";

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
  /** An absolute upstream URL instead of `path` and `query` (an upload session); it must be on
   * the upstream origin. */
  url?: string;
}

/** Options of `GeminiClient`. */
export interface GeminiClientOptions {
  baseUrl: string;
  fetch: typeof fetch;
  timeoutMs: number;
  /** JSON posts go through the gateway's own HTTP/1.1 client (`h1.ts`) instead of `fetch`. */
  direct?: boolean;
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
  #h1: H1Client | null;
  /** The upstream timeout (response headers, and the gap between stream events), one timer. */
  readonly deadlines: Deadlines;

  constructor(options: GeminiClientOptions) {
    this.#options = options;
    this.#h1 = options.direct ? new H1Client({ baseUrl: options.baseUrl }) : null;
    this.deadlines = new Deadlines(options.timeoutMs);
  }

  /** Closes the kept upstream connections (shutdown, tests); later calls open new ones. */
  closeIdle(): void {
    this.#h1?.closeIdle();
  }

  /** The absolute URL of an upstream path. */
  url(path: string, query?: string): string {
    return this.#options.baseUrl + path + (query ? `?${query}` : "");
  }

  /** Whether an absolute URL is on the upstream origin (so a key may be sent to it). */
  isUpstreamUrl(url: string): boolean {
    try {
      return new URL(url).origin === new URL(this.#options.baseUrl).origin;
    } catch {
      return false;
    }
  }

  /**
   * Sends `request` with `apiKey`. Rejects with `UpstreamTimeoutError` when headers take longer
   * than the timeout, or with the abort reason when `signal` (the client going away) fires.
   */
  async send(apiKey: string, request: UpstreamRequest, signal?: AbortSignal): Promise<Response> {
    // A plain record (names lower-cased) is cheaper for `fetch` than a `Headers` built first.
    const headers: Record<string, string> = {};
    if (request.headers) {
      for (const name in request.headers) {
        const lower = name.toLowerCase();
        if (!DROPPED_HEADERS.has(lower)) headers[lower] = request.headers[name];
      }
    }
    if (request.url !== undefined && !this.isUpstreamUrl(request.url)) {
      throw new Error("Refusing to send a key to a URL outside the upstream origin");
    }
    headers["x-goog-api-key"] = apiKey;
    if (typeof request.body === "string" && request.body && !("content-type" in headers)) {
      headers["content-type"] = "application/json";
    }
    // A client already gone gets no upstream call.
    signal?.throwIfAborted();
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const deadline = this.deadlines.start(() => {
      timedOut = true;
      controller.abort();
    });
    try {
      // JSON posts (generate, stream, embeddings, token counts) take the lighter client.
      if (this.#h1 && typeof request.body === "string" && request.url === undefined) {
        return await this.#h1.request({
          method: request.method,
          path: request.query ? `${request.path}?${request.query}` : request.path,
          headers,
          body: request.body,
          signal: controller.signal,
        });
      }
      const init: RequestInit & { duplex?: "half" } = {
        method: request.method,
        headers,
        body: request.body,
        signal: controller.signal,
      };
      // A streamed upload body needs half-duplex.
      if (request.body instanceof ReadableStream) init.duplex = "half";
      return await this.#options.fetch(request.url ?? this.url(request.path, request.query), init);
    } catch (err) {
      if (timedOut) throw new UpstreamTimeoutError(this.#options.timeoutMs);
      throw err;
    } finally {
      // The abort listener stays: a body still streaming must stop when the client goes away.
      this.deadlines.clear(deadline);
    }
  }
}
