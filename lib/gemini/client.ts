/**
 * The upstream HTTP client: sends one request to Gemini with exactly one credential
 * (`x-goog-api-key`), a timeout for the response headers, and the client's abort signal; through
 * the key's outbound proxy when it has one (`fetch` with a `Deno.createHttpClient`).
 */
import { Deadlines } from "../deadlines.ts";
import { type ByteSource, streamSource } from "./byte_source.ts";
import { type H1Answer, H1Client } from "./h1.ts";

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
  /**
   * The key's outbound proxy, when the caller knows it better than the pool's last load (a probe
   * of a record just read); null: direct. Absent: as the pool says.
   */
  proxy?: string | null;
}

/** A JSON post: a path on the upstream and its body. */
export interface JsonPost {
  /** Path beginning with `/`, e.g. `/v1beta/models/gemini-2.5-flash:generateContent`. */
  path: string;
  /** Query string without `?` (never holds a key). */
  query?: string;
  /** The JSON body. */
  body: string;
  /** Extra headers; `authorization`, `x-goog-api-key` and `host` are dropped if present. */
  headers?: Record<string, string>;
  /**
   * Work to do while the upstream works on the request (see `H1Request.sent`); it may not be
   * called (through `fetch`), and may be called on every attempt.
   */
  sent?: () => void;
}

/** The answer to a JSON post: its status and its body, read once (as text, or chunk by chunk). */
export interface UpstreamAnswer {
  readonly status: number;
  readonly ok: boolean;
  /** The whole body as text. */
  text(): Promise<string>;
  /** The body, chunk by chunk. */
  readonly body: ByteSource;
}

const utf8 = new TextDecoder();
const EMPTY: ByteSource = { read: () => Promise.resolve(null), cancel: () => Promise.resolve() };

/** A request target: the path and, when there is one, its query. */
function target(path: string, query: string | undefined): string {
  return query ? `${path}?${query}` : path;
}

/** A `fetch` response as an `UpstreamAnswer`. */
function fetchAnswer(res: Response): UpstreamAnswer {
  // Made when first asked for (a body read as text never is), then the same on every access.
  let body: ByteSource | null = null;
  return {
    status: res.status,
    ok: res.ok,
    text: () => res.text(),
    get body() {
      return body ??= res.body ? streamSource(res.body) : EMPTY;
    },
  };
}

/** An answer of the gateway's own HTTP/1.1 client as an `UpstreamAnswer`. */
function h1Answer(answer: H1Answer): UpstreamAnswer {
  return {
    status: answer.status,
    ok: answer.status >= 200 && answer.status < 300,
    text: () => answer.whole ? Promise.resolve(utf8.decode(answer.whole)) : sourceText(answer.body),
    body: answer.body,
  };
}

/** The whole of `source`, decoded as UTF-8. */
async function sourceText(source: ByteSource): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for (let bytes = await source.read(); bytes !== null; bytes = await source.read()) {
    text += decoder.decode(bytes, { stream: true });
  }
  return text + decoder.decode();
}

/** Options of `GeminiClient`. */
export interface GeminiClientOptions {
  baseUrl: string;
  fetch: typeof fetch;
  timeoutMs: number;
  /** JSON posts go through the gateway's own HTTP/1.1 client (`h1.ts`) instead of `fetch`. */
  direct?: boolean;
  /** The outbound proxy of a key (by its secret), if it has one: its calls go through it. */
  proxyOf?: (apiKey: string) => string | undefined;
}

/** Thrown when the upstream did not send response headers in time. */
export class UpstreamTimeoutError extends Error {
  constructor(ms: number) {
    super(`Upstream did not answer within ${ms} ms`);
    this.name = "UpstreamTimeoutError";
  }
}

/** `fetch` options of a key without a proxy (shared: the hot path allocates nothing for it). */
const DIRECT: { client?: Deno.HttpClient } = Object.freeze({});

/**
 * `fetch`'s options for a call without a proxy: a client of the gateway's own, or `fetch`'s shared
 * one where a platform cannot make one.
 */
function plainClient(): { client?: Deno.HttpClient } {
  try {
    return { client: Deno.createHttpClient({}) };
  } catch {
    return {};
  }
}

const DROPPED_HEADERS = new Set(["authorization", "x-goog-api-key", "host", "content-length"]);
/** Header names and values every HTTP client can send (no line break, nothing above Latin-1). */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Thrown before anything is sent when a request cannot be built (a header no HTTP client can
 * send, made from what a client gave): the request is at fault, not the key it was to go with.
 */
export class UpstreamRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UpstreamRequestError";
  }
}

/**
 * An upstream answer that redirects (a 3xx with a `Location`): not followed (the key would go to
 * another origin with it), it becomes a 502 in Google's shape, upstream trouble like any other.
 * A 3xx without a place to go (never followed anyway) stays as it is.
 */
