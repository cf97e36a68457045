/**
 * The 40 MiB JSON body limit of `/v1` and `/v1beta`: judged from a declared `Content-Length` before
 * any byte of the body is read, and by counting for a chunked body; either way the API's own 413
 * error, and no upstream call. A chunked body under the limit still arrives whole.
 */
import assert from "node:assert/strict";
import { startGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const LIMIT = 40 * 1024 * 1024;
const CHAT = { model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }] };

/** Sends only the head of a request that declares `length` body bytes; returns the answer. */
async function declareOnly(
  url: string,
  path: string,
  headers: Record<string, string>,
  length: number,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  // A gateway that waits for the body instead of answering fails the test instead of hanging it.
  const timer = setTimeout(() => conn.close(), 10_000);
  try {
    const head = [
      `POST ${path} HTTP/1.1`,
      `Host: ${hostname}:${port}`,
      "Content-Type: application/json",
      `Content-Length: ${length}`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      "",
      "",
    ].join("\r\n");
    await conn.write(new TextEncoder().encode(head + "{"));
    let text = "";
    const buf = new Uint8Array(16 * 1024);
    const decoder = new TextDecoder();
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      text += decoder.decode(buf.subarray(0, n), { stream: true });
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) continue;
      const declared = /content-length: *(\d+)/i.exec(text.slice(0, end));
      if (declared && text.length - end - 4 >= Number(declared[1])) break;
    }
    const end = text.indexOf("\r\n\r\n");
    assert.ok(end > 0, `no answer within 10 s: ${text}`);
    return { status: Number(text.split(" ")[1]), json: JSON.parse(text.slice(end + 4)) };
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/**
 * A chunked body (no Content-Length) of `json` padded with spaces to `size` bytes; `over` settles
 * once the body was sent in full or the upload was cut off.
 */
function chunked(
  json: unknown,
  size: number,
): { body: ReadableStream<Uint8Array>; over: Promise<void> } {
  const text = new TextEncoder().encode(JSON.stringify(json));
  let left = size - text.length;
  let first = true;
  let end!: () => void;
  const over = new Promise<void>((resolve) => (end = resolve));
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (first) {
        first = false;
        controller.enqueue(text);
        return;
      }
      if (left <= 0) {
        controller.close();
        return end();
      }
      const n = Math.min(left, 1024 * 1024);
      left -= n;
      controller.enqueue(new Uint8Array(n).fill(0x20));
    },
    cancel: () => end(),
  });
  return { body, over };
}

Deno.test("a declared body over 40 MiB is refused with 413 before it is sent, in each API's shape", async () => {
  const gw = await startGateway({ keys: { "AIzaBodyLimit-0001": OK } });
  try {
    const key = await gw.createUserKey();
    const openai = await declareOnly(gw.url, "/v1/chat/completions", {
      Authorization: `Bearer ${key}`,
    }, LIMIT + 1);
    assert.equal(openai.status, 413);
    const error = openai.json.error as { code: string; type: string };
    assert.equal(error.code, "request_too_large");
    const native = await declareOnly(
      gw.url,
      "/v1beta/models/gemini-2.5-flash:generateContent",
      { "x-goog-api-key": key },
      LIMIT + 1,
    );
    assert.equal(native.status, 413);
    assert.equal((native.json.error as { code: number }).code, 413);
    assert.equal(gw.fake.requests.length, 0);
  } finally {
    await gw.close();
  }
});

Deno.test({
  name: "a chunked body is counted: over 40 MiB is a 413, under it arrives whole",
  // The client's upload of the refused body is cut off when the gateway ends the connection, and
  // Deno's fetch frees its request-body resource only some time after that.
  sanitizeResources: false,
}, async () => {
  const gw = await startGateway({ keys: { "AIzaBodyLimit-0002": OK } });
  try {
    const key = await gw.createUserKey();
    const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
    const smallBody = chunked(CHAT, 3 * 1024 * 1024);
    const small = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers,
      body: smallBody.body,
    });
    assert.equal(small.status, 200, await small.clone().text());
    const answer = await small.json();
    assert.equal(answer.object, "chat.completion");
    assert.equal(gw.fake.requests.length, 1);
    const bigBody = chunked(CHAT, LIMIT + 1);
    const big = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers,
      body: bigBody.body,
    });
    assert.equal(big.status, 413);
    // The gateway stops reading and ends the connection rather than take in the rest.
    assert.match(big.headers.get("connection") ?? "", /close/);
    assert.equal((await big.json()).error.code, "request_too_large");
    await Promise.all([smallBody.over, bigBody.over]);
    assert.equal(gw.fake.requests.length, 1);
  } finally {
    await gw.close();
  }
});

Deno.test("a chat with a declared body (dispatched directly) and a chunked one (through Hono) get the same answers", async () => {
  const gw = await startGateway({ keys: { "AIzaBodyLimit-0003": OK } });
  try {
    const key = await gw.createUserKey();
    const send = async (
      declared: boolean,
      body: string,
      headers: Record<string, string>,
    ) => {
      const bytes = new TextEncoder().encode(body);
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: declared ? bytes : ReadableStream.from([bytes]),
      });
      const text = await res.text();
      const json = res.headers.get("content-type")?.startsWith("text/event-stream")
        ? { events: text.split("\n\n").filter(Boolean) }
        : JSON.parse(text);
      return { status: res.status, id: res.headers.get("x-request-id"), json };
    };
    const chat = JSON.stringify(CHAT);
    const auth = { authorization: `Bearer ${key}` };
    for (const declared of [true, false]) {
      const how = declared ? "declared" : "chunked";
      const ok = await send(declared, chat, auth);
      assert.equal(ok.status, 200, how);
      assert.equal(ok.json.object, "chat.completion", how);
      assert.match(ok.id ?? "", /^[\w-]+-[0-9a-z]+$/, `${how}: a request id of our own`);
      const streamed = await send(declared, JSON.stringify({ ...CHAT, stream: true }), auth);
      assert.equal(streamed.status, 200, how);
      assert.equal(streamed.json.events.at(-1), "data: [DONE]", how);
      assert.ok(streamed.id, `${how}: a stream carries a request id`);
      const echoed = await send(declared, chat, { ...auth, "x-request-id": "client-id-7" });
      assert.equal(echoed.id, "client-id-7", how);
      const anonymous = await send(declared, chat, {});
      assert.equal(anonymous.status, 401, how);
      assert.equal(anonymous.json.error.code, "missing_api_key", how);
      assert.ok(anonymous.id, `${how}: errors carry a request id too`);
      const broken = await send(declared, "{not json", auth);
      assert.equal(broken.status, 400, how);
      assert.equal(broken.json.error.code, "invalid_json", how);
      const invalid = await send(declared, JSON.stringify({ ...CHAT, temperature: 9 }), auth);
      assert.equal(invalid.status, 400, how);
      assert.equal(invalid.json.error.param, "temperature", how);
    }
    assert.equal(gw.fake.requests.length, 6);
  } finally {
    await gw.close();
  }
});
