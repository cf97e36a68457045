import assert from "node:assert/strict";
import { type ByteSource, streamSource } from "../../lib/gemini/byte_source.ts";
import { readSseData, SseParser } from "../../lib/gemini/sse.ts";

Deno.test("the SSE parser splits events on LF, CRLF and CR blank lines", () => {
  for (const nl of ["\n", "\r\n", "\r"]) {
    const p = new SseParser();
    const text = `data: {"a":1}${nl}${nl}data: {"b":2}${nl}${nl}`;
    assert.deepEqual(p.push(text), ['{"a":1}', '{"b":2}'], JSON.stringify(nl));
    assert.deepEqual(p.flush(), []);
  }
});

Deno.test("the SSE parser handles events and CRLF pairs split across chunks", () => {
  const p = new SseParser();
  const text = 'data: {"x":"hello"}\r\n\r\ndata: {"y":1}\r\n\r\n';
  const out: string[] = [];
  for (const ch of text) out.push(...p.push(ch));
  assert.deepEqual(out, ['{"x":"hello"}', '{"y":1}']);
});

Deno.test("the SSE parser joins multi-line data, ignores comments, and flushes an unterminated event", () => {
  const p = new SseParser();
  assert.deepEqual(p.push(": keep-alive\n\ndata: a\ndata: b\n\nevent: x\ndata:c"), ["a\nb"]);
  assert.deepEqual(p.flush(), ["c"]);
});

Deno.test("readSseData decodes UTF-8 split across byte chunks", async () => {
  const bytes = new TextEncoder().encode('data: {"t":"你好"}\n\n');
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const b of bytes) c.enqueue(new Uint8Array([b]));
      c.close();
    },
  });
  const out: string[] = [];
  for await (const d of readSseData(streamSource(body))) out.push(d);
  assert.deepEqual(out, ['{"t":"你好"}']);
});

Deno.test("a byte stream is read through a reused buffer, events larger than it intact", async () => {
  const big = "x".repeat(20_000);
  const text = `data: {"a":1}\r\n\r\ndata: ${big}\n\ndata: {"b":2}\n\n`;
  const bytes = new TextEncoder().encode(text);
  let pulls = 0;
  const body = new ReadableStream({
    type: "bytes",
    pull(controller) {
      // Two chunks: one cut inside the big event, the rest.
      if (pulls++ === 0) controller.enqueue(bytes.slice(0, 9000));
      else {
        controller.enqueue(bytes.slice(9000));
        controller.close();
      }
    },
  });
  const out: string[] = [];
  for await (const data of readSseData(streamSource(body))) out.push(data);
  assert.deepEqual(out, ['{"a":1}', big, '{"b":2}']);
});

/** A source that hands out `chunks` one per read, and knows its end once they are all read. */
function chunkSource(chunks: string[]): ByteSource & { reads: number } {
  const bytes = chunks.map((c) => new TextEncoder().encode(c));
  return {
    reads: 0,
    get ended() {
      return bytes.length === 0;
    },
    read() {
      this.reads++;
      return Promise.resolve(bytes.shift() ?? null);
    },
    cancel: () => Promise.resolve(),
  };
}

Deno.test("poll hands over the events in hand without waiting, and the end once the source knows it", async () => {
  const source = chunkSource(["data: 1\n\ndata: 2\n\nda", "ta: 3\n\n"]);
  const events = readSseData(source);
  // Nothing read yet: the next event must be waited for.
  assert.equal(events.poll(), null);
  assert.deepEqual(await events.next(), { value: "1", done: false });
  assert.deepEqual(events.poll(), { value: "2", done: false });
  // Half an event is not an event.
  assert.equal(events.poll(), null);
  assert.deepEqual(await events.next(), { value: "3", done: false });
  // Every byte read and the source says it ended: the end is in hand too, with no read.
  assert.deepEqual(events.poll(), { value: undefined, done: true });
  assert.equal(source.reads, 2);
});

Deno.test("poll flushes an unterminated last event once the source has ended", async () => {
  const source = chunkSource(["data: a\n\ndata: b"]);
  const events = readSseData(source);
  assert.deepEqual(await events.next(), { value: "a", done: false });
  assert.deepEqual(events.poll(), { value: "b", done: false });
  assert.deepEqual(events.poll(), { value: undefined, done: true });
  assert.deepEqual(await events.next(), { value: undefined, done: true });
});