function refuseRedirect(res: Response): Response {
  if (res.status < 300 || res.status > 399 || !res.headers.has("location")) return res;
  res.body?.cancel().catch(() => {});
  const message =
    `Upstream answered with a redirect (HTTP ${res.status}), which the gateway does not follow`;
  return Response.json({ error: { code: 502, message, status: "UNAVAILABLE" } }, { status: 502 });
}

/** Calls the Gemini REST API with one key per request. */
export class GeminiClient {
  #options: GeminiClientOptions;
  /** The gateway's own HTTP/1.1 client for JSON posts; null: `fetch` (configured, or fallen back to). */
  #h1: H1Client | null;
  /** An exchange over `#h1` has had an answer: it works here, and its failures are the upstream's. */
  #h1Works = false;
  /** The upstream timeout (response headers, and the gap between stream events), one timer. */
  readonly deadlines: Deadlines;
  /** One HTTP client per proxy URL in use (`Deno.createHttpClient`). */
  #proxyClients = new Map<string, Deno.HttpClient>();
  /**
   * `fetch`'s options for a key without a proxy: the gateway's own HTTP client, so that
   * `closeIdle` can close its kept connections too (`fetch`'s shared pool cannot be closed).
   */
  #plain: { client?: Deno.HttpClient } | null = null;

  constructor(options: GeminiClientOptions) {
    this.#options = options;
    this.#h1 = options.direct ? new H1Client({ baseUrl: options.baseUrl }) : null;
    this.deadlines = new Deadlines(options.timeoutMs);
  }

  /** Closes the kept upstream connections (shutdown, tests); later calls open new ones. */
  closeIdle(): void {
    this.#h1?.closeIdle();
    this.#plain?.client?.close();
    this.#plain = null;
    for (const client of this.#proxyClients.values()) client.close();
    this.#proxyClients.clear();
  }

  /**
   * `fetch`'s options for a call with `apiKey`: through its proxy's HTTP client, if it has one
   * (`explicit`, when given, rather than the pool's view).
   */
  #via(apiKey: string, explicit?: string | null): { client?: Deno.HttpClient } {
    const proxy = explicit === undefined ? this.#options.proxyOf?.(apiKey) : explicit ?? undefined;
    if (proxy === undefined) return DIRECT;
    let client = this.#proxyClients.get(proxy);
    if (!client) {
      client = Deno.createHttpClient({ proxy: { url: proxy } });
      this.#proxyClients.set(proxy, client);
    }
    return { client };
  }

