/**
 * How a chat stream is written: what the upstream sent together leaves together, as one write
 * (one HTTP chunk), as a pipe in Rust would send it; nothing waits for upstream data that has not
 * arrived. The HTTP chunks are counted on the wire with a raw HTTP/1.1 client, since chunk
 * boundaries survive however TCP splits or joins the bytes.
 */
import assert from "node:assert/strict";
import { startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * An upstream fetch that hands over a stream's body as it came, in pieces: the first piece at
 * once, the others (each event its own piece) once `gate` resolves, all at the same moment.
 */
function piecewiseStreams(gate: Promise<void>): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    const url = input instanceof Request ? input.url : String(input);
    if (!url.includes(":streamGenerateContent") || !res.ok) return res;
    const text = await res.text();
    const events = text.split(/(?<=\r\n\r\n)/).filter((e) => e !== "");
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(encoder.encode(events[0]));
        await gate;
        for (const event of events.slice(1)) controller.enqueue(encoder.encode(event));
        controller.close();
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
}

/** The body chunks of a chunked HTTP/1.1 response, as framed on the wire. */
function chunksOf(raw: Uint8Array): string[] {
  const text = decoder.decode(raw);
  const head = text.indexOf("\r\n\r\n");
  assert.ok(head > 0, "no response head");
  assert.match(text.slice(0, head), /transfer-encoding: chunked/i);
  const chunks: string[] = [];
  let at = head + 4;
  while (true) {
    const eol = text.indexOf("\r\n", at);
    const size = parseInt(text.slice(at, eol), 16);
    assert.ok(Number.isFinite(size), `bad chunk size at ${at}`);
    if (size === 0) break;
    // The SSE text is ASCII apart from JSON escapes, so characters count as bytes here.
    chunks.push(text.slice(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return chunks;
}

/** Posts a streamed chat over a raw connection; resolves with the first bytes and the whole. */
async function rawStream(gw: TestGateway, apiKey: string) {
  const port = Number(new URL(gw.url).port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const body = JSON.stringify({
    model: "gemini-2.5-flash",
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: "Say hello to the tests in five words." }],
  });
  await conn.write(encoder.encode(
    "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n" +
      `authorization: Bearer ${apiKey}\r\ncontent-type: application/json\r\n` +
      `content-length: ${encoder.encode(body).length}\r\n\r\n${body}`,
  ));
  const parts: Uint8Array[] = [];
  let resolveFirst: (text: string) => void = () => {};
  const first = new Promise<string>((resolve) => (resolveFirst = resolve));
  const whole = (async () => {
    const buf = new Uint8Array(65536);
    let seen = "";
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
      seen += decoder.decode(buf.subarray(0, n));
      // The first body bytes: past the head and the first chunk's size line (hex in either case:
      // Deno 2.5, which Deno Deploy runs, writes it upper-case, Deno 2.9 lower-case).
      if (/\r\n\r\n[0-9a-fA-F]+\r\ndata:/.test(seen)) resolveFirst(seen);
    }
    conn.close();
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return all;
  })();
  return { first, whole };
}

Deno.test("events that arrived together leave in one write, the end of the answer with them", async () => {
  const gw = await startGateway({
    keys: { k1: OK },
    upstreamFetch: piecewiseStreams(Promise.resolve()),
  });
  try {
    const { whole } = await rawStream(gw, await gw.createUserKey());
    const chunks = chunksOf(await whole);
    const events = chunks.join("").split("\n\n").filter((e) => e !== "");
    // role + thought, three pieces of text, finish, usage, [DONE]: all in hand at once.
    assert.equal(events.at(-1), "data: [DONE]");
    assert.ok(events.length >= 6, `only ${events.length} events`);
    assert.equal(chunks.length, 1, `written in ${chunks.length} pieces: ${JSON.stringify(chunks)}`);
  } finally {
    await gw.close();
  }
});

Deno.test("an event is sent as it arrives, without waiting for the next", async () => {
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  const gw = await startGateway({ keys: { k1: OK }, upstreamFetch: piecewiseStreams(gate) });
  try {
    const { first, whole } = await rawStream(gw, await gw.createUserKey());
    // Only the first upstream event has come: the client has it while the rest is held back.
    const early = await first;
    assert.match(early, /"reasoning_content":"Thinking about it\."/);
    assert.doesNotMatch(early, /\[DONE\]/);
    open();
    const chunks = chunksOf(await whole);
    assert.equal(chunks.length, 2, `written in ${chunks.length} pieces`);
    assert.match(chunks[1], /"finish_reason":"stop"/);
    assert.ok(chunks[1].endsWith("data: [DONE]\n\n"));
  } finally {
    open();
    await gw.close();
  }
});
