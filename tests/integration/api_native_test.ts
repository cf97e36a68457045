/**
 * The Gemini-native API through the gateway with the real `@google/genai` client (which calls
 * `/v1/...` by default, `/v1beta/...` when told) against the fake upstream: user key swapped for a
 * pool key (and never forwarded), failover, streams passed through byte for byte, files uploaded
 * through the gateway's own session URL and pinned to their key, Google-shaped errors, and the
 * OpenAI routes left untouched.
 */
import assert from "node:assert/strict";
import { ApiError, GoogleGenAI } from "@google/genai";
import { stallingStreams, startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;

/**
 * A `@google/genai` client for the gateway. The SDK leaves some bodies unread (the upload start
 * answer, the rest of a stream after an error), so every response is cancelled at the end.
 */
function genai(gw: TestGateway, apiKey: string, apiVersion?: string) {
  const opened: Response[] = [];
  const urls: string[] = [];
  const tracked: typeof fetch = async (input, init) => {
    urls.push(input instanceof Request ? input.url : String(input));
    const res = await fetch(input, init);
    opened.push(res);
    return res;
  };
  const ai = new GoogleGenAI({
    apiKey,
    httpOptions: { baseUrl: gw.url, fetch: tracked, ...(apiVersion ? { apiVersion } : {}) },
  });
  return {
    ai,
    /** Every URL the SDK called. */
    urls,
    async release() {
      for (const res of opened) await res.body?.cancel().catch(() => {});
    },
  };
}

function assertKeyNeverForwarded(gw: TestGateway, userKey: string) {
  for (const r of gw.fake.requests) {
    assert.ok(!JSON.stringify(r.headers).includes(userKey), `${r.path}: headers`);
    assert.ok(!r.search.includes(userKey) && !r.search.includes("key="), `${r.path}: query`);
    assert.equal(r.headers["authorization"], undefined);
    assert.ok(r.path.startsWith("/v1beta/") || r.path.startsWith("/upload/v1beta/"), r.path);
  }
}

Deno.test("@google/genai on its default /v1 paths lists, generates, streams, counts and embeds", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  const userKey = await gw.createUserKey();
  const { ai, release, urls } = genai(gw, userKey);
  try {
    const names: string[] = [];
    for await (const m of await ai.models.list()) names.push(String(m.name));
    assert.ok(names.includes("models/gemini-2.5-flash"));
    assert.equal((await ai.models.get({ model: "gemini-2.5-pro" })).name, "models/gemini-2.5-pro");

    const res = await ai.models.generateContent({
      model: "gemini-2.5-flash",
      contents: "Hello from the SDK",
      config: { systemInstruction: "Be nice.", thinkingConfig: { includeThoughts: true } },
    });
    assert.equal(res.text, "Echo: Hello from the SDK");
    assert.equal(res.usageMetadata?.thoughtsTokenCount, 5);

    let text = "";
    let chunks = 0;
    for await (
      const chunk of await ai.models.generateContentStream({
        model: "gemini-2.5-flash",
        contents: "streamed hello",
      })
    ) {
      chunks++;
      text += chunk.text ?? "";
    }
    assert.equal(text, "Echo: streamed hello");
    assert.equal(chunks, 3);

    const count = await ai.models.countTokens({
      model: "gemini-2.5-flash",
      contents: "one two three",
    });
    assert.equal(count.totalTokens, 3);
    const emb = await ai.models.embedContent({
      model: "gemini-embedding-001",
      contents: ["alpha", "beta"],
      config: { outputDimensionality: 8 },
    });
    assert.equal(emb.embeddings?.length, 2);
    assert.equal(emb.embeddings?.[0]?.values?.length, 8);

    const paths = gw.fake.requests.map((r) => r.path);
    assert.ok(paths.includes("/v1beta/models/gemini-2.5-flash:generateContent"));
    assert.ok(paths.includes("/v1beta/models/gemini-2.5-flash:streamGenerateContent"));
    assert.ok(paths.includes("/v1beta/models/gemini-embedding-001:batchEmbedContents"));
    assert.ok(gw.fake.requests.every((r) => r.key === "AIzaNative-1"));
    assertKeyNeverForwarded(gw, userKey);
    assert.ok(urls.length >= 6);
    assert.ok(urls.every((u) => u.startsWith(`${gw.url}/v1/`)), "the SDK used its /v1 default");

    // Usage is recorded for native calls like for /v1.
    await gw.app.drain();
    const stats = await gw.admin<{ models: { model: string; requests: number }[] }>(
      "GET",
      "/admin/api/stats",
    );
    assert.ok(
      (stats.json.models ?? []).some((m) => m.model === "gemini-2.5-flash" && m.requests >= 2),
      JSON.stringify(stats.json.models),
    );
  } finally {
    await release();
    await gw.close();
  }
});

