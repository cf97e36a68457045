/**
 * A streaming `multipart/form-data` parser: parts are yielded one at a time, each with its body
 * as a stream, so a large file flows through with memory bounded by one network chunk plus the
 * boundary, never the whole upload. A part's body must be read (or cancelled) before the next part
 * is asked for; whatever is left unread is skipped. A chunk read from a part is valid only until
 * the next read (the parser reuses its read buffer): copy what must be kept.
 */

/** One part of a multipart body. */
export interface MultipartPart {
  /** The form field name. */
  name: string;
  /** The file name, when the part is a file. */
  filename: string | null;
  /** The part's Content-Type, when given. */
  contentType: string | null;
  /** The part's bytes. */
  body: ReadableStream<Uint8Array>;
}

/** A malformed multipart body. */
export class MultipartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MultipartError";
  }
}

/** Largest header block of one part. */
const MAX_HEADER_BYTES = 16 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CRLF = encoder.encode("\r\n");
const HEADER_END = encoder.encode("\r\n\r\n");

/** The boundary of a `multipart/form-data` content type, or null. */
export function boundaryOf(contentType: string | null | undefined): string | null {
  if (!contentType || !/^multipart\/form-data/i.test(contentType.trim())) return null;
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = m ? (m[1] ?? m[2]) : null;
  return boundary && boundary.length <= 200 ? boundary : null;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0];
  const last = haystack.length - needle.length;
  let i = from;
  while (i <= last) {
    i = haystack.indexOf(first, i);
    if (i < 0 || i > last) return -1;
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
    i++;
  }
  return -1;
}

/** Length of the longest tail of `buf` that is a proper prefix of `needle`. */
function partialMatch(buf: Uint8Array, needle: Uint8Array): number {
  const max = Math.min(needle.length - 1, buf.length);
  for (let k = max; k > 0; k--) {
    let j = 0;
    const from = buf.length - k;
    while (j < k && buf[from + j] === needle[j]) j++;
    if (j === k) return k;
  }
  return 0;
}

/** Size of the reusable read buffer (byte streams are read into it, allocating nothing). */
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * Buffered reading from a byte stream. A byte stream (as `Deno.serve` request bodies are) is read
 * into one reused buffer, so a large upload makes no garbage per network chunk; bytes handed out
 * are therefore valid only until the next read.
 */
class Scanner {
  #reader: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader;
  #spare: Uint8Array<ArrayBuffer> | null = null;
  buf: Uint8Array = new Uint8Array(0);
  done = false;

  constructor(body: ReadableStream<Uint8Array>) {
    try {
      this.#reader = body.getReader({ mode: "byob" });
      this.#spare = new Uint8Array(READ_BUFFER_BYTES);
    } catch {
      this.#reader = body.getReader();
    }
  }

  async #read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (!this.#spare) return await (this.#reader as ReadableStreamDefaultReader<Uint8Array>).read();
    // What is still buffered lives in the read buffer: keep a copy before it is reused.
    if (this.buf.length) this.buf = this.buf.slice();
    const result = await (this.#reader as ReadableStreamBYOBReader).read(this.#spare);
    if (result.value) this.#spare = new Uint8Array(result.value.buffer as ArrayBuffer);
    return result.done ? { done: true, value: undefined } : { done: false, value: result.value! };
  }

  /** Reads one more chunk into the buffer; false at the end of the stream. */
  async fill(): Promise<boolean> {
    if (this.done) return false;
    const { value, done } = await this.#read();
    if (done) {
      this.done = true;
      return false;
    }
    if (value.length === 0) return true;
    if (this.buf.length === 0) this.buf = value;
    else {
      const next = new Uint8Array(this.buf.length + value.length);
      next.set(this.buf);
      next.set(value, this.buf.length);
      this.buf = next;
    }
    return true;
  }

  consume(n: number): void {
    this.buf = this.buf.subarray(n);
  }

