/**
 * The upstream client's choice of transport: the gateway's own HTTP/1.1 client first, and `fetch`
 * for good when that client fails before it has ever had an answer while `fetch` gets one (a
 * platform that refuses its connections, a relay it cannot speak to). Once it has worked, its
 * failures are the upstream's and stay failures; aborts and timeouts never switch.
 */
import assert from "node:assert/strict";
import {
  GeminiClient,
  UpstreamRequestError,
  UpstreamTimeoutError,
} from "../../lib/gemini/client.ts";
import { UpstreamProtocolError } from "../../lib/gemini/h1.ts";
import { rawTcpServer } from "../fakes/raw_tcp.ts";

const encoder = new TextEncoder();
const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What the raw server does with each new connection, in turn (the last one repeats). */
type Behaviour = "close" | "answer" | "silent" | "late answer" | "late close";

/**
 * A TCP server on 127.0.0.1 that closes a connection, answers one JSON request (at once, or 50 ms
 * after it arrived), says nothing, or reads the request and closes 100 ms later.
 */
function rawServer(behaviours: Behaviour[]) {
  return rawTcpServer(async (conn, index) => {
    const behaviour = behaviours[Math.min(index, behaviours.length - 1)];
    if (behaviour === "close") return;
    const buf = new Uint8Array(65536);
    if ((await conn.read(buf)) === null) return;
    if (behaviour === "silent") {
      await conn.read(buf);
      return;
    }
    if (behaviour === "late close") return await delay(100);
    if (behaviour === "late answer") await delay(50);
    const body = '{"via":"h1"}';
    await conn.write(
      encoder.encode(
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
          `connection: close\r\n\r\n${body}`,
      ),
    );
  });
}

/** A `fetch` that answers every call with JSON, or fails them all; it counts its calls. */
function stubFetch(works: boolean) {
  const calls: string[] = [];
  const stub: typeof fetch = (input) => {
    calls.push(String(input));
    if (!works) return Promise.reject(new TypeError("fetch failed too"));
    return Promise.resolve(Response.json({ via: "fetch" }));
  };
  return { stub, calls };
}

/** Collects `console.warn` lines while `fn` runs. */
async function warnings<T>(fn: () => Promise<T>): Promise<{ value: T; lines: string[] }> {
  const lines: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  try {
    return { value: await fn(), lines };
  } finally {
    console.warn = original;
  }
}

/** What a test works with: the raw server, the client in front of it, the stub fetch's calls. */
interface Setup {
  server: ReturnType<typeof rawServer>;
  gemini: GeminiClient;
  calls: string[];
}

/**
 * Runs `test` with a client (its own HTTP/1.1 client on) in front of a raw server behaving as
 * `behaviours`, with a stub `fetch` that works or fails; closes all of it afterwards.
 */
async function withClient(
  behaviours: Behaviour[],
  options: { fetchWorks: boolean; timeoutMs?: number },
  test: (setup: Setup) => Promise<void>,
): Promise<void> {
  const server = rawServer(behaviours);
  const { stub, calls } = stubFetch(options.fetchWorks);
  const gemini = new GeminiClient({
    baseUrl: server.url,
    fetch: stub,
    timeoutMs: options.timeoutMs ?? 5_000,
    direct: true,
  });
  try {
    await test({ server, gemini, calls });
  } finally {
    gemini.closeIdle();
    gemini.deadlines.stop();
    await server.close();
  }
}

const chat = { path: "/v1beta/models/m:generateContent", body: '{"contents":[]}' };

Deno.test("client: the HTTP/1.1 client fails where fetch answers: fetch serves, and every later call", () =>
  withClient(["close"], { fetchWorks: true }, async ({ server, gemini, calls }) => {
    const first = await warnings(async () => await (await gemini.post("key-1", chat)).text());
    assert.equal(first.value, '{"via":"fetch"}');
    assert.equal(server.connections, 1);
    assert.equal(first.lines.length, 1);
    assert.match(first.lines[0], /HTTP\/1\.1 client failed to reach http:\/\/127\.0\.0\.1:\d+ /);
    assert.match(first.lines[0], /UPSTREAM_HTTP=fetch/);

    // From now on fetch alone: the HTTP/1.1 client is not tried again, and nothing more is logged.
    const later = await warnings(async () => {
      const posted = await (await gemini.post("key-1", chat)).text();
      const sent = await (await gemini.send("key-1", { method: "POST", ...chat })).text();
      return [posted, sent];
    });
    assert.deepEqual(later.value, ['{"via":"fetch"}', '{"via":"fetch"}']);
    assert.deepEqual(later.lines, []);
    assert.equal(server.connections, 1);
    assert.equal(calls.length, 3);
    assert.match(calls[0], /\/v1beta\/models\/m:generateContent$/);
  }));

Deno.test("client: when fetch fails too, the first error stands and the HTTP/1.1 client is kept", () =>
  withClient(
    ["close", "close", "answer"],
    { fetchWorks: false },
    async ({ server, gemini, calls }) => {
      const failed = await warnings(() =>
        assert.rejects(gemini.post("key-1", chat), UpstreamProtocolError)
      );
      assert.deepEqual(failed.lines, []);
      await assert.rejects(
        gemini.send("key-1", { method: "POST", ...chat }),
        UpstreamProtocolError,
      );
      assert.equal(calls.length, 2);
      // The network came back: the HTTP/1.1 client answers.
      assert.equal(await (await gemini.post("key-1", chat)).text(), '{"via":"h1"}');
      assert.equal(server.connections, 3);
    },
  ));