Deno.test("native requests authenticate with x-goog-api-key, ?key= or Bearer, and streams pass through as sent", async () => {
  const gw = await startGateway({
    keys: { "AIzaNative-1": OK },
    fakeOptions: { sseDelimiter: "\r\n\r\n" },
  });
  const userKey = await gw.createUserKey();
  try {
    const body = JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi there" }] }] });
    const path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    for (
      const [how, url, headers] of [
        ["header", `${gw.url}${path}?alt=sse`, { "x-goog-api-key": userKey }],
        ["query", `${gw.url}${path}?alt=sse&key=${userKey}`, {}],
        ["bearer", `${gw.url}${path}?alt=sse`, { authorization: `Bearer ${userKey}` }],
      ] as const
    ) {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body,
      });
      assert.equal(res.status, 200, how);
      assert.equal(res.headers.get("content-type"), "text/event-stream");
      const raw = await res.text();
      // Google's own framing (CRLF CRLF) arrives untouched: nothing was re-encoded.
      assert.equal(raw.split("\r\n\r\n").filter((e) => e.startsWith("data: ")).length, 3, how);
      assert.ok(!raw.includes("[DONE]"));
      const forwarded = gw.fake.requests.at(-1)!;
      assert.equal(forwarded.search, "?alt=sse", `${how}: the key is stripped from the query`);
      assert.equal(forwarded.key, "AIzaNative-1");
    }
    assertKeyNeverForwarded(gw, userKey);

    const anonymous = await fetch(`${gw.url}${path}?alt=sse`, { method: "POST", body });
    assert.equal(anonymous.status, 401);
    const err = await anonymous.json();
    assert.equal(err.error.code, 401);
    assert.equal(err.error.status, "UNAUTHENTICATED");
  } finally {
    await gw.close();
  }
});

