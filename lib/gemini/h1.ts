/**
 * A small HTTP/1.1 client for the upstream's JSON calls (generateContent, its stream, embeddings,
 * countTokens): one origin, keep-alive connections over `Deno.connect` / `Deno.connectTls`, the
 * request written in one piece, the answer read straight from the socket.
 *
 * Why not `fetch`: Deno's `fetch` costs about 50 µs of CPU per call on its own (the `Request`, its
 * header checks, the abort wiring, hyper's client and a body stream fed through a channel), which
 * is half of what a bare forwarder spends per request; this client spends a fraction of that
 * (`tests/bench`: a forwarder on it used 68 instead of 117 µs per request). A body that is already
 * in hand when the head is read is answered as bytes, and a body's end (a chunked stream's last
 * chunk) is seen as soon as its bytes arrive, not a turn of the event loop later.
 *
 * What it does not do, and who does it then: HTTP/2, proxies, uploads of streams, compressed
 * answers. The gateway keeps `fetch` for everything but JSON posts, and for all calls when a proxy
 * is configured, `UPSTREAM_HTTP=fetch`, or this client failed before its first answer where `fetch`
 * got one (see `GeminiClient`).
 */

import { type ByteSource, sourceStream } from "./byte_source.ts";

/** Options of an `H1Client`. */
export interface H1Options {
  /** The upstream base URL, `http(s)://host[:port][/prefix]`. */
  baseUrl: string;
  /** Extra trusted certificate authorities for https (PEM; tests). */
  caCerts?: string[];
}

/** One request: a path on the base URL (query included), headers (lower-case names), a body. */
export interface H1Request {
  method: string;
  /** Path and query below the base URL, e.g. `/v1beta/models/m:generateContent?alt=sse`. */
  path: string;
  headers: Record<string, string>;
  body: string;
  signal?: AbortSignal;
  /**
   * Called once the request is on the wire, while the upstream works on it: work that does not
   * need the answer can be done then instead of after it (on every attempt; keep it idempotent).
   */
  sent?: () => void;
}

/** The upstream broke the exchange (closed, reset, or sent what is not HTTP/1.1). */
export class UpstreamProtocolError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = "UpstreamProtocolError";
  }
}

/** A reused connection that the upstream had closed before it answered: safe to send again. */
class StaleConnection extends Error {}

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();
const READ_BYTES = 16 * 1024;
/** Idle connections kept at most. */
const MAX_IDLE = 256;
/** An idle connection older than this (ms) is closed instead of reused. */
const IDLE_MS = 30_000;
/** Largest response head accepted. */
const MAX_HEAD_BYTES = 64 * 1024;
/** Header names and values that cannot smuggle a line break or another header. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

interface Idle {
  conn: Deno.Conn;
  since: number;
}

/** Keep-alive HTTP/1.1 to one origin. */
export class H1Client {
  #hostname: string;
  #port: number;
  #tls: boolean;
  #hostHeader: string;
  #prefix: string;
  #idle: Idle[] = [];
  #caCerts: string[] | undefined;

