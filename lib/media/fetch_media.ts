/**
 * Server-side fetching of media that clients reference by http(s) URL (`image_url`), safely:
 * only http(s); the host's addresses are resolved and every one checked against private, loopback,
 * link-local and other internal ranges before connecting; plain-http requests then connect to the
 * checked address itself (no second DNS answer can swap it); redirects are followed by hand and
 * checked the same way; the body is capped in size and the whole fetch in time.
 */
import { toBase64 } from "../secrets.ts";
import { isBlockedAddress, isIpLiteral } from "../ip.ts";

/** Why a URL could not be fetched; the message names the URL, never a secret. */
export class MediaFetchError extends Error {
  readonly code: string;

  constructor(message: string, code = "invalid_image_url") {
    super(message);
    this.name = "MediaFetchError";
    this.code = code;
  }
}

/** Fetched media, base64-encoded. */
export interface FetchedMedia {
  mimeType: string;
  data: string;
  bytes: number;
}

/** Options of `MediaFetcher`. */
export interface MediaFetcherOptions {
  /** The fetch to use; tests may inject one. */
  fetch?: typeof fetch;
  /** Resolves a host name to its addresses; default `Deno.resolveDns` (A and AAAA). */
  resolve?: (host: string, signal?: AbortSignal) => Promise<string[]>;
  /** Largest body accepted, in bytes. */
  maxBytes?: number;
  /** Time for the whole fetch, redirects and body included, in ms. */
  timeoutMs?: number;
  maxRedirects?: number;
  /** Host names exempt from the address check (trusted hosts; tests). */
  allowHosts?: readonly string[];
}

/** Default body cap: Gemini's inline limit for a whole request is about 20 MB. */
export const MEDIA_MAX_BYTES = 20 * 1024 * 1024;
/** Default time limit of one media fetch. */
export const MEDIA_TIMEOUT_MS = 15_000;

async function resolveHost(host: string, signal?: AbortSignal): Promise<string[]> {
  const lookups = await Promise.allSettled([
    Deno.resolveDns(host, "A", { signal }),
    Deno.resolveDns(host, "AAAA", { signal }),
  ]);
  signal?.throwIfAborted();
  return lookups.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
}