  /** `fetch`'s options for a call through `via`: its proxy's client, or the gateway's own. */
  #fetchVia(via: { client?: Deno.HttpClient }): { client?: Deno.HttpClient } {
    return via.client ? via : this.#plain ??= plainClient();
  }

  /** The absolute URL of an upstream path. */
  url(path: string, query?: string): string {
    return this.#options.baseUrl + target(path, query);
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
  send(apiKey: string, request: UpstreamRequest, signal?: AbortSignal): Promise<Response> {
    if (request.url !== undefined && !this.isUpstreamUrl(request.url)) {
      return Promise.reject(
        new Error("Refusing to send a key to a URL outside the upstream origin"),
      );
    }
    let headers: Record<string, string>;
    try {
      headers = this.#headers(apiKey, request.headers, request.body);
    } catch (err) {
      return Promise.reject(err);
    }
    const via = this.#via(apiKey, request.proxy);
    return this.#guarded(signal, (aborted) => {
      const viaFetch = async () => {
        const init: RequestInit & { duplex?: "half"; client?: Deno.HttpClient } = {
          method: request.method,
          headers,
          body: request.body,
          signal: aborted,
          redirect: "manual",
          ...this.#fetchVia(via),
        };
        // A streamed upload body needs half-duplex.
        if (request.body instanceof ReadableStream) init.duplex = "half";
        const url = request.url ?? this.url(request.path, request.query);
        return refuseRedirect(await this.#options.fetch(url, init));
      };
      // JSON posts (generate, stream, embeddings, token counts) take the lighter client, unless
      // the key has a proxy.
      const h1 = via.client ? null : this.#h1;
      if (h1 && typeof request.body === "string" && request.url === undefined) {
        const body = request.body;
        return this.#direct(h1, aborted, viaFetch, async () =>
          refuseRedirect(
            await h1.request({
              method: request.method,
              path: target(request.path, request.query),
              headers,
              body,
              signal: aborted,
            }),
          ));
      }
      return viaFetch();
    });
  }

  /**
   * Posts JSON with `apiKey`, like `send`, and answers without a `Response` or a stream when it
   * can (the hot path: generate, streams, embeddings).
   */
  post(apiKey: string, request: JsonPost, signal?: AbortSignal): Promise<UpstreamAnswer> {
    let headers: Record<string, string>;
    try {
      headers = this.#headers(apiKey, request.headers, request.body);
    } catch (err) {
      return Promise.reject(err);
    }
    const via = this.#via(apiKey);
    return this.#guarded(signal, (aborted) => {
      const viaFetch = async () => {
        const init: RequestInit & { client?: Deno.HttpClient } = {
          method: "POST",
          headers,
          body: request.body,
          signal: aborted,
          redirect: "manual",
          ...this.#fetchVia(via),
        };
        const url = this.url(request.path, request.query);
        return fetchAnswer(refuseRedirect(await this.#options.fetch(url, init)));
      };
      const h1 = via.client ? null : this.#h1;
      if (!h1) return viaFetch();
      return this.#direct(h1, aborted, viaFetch, async () =>
        h1Answer(
          await h1.exchange({
            method: "POST",
            path: target(request.path, request.query),
            headers,
            body: request.body,
            signal: aborted,
            sent: request.sent,
          }),
        ));
    });
  }

  /**
   * A call over the gateway's own HTTP/1.1 client. Until that client has had an answer here, a
   * failure of it (not an abort or a timeout) is tried again through `fetch`: a platform may refuse
   * its connections, or a relay may not speak what it speaks. When `fetch` then gets an answer,
   * every call uses `fetch` from then on, and the switch is logged once. When `fetch` fails too,
   * the transport was not the problem: the first error stands and nothing changes.
   */
  #direct<T>(
    h1: H1Client,
    aborted: AbortSignal,
    viaFetch: () => Promise<T>,
    viaH1: () => Promise<T>,
  ): Promise<T> {
    return this.#h1Works ? viaH1() : this.#untried(h1, aborted, viaFetch, viaH1);
  }

  /** A call while the HTTP/1.1 client has not had an answer yet (see `#direct`). */
  async #untried<T>(
    h1: H1Client,
    aborted: AbortSignal,
    viaFetch: () => Promise<T>,
    viaH1: () => Promise<T>,
  ): Promise<T> {
    try {
      const answer = await viaH1();
      this.#h1Works = true;
      return answer;
    } catch (err) {
      if (this.#h1Works || aborted.aborted) throw err;
      let answer: T;
      try {
        answer = await viaFetch();
      } catch {
        throw err;
      }
      if (this.#h1 === h1) {
        this.#h1 = null;
        h1.closeIdle();
        console.warn(
          `The gateway's HTTP/1.1 client failed to reach ${
            new URL(this.#options.baseUrl).origin
          } (${
            err instanceof Error ? err.message : err
          }) where fetch succeeded: upstream calls use fetch from now on. ` +
            "Set UPSTREAM_HTTP=fetch to skip this first attempt.",
        );
      }
      return answer;
    }
  }

  /**
   * The headers sent upstream: the request's own (less credentials), the key, the type. Throws
   * `UpstreamRequestError` for a header of the request's that cannot be sent.
   */
  #headers(
    apiKey: string,
    extra: Record<string, string> | undefined,
    body: UpstreamRequest["body"],
  ): Record<string, string> {
    // A plain record (names lower-cased) is cheaper for `fetch` than a `Headers` built first.
    const headers: Record<string, string> = {};
    if (extra) {
      for (const name in extra) {
        const lower = name.toLowerCase();
        if (DROPPED_HEADERS.has(lower)) continue;
        const value = extra[name];
        if (!HEADER_NAME.test(lower) || !HEADER_VALUE.test(value)) {
          throw new UpstreamRequestError(
            `The value of the upstream header ${
              HEADER_NAME.test(lower) ? lower : "(a bad name)"
            } cannot be sent: ${JSON.stringify(value.slice(0, 100))}`,
          );
        }
        headers[lower] = value;
      }
    }
    headers["x-goog-api-key"] = apiKey;
    if (typeof body === "string" && body && !("content-type" in headers)) {
      headers["content-type"] = "application/json";
    }
    return headers;
  }

  /**
   * Runs a call with the upstream timeout (until its head) and the caller's signal: `call` gets a
   * signal that fires on either. The signal keeps following the caller's after the head: a body
   * still streaming must stop when the client goes away.
   */
  async #guarded<T>(
    signal: AbortSignal | undefined,
    call: (aborted: AbortSignal) => Promise<T>,
  ): Promise<T> {
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
      return await call(controller.signal);
    } catch (err) {
      if (timedOut) throw new UpstreamTimeoutError(this.#options.timeoutMs);
      throw err;
    } finally {
      this.deadlines.clear(deadline);
    }
  }
}