Deno.test("a native stream asked for without alt=sse (one JSON array) is counted with its tokens", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  const userKey = await gw.createUserKey();
  try {
    const res = await fetch(`${gw.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-goog-api-key": userKey },
      body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "count me in" }] }] }),
    });
    assert.equal(res.status, 200);
    const chunks = await res.json();
    assert.ok(Array.isArray(chunks) && chunks.length > 1, "several chunks in one array");
    const last = chunks.at(-1).usageMetadata;
    await gw.app.drain();
    const stats = await gw.admin<{ totals: { input_tokens: number; output_tokens: number } }>(
      "GET",
      "/admin/api/stats",
    );
    assert.equal(stats.json.totals.input_tokens, last.promptTokenCount);
    assert.ok(stats.json.totals.output_tokens > 0, JSON.stringify(stats.json.totals));
  } finally {
    await gw.close();
  }
});

Deno.test("native calls fail over between keys and answer errors in Google's shape", async () => {
  const gw = await startGateway({
    keys: { "AIzaDown-1": { kind: "unavailable" }, "AIzaNative-2": OK },
  });
  const userKey = await gw.createUserKey();
  const { ai, release } = genai(gw, userKey, "v1beta");
  try {
    for (let i = 0; i < 3; i++) {
      const res = await ai.models.generateContent({
        model: "gemini-2.5-flash",
        contents: `try ${i}`,
      });
      assert.equal(res.text, `Echo: try ${i}`);
    }
    let text = "";
    for await (
      const c of await ai.models.generateContentStream({ model: "gemini-2.5-flash", contents: "s" })
    ) text += c.text ?? "";
    assert.equal(text, "Echo: s");

    const bad = await ai.models.generateContent({ model: "gemini-2.5-flash", contents: "[[BAD]]" })
      .catch((e) => e);
    assert.ok(bad instanceof ApiError);
    assert.equal(bad.status, 400);
    const missing = await ai.models.generateContent({ model: "gemini-9-nope", contents: "x" })
      .catch((e) => e);
    assert.ok(missing instanceof ApiError);
    assert.equal(missing.status, 404);

    const midStream = await (async () => {
      for await (
        const _ of await ai.models.generateContentStream({
          model: "gemini-2.5-flash",
          contents: "[[MIDERROR]]",
        })
      ) {
        // drain
      }
    })().catch((e) => e);
    assert.ok(midStream instanceof ApiError, String(midStream));

    const wrongKey = new GoogleGenAI({
      apiKey: "sk-not-a-key",
      httpOptions: { baseUrl: gw.url, apiVersion: "v1beta" },
    });
    const denied = await wrongKey.models.generateContent({
      model: "gemini-2.5-flash",
      contents: "x",
    })
      .catch((e) => e);
    assert.ok(denied instanceof ApiError);
    assert.equal(denied.status, 401);
  } finally {
    await release();
    await gw.close();
  }
});

Deno.test("a cut native stream ends with an error event the SDK raises, not a silent end", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  const { ai, release } = genai(gw, await gw.createUserKey());
  try {
    let text = "";
    const err = await (async () => {
      for await (
        const c of await ai.models.generateContentStream({
          model: "gemini-2.5-flash",
          contents: "cut me [[CUT]]",
        })
      ) text += c.text ?? "";
    })().catch((e) => e);
    assert.ok(err instanceof ApiError, String(err));
    assert.match(err.message, /before the answer was complete/);
    assert.ok(text.length > 0, "what arrived was passed on first");
  } finally {
    await release();
    await gw.close();
  }
});

Deno.test("native uploads go through the gateway's session URL, and files stay with their key and owner", async () => {
  const gw = await startGateway({
    keys: { "AIzaNativeKey-1@projectA": OK, "AIzaNativeKey-2@projectB": OK },
  });
  const owner = await gw.createUserKey({ name: "owner" });
  const other = await gw.createUserKey({ name: "other" });
  const mine = genai(gw, owner);
  const theirs = genai(gw, other, "v1beta");
  try {
    const blob = new Blob(["hello file world"], { type: "text/plain" });
    const file = await mine.ai.files.upload({ file: blob, config: { displayName: "hello.txt" } });
    assert.equal(file.displayName, "hello.txt");
    assert.equal(file.sizeBytes, "16");
    assert.equal(file.state, "ACTIVE");
    assert.ok(mine.urls.some((u) => u.startsWith(`${gw.url}/upload/v1/files?upload_id=`)));
    const uploads = gw.fake.requests.filter((r) => r.path === "/upload/v1beta/files");
    assert.equal(uploads.length, 2, "start, then the bytes");
    assert.equal(uploads[0].key, uploads[1].key, "the session stays on its key");
    assert.equal(uploads[1].bytes, 16);
    const uploader = uploads[0].key;

    assert.equal((await mine.ai.files.get({ name: file.name! })).uri, file.uri);
    const listed: string[] = [];
    for await (const f of await mine.ai.files.list()) listed.push(String(f.name));
    assert.deepEqual(listed, [file.name]);
    const none: string[] = [];
    for await (const f of await theirs.ai.files.list()) none.push(String(f.name));
    assert.deepEqual(none, [], "another user key sees none of them");
    const denied = await theirs.ai.files.get({ name: file.name! }).catch((e) => e);
    assert.ok(denied instanceof ApiError);
    assert.equal(denied.status, 403);

    gw.fake.reset();
    for (let i = 0; i < 4; i++) {
      const res = await mine.ai.models.generateContent({
        model: "gemini-2.5-flash",
        contents: [{
          role: "user",
          parts: [{ text: `read ${i}` }, {
            fileData: { fileUri: file.uri!, mimeType: "text/plain" },
          }],
        }],
      });
      assert.equal(res.text, `Echo: read ${i}`);
    }
    assert.ok(gw.fake.requests.every((r) => r.key === uploader), "pinned to the uploading key");

    await mine.ai.files.delete({ name: file.name! });
    const gone = await mine.ai.files.get({ name: file.name! }).catch((e) => e);
    assert.ok(gone instanceof ApiError);
  } finally {
    await mine.release();
    await theirs.release();
    await gw.close();
  }
});

Deno.test("native and OpenAI requests share /v1 without stepping on each other", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  const userKey = await gw.createUserKey();
  try {
    const openai = await fetch(`${gw.url}/v1/models`, {
      headers: { authorization: `Bearer ${userKey}` },
    });
    const list = await openai.json();
    assert.equal(list.object, "list", "Bearer on /v1/models: OpenAI's shape");
    const native = await fetch(`${gw.url}/v1/models`, { headers: { "x-goog-api-key": userKey } });
    const models = await native.json();
    assert.ok(Array.isArray(models.models), "x-goog-api-key on /v1/models: Gemini's shape");
    const chat = await gw.openai(userKey).chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "openai still works" }],
    });
    assert.equal(chat.choices[0].message.content, "Echo: openai still works");
    const unknownNative = await fetch(`${gw.url}/v1beta/cachedContents`, {
      headers: { "x-goog-api-key": userKey },
    });
    assert.equal(unknownNative.status, 404);
    assert.equal((await unknownNative.json()).error.status, "NOT_FOUND");

    await gw.admin("PUT", "/admin/api/aliases", { aliases: { "my-model": "gemini-2.5-flash" } });
    const { ai, release } = genai(gw, userKey);
    try {
      const res = await ai.models.generateContent({ model: "my-model", contents: "aliased" });
      assert.equal(res.text, "Echo: aliased");
      assert.equal(
        gw.fake.requests.at(-1)!.path,
        "/v1beta/models/gemini-2.5-flash:generateContent",
      );
    } finally {
      await release();
    }
  } finally {
    await gw.close();
  }
});

Deno.test("a user key's rate limit applies to native calls too, in Google's shape", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  const userKey = await gw.createUserKey({ rpm: 1 });
  try {
    const call = () =>
      fetch(`${gw.url}/v1beta/models/gemini-2.5-flash:generateContent`, {
        method: "POST",
        headers: { "x-goog-api-key": userKey, "content-type": "application/json" },
        body: JSON.stringify({ contents: [{ parts: [{ text: "x" }] }] }),
      });
    assert.equal((await (await call()).json()).candidates.length, 1);
    const limited = await call();
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    assert.equal((await limited.json()).error.status, "RESOURCE_EXHAUSTED");
  } finally {
    await gw.close();
  }
});

Deno.test("a native stream that goes quiet upstream ends with a Google-shaped error event", async () => {
  // The upstream sends its first event, then nothing: the idle timeout must end the stream.
  const gw = await startGateway({
    keys: { "AIzaNative-1": OK },
    env: { UPSTREAM_TIMEOUT_MS: "1000" },
    upstreamFetch: stallingStreams,
  });
  const userKey = await gw.createUserKey();
  try {
    const res = await fetch(
      `${gw.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`,
      {
        method: "POST",
        headers: { "content-type": "application/json", "x-goog-api-key": userKey },
        body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi there" }] }] }),
      },
    );
    assert.equal(res.status, 200);
    const events = (await res.text()).split(/\r\n\r\n|\n\n/).filter((e) => e.startsWith("data: "));
    assert.ok(events.length >= 2, "the first upstream event and then the error");
    const last = JSON.parse(events.at(-1)!.slice("data: ".length));
    assert.equal(last.error.code, 502);
    assert.equal(last.error.status, "UNAVAILABLE");
    assert.match(last.error.message, /sent nothing for too long/);
  } finally {
    await gw.close();
  }
});

Deno.test("native model lists and lookups show a user key only the models it may use", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-models": OK } });
  try {
    const created = await gw.admin<{ key: string }>("POST", "/admin/api/user-keys", {
      name: "flash only",
      models: ["gemini-2.5-flash*"],
    });
    assert.equal(created.status, 201);
    const limited = created.json.key;
    const open = await gw.createUserKey();
    assert.equal(
      (await gw.admin("PATCH", "/admin/api/models/gemini-2.5-pro", { enabled: false })).status,
      200,
    );
    const get = async (key: string, path: string) => {
      const res = await fetch(`${gw.url}${path}`, { headers: { "x-goog-api-key": key } });
      return { status: res.status, json: await res.json() };
    };
    const names = (json: { models: { name: string }[] }) => json.models.map((m) => m.name);
    const all = await get(open, "/v1beta/models");
    assert.equal(all.status, 200);
    assert.ok(names(all.json).includes("models/gemini-2.5-flash"));
    assert.ok(!names(all.json).includes("models/gemini-2.5-pro"), "a disabled model is hidden");
    const mine = await get(limited, "/v1beta/models");
    assert.ok(names(mine.json).length > 0);
    for (const name of names(mine.json)) assert.match(name, /^models\/gemini-2\.5-flash/);
    const sdk = genai(gw, limited, "v1beta");
    try {
      const listed: string[] = [];
      for await (const m of await sdk.ai.models.list()) listed.push(m.name ?? "");
      assert.deepEqual(listed, names(mine.json), "the SDK sees the same list");
    } finally {
      await sdk.release();
    }
    assert.equal((await get(limited, "/v1beta/models/gemini-2.5-flash")).status, 200);
    const hidden = await get(limited, "/v1beta/models/gemini-embedding-001");
    assert.equal(hidden.status, 404);
    assert.equal(hidden.json.error.status, "NOT_FOUND");
    assert.equal((await get(open, "/v1beta/models/gemini-2.5-pro")).status, 404);
    assert.equal((await get(open, "/v1beta/models/gemini-embedding-001")).status, 200);
  } finally {
    await gw.close();
  }
});

/** Starts a resumable native upload of a 5-byte text file; its upload URL (asserted 200). */
async function startUpload(gw: TestGateway, userKey: string): Promise<string> {
  const res = await fetch(`${gw.url}/upload/v1beta/files`, {
    method: "POST",
    headers: {
      "x-goog-api-key": userKey,
      "content-type": "application/json",
      "x-goog-upload-protocol": "resumable",
      "x-goog-upload-command": "start",
      "x-goog-upload-header-content-length": "5",
      "x-goog-upload-header-content-type": "text/plain",
    },
    body: JSON.stringify({ file: { display_name: "notes" } }),
  });
  await res.body?.cancel();
  assert.equal(res.status, 200);
  return res.headers.get("x-goog-upload-url") ?? "";
}

Deno.test("a native upload whose Gemini key was disabled after it started is refused with a 400 that says so", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-upload": OK } });
  try {
    const userKey = await gw.createUserKey();
    const uploadUrl = await startUpload(gw, userKey);
    assert.ok(uploadUrl.startsWith(`${gw.url}/upload/`), uploadUrl);
    const keys = await gw.admin<{ data: { id: string }[] }>("GET", "/admin/api/keys");
    const id = keys.json.data[0].id;
    assert.equal(
      (await gw.admin("PATCH", `/admin/api/keys/${id}`, { enabled: false })).status,
      200,
    );
    const upstreamCalls = gw.fake.requests.length;
    const chunk = await fetch(uploadUrl!, {
      method: "POST",
      headers: { "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0" },
      body: "hello",
    });
    const json = await chunk.json();
    assert.equal(chunk.status, 400);
    assert.equal(json.error.status, "INVALID_ARGUMENT");
    assert.match(json.error.message, /upload session .*disabled; upload the file again/);
    assert.equal(gw.fake.requests.length, upstreamCalls, "no chunk went upstream");
  } finally {
    await gw.close();
  }
});

Deno.test("a native upload's chunks need the key that started it: still enabled, and from an allowed address", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-upload": OK } });
  try {
    const userKey = await gw.createUserKey();
    const users = await gw.admin<{ data: { id: string }[] }>("GET", "/admin/api/user-keys");
    const ownerId = users.json.data[0].id;
    const start = () => startUpload(gw, userKey);
    const chunk = async (url: string) => {
      const res = await fetch(url, {
        method: "POST",
        headers: { "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0" },
        body: "hello",
      });
      return { status: res.status, json: await res.json() };
    };
    const patch = (body: unknown) => gw.admin("PATCH", `/admin/api/user-keys/${ownerId}`, body);
    // The address list changes after the upload started: its chunks are refused.
    const first = await start();
    assert.equal((await patch({ allowed_ips: ["10.0.0.0/8"] })).status, 200);
    const refused = await chunk(first);
    assert.equal(refused.status, 403, JSON.stringify(refused.json));
    assert.match(refused.json.error.message, /may not be used from this address/);
    // Allowed again, the same session goes on.
    assert.equal((await patch({ allowed_ips: null })).status, 200);
    assert.equal((await chunk(first)).status, 200);
    // A disabled key's upload stops.
    const second = await start();
    assert.equal((await patch({ enabled: false })).status, 200);
    const disabled = await chunk(second);
    assert.equal(disabled.status, 403);
    assert.match(disabled.json.error.message, /deleted or disabled/);
  } finally {
    await gw.close();
  }
});

Deno.test("a native stream slow to start gets heartbeats Google's SDK skips, then its answer or its error", async () => {
  const gw = await startGateway({
    keys: { "AIzaNative-slow": { kind: "slow", delayMs: 2_500 } },
    fakeOptions: { quiet: true },
  });
  const { ai, release } = genai(gw, await gw.createUserKey(), "v1beta");
  try {
    await gw.admin("PATCH", "/admin/api/settings", { streamHeartbeatSeconds: 1, maxAttempts: 1 });
    let text = "";
    for await (
      const chunk of await ai.models.generateContentStream({
        model: "gemini-2.5-flash",
        contents: "slow hello",
      })
    ) text += chunk.text ?? "";
    assert.equal(text, "Echo: slow hello");
    // The raw bytes began with the heartbeats: blank lines, which the older SDK inside gemini-cli
    // 0.61 also skips (it reads events with this expression from the start of its buffer; an SSE
    // comment there stalled it: "Incomplete JSON segment at the end").
    const raw = await fetch(
      `${gw.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`,
      {
        method: "POST",
        headers: { "x-goog-api-key": await gw.createUserKey(), "content-type": "application/json" },
        body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "raw" }] }] }),
      },
    );
    let buffer = await raw.text();
    assert.match(buffer, /^(\n\n){2,}data: \{"candidates"/);
    const olderSdkLine = /^\s*data: (.*)(?:\n\n|\r\r|\r\n\r\n)/;
    let events = 0;
    for (let m = buffer.match(olderSdkLine); m; m = buffer.match(olderSdkLine)) {
      JSON.parse(m[1]);
      events++;
      buffer = buffer.slice(m[0].length);
    }
    assert.equal(buffer.trim(), "", "the older SDK reads every event");
    assert.ok(events >= 3);

    // Slow, then failing: Google's SDK raises the error event.
    gw.fake.setKey("AIzaNative-slow", { kind: "unavailable" });
    await gw.admin("PATCH", "/admin/api/settings", { streamHeartbeatSeconds: 0 });
    const quick = await ai.models.generateContentStream({
      model: "gemini-2.5-flash",
      contents: "x",
    })
      .catch((e) => e);
    assert.ok(quick instanceof ApiError && quick.status === 503, String(quick));
  } finally {
    await release();
    await gw.close();
  }
});

Deno.test("a slow native stream that fails after the heartbeats ends with an error Google's SDK raises", async () => {
  const gw = await startGateway({
    keys: { "AIzaNative-down": { kind: "unavailable" } },
    fakeOptions: { quiet: true, latencyMs: 2_500 },
  });
  const { ai, release } = genai(gw, await gw.createUserKey(), "v1beta");
  try {
    await gw.admin("PATCH", "/admin/api/settings", { streamHeartbeatSeconds: 1, maxAttempts: 1 });
    await assert.rejects(
      async () => {
        for await (
          const _ of await ai.models.generateContentStream({
            model: "gemini-2.5-flash",
            contents: "x",
          })
        ) { /* nothing comes before the error */ }
      },
      (err: Error) => {
        assert.ok(err instanceof ApiError, String(err));
        assert.equal(err.status, 503);
        assert.match(err.message, /overloaded/);
        return true;
      },
    );
  } finally {
    await release();
    await gw.close();
  }
});