Deno.test("client: once the HTTP/1.1 client has had an answer, its failures are not retried through fetch", () =>
  withClient(
    ["late answer", "late close", "close"],
    { fetchWorks: true },
    async ({ server, gemini, calls }) => {
      // Two first calls at once: the one that fails does so after the other had its answer.
      const [answered, failed] = await Promise.allSettled([
        gemini.post("key-1", chat).then((answer) => answer.text()),
        delay(10).then(() => gemini.post("key-1", chat)),
      ]);
      assert.deepEqual(answered, { status: "fulfilled", value: '{"via":"h1"}' });
      assert.equal(failed.status, "rejected");
      assert.ok(failed.reason instanceof UpstreamProtocolError);
      await assert.rejects(gemini.post("key-1", chat), UpstreamProtocolError);
      assert.deepEqual(calls, []);
      assert.equal(server.connections, 3);
    },
  ));

Deno.test("client: a timeout or the caller's abort is not a reason to try fetch", () =>
  withClient(
    ["silent"],
    { fetchWorks: true, timeoutMs: 150 },
    async ({ server, gemini, calls }) => {
      await assert.rejects(gemini.post("key-1", chat), UpstreamTimeoutError);
      const caller = new AbortController();
      const pending = gemini.post("key-1", chat, caller.signal);
      setTimeout(() => caller.abort(new Error("client went away")), 20);
      await assert.rejects(pending, /client went away/);
      assert.deepEqual(calls, []);
      assert.equal(server.connections, 2);
    },
  ));

/**
 * An upstream that answers every request with a redirect to a second server, which records what
 * reaches it (the key would, if the redirect were followed).
 */
async function redirectingUpstream(
  test: (url: string, stolen: string[]) => Promise<void>,
): Promise<void> {
  const stolen: string[] = [];
  const elsewhere = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    stolen.push(`${req.method} ${req.headers.get("x-goog-api-key")}`);
    return Response.json({});
  });
  const upstream = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () =>
      new Response(null, {
        status: 302,
        headers: { location: `http://localhost:${elsewhere.addr.port}/steal` },
      }),
  );
  try {
    await test(`http://127.0.0.1:${upstream.addr.port}`, stolen);
  } finally {
    await upstream.shutdown();
    await elsewhere.shutdown();
  }
}

Deno.test("client: an upstream redirect is not followed (the key stays home): it is a 502", () =>
  redirectingUpstream(async (url, stolen) => {
    for (const direct of [false, true]) {
      const gemini = new GeminiClient({ baseUrl: url, fetch, timeoutMs: 5_000, direct });
      try {
        const got = await gemini.send("AIzaSECRET", { method: "GET", path: "/v1beta/files/abc" });
        assert.equal(got.status, 502);
        assert.match((await got.json()).error.message, /redirect \(HTTP 302\)/);
        const posted = await gemini.post("AIzaSECRET", chat);
        // Through fetch a 502; the HTTP/1.1 client never follows, and answers the 302 itself.
        assert.equal(posted.status, direct ? 302 : 502);
        assert.equal(posted.ok, false);
        await posted.text();
      } finally {
        gemini.closeIdle();
        gemini.deadlines.stop();
      }
    }
    assert.deepEqual(stolen, []);
  }));

Deno.test("client: a header no HTTP client can send is refused before anything is sent", async () => {
  const { stub, calls } = stubFetch(true);
  const gemini = new GeminiClient({ baseUrl: "http://127.0.0.1:9", fetch: stub, timeoutMs: 5_000 });
  try {
    for (const value of ["text/plain\u20ac", "a\r\nx-evil: 1"]) {
      await assert.rejects(
        gemini.send("key-1", {
          method: "POST",
          path: "/upload/v1beta/files",
          body: "{}",
          headers: { "x-goog-upload-header-content-type": value },
        }),
        UpstreamRequestError,
      );
      await assert.rejects(gemini.post("key-1", { ...chat, headers: { "x-test": value } }), {
        name: "UpstreamRequestError",
      });
    }
    assert.deepEqual(calls, []);
  } finally {
    gemini.deadlines.stop();
  }
});

Deno.test("client: closeIdle closes the connections kept by fetch too (calls that are not JSON posts)", async () => {
  // Each connection answers one keep-alive GET, then waits for the client to close it.
  let closedBack!: () => void;
  const closed = new Promise<void>((resolve) => closedBack = resolve);
  const server = rawTcpServer(async (conn) => {
    const buf = new Uint8Array(65536);
    if ((await conn.read(buf)) === null) return;
    const body = '{"models":[]}';
    await conn.write(
      encoder.encode(
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
          `\r\n${body}`,
      ),
    );
    while ((await conn.read(buf).catch(() => null)) !== null) {
      // a second request on the kept connection is not expected
    }
    closedBack();
  });
  const gemini = new GeminiClient({ baseUrl: server.url, fetch, timeoutMs: 5_000, direct: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const res = await gemini.send("key-1", { method: "GET", path: "/v1beta/models" });
    assert.equal(await res.text(), '{"models":[]}');
    gemini.closeIdle();
    // fetch's own pool would keep the connection for 90 s: a bound far below that, not a timing.
    const outcome = await Promise.race([
      closed.then(() => "closed"),
      new Promise<string>((resolve) => timer = setTimeout(() => resolve("still open"), 10_000)),
    ]);
    assert.equal(outcome, "closed");
    // Later calls open a new client.
    const again = await gemini.send("key-1", { method: "GET", path: "/v1beta/models" });
    assert.equal(again.status, 200);
    await again.body?.cancel();
  } finally {
    clearTimeout(timer);
    gemini.closeIdle();
    gemini.deadlines.stop();
    await server.close();
  }
});
