/**
 * The gateway's HTTP/1.1 upstream client against a raw TCP server that writes answers byte by
 * byte as told: framing (length, chunked, until close), keep-alive reuse and its limits, a kept
 * connection the server closed, aborts, and requests that must not be sent.
 */
import assert from "node:assert/strict";
import { ChunkedDecoder, H1Client, UpstreamProtocolError } from "../../lib/gemini/h1.ts";
import { rawTcpServer } from "../fakes/raw_tcp.ts";
import { TEST_CA_PEM, TEST_CERT_PEM, TEST_KEY_PEM } from "../fakes/tls_fixture.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One request as the raw server read it. */
interface Seen {
  head: string;
  body: string;
  /** Which connection (0, 1, …) it came on. */
  connection: number;
}

/** What the server does with a request: write to the connection, maybe close it. */
type Answer = (conn: Deno.Conn, seen: Seen) => Promise<void>;

/** A raw HTTP/1.1 server on 127.0.0.1 that answers each request with the next `answers` entry. */
function rawServer(answers: Answer[]) {
  const seen: Seen[] = [];
  const server = rawTcpServer(async (conn, id) => {
    let pending = new Uint8Array(0);
    const buf = new Uint8Array(65536);
    while (true) {
      let text = decoder.decode(pending);
      let end = text.indexOf("\r\n\r\n");
      while (end < 0) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending = concat(pending, buf.subarray(0, n));
        text = decoder.decode(pending);
        end = text.indexOf("\r\n\r\n");
      }
      const head = text.slice(0, end);
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      while (pending.length < end + 4 + length) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending = concat(pending, buf.subarray(0, n));
      }
      const body = decoder.decode(pending.subarray(end + 4, end + 4 + length));
      pending = pending.slice(end + 4 + length);
      const request = { head, body, connection: id };
      seen.push(request);
      const answer = answers.shift();
      if (!answer) throw new Error("unexpected request");
      await answer(conn, request);
    }
  });
  return {
    url: server.url,
    seen,
    get connections() {
      return server.connections;
    },
    close: () => server.close(),
  };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

const write = (text: string): Answer => async (conn) => {
  await conn.write(encoder.encode(text));
};
const json = (body: string, extra = ""): Answer =>
  write(
    `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n${extra}content-length: ${
      encoder.encode(body).length
    }\r\n\r\n${body}`,
  );
const closeAfter = (answer: Answer): Answer => async (conn, seen) => {
  await answer(conn, seen);
  conn.close();
};
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

function post(client: H1Client, path = "/v1beta/models/m:generateContent", signal?: AbortSignal) {
  return client.request({
    method: "POST",
    path,
    headers: { "content-type": "application/json", "x-goog-api-key": "key-1" },
    body: '{"contents":[]}',
    signal,
  });
}

