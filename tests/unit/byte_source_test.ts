import assert from "node:assert/strict";
import { sourceStream, streamSource } from "../../lib/gemini/byte_source.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function readAll(source: ReturnType<typeof streamSource>): Promise<string[]> {
  const out: string[] = [];
  for (let b = await source.read(); b !== null; b = await source.read()) {
    out.push(decoder.decode(b));
  }
  return out;
}

Deno.test("streamSource reads a byte stream and a default stream, skipping empty chunks", async () => {
  const parts = ["ab", "", "cd"];
  const bytes = new ReadableStream({
    type: "bytes",
    start(c) {
      for (const p of parts) if (p) c.enqueue(encoder.encode(p));
      c.close();
    },
  });
  // A byte stream is read into the source's buffer: what is queued comes in one read.
  assert.deepEqual(await readAll(streamSource(bytes)), ["abcd"]);
  const plain = new ReadableStream<Uint8Array>({
    start(c) {
      for (const p of parts) c.enqueue(encoder.encode(p));
      c.close();
    },
  });
  assert.deepEqual(await readAll(streamSource(plain)), ["ab", "cd"]);
});

Deno.test("streamSource rejects when the stream errors, and cancel reaches the stream", async () => {
  const broken = new ReadableStream<Uint8Array>({
    pull(c) {
      c.error(new Error("cut"));
    },
  });
  await assert.rejects(() => streamSource(broken).read(), /cut/);
  let cancelled: unknown = null;
  const open = new ReadableStream<Uint8Array>({
    pull() {},
    cancel(reason) {
      cancelled = reason ?? "cancelled";
    },
  });
  await streamSource(open).cancel();
  assert.notEqual(cancelled, null);
});

Deno.test("sourceStream hands the source's bytes on as copies, and passes a cancel back", async () => {
  const lent = encoder.encode("xy");
  let cancels = 0;
  let reads = 0;
  const stream = sourceStream({
    read: () => Promise.resolve(reads++ === 0 ? lent : null),
    cancel: () => {
      cancels++;
      return Promise.resolve();
    },
  });
  assert.equal(await new Response(stream).text(), "xy");
  // The source's buffer is still its own (a stream would have taken it).
  assert.equal(lent.byteLength, 2);
  const other = sourceStream({
    read: () => new Promise(() => {}),
    cancel: () => {
      cancels++;
      return Promise.resolve();
    },
  });
  await other.cancel();
  assert.equal(cancels, 1);
});
