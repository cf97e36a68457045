/**
 * How a chat stream is written: what the upstream sent together leaves together, as one write
 * (one HTTP chunk), as a pipe in Rust would send it; nothing waits for upstream data that has not
 * arrived; an answer the upstream sent whole leaves as one body. The HTTP chunks are counted on the
 * wire with a raw HTTP/1.1 client, since chunk boundaries survive however TCP splits or joins the
 * bytes.
 */
import assert from "node:assert/strict";
import { startGateway, type TestGateway } from "./harness.ts";
import { startFakeGemini } from "../fakes/fake_gemini.ts";
import { rawTcpServer } from "../fakes/raw_tcp.ts";

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
    const events = sseEvents(text);
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

/** The events of an upstream SSE body, each with its CRLF CRLF end. */
function sseEvents(text: string): string[] {
  return text.split(/(?<=\r\n\r\n)/).filter((e) => e !== "");
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

/** How `relayUpstream` sends a streamed answer on. */
type Shape =
  | { kind: "whole" }
  | { kind: "split"; first: number; gate: Promise<void> };

/**
 * An upstream in front of the fake, reached over the gateway's own HTTP/1.1 client (as Google is):
 * a streamed answer leaves in one write with its length (`whole`), or its first events at once and
 * the rest when `gate` resolves (`split`). Anything else is passed on as it is.
 */
function relayUpstream(fakeUrl: string, shape: Shape): { url: string; close(): Promise<void> } {
  const ac = new AbortController();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} },
    async (req) => {
      const url = new URL(req.url);
      const res = await fetch(fakeUrl + url.pathname + url.search, {
        method: req.method,
        headers: req.headers,
        body: req.body,
      });
      if (!url.pathname.includes(":streamGenerateContent") || !res.ok) return res;
      const text = await res.text();
      const headers = { "content-type": "text/event-stream" };
      if (shape.kind === "whole") return new Response(text, { headers });
      const events = sseEvents(text);
      const { first, gate } = shape;
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(encoder.encode(events.slice(0, first).join("")));
          await gate;
          controller.enqueue(encoder.encode(events.slice(first).join("")));
          controller.close();
        },
      });
      return new Response(body, { headers });
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async close() {
      ac.abort();
      await server.finished;
    },
  };
}

/** A Gemini-native generate call (streamed with `alt=sse`) through the gateway. */
function nativeCall(
  gw: TestGateway,
  apiKey: string,
  method: "generateContent" | "streamGenerateContent",
): Promise<Response> {
  const query = method === "streamGenerateContent" ? "?alt=sse" : "";
  return fetch(`${gw.url}/v1beta/models/gemini-2.5-flash:${method}${query}`, {
    method: "POST",
    headers: { "x-goog-api-key": apiKey, "content-type": "application/json" },
    body: JSON.stringify({
      contents: [{ role: "user", parts: [{ text: "Say hello to the tests in five words." }] }],
    }),
  });
}

/**
 * Two gateways on one fake: one whose upstream sends streamed answers whole, one whose upstream
 * sends the first event at once and the rest when `open` is called. `close` stops everything.
 */
async function wholeAndLiveGateways() {
  const fake = await startFakeGemini({ quiet: true, keys: { k1: OK } });
  const whole = relayUpstream(fake.url, { kind: "whole" });
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  const split = relayUpstream(fake.url, { kind: "split", first: 1, gate });
  const wholeGw = await startGateway({
    fake,
    keys: { k1: OK },
    env: { GEMINI_BASE_URL: whole.url },
  });
  const liveGw = await startGateway({
    fake,
    keys: { k1: OK },
    env: { GEMINI_BASE_URL: split.url },
  });
  return {
    wholeGw,
    liveGw,
    open,
    async close() {
      open();
      await wholeGw.close();
      await liveGw.close();
      await whole.close();
      await split.close();
      await fake.close();
    },
  };
}

/** The events of an SSE text, with what differs between two answers (id, time) made equal. */
function comparableEvents(text: string): string[] {
  return text.split("\n\n").filter((e) => e !== "").map((e) =>
    e.replace(/"id":"chatcmpl-[^"]+"/, '"id":"chatcmpl-X"').replace(/"created":\d+/, '"created":0')
  );
}