  constructor(options: H1Options) {
    const url = new URL(options.baseUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`Not an http(s) URL: ${url.protocol}`);
    }
    this.#tls = url.protocol === "https:";
    // IPv6 literals come bracketed in URLs; Deno.connect takes them bare.
    this.#hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    this.#port = url.port ? Number(url.port) : this.#tls ? 443 : 80;
    this.#hostHeader = url.host;
    this.#prefix = url.pathname.replace(/\/+$/, "");
    this.#caCerts = options.caCerts;
  }

  /** Idle connections now kept (tests). */
  get idleCount(): number {
    return this.#idle.length;
  }

  /**
   * Sends `request` and resolves with the answer once its head has arrived. The signal aborts the
   * exchange at any point (the connection is closed); the body is a byte stream.
   */
  async request(request: H1Request): Promise<Response> {
    const answer = await this.exchange(request);
    const init = { status: answer.status, statusText: answer.statusText, headers: answer.headers };
    if (answer.status === 204 || answer.status === 304) return new Response(null, init);
    if (answer.whole !== null) return new Response(answer.whole, init);
    return new Response(sourceStream(answer.body), init);
  }

  /**
   * Sends `request` and resolves with the answer once its head has arrived, its body to be read
   * from a `ByteSource` (no `Response` or stream is made). The signal aborts the exchange at any
   * point (the connection is closed).
   */
  async exchange(request: H1Request): Promise<H1Answer> {
    const signal = request.signal;
    signal?.throwIfAborted();
    const head = this.#head(request);
    for (let attempt = 0;; attempt++) {
      const reused = attempt === 0 ? this.#checkout() : null;
      const conn = reused ?? await this.#open(signal);
      const exchange = new Exchange(this, conn, signal);
      try {
        return await exchange.run(head, request, reused !== null);
      } catch (err) {
        // A kept connection the upstream had closed meanwhile: once more, on a new one.
        if (err instanceof StaleConnection) continue;
        throw err;
      }
    }
  }

  /** Closes the idle connections (shutdown, tests); the client stays usable. */
  closeIdle(): void {
    for (const { conn } of this.#idle.splice(0)) closeQuietly(conn);
  }

  /** Takes back a connection whose exchange ended cleanly. */
  release(conn: Deno.Conn): void {
    if (this.#idle.length >= MAX_IDLE) return closeQuietly(conn);
    this.#idle.push({ conn, since: performance.now() });
  }

  #checkout(): Deno.Conn | null {
    const now = performance.now();
    while (this.#idle.length > 0) {
      const idle = this.#idle.pop()!;
      if (now - idle.since <= IDLE_MS) return idle.conn;
      closeQuietly(idle.conn);
    }
    return null;
  }

  async #open(signal: AbortSignal | undefined): Promise<Deno.Conn> {
    const target = { hostname: this.#hostname, port: this.#port };
    const opening: Promise<Deno.Conn> = this.#tls
      ? Deno.connectTls({ ...target, alpnProtocols: ["http/1.1"], caCerts: this.#caCerts })
      : Deno.connect(target);
    if (!signal) return await opening;
    // A connection that opens after the caller gave up is closed at once.
    let onAbort: () => void = () => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([opening, aborted]);
    } catch (err) {
      opening.then(closeQuietly, () => {});
      throw err;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** The request's head up to its content-length line, checked: nothing can smuggle a line in. */
  #head(request: H1Request): string {
    if (!TOKEN.test(request.method)) throw new TypeError(`Bad method: ${request.method}`);
    if (!request.path.startsWith("/") || /[^\x21-\x7e]/.test(request.path)) {
      throw new TypeError("Bad request path");
    }
    let head =
      `${request.method} ${this.#prefix}${request.path} HTTP/1.1\r\nhost: ${this.#hostHeader}\r\n`;
    for (const name in request.headers) {
      const value = request.headers[name];
      if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) {
        throw new TypeError(`Bad header ${TOKEN.test(name) ? name : "name"}`);
      }
      if (name === "host" || name === "content-length" || name === "connection") continue;
      head += `${name}: ${value}\r\n`;
    }
    return head;
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // closed already
  }
}

/** How the body of an answer ends. */
type Framing = { kind: "length"; left: number } | { kind: "chunked" } | { kind: "close" };

/** An answer whose head has arrived. */
export interface H1Answer {
  status: number;
  statusText: string;
  /** Header names lower-cased, in the order received. */
  headers: [string, string][];
  /** The whole body, when it had arrived with the head (the exchange is over); else null. */
  whole: Uint8Array<ArrayBuffer> | null;
  /** The body (read it once). */
  body: ByteSource;
}

/** The body of an answer that came whole with its head. */
class WholeBody implements ByteSource {
  #bytes: Uint8Array | null;
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes.length > 0 ? bytes : null;
  }
  get ended(): boolean {
    return this.#bytes === null;
  }
  read(): Promise<Uint8Array | null> {
    const bytes = this.#bytes;
    this.#bytes = null;
    return Promise.resolve(bytes);
  }
  cancel(): Promise<void> {
    this.#bytes = null;
    return Promise.resolve();
  }
}

