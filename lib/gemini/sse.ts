/**
 * Server-sent events parsing for Gemini streams: events end at a blank line whichever of `\n`,
 * `\r\n` or `\r` ends the lines; the result is the `data` payload of each event.
 */

import type { ByteSource } from "./byte_source.ts";

/** Incremental SSE parser: feed text, get complete event payloads. */
export class SseParser {
  #buffer = "";
  #skipLf = false;

  /** Adds text and returns the `data` payloads of the events it completed. */
  push(text: string): string[] {
    // A chunk that ended in CR has already ended its line; an LF right after it is CRLF's second half.
    if (this.#skipLf && text.startsWith("\n")) text = text.slice(1);
    this.#skipLf = text.endsWith("\r");
    if (text.includes("\r")) {
      // CRLF (what Gemini sends) first, without a regular expression; then any lone CR.
      text = text.replaceAll("\r\n", "\n");
      if (text.includes("\r")) text = text.replaceAll("\r", "\n");
    }
    this.#buffer += text;
    const out: string[] = [];
    let end: number;
    while ((end = this.#buffer.indexOf("\n\n")) !== -1) {
      const block = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 2);
      const data = dataOf(block);
      if (data !== null) out.push(data);
    }
    return out;
  }

  /** Returns the payload of an unterminated last event, if the stream ended without a blank line. */
  flush(): string[] {
    const block = this.#buffer;
    this.#buffer = "";
    this.#skipLf = false;
    const data = dataOf(block.trim());
    return data === null ? [] : [data];
  }
}

function dataOf(block: string): string | null {
  // The usual event: one data line.
  if (block.startsWith("data:") && !block.includes("\n")) {
    return block.slice(block[5] === " " ? 6 : 5);
  }
  const lines: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("data:")) lines.push(line.slice(line[5] === " " ? 6 : 5));
  }
  return lines.length ? lines.join("\n") : null;
}

const STREAM = { stream: true };
const utf8 = new TextDecoder();

/**
 * The `data` payloads of a body of SSE, one by one. A plain class rather than an async generator:
 * the hot path reads a handful of events per request, and a generator's machinery (a promise and a
 * frame per step, `yield*` per event) is most of the cost.
 */
export class SseReader implements AsyncIterableIterator<string> {
  #source: ByteSource;
  #parser = new SseParser();
  /** Decodes a body whose chunks end mid-character, made when one first does. */
  #decoder: TextDecoder | null = null;
  #queue: string[] = [];
  #next = 0;
  /** `open`: reading; `ended`: the body ended (events may be queued); `closed`: released. */
  #state: "open" | "ended" | "closed" = "open";

  constructor(source: ByteSource) {
    this.#source = source;
  }

  /**
   * The next payload when it is in hand (parsed already, or the body has ended): no promise, no
   * turn of the event loop. Null when the next payload is still to be read.
   */
  poll(): IteratorResult<string, undefined> | null {
    if (this.#next < this.#queue.length) {
      const value = this.#queue[this.#next++];
      if (this.#next === this.#queue.length) {
        this.#queue = [];
        this.#next = 0;
      }
      return { value, done: false };
    }
    if (this.#state === "open" && this.#source.ended) this.#end();
    if (this.#next < this.#queue.length) return this.poll();
    if (this.#state !== "open") {
      this.#state = "closed";
      return { value: undefined, done: true };
    }
    return null;
  }

  /**
   * The text of received bytes. A chunk that ends on a whole character, with nothing held from
   * the last, is decoded at once; a streaming decoder is made only for one that does not.
   */
  #decode(bytes: Uint8Array): string {
    if (this.#decoder === null && bytes[bytes.length - 1] < 0x80) return utf8.decode(bytes);
    this.#decoder ??= new TextDecoder();
    return this.#decoder.decode(bytes, STREAM);
  }

  /** The body ended: what the parser still holds is the last of it. */
  #end(): void {
    this.#state = "ended";
    const held = this.#decoder?.decode() ?? "";
    this.#queue = [...this.#parser.push(held), ...this.#parser.flush()];
    this.#next = 0;
  }

  /** The next payload, or done once the body ended (or `return` was called). */
  async next(): Promise<IteratorResult<string, undefined>> {
    while (true) {
      const polled = this.poll();
      if (polled !== null) return polled;
      let bytes: Uint8Array | null;
      try {
        bytes = await this.#source.read();
      } catch (err) {
        // Reading failed: release the upstream connection.
        await this.#close();
        throw err;
      }
      // `return()` may have closed the source while this read was pending.
      if (this.#closed()) continue;
      if (bytes === null) this.#end();
      else {
        // Decoded before the next read: the source's bytes are only lent until then.
        this.#queue = this.#parser.push(this.#decode(bytes));
        this.#next = 0;
      }
    }
  }

  /** Stops reading; a body that did not end is cancelled, releasing the upstream connection. */
  async return(): Promise<IteratorResult<string, undefined>> {
    this.#queue = [];
    this.#next = 0;
    if (this.#state === "open") await this.#close();
    else this.#state = "closed";
    return { value: undefined, done: true };
  }

  #closed(): boolean {
    return this.#state === "closed";
  }

  async #close(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closed";
    await this.#source.cancel().catch(() => {});
  }

  [Symbol.asyncIterator](): SseReader {
    return this;
  }
}

/** The `data` payload of each event of a body of SSE (`streamSource` adapts a `fetch` body). */
export function readSseData(body: ByteSource): SseReader {
  return new SseReader(body);
}