/** `promise`, or the abort reason of `signal` as soon as it fires (what it waits for is left). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** The type of media whose first bytes name it (PNG, JPEG, GIF, WebP, PDF), or null. */
export function sniff(bytes: Uint8Array): string | null {
  const starts = (...sig: number[]) => sig.every((b, i) => bytes[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return "image/png";
  if (starts(0xff, 0xd8, 0xff)) return "image/jpeg";
  if (starts(0x47, 0x49, 0x46, 0x38)) return "image/gif";
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes[8] === 0x57 && bytes[9] === 0x45) {
    return "image/webp";
  }
  if (starts(0x25, 0x50, 0x44, 0x46)) return "application/pdf";
  return null;
}

/** Fetches media by URL with SSRF protection, a size cap and a time limit. */
export class MediaFetcher {
  #fetch: typeof fetch;
  #resolve: (host: string, signal?: AbortSignal) => Promise<string[]>;
  #maxBytes: number;
  #timeoutMs: number;
  #maxRedirects: number;
  #allow: Set<string>;

  constructor(options: MediaFetcherOptions = {}) {
    this.#fetch = options.fetch ?? fetch;
    this.#resolve = options.resolve ?? resolveHost;
    this.#maxBytes = options.maxBytes ?? MEDIA_MAX_BYTES;
    this.#timeoutMs = options.timeoutMs ?? MEDIA_TIMEOUT_MS;
    this.#maxRedirects = options.maxRedirects ?? 3;
    this.#allow = new Set((options.allowHosts ?? []).map((h) => h.toLowerCase()));
  }

  /**
   * Checks a URL and returns the address to connect to (null: connect by name, TLS verifies);
   * the name's lookup ends with `signal` (the time limit, or the client gone).
   */
  async #check(url: URL, shown: string, signal: AbortSignal): Promise<string | null> {
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new MediaFetchError(`Only http and https URLs can be fetched, not ${shown}`);
    }
    if (url.username || url.password) {
      throw new MediaFetchError(`URLs with credentials are not fetched: ${shown}`);
    }
    const host = url.hostname.toLowerCase();
    if (this.#allow.has(host)) return null;
    if (isIpLiteral(host)) {
      if (isBlockedAddress(host)) {
        throw new MediaFetchError(`Refusing to fetch ${shown}: the address is not public`);
      }
      return null;
    }
    const addresses = await abortable(this.#resolve(host, signal), signal);
    // One message for a name that does not resolve and one that resolves inside: two would tell a
    // user key's holder which names exist on the gateway's network.
    if (addresses.length === 0 || addresses.some(isBlockedAddress)) {
      throw new MediaFetchError(
        `Refusing to fetch ${shown}: its host does not resolve to a public address`,
      );
    }
    return addresses[0];
  }

  /**
   * Fetches `url`; `accept` decides whether the MIME type is usable (e.g. images only).
   * `fallbackType` is the type of a body the server does not type (none, or octet-stream) and
   * whose bytes do not tell (a text file from object storage, named `.md`); `kind` names what
   * was asked for in errors (`image`, `file`).
   */
  async fetch(
    url: string,
    options: {
      accept: (mimeType: string) => boolean;
      signal?: AbortSignal;
      fallbackType?: string | null;
      kind?: "image" | "file";
    },
  ): Promise<FetchedMedia> {
    try {
      return await this.#fetchMedia(url, options);
    } catch (err) {
      // Errors are coded for images; a file's say "file" instead (`invalid_file_url`, ...).
      if (err instanceof MediaFetchError && options.kind === "file") {
        throw new MediaFetchError(err.message, err.code.replace("image", "file"));
      }
      throw err;
    }
  }

  async #fetchMedia(
    url: string,
    options: {
      accept: (mimeType: string) => boolean;
      signal?: AbortSignal;
      fallbackType?: string | null;
    },
  ): Promise<FetchedMedia> {
    const shown = url.length > 200 ? `${url.slice(0, 200)}…` : url;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#timeoutMs);
    const onAbort = () => controller.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      let current: URL;
      try {
        current = new URL(url);
      } catch {
        throw new MediaFetchError(`Not a valid URL: ${shown}`);
      }
      for (let hop = 0;; hop++) {
        const res = await this.#request(current, shown, controller.signal);
        if (res.status >= 300 && res.status < 400 && res.headers.has("location")) {
          await res.body?.cancel();
          if (hop >= this.#maxRedirects) {
            throw new MediaFetchError(`Too many redirects fetching ${shown}`);
          }
          current = new URL(res.headers.get("location")!, current);
          continue;
        }
        if (!res.ok) {
          await res.body?.cancel();
          throw new MediaFetchError(`Fetching ${shown} failed with HTTP ${res.status}`);
        }
        return await this.#read(res, shown, options);
      }
    } catch (err) {
      if (err instanceof MediaFetchError) throw err;
      if (timedOut) {
        throw new MediaFetchError(`Fetching ${shown} took longer than ${this.#timeoutMs} ms`);
      }
      if (options.signal?.aborted) throw err;
      const detail = err instanceof Error ? err.message : String(err);
      throw new MediaFetchError(`Fetching ${shown} failed: ${detail}`);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  async #request(url: URL, shown: string, signal: AbortSignal): Promise<Response> {
    const address = await this.#check(url, shown, signal);
    const init: RequestInit = { redirect: "manual", signal, headers: { accept: "*/*" } };
    if (address && url.protocol === "http:" && typeof Deno.createHttpClient === "function") {
      // Connect to the address that was checked; the Host header keeps virtual hosting working.
      const client = Deno.createHttpClient({ allowHost: true });
      const pinned = new URL(url);
      pinned.hostname = address.includes(":") ? `[${address}]` : address;
      try {
        const res = await this.#fetch(pinned, {
          ...init,
          headers: { accept: "*/*", host: url.host },
          client,
        } as RequestInit);
        const body = res.body;
        if (!body) {
          client.close();
          return res;
        }
        // Close the client once the body is done with, read to the end or cancelled.
        const reader = body.getReader();
        let closed = false;
        const close = () => {
          if (!closed) client.close();
          closed = true;
        };
        const tracked = new ReadableStream<Uint8Array>({
          async pull(controller) {
            try {
              const { value, done } = await reader.read();
              if (done) {
                close();
                controller.close();
              } else controller.enqueue(value);
            } catch (err) {
              close();
              controller.error(err);
            }
          },
          async cancel(reason) {
            await reader.cancel(reason).catch(() => {});
            close();
          },
        });
        return new Response(tracked, { status: res.status, headers: res.headers });
      } catch (err) {
        client.close();
        throw err;
      }
    }
    return await this.#fetch(url, init);
  }

  async #read(
    res: Response,
    shown: string,
    options: { accept: (mimeType: string) => boolean; fallbackType?: string | null },
  ): Promise<FetchedMedia> {
    const { accept } = options;
    const declared = Number(res.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > this.#maxBytes) {
      await res.body?.cancel();
      throw new MediaFetchError(
        `${shown} is ${declared} bytes, more than the ${this.#maxBytes} bytes allowed`,
        "image_too_large",
      );
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = res.body!.getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > this.#maxBytes) {
          throw new MediaFetchError(
            `${shown} is larger than the ${this.#maxBytes} bytes allowed`,
            "image_too_large",
          );
        }
        chunks.push(value);
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    const bytes = new Uint8Array(size);
    let offset = 0;
    for (const c of chunks) {
      bytes.set(c, offset);
      offset += c.byteLength;
    }
    const header = (res.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
    const untyped = !header || header === "application/octet-stream" ||
      header === "binary/octet-stream";
    const mimeType = untyped ? sniff(bytes) ?? options.fallbackType ?? header : header;
    if (!mimeType || !accept(mimeType)) {
      throw new MediaFetchError(
        `${shown} did not return a usable file (content type '${mimeType || "none"}')`,
      );
    }
    return { mimeType, data: toBase64(bytes), bytes: size };
  }
}