Deno.test("h1: a length-framed answer; one kept connection serves the next requests", async () => {
  const server = rawServer([json('{"a":1}'), json('{"a":2}'), json('{"a":3}')]);
  const client = new H1Client({ baseUrl: `${server.url}/relay/` });
  try {
    for (const n of [1, 2, 3]) {
      const res = await post(client, "/v1beta/models/m:generateContent?alt=json");
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.deepEqual(await res.json(), { a: n });
    }
    assert.equal(server.connections, 1);
    assert.equal(client.idleCount, 1);
    const head = server.seen[0].head.split("\r\n");
    assert.equal(head[0], "POST /relay/v1beta/models/m:generateContent?alt=json HTTP/1.1");
    assert.ok(head.includes(`host: ${new URL(server.url).host}`));
    assert.ok(head.includes("x-goog-api-key: key-1"));
    assert.ok(head.includes("content-length: 15"));
    assert.equal(head.filter((h) => /^(authorization|x-goog-api-key):/i.test(h)).length, 1);
    assert.equal(server.seen[0].body, '{"contents":[]}');
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: a request body is sent intact and counted in bytes, small or larger than the buffer", async () => {
  const small = JSON.stringify({ text: "你好, Gemini" });
  const large = JSON.stringify({ text: "数据".repeat(20_000) });
  const server = rawServer([json("{}"), json("{}")]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    for (const body of [small, large]) {
      await (await client.request({ method: "POST", path: "/p", headers: {}, body })).text();
    }
    for (const [i, body] of [small, large].entries()) {
      const length = encoder.encode(body).length;
      assert.ok(server.seen[i].head.split("\r\n").includes(`content-length: ${length}`));
      assert.equal(server.seen[i].body, body);
    }
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: a chunked answer that arrives in pieces is read whole, then the connection is kept", async () => {
  const events = ['data: {"n":1}\r\n\r\n', 'data: {"n":2}\r\n\r\n', 'data: {"n":3}\r\n\r\n'];
  const server = rawServer([
    async (conn) => {
      await conn.write(encoder.encode(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
      ));
      for (const e of events) {
        const framed = `${e.length.toString(16)};ext=1\r\n${e}\r\n`;
        // Split inside the size line, the data and the CRLF.
        for (const piece of [framed.slice(0, 1), framed.slice(1, 9), framed.slice(9)]) {
          await conn.write(encoder.encode(piece));
          await tick();
        }
      }
      await conn.write(encoder.encode("0\r\nx-trailer: yes\r\n\r\n"));
    },
    json("{}"),
  ]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    const res = await post(client);
    assert.equal(res.headers.get("transfer-encoding"), "chunked");
    assert.equal(await res.text(), events.join(""));
    assert.deepEqual(await (await post(client)).json(), {});
    assert.equal(server.connections, 1);
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: a chunked body's end is seen with its bytes: everything in hand comes in one read", async () => {
  const body = 'data: {"n":1}\n\n';
  const framed = `${body.length.toString(16)}\r\n${body}\r\n`.repeat(3) + "0\r\n\r\n";
  const server = rawServer([
    write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${framed}`),
  ]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    const res = await post(client);
    await tick();
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.equal(decoder.decode(first.value), body.repeat(3));
    assert.equal((await reader.read()).done, true);
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: exchange answers without a Response: the body is read from the source, its end known with its last bytes", async () => {
  const body = 'data: {"n":1}\n\n';
  const framed = `${body.length.toString(16)}\r\n${body}\r\n`.repeat(2) + "0\r\n\r\n";
  const server = rawServer([
    write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n${framed}`),
    json('{"a":2}'),
  ]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    const answer = await client.exchange({
      method: "POST",
      path: "/v1beta/models/m:streamGenerateContent?alt=sse",
      headers: {},
      body: "{}",
    });
    await tick();
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.headers, [["transfer-encoding", "chunked"], ["x-a", "1"]]);
    assert.equal(answer.whole, null);
    assert.equal(answer.body.ended, false);
    assert.equal(decoder.decode((await answer.body.read())!), body.repeat(2));
    // The terminating chunk came with the data: the end is known without another read, and the
    // connection is already back in the pool.
    assert.equal(answer.body.ended, true);
    assert.equal(client.idleCount, 1);
    assert.equal(await answer.body.read(), null);

    const whole = await client.exchange({ method: "POST", path: "/x", headers: {}, body: "{}" });
    // A length-framed body in hand with the head: the exchange is over before it is read.
    assert.equal(decoder.decode(whole.whole!), '{"a":2}');
    assert.equal(client.idleCount, 1);
    assert.equal(whole.body.ended, false);
    assert.equal(decoder.decode((await whole.body.read())!), '{"a":2}');
    assert.equal(whole.body.ended, true);
    assert.equal(await whole.body.read(), null);
    assert.equal(server.connections, 1);
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: `sent` runs once the request is on the wire, before the answer (work that overlaps the upstream's)", async () => {
  let release = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  let seenWhenSent = -1;
  const server = rawServer([async (conn, seen) => {
    await gate;
    await json(`{"seen":${JSON.stringify(seen.body)}}`)(conn, seen);
  }]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    const answer = client.exchange({
      method: "POST",
      path: "/p",
      headers: {},
      body: '"hello"',
      sent: () => {
        seenWhenSent = server.seen.length;
        // The server answers only after this: a `sent` that waited for the answer would hang.
        release();
      },
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no answer: sent was not called before it")), 2000);
    });
    const res = await Promise.race([answer, timeout]).finally(() => clearTimeout(timer));
    assert.equal(decoder.decode(res.whole!), '{"seen":"\\"hello\\""}');
    // Called when the request had been written (the server may not have read it yet).
    assert.ok(seenWhenSent === 0 || seenWhenSent === 1);
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: a header byte above 0x7f is read as its Latin-1 character, not lost", async () => {
  const server = rawServer([async (conn) => {
    const head = encoder.encode("HTTP/1.1 200 OK\r\nx-name: caf_\r\ncontent-length: 2\r\n\r\n{}");
    head[head.indexOf(0x5f)] = 0xe9; // the "_" becomes the single byte 0xE9 (é in Latin-1)
    await conn.write(head);
  }]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    const res = await post(client);
    assert.equal(res.headers.get("x-name"), "caf\u00e9");
    assert.equal(await res.text(), "{}");
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: connection: close and a body that ends with the connection are not kept", async () => {
  const server = rawServer([
    closeAfter(json('{"a":1}', "connection: close\r\n")),
    closeAfter(write("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n" + '{"a":2}')),
    json('{"a":3}'),
  ]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    assert.deepEqual(await (await post(client)).json(), { a: 1 });
    assert.equal(client.idleCount, 0);
    assert.deepEqual(await (await post(client)).json(), { a: 2 });
    assert.equal(client.idleCount, 0);
    assert.deepEqual(await (await post(client)).json(), { a: 3 });
    assert.equal(server.connections, 3);
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: a kept connection the server closed meanwhile: the request goes on a new one", async () => {
  const server = rawServer([closeAfter(json('{"a":1}')), json('{"a":2}')]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    assert.deepEqual(await (await post(client)).json(), { a: 1 });
    await tick();
    assert.equal(client.idleCount, 1);
    assert.deepEqual(await (await post(client)).json(), { a: 2 });
    assert.equal(server.connections, 2);
    // Each request reached the server once.
    assert.equal(server.seen.length, 2);
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: a new connection closed without an answer fails once, without sending again", async () => {
  const server = rawServer([(conn) => Promise.resolve(conn.close())]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    await assert.rejects(post(client), UpstreamProtocolError);
    assert.equal(server.seen.length, 1);
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: a body cut off mid-answer is an error, not an end", async () => {
  const server = rawServer([
    closeAfter(write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")),
    closeAfter(write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")),
  ]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    const chunked = await post(client);
    await assert.rejects(chunked.text(), UpstreamProtocolError);
    const short = await post(client);
    await assert.rejects(short.text(), UpstreamProtocolError);
    assert.equal(client.idleCount, 0);
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: an abort before the answer and during the body ends the exchange with its reason", async () => {
  let sendRest: () => void = () => {};
  const rest = new Promise<void>((resolve) => (sendRest = resolve));
  const server = rawServer([
    async () => {
      // No answer at all.
    },
    async (conn) => {
      await conn.write(
        encoder.encode("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n"),
      );
      await rest;
    },
  ]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    const early = new AbortController();
    const pending = post(client, undefined, early.signal);
    await tick();
    early.abort(new Error("client left"));
    await assert.rejects(pending, /client left/);

    const late = new AbortController();
    const res = await post(client, undefined, late.signal);
    const reader = res.body!.getReader();
    assert.equal(decoder.decode((await reader.read()).value), "a");
    const next = reader.read();
    late.abort(new Error("timed out"));
    await assert.rejects(next, /timed out/);
    assert.equal(client.idleCount, 0);
    await assert.rejects(post(client, undefined, AbortSignal.abort(new Error("gone"))), /gone/);
  } finally {
    sendRest();
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: what is not HTTP/1.1 is refused, and so is a header that would smuggle a line", async () => {
  const server = rawServer([closeAfter(write("SSH-2.0-OpenSSH\r\n\r\n"))]);
  const client = new H1Client({ baseUrl: server.url });
  try {
    await assert.rejects(post(client), /did not answer in HTTP\/1\.1/);
    await assert.rejects(
      client.request({
        method: "POST",
        path: "/x",
        headers: { "x-goog-api-key": "k\r\nx-evil: 1" },
        body: "{}",
      }),
      TypeError,
    );
    await assert.rejects(
      client.request({ method: "POST", path: "/x y", headers: {}, body: "{}" }),
      TypeError,
    );
    assert.equal(server.seen.length, 1);
  } finally {
    client.closeIdle();
    await server.close();
  }
});

Deno.test("h1: over TLS (as to Google), a JSON answer and a chunked stream on one kept connection", async () => {
  const ac = new AbortController();
  const encoderStream = (text: string[]) =>
    new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = text.shift();
        if (next === undefined) return controller.close();
        await tick();
        controller.enqueue(encoder.encode(next));
      },
    });
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: TEST_CERT_PEM,
    key: TEST_KEY_PEM,
    signal: ac.signal,
    onListen() {},
  }, async (req) => {
    const body = await req.json();
    if (new URL(req.url).searchParams.get("alt") === "sse") {
      return new Response(encoderStream(["data: 1\r\n\r\n", "data: 2\r\n\r\n"]), {
        headers: { "content-type": "text/event-stream" },
      });
    }
    return Response.json({ echo: body, key: req.headers.get("x-goog-api-key") });
  });
  const client = new H1Client({
    baseUrl: `https://localhost:${server.addr.port}`,
    caCerts: [TEST_CA_PEM],
  });
  try {
    const res = await post(client);
    assert.deepEqual(await res.json(), { echo: { contents: [] }, key: "key-1" });
    const stream = await post(client, "/v1beta/models/m:streamGenerateContent?alt=sse");
    assert.equal(await stream.text(), "data: 1\r\n\r\ndata: 2\r\n\r\n");
    assert.equal(client.idleCount, 1);
    // Without the test CA the server is not trusted.
    const untrusting = new H1Client({ baseUrl: `https://localhost:${server.addr.port}` });
    await assert.rejects(post(untrusting));
    untrusting.closeIdle();
  } finally {
    client.closeIdle();
    ac.abort();
    await server.finished;
  }
});

Deno.test("chunked decoder: fed one byte at a time, with extensions and trailers", () => {
  const wire = "4;name=v\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nx-t: 1\r\n\r\n";
  const bytes = encoder.encode(wire);
  const dec = new ChunkedDecoder();
  let out = "";
  let pending = new Uint8Array(0);
  let ended = false;
  for (const byte of bytes) {
    pending = concat(pending, new Uint8Array([byte]));
    const r = dec.decode(pending);
    out += decoder.decode(r.data);
    pending = pending.slice(r.used);
    ended = r.ended;
  }
  assert.equal(out, "Wikipedia in\r\n\r\nchunks.");
  assert.ok(ended);
  assert.equal(pending.length, 0);
  assert.throws(() => new ChunkedDecoder().decode(encoder.encode("zz\r\n")), UpstreamProtocolError);
  assert.throws(
    () => new ChunkedDecoder().decode(encoder.encode("2\r\nabXY")),
    UpstreamProtocolError,
  );
});