  /** Makes sure at least `n` bytes are buffered; false when the stream ends first. */
  async need(n: number): Promise<boolean> {
    while (this.buf.length < n) if (!(await this.fill())) return false;
    return true;
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

function parseDisposition(value: string): { name: string | null; filename: string | null } {
  const param = (key: string): string | null => {
    const re = new RegExp(`;\\s*${key}=(?:"((?:[^"\\\\]|\\\\.)*)"|([^;]*))`, "i");
    const m = re.exec(value);
    if (!m) return null;
    return m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2].trim();
  };
  let filename = param("filename");
  const extended = param("filename\\*");
  if (extended) {
    const m = /^([^']*)'[^']*'(.*)$/.exec(extended);
    if (m) {
      try {
        filename = decodeURIComponent(m[2]);
      } catch {
        // Keep the plain filename.
      }
    }
  }
  // Browsers and fetch escape quotes and line breaks in file names as %22, %0D and %0A.
  if (filename) {
    filename = filename.replace(/%22/g, '"').replace(/%0D/gi, "\r").replace(/%0A/gi, "\n");
  }
  return { name: param("name"), filename };
}

/**
 * Parses a multipart body. Yields each part once its headers are read; its `body` streams the
 * part's bytes and ends at the next boundary.
 */
export async function* parseMultipart(
  body: ReadableStream<Uint8Array>,
  boundary: string,
): AsyncGenerator<MultipartPart> {
  const scanner = new Scanner(body);
  const dashBoundary = encoder.encode(`--${boundary}`);
  const delimiter = encoder.encode(`\r\n--${boundary}`);
  try {
    // Preamble: skip to the first boundary line.
    while (true) {
      const at = indexOf(scanner.buf, dashBoundary);
      if (at >= 0) {
        scanner.consume(at + dashBoundary.length);
        break;
      }
      if (scanner.buf.length > dashBoundary.length) {
        scanner.consume(scanner.buf.length - dashBoundary.length);
      }
      if (!(await scanner.fill())) throw new MultipartError("The multipart body has no boundary");
    }
    while (true) {
      // After a boundary: "--" ends the body, CRLF starts a part.
      if (!(await scanner.need(2))) throw new MultipartError("The multipart body ended early");
      if (scanner.buf[0] === 0x2d && scanner.buf[1] === 0x2d) return;
      while (true) {
        const eol = indexOf(scanner.buf, CRLF);
        if (eol >= 0) {
          scanner.consume(eol + 2);
          break;
        }
        if (!(await scanner.fill())) throw new MultipartError("The multipart body ended early");
      }

      // Headers.
      let headerEnd: number;
      let headerText: string;
      while (true) {
        if (scanner.buf[0] === 0x0d && scanner.buf[1] === 0x0a) {
          headerEnd = 0;
          headerText = "";
          scanner.consume(2);
          break;
        }
        headerEnd = indexOf(scanner.buf, HEADER_END);
        if (headerEnd >= 0) {
          headerText = decoder.decode(scanner.buf.subarray(0, headerEnd));
          scanner.consume(headerEnd + HEADER_END.length);
          break;
        }
        if (scanner.buf.length > MAX_HEADER_BYTES) {
          throw new MultipartError("A multipart part has headers larger than 16 KiB");
        }
        if (!(await scanner.fill())) throw new MultipartError("The multipart body ended early");
      }
      let name: string | null = null;
      let filename: string | null = null;
      let contentType: string | null = null;
      for (const line of headerText.split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon < 0) continue;
        const key = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (key === "content-disposition") ({ name, filename } = parseDisposition(value));
        else if (key === "content-type") contentType = value;
      }
      if (name === null) throw new MultipartError("A multipart part has no field name");

      // Body: stream bytes until the delimiter, holding back what could be its beginning.
      let finished = false;
      const nextChunk = async (): Promise<Uint8Array | null> => {
        while (!finished) {
          const at = indexOf(scanner.buf, delimiter);
          if (at >= 0) {
            const chunk = scanner.buf.subarray(0, at);
            scanner.consume(at + delimiter.length);
            finished = true;
            return chunk;
          }
          // Hold back only a tail that could begin the delimiter (usually nothing), so the next
          // network chunk rarely has to be copied onto a leftover.
          const safe = scanner.buf.length - partialMatch(scanner.buf, delimiter);
          if (safe > 0) {
            const chunk = scanner.buf.subarray(0, safe);
            scanner.consume(safe);
            return chunk;
          }
          if (!(await scanner.fill())) {
            throw new MultipartError("The multipart body ended inside a part");
          }
        }
        return null;
      };
      const part = new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            let chunk = await nextChunk();
            while (chunk !== null && chunk.length === 0) chunk = await nextChunk();
            if (chunk === null) controller.close();
            else controller.enqueue(chunk);
          } catch (err) {
            controller.error(err);
          }
        },
      }, { highWaterMark: 0 });
      yield { name, filename, contentType, body: part };
      // Whatever the consumer did not read of this part is skipped.
      while (await nextChunk() !== null) {
        // discard
      }
    }
  } finally {
    await scanner.cancel();
  }
}

/** Reads a small part fully as text; throws past `maxBytes`. */
export async function readPartText(part: MultipartPart, maxBytes = 64 * 1024): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  // A reader rather than `for await`: Deno 2.5's types (Deno Deploy's) do not make a
  // `ReadableStream` async-iterable, and its type check of the app failed on this one line.
  const reader = part.body.getReader();
  try {
    while (true) {
      const { done, value: chunk } = await reader.read();
      if (done) break;
      size += chunk.byteLength;
      if (size > maxBytes) throw new MultipartError(`The form field '${part.name}' is too large`);
      chunks.push(chunk.slice()); // the parser reuses its buffer
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw err;
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.byteLength;
  }
  return decoder.decode(all);
}