/** One request and its answer on one connection; once the head is read, the answer's body. */
class Exchange implements ByteSource {
  #client: H1Client;
  #conn: Deno.Conn;
  #signal: AbortSignal | undefined;
  #buf: Uint8Array<ArrayBuffer> = new Uint8Array(READ_BYTES);
  #start = 0;
  #end = 0;
  /** Bytes read from the connection in all (a stale connection reads none). */
  #received = 0;
  #done = false;
  /** The answer was read to its end (else the exchange was cut short). */
  #complete = false;
  #keepAlive = true;
  #abortReason: unknown = undefined;
  #framing: Framing = { kind: "close" };
  #decoder: ChunkedDecoder | null = null;
  #onAbort = () => {
    this.#abortReason = this.#signal!.reason;
    this.#finish(false);
  };

  constructor(client: H1Client, conn: Deno.Conn, signal: AbortSignal | undefined) {
    this.#client = client;
    this.#conn = conn;
    this.#signal = signal;
  }

  async run(head: string, request: H1Request, reused: boolean): Promise<H1Answer> {
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    try {
      // The write is done by the time the op returns (a socket takes a request at once): what
      // `sent` does overlaps with the upstream's work.
      const written = this.#write(this.#message(head, request.body));
      request.sent?.();
      await written;
      return await this.#response();
    } catch (err) {
      this.#finish(false);
      if (this.#abortReason !== undefined) throw this.#abortReason;
      // Nothing came back on a kept connection: it was closed before the request reached it.
      if (reused && this.#received === 0) throw new StaleConnection();
      throw this.#failure(err);
    }
  }

  /** What a failed exchange rejects with: the abort's reason, or the error in plain words. */
  #failure(err: unknown): unknown {
    if (this.#abortReason !== undefined) return this.#abortReason;
    if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) {
      return new UpstreamProtocolError("The upstream connection was closed");
    }
    return err;
  }

  /**
   * The request as bytes: the head, its content-length line, the body. Encoded in the exchange's
   * own buffer (unused until the answer is read) when it fits, so nothing is allocated for it.
   */
  #message(head: string, body: string): Uint8Array {
    // Room for the head (UTF-8 takes at most 3 bytes a character) and its last line.
    const room = head.length * 3 + 40;
    const buf = this.#buf;
    if (room + body.length * 3 <= buf.length) {
      const n = encoder.encodeInto(body, buf.subarray(room)).written;
      const h = encoder.encodeInto(`${head}content-length: ${n}\r\n\r\n`, buf).written;
      buf.copyWithin(h, room, room + n);
      return buf.subarray(0, h + n);
    }
    const bytes = encoder.encode(body);
    const full = `${head}content-length: ${bytes.length}\r\n\r\n`;
    const message = new Uint8Array(full.length * 3 + bytes.length);
    const h = encoder.encodeInto(full, message).written;
    message.set(bytes, h);
    return message.subarray(0, h + bytes.length);
  }

  async #write(message: Uint8Array): Promise<void> {
    let at = 0;
    while (at < message.length) at += await this.#conn.write(message.subarray(at));
  }

  /** Reads more bytes into the buffer; false at the end of the connection. */
  async #fill(): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    else if (this.#end === this.#buf.length) {
      // Full: move the unread bytes to the front, or into a buffer twice as large.
      const live = this.#end - this.#start;
      if (live * 2 <= this.#buf.length) this.#buf.copyWithin(0, this.#start, this.#end);
      else {
        const next = new Uint8Array(this.#buf.length * 2);
        next.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = next;
      }
      this.#start = 0;
      this.#end = live;
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    this.#received += n;
    return true;
  }

  /** Index just past the `\r\n\r\n` that ends a head starting at `from`, or -1. */
  #headEnd(from: number): number {
    const b = this.#buf;
    for (let i = from; i + 3 < this.#end; i++) {
      if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i + 4;
    }
    return -1;
  }

  async #response(): Promise<H1Answer> {
    while (true) {
      let end = this.#headEnd(this.#start);
      while (end < 0) {
        if (this.#end - this.#start > MAX_HEAD_BYTES) {
          throw new UpstreamProtocolError("The upstream sent a response head that is too large");
        }
        if (!(await this.#fill())) {
          throw new UpstreamProtocolError("The upstream closed the connection before it answered");
        }
        end = this.#headEnd(this.#start);
      }
      const head = headText(this.#buf.subarray(this.#start, end - 4));
      this.#start = end;
      const lines = head.split("\r\n");
      const status = statusLine(lines[0]);
      if (!status) throw new UpstreamProtocolError("The upstream did not answer in HTTP/1.1");
      const code = status.code;
      // Interim answers (100 Continue, 103 Early Hints) come before the real one.
      if (code >= 100 && code < 200) continue;
      const headers: [string, string][] = [];
      let length: number | null = null;
      let chunked = false;
      this.#keepAlive = !status.http10;
      for (let i = 1; i < lines.length; i++) {
        const line = lines[i];
        const colon = line.indexOf(":");
        if (colon <= 0) throw new UpstreamProtocolError("The upstream sent a malformed header");
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === "content-length") {
          if (!/^\d+$/.test(value) || (length !== null && length !== Number(value))) {
            throw new UpstreamProtocolError("The upstream sent a bad content-length");
          }
          length = Number(value);
        } else if (name === "transfer-encoding") {
          chunked = tokens(value).includes("chunked");
          if (!chunked) throw new UpstreamProtocolError(`Unsupported transfer-encoding: ${value}`);
        } else if (name === "connection") {
          const options = tokens(value);
          if (options.includes("close")) this.#keepAlive = false;
          if (options.includes("keep-alive")) this.#keepAlive = true;
        }
        headers.push([name, value]);
      }
      const statusText = status.text;
      // No body, or a whole body already in hand: the exchange is over.
      if (code === 204 || code === 304) length = 0;
      if (!chunked && length !== null && this.#end - this.#start >= length) {
        const whole = this.#buf.subarray(this.#start, this.#start + length);
        this.#start += length;
        this.#finish(true);
        return { status: code, statusText, headers, whole, body: new WholeBody(whole) };
      }
      if (chunked) {
        this.#framing = { kind: "chunked" };
        this.#decoder = new ChunkedDecoder();
      } else if (length !== null) this.#framing = { kind: "length", left: length };
      else this.#keepAlive = false; // the body ends with the connection
      return { status: code, statusText, headers, whole: null, body: this };
    }
  }

  /** The next bytes of the body (valid until the next read), or null at its end. */
  async read(): Promise<Uint8Array | null> {
    try {
      while (true) {
        if (this.#done) {
          if (this.#complete) return null;
          throw this.#abortReason ?? new UpstreamProtocolError("The upstream answer was cut short");
        }
        const out = this.#take();
        if (out !== null) return out;
        if (this.#done) continue;
        if (!(await this.#fill())) {
          if (this.#framing.kind !== "close") {
            throw new UpstreamProtocolError("The upstream closed the connection mid-answer");
          }
          this.#finish(true);
        }
      }
    } catch (err) {
      this.#finish(false);
      throw this.#failure(err);
    }
  }

  /** Every body byte has been read, and the body ended cleanly. */
  get ended(): boolean {
    return this.#done && this.#complete;
  }

  /** Abandons the body (the connection is closed unless the body had ended). */
  cancel(): Promise<void> {
    this.#finish(false);
    return Promise.resolve();
  }

  /**
   * The body bytes now in the buffer, or null if none; finishes at the body's end. They are a view
   * of the buffer (or a copy), valid until the next read refills it.
   */
  #take(): Uint8Array | null {
    const framing = this.#framing;
    const available = this.#buf.subarray(this.#start, this.#end);
    let out: Uint8Array;
    if (framing.kind === "length") {
      const n = Math.min(framing.left, available.length);
      out = available.subarray(0, n);
      this.#start += n;
      framing.left -= n;
      if (framing.left === 0) this.#finish(true);
    } else if (framing.kind === "close") {
      this.#start = this.#end;
      out = available;
    } else {
      const result = this.#decoder!.decode(available);
      this.#start += result.used;
      if (result.ended) this.#finish(true);
      out = result.data;
    }
    return out.length > 0 ? out : null;
  }

  /** Ends the exchange once: a clean end gives the connection back, any other closes it. */
  #finish(clean: boolean): void {
    if (this.#done) return;
    this.#done = true;
    this.#complete = clean;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    if (clean && this.#keepAlive && this.#start === this.#end) this.#client.release(this.#conn);
    else closeQuietly(this.#conn);
  }
}

/** Incremental decoder of `Transfer-Encoding: chunked`. */
export class ChunkedDecoder {
  /** Bytes of data still to come in the current chunk; -1 while a size line is expected. */
  #left = -1;
  /** In the trailer section after the last chunk. */
  #trailers = false;
  /** The CRLF after a chunk's data is still due. */
  #crlf = false;
  #ended = false;

  /**
   * Decodes what it can of `input`: the data found, how many input bytes were used (the rest is
   * an incomplete line, to be given again with more), and whether the body ended. The data is a
   * view of `input` when it is one piece of it, else a copy.
   */
  decode(input: Uint8Array): { data: Uint8Array; used: number; ended: boolean } {
    let first: Uint8Array | null = null;
    let pieces: Uint8Array[] | null = null;
    let size = 0;
    let at = 0;
    while (!this.#ended && at < input.length) {
      if (this.#crlf) {
        if (input.length - at < 2) break;
        if (input[at] !== 13 || input[at + 1] !== 10) throw badChunk();
        at += 2;
        this.#crlf = false;
        continue;
      }
      if (this.#left > 0) {
        const n = Math.min(this.#left, input.length - at);
        const piece = input.subarray(at, at + n);
        if (first === null) first = piece;
        else (pieces ??= [first]).push(piece);
        size += n;
        at += n;
        this.#left -= n;
        if (this.#left === 0) {
          this.#left = -1;
          this.#crlf = true;
        }
        continue;
      }
      const eol = lineEnd(input, at);
      if (eol < 0) {
        if (input.length - at > 4096) throw badChunk();
        break;
      }
      const line = at;
      at = eol + 2;
      if (this.#trailers) {
        if (eol === line) this.#ended = true;
        continue;
      }
      const n = chunkSize(input, line, eol);
      if (n === 0) this.#trailers = true;
      else this.#left = n;
    }
    if (pieces === null) return { data: first ?? EMPTY, used: at, ended: this.#ended };
    const data = new Uint8Array(size);
    let offset = 0;
    for (const p of pieces) {
      data.set(p, offset);
      offset += p.length;
    }
    return { data, used: at, ended: this.#ended };
  }
}

const EMPTY = new Uint8Array(0);

/**
 * The size on a chunk's size line (`input[from..eol)`): hex digits, maybe after blanks, maybe
 * followed by blanks and `;` extensions.
 */
function chunkSize(input: Uint8Array, from: number, eol: number): number {
  let i = from;
  while (i < eol && (input[i] === 32 || input[i] === 9)) i++;
  let n = 0;
  let digits = 0;
  for (; i < eol; i++) {
    const c = input[i];
    const d = c >= 48 && c <= 57
      ? c - 48
      : c >= 97 && c <= 102
      ? c - 87
      : c >= 65 && c <= 70
      ? c - 55
      : -1;
    if (d < 0) break;
    if (++digits > 12) throw badChunk();
    n = n * 16 + d;
  }
  if (digits === 0) throw badChunk();
  while (i < eol && (input[i] === 32 || input[i] === 9)) i++;
  if (i < eol && input[i] !== 59) throw badChunk();
  return n;
}

/**
 * The text of a response head, each byte one character (bytes above 0x7f, which no header should
 * hold, become the Latin-1 characters a `Headers` takes). An ASCII head, the usual, takes the
 * faster UTF-8 decoder, which reads ASCII the same.
 */
function headText(bytes: Uint8Array): string {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] > 0x7f) return latin1.decode(bytes);
  }
  return utf8.decode(bytes);
}

/** A status line `HTTP/1.x NNN reason`, or null. */
function statusLine(line: string): { http10: boolean; code: number; text: string } | null {
  if (line.length < 12 || !line.startsWith("HTTP/1.") || line[8] !== " ") return null;
  if (line[7] !== "0" && line[7] !== "1") return null;
  let code = 0;
  for (let i = 9; i < 12; i++) {
    const d = line.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return null;
    code = code * 10 + d;
  }
  if (line.length > 12 && line[12] !== " ") return null;
  return { http10: line[7] === "0", code, text: line.slice(13) };
}

/** The comma-separated tokens of a header value, lower-cased. */
function tokens(value: string): string[] {
  const lower = value.toLowerCase();
  return lower.includes(",") ? lower.split(",").map((v) => v.trim()) : [lower];
}

function lineEnd(input: Uint8Array, from: number): number {
  for (let i = from; i + 1 < input.length; i++) {
    if (input[i] === 13 && input[i + 1] === 10) return i;
  }
  return -1;
}

function badChunk(): UpstreamProtocolError {
  return new UpstreamProtocolError("The upstream sent a malformed chunked body");
}
