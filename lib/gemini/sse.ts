/**
 * Server-sent events parsing for Gemini streams: events end at a blank line whichever of `\n`,
 * `\r\n` or `\r` ends the lines; the result is the `data` payload of each event.
 */

/** Incremental SSE parser: feed text, get complete event payloads. */
export class SseParser {
  #buffer = "";
  #skipLf = false;

  /** Adds text and returns the `data` payloads of the events it completed. */
  push(text: string): string[] {
    // A chunk that ended in CR has already ended its line; an LF right after it is CRLF's second half.
    if (this.#skipLf && text.startsWith("\n")) text = text.slice(1);
    this.#skipLf = text.endsWith("\r");
    this.#buffer += text.replace(/\r\n?/g, "\n");
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
  const lines: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("data:")) lines.push(line.slice(line[5] === " " ? 6 : 5));
  }
  return lines.length ? lines.join("\n") : null;
}

/** Reads a byte stream of SSE and yields each event's `data` payload. */
export async function* readSseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const parser = new SseParser();
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let finished = false;
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    finished = true;
    yield* parser.push(decoder.decode());
    yield* parser.flush();
  } finally {
    // The consumer stopped early (or reading failed): release the upstream connection.
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