Deno.test("an answer the upstream sent whole leaves as one body, with the events a live stream sends", async () => {
  const { wholeGw, liveGw, open, close } = await wholeAndLiveGateways();
  try {
    const res = await fetch(wholeGw.url + "/v1/chat/completions", {
      method: "POST",
      headers: {
        authorization: `Bearer ${await wholeGw.createUserKey()}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({
        model: "gemini-2.5-flash",
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "Say hello to the tests in five words." }],
      }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    assert.ok(res.headers.get("x-request-id"), "the app's own headers are set");
    const text = await res.text();
    assert.equal(res.headers.get("content-length"), String(encoder.encode(text).length));
    assert.equal(res.headers.get("transfer-encoding"), null);

    // The same request answered live: the first event alone, the rest once the client has it.
    const { first, whole: rest } = await rawStream(liveGw, await liveGw.createUserKey());
    await first;
    open();
    const chunks = chunksOf(await rest);
    assert.equal(chunks.length, 2, `written in ${chunks.length} pieces`);
    const events = comparableEvents(text);
    assert.equal(events.at(-1), "data: [DONE]");
    assert.ok(events.length >= 6, `only ${events.length} events`);
    assert.deepEqual(events, comparableEvents(chunks.join("")));

    // Its usage is recorded as a live stream's is.
    const stats = await wholeGw.admin<{ totals: { requests: number; output_tokens: number } }>(
      "GET",
      "/admin/api/stats",
    );
    assert.equal(stats.json.totals.requests, 1);
    assert.ok(stats.json.totals.output_tokens > 0, "tokens counted");
  } finally {
    await close();
  }
});

Deno.test("answers sent whole make no ReadableStream, under a concurrency limit too (one, even unread, keeps each request's objects alive through a garbage collection)", async () => {
  const fake = await startFakeGemini({ quiet: true, keys: { k1: OK } });
  const whole = relayUpstream(fake.url, { kind: "whole" });
  const gw = await startGateway({ fake, keys: { k1: OK }, env: { GEMINI_BASE_URL: whole.url } });
  const original = globalThis.ReadableStream;
  let made = 0;
  globalThis.ReadableStream = class extends original<Uint8Array> {
    constructor(...args: ConstructorParameters<typeof ReadableStream<Uint8Array>>) {
      super(...args);
      // The fake upstream and the clients of this test make streams too: only the gateway's count.
      if (/\/(routes|lib)\//.test(new Error().stack ?? "")) made++;
    }
  } as typeof ReadableStream;
  try {
    const plain = await gw.createUserKey();
    // One request at a time: a slot not given back would refuse the next request.
    const limited = await gw.admin<{ key: string }>("POST", "/admin/api/user-keys", {
      name: "one at a time",
      max_concurrency: 1,
    });
    assert.equal(limited.status, 201);
    for (const apiKey of [plain, limited.json.key, limited.json.key]) {
      const client = gw.openai(apiKey);
      const stream = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        stream: true,
        messages: [{ role: "user", content: "Say hello to the tests in five words." }],
      });
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      assert.match(text, /^Echo: Say hello/);
      const answer = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "Say hello again." }],
      });
      assert.match(answer.choices[0].message.content ?? "", /^Echo: Say hello again/);
      const embedded = await client.embeddings.create({
        model: "gemini-embedding-001",
        input: "hello",
      });
      assert.ok(embedded.data[0].embedding.length > 0);
      assert.ok((await client.models.list()).data.length > 0);
      // The Gemini-native API, which passes answers through.
      for (const method of ["streamGenerateContent", "generateContent"] as const) {
        const res = await nativeCall(gw, apiKey, method);
        assert.equal(res.status, 200);
        assert.match(await res.text(), /"finishReason":"STOP"/);
      }
    }
    assert.equal(made, 0, `the gateway made ${made} ReadableStreams for answers sent whole`);
  } finally {
    globalThis.ReadableStream = original;
    await gw.close();
    await whole.close();
    await fake.close();
  }
});

Deno.test("events in hand when the upstream answers are sent at once, the rest as it comes", async () => {
  const fake = await startFakeGemini({ quiet: true, keys: { k1: OK } });
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  const split = relayUpstream(fake.url, { kind: "split", first: 2, gate });
  const gw = await startGateway({ fake, keys: { k1: OK }, env: { GEMINI_BASE_URL: split.url } });
  try {
    const { first, whole } = await rawStream(gw, await gw.createUserKey());
    // The thought and the first piece of text came together: both are sent before the rest comes.
    const early = await first;
    assert.match(early, /"reasoning_content":"Thinking about it\."/);
    assert.match(early, /"content":"/);
    assert.doesNotMatch(early, /\[DONE\]/);
    open();
    const chunks = chunksOf(await whole);
    assert.equal(chunks.length, 2, `written in ${chunks.length} pieces`);
    assert.match(chunks[0], /"content":"/);
    assert.ok(chunks[1].endsWith("data: [DONE]\n\n"));
  } finally {
    open();
    await gw.close();
    await split.close();
    await fake.close();
  }
});

Deno.test("function calls of an answer sent whole still get ids that carry their signature", async () => {
  const fake = await startFakeGemini({ quiet: true, strict: true, keys: { k1: OK } });
  const whole = relayUpstream(fake.url, { kind: "whole" });
  const gw = await startGateway({ fake, keys: { k1: OK }, env: { GEMINI_BASE_URL: whole.url } });
  try {
    const stream = gw.openai(await gw.createUserKey()).chat.completions.stream({
      model: "gemini-3-flash-preview",
      messages: [{ role: "user", content: '[[CALL:get_weather:{"city":"Oslo"}]]' }],
      tools: [{
        type: "function",
        function: { name: "get_weather", parameters: { type: "object", properties: {} } },
      }],
    });
    const final = await stream.finalChatCompletion();
    const calls = final.choices[0].message.tool_calls ?? [];
    assert.equal(calls.length, 1);
    // A plain random id would lose the Gemini 3 thought signature the next turn must send back.
    assert.match(calls[0].id, /^call_[A-Za-z0-9]{12}[0-9a-f]{24}$/);
  } finally {
    await gw.close();
    await whole.close();
    await fake.close();
  }
});

Deno.test("a native stream the upstream sent whole leaves as one body, the same bytes a live one passes through", async () => {
  const { wholeGw, liveGw, open, close } = await wholeAndLiveGateways();
  // Only the response id differs between two answers of the fake.
  const comparable = (text: string) => text.replaceAll(/"responseId":"[^"]*"/g, '"responseId":"X"');
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const res = await nativeCall(wholeGw, await wholeGw.createUserKey(), "streamGenerateContent");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const text = await res.text();
    assert.equal(res.headers.get("content-length"), String(encoder.encode(text).length));
    assert.equal(res.headers.get("transfer-encoding"), null);
    assert.match(text, /^data: \{"candidates"/);
    assert.match(text, /"finishReason":"STOP"/);

    // Live: the first event reaches the client before the upstream sends the rest.
    const live = await nativeCall(liveGw, await liveGw.createUserKey(), "streamGenerateContent");
    assert.equal(live.headers.get("content-length"), null);
    const reader = live.body!.getReader();
    const first = await Promise.race([
      reader.read(),
      new Promise<"waiting">((resolve) => (timer = setTimeout(() => resolve("waiting"), 5000))),
    ]);
    clearTimeout(timer);
    assert.ok(first !== "waiting" && !first.done, "the first event waited for the rest");
    let liveText = decoder.decode(first.value, { stream: true });
    assert.doesNotMatch(liveText, /finishReason/);
    open();
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      liveText += decoder.decode(r.value, { stream: true });
    }
    assert.equal(comparable(liveText), comparable(text));

    // Both are counted, with their tokens.
    for (const gw of [wholeGw, liveGw]) {
      const stats = await gw.admin<{ totals: { requests: number; output_tokens: number } }>(
        "GET",
        "/admin/api/stats",
      );
      assert.equal(stats.json.totals.requests, 1);
      assert.ok(stats.json.totals.output_tokens > 0, "tokens counted");
    }
  } finally {
    clearTimeout(timer);
    await close();
  }
});

Deno.test("a stream whose upstream is slow to start gets heartbeats, then its answer or an error event", async () => {
  const gw = await startGateway({
    keys: { k1: { kind: "slow", delayMs: 2_500 } },
    fakeOptions: { quiet: true },
  });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { streamHeartbeatSeconds: 1, maxAttempts: 1 });
    const apiKey = await gw.createUserKey();
    const started = performance.now();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "gemini-2.5-flash",
        stream: true,
        messages: [{ role: "user", content: "Take your time." }],
      }),
    });
    // The head came before the upstream answered: that is what keeps proxies waiting.
    assert.ok(performance.now() - started < 2_400, "headers before the upstream answered");
    assert.equal(res.status, 200);
    assert.ok(res.headers.get("x-request-id"));
    const text = await res.text();
    assert.match(text, /^(: keep-alive\n\n){2,}data: /);
    const events = text.split("\n\n").filter((e) => e.startsWith("data: "));
    assert.equal(events.at(-1), "data: [DONE]");
    const content = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)).choices[0].delta.content)
      .join("");
    assert.equal(content, "Echo: Take your time.");

    // A quick failure is still an HTTP status, as before.
    gw.fake.setKey("k1", { kind: "unavailable" });
    const quick = await gw.openai(apiKey).chat.completions.create({
      model: "gemini-2.5-flash",
      stream: true,
      messages: [{ role: "user", content: "x" }],
    }).catch((e) => e);
    assert.equal(quick.status, 503);
  } finally {
    await gw.close();
  }
});

Deno.test("a slow upstream that fails after the heartbeats began ends the stream with an error event the SDK raises", async () => {
  const gw = await startGateway({
    keys: { k1: { kind: "unavailable" } },
    fakeOptions: { quiet: true, latencyMs: 2_500 },
  });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { streamHeartbeatSeconds: 1, maxAttempts: 1 });
    const stream = await gw.openai(await gw.createUserKey()).chat.completions.create({
      model: "gemini-2.5-flash",
      stream: true,
      messages: [{ role: "user", content: "x" }],
    });
    await assert.rejects(
      async () => {
        for await (const _ of stream) { /* nothing arrives before the error */ }
      },
      (err: Error) => {
        assert.match(err.message, /overloaded/);
        return true;
      },
    );
    await gw.app.drain();
    const log = await gw.admin<{ data: { status: number; error_class: string }[] }>(
      "GET",
      "/admin/api/request-log",
    );
    assert.deepEqual(log.json.data.map((e) => [e.status, e.error_class]), [[503, "upstream"]]);
  } finally {
    await gw.close();
  }
});

Deno.test("a client that leaves during the heartbeats stops the upstream call", async () => {
  // An upstream that reads the request, never answers, and sees the caller hang up (EOF).
  let hungUp: () => void = () => {};
  const gone = new Promise<void>((resolve) => (hungUp = resolve));
  const upstream = rawTcpServer(async (conn) => {
    const buf = new Uint8Array(65536);
    while ((await conn.read(buf)) !== null) { /* the request, then nothing */ }
    hungUp();
  });
  const gw = await startGateway({ keys: { k1: OK }, env: { GEMINI_BASE_URL: upstream.url } });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { streamHeartbeatSeconds: 1 });
    const client = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      signal: client.signal,
      headers: {
        authorization: `Bearer ${await gw.createUserKey()}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({
        model: "gemini-2.5-flash",
        stream: true,
        messages: [{ role: "user", content: "x" }],
      }),
    });
    const reader = res.body!.getReader();
    assert.equal(decoder.decode((await reader.read()).value), ": keep-alive\n\n");
    assert.equal(upstream.connections, 1);
    client.abort();
    await reader.cancel().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stopped = await Promise.race([
      gone.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(resolve, 5_000, false))),
    ]);
    clearTimeout(timer);
    assert.ok(stopped, "the gateway hung up on the upstream");
  } finally {
    await gw.close();
    await upstream.close();
  }
});
