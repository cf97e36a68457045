/**
 * Chat completions through the gateway, driven by the real `openai` npm client against the fake
 * Gemini upstream: translation both ways, streaming, usage, finish reasons, errors.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { post, stallingStreams, startGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;

function lastGenerateBody(fake: { requests: { path: string; body: unknown }[] }) {
  const req = fake.requests.findLast((r) =>
    r.path.includes(":generateContent") || r.path.includes(":streamGenerateContent")
  );
  assert.ok(req, "the upstream received a generate request");
  return req.body as {
    contents: { role: string; parts: { text?: string }[] }[];
    systemInstruction?: { parts: { text: string }[] };
    generationConfig?: Record<string, unknown>;
  };
}

Deno.test("a non-stream chat returns the upstream answer in OpenAI's shape with usage", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const res = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "hello there" },
      ],
    });
    assert.equal(res.object, "chat.completion");
    assert.match(res.id, /^chatcmpl-/);
    assert.equal(res.model, "gemini-2.5-flash");
    assert.equal(res.choices.length, 1);
    assert.equal(res.choices[0].message.role, "assistant");
    assert.equal(res.choices[0].message.content, "Echo: hello there");
    assert.equal(res.choices[0].finish_reason, "stop");
    assert.ok(res.usage);
    assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
    assert.ok(res.usage.prompt_tokens > 0);

    const body = lastGenerateBody(gw.fake);
    assert.deepEqual(body.systemInstruction, { parts: [{ text: "Be brief." }] });
    assert.deepEqual(body.contents, [{ role: "user", parts: [{ text: "hello there" }] }]);
  } finally {
    await gw.close();
  }
});

Deno.test("multi-turn messages, sampling and stop parameters are mapped to Gemini's fields", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    await client.chat.completions.create({
      model: "models/gemini-2.5-flash",
      messages: [
        { role: "system", content: "One." },
        { role: "developer", content: [{ type: "text", text: "Two." }] },
        { role: "user", content: "first question" },
        { role: "assistant", content: "first answer" },
        {
          role: "user",
          content: [{ type: "text", text: "second " }, { type: "text", text: "question" }],
        },
      ],
      temperature: 0.3,
      top_p: 0.9,
      max_completion_tokens: 50,
      stop: ["END"],
    });
    const body = lastGenerateBody(gw.fake);
    assert.deepEqual(body.systemInstruction, { parts: [{ text: "One.\n\nTwo." }] });
    assert.deepEqual(body.contents.map((c) => c.role), ["user", "model", "user"]);
    assert.equal(body.contents[1].parts[0].text, "first answer");
    const { thinkingConfig: _thinking, ...sampling } = body.generationConfig ?? {};
    assert.deepEqual(sampling, {
      temperature: 0.3,
      topP: 0.9,
      maxOutputTokens: 50,
      stopSequences: ["END"],
    });
    const path = gw.fake.requests.at(-1)?.path;
    assert.equal(path, "/v1beta/models/gemini-2.5-flash:generateContent");
  } finally {
    await gw.close();
  }
});

Deno.test("parameters the client did not set are not sent upstream", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "hi" }],
    });
    // Only the admin's thinking default (thought summaries on) is added, no sampling parameter.
    assert.deepEqual(lastGenerateBody(gw.fake).generationConfig, {
      thinkingConfig: { includeThoughts: true },
    });
  } finally {
    await gw.close();
  }
});

Deno.test("max_tokens cut-off maps to finish_reason length and n to several choices", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const cut = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "one two three four five six" }],
      max_tokens: 2,
    });
    assert.equal(cut.choices[0].finish_reason, "length");
    assert.equal(lastGenerateBody(gw.fake).generationConfig?.maxOutputTokens, 2);

    const many = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "pick" }],
      n: 3,
    });
    assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2]);
    assert.equal(lastGenerateBody(gw.fake).generationConfig?.candidateCount, 3);
  } finally {
    await gw.close();
  }
});

Deno.test("a stream delivers deltas, a finish chunk and a separate usage chunk before [DONE]", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const stream = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "tell me a long story please" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const ids = new Set(chunks.map((c) => c.id));
    assert.equal(ids.size, 1, "every chunk shares one id");
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? "")).join("");
    assert.equal(text, "Echo: tell me a long story please");
    const contentChunks = chunks.filter((c) => c.choices[0]?.delta.content);
    assert.ok(contentChunks.length >= 2, "the answer arrives in several deltas");
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.equal(finish.length, 1);
    assert.equal(finish[0].choices[0].finish_reason, "stop");
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage && last.usage.total_tokens > 0);
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
    assert.equal(gw.fake.requests.at(-1)?.search, "?alt=sse");
  } finally {
    await gw.close();
  }
});

Deno.test("a stream without include_usage carries no usage fields and ends with [DONE]", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const key = await gw.createUserKey();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "gemini-2.5-flash",
        stream: true,
        messages: [{ role: "user", content: "hi" }],
      }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const text = await res.text();
    const events = text.split("\n\n").filter(Boolean);
    assert.equal(events.at(-1), "data: [DONE]");
    for (const e of events.slice(0, -1)) {
      const chunk = JSON.parse(e.slice("data: ".length));
      assert.equal("usage" in chunk, false);
    }
  } finally {
    await gw.close();
  }
});

Deno.test("a stream the upstream cuts without a finish reason ends with an error, not a fake stop", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const stream = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "a story [[CUT]] that breaks" }],
      stream: true,
    });
    const finishes: (string | null)[] = [];
    await assert.rejects(async () => {
      for await (const chunk of stream) finishes.push(chunk.choices[0]?.finish_reason ?? null);
    }, /before the answer was complete/);
    assert.ok(!finishes.includes("stop"));
  } finally {
    await gw.close();
  }
});

Deno.test("an error event in the middle of an upstream stream reaches the client as an error", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const stream = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "go [[MIDERROR]] now" }],
      stream: true,
    });
    await assert.rejects(async () => {
      for await (const _ of stream) { /* consume */ }
    }, /Upstream failed during the stream/);
  } finally {
    await gw.close();
  }
});

Deno.test("safety blocks map to finish_reason content_filter", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const blocked = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "[[BLOCK]]" }],
    });
    assert.equal(blocked.choices[0].finish_reason, "content_filter");
    assert.equal(blocked.choices[0].message.content, null);
    const filtered = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "[[SAFETY]]" }],
    });
    assert.equal(filtered.choices[0].finish_reason, "content_filter");
  } finally {
    await gw.close();
  }
});

Deno.test("a JSON body is read as UTF-8 text: a leading byte-order mark is accepted, an empty body is named", async () => {
  // Windows tools (PowerShell's UTF-8 files, Notepad) often start a JSON file with a BOM.
  // `Request.text()` drops it as UTF-8 decoding should; Deno's faster `Request.json()` path does
  // not, and would refuse these bodies.
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const apiKey = await gw.createUserKey();
    const endpoint = `${gw.url}/v1/chat/completions`;
    const chat = { model: "gemini-2.5-flash", messages: [{ role: "user", content: "bom" }] };
    const withBom = await post<{ choices: { message: { content: string } }[] }>(endpoint, {
      apiKey,
      body: "\uFEFF" + JSON.stringify(chat),
    });
    assert.equal(withBom.status, 200);
    assert.equal(withBom.json.choices[0].message.content, "Echo: bom");

    for (const body of ["", "  \n"]) {
      const empty = await post(endpoint, { apiKey, body });
      assert.equal(empty.status, 400, JSON.stringify(body));
      assert.equal(empty.json.error.code, "invalid_json");
      assert.match(empty.json.error.message, /body is empty/);
    }
  } finally {
    await gw.close();
  }
});

Deno.test("bad request bodies get a 400 in OpenAI's error shape naming the field", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const apiKey = await gw.createUserKey();
    const endpoint = `${gw.url}/v1/chat/completions`;

    const malformed = await post(endpoint, { apiKey, body: "{not json" });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.json.error.type, "invalid_request_error");
    assert.equal(malformed.json.error.code, "invalid_json");
    assert.match(malformed.json.error.message, /could not parse the JSON body/);

    const wrongType = await post(endpoint, {
      apiKey,
      body: {
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
        temperature: "hot",
      },
    });
    assert.equal(wrongType.status, 400);
    assert.equal(wrongType.json.error.param, "temperature");
    assert.match(wrongType.json.error.message, /'temperature'/);

    const badRole = await post(endpoint, {
      apiKey,
      body: { model: "gemini-2.5-flash", messages: [{ role: "robot", content: "x" }] },
    });
    assert.equal(badRole.status, 400);
    assert.equal(badRole.json.error.param, "messages[0].role");

    const noMessages = await post(endpoint, {
      apiKey,
      body: { model: "gemini-2.5-flash", messages: [] },
    });
    assert.equal(noMessages.status, 400);
    assert.equal(noMessages.json.error.param, "messages");

    const streamN = await post(endpoint, {
      apiKey,
      body: {
        model: "gemini-2.5-flash",
        stream: true,
        n: 2,
        messages: [{ role: "user", content: "x" }],
      },
    });
    assert.equal(streamN.status, 400);
    assert.equal(streamN.json.error.param, "n");

    const unknownExtra = await post(endpoint, {
      apiKey,
      body: {
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
        some_future_field: 1,
      },
    });
    assert.equal(unknownExtra.status, 200, "unknown fields are ignored");
    assert.equal(gw.fake.requests.filter((r) => r.path.includes("generate")).length, 1);
  } finally {
    await gw.close();
  }
});

Deno.test("a model name over 128 characters is a 400 on every API; one in a native path is counted as (other)", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const apiKey = await gw.createUserKey();
    const long = `gemini-${"x".repeat(2100)}`;
    const messages = [{ role: "user", content: "hi" }];
    for (
      const [path, body] of [
        ["/v1/chat/completions", { model: long, messages }],
        ["/v1/responses", { model: long, input: "hi" }],
        ["/v1/messages", { model: long, max_tokens: 10, messages }],
        ["/v1/embeddings", { model: long, input: "hi" }],
      ] as const
    ) {
      const res = await post(`${gw.url}${path}`, { apiKey, body });
      assert.equal(res.status, 400, path);
      assert.match(JSON.stringify(res.json), /model/, path);
    }
    assert.equal(gw.fake.requests.length, 0, "nothing reached the upstream");
    // The native API takes the model from the path: the upstream says it does not know it.
    const native = await post(`${gw.url}/v1beta/models/${long}:generateContent`, {
      apiKey,
      body: { contents: [{ role: "user", parts: [{ text: "hi" }] }] },
    });
    assert.equal(native.status, 404);
    const ok = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { model: "gemini-2.5-flash", messages },
    });
    assert.equal(ok.status, 200);
    await gw.app.drain();
    // Usage kept counting: the long name would not fit a KV key, so it counts as (other).
    const stats = await gw.admin<{ totals: { requests: number }; models: { model: string }[] }>(
      "GET",
      "/admin/api/stats",
    );
    assert.equal(stats.json.totals.requests, 1);
    assert.deepEqual(stats.json.models.map((m) => m.model).sort(), ["(other)", "gemini-2.5-flash"]);
  } finally {
    await gw.close();
  }
});

Deno.test("made-up model names the upstream refuses are counted as (other), a real model by its name", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const apiKey = await gw.createUserKey();
    const messages = [{ role: "user", content: "hi" }];
    // A fresh isolate has not listed the models yet: the first refusal already counts as (other).
    for (const model of ["made-up-1", "made-up-2", "made-up-3"]) {
      const res = await post(`${gw.url}/v1/chat/completions`, {
        apiKey,
        body: { model, messages },
      });
      assert.equal(res.status, 404, model);
    }
    const real = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { model: "gemini-2.5-flash", messages },
    });
    assert.equal(real.status, 200);
    await gw.app.drain();
    const stats = await gw.admin<{ models: { model: string; failed_requests: number }[] }>(
      "GET",
      "/admin/api/stats",
    );
    assert.deepEqual(stats.json.models.map((m) => [m.model, m.failed_requests]).sort(), [
      ["(other)", 3],
      ["gemini-2.5-flash", 0],
    ]);
    const log = await gw.admin<{ data: { model: string }[] }>("GET", "/admin/api/request-log");
    assert.deepEqual(log.json.data.map((e) => e.model).sort(), [
      "gemini-2.5-flash",
      "made-up-1",
      "made-up-2",
      "made-up-3",
    ], "the request log keeps the names as they were asked for");
  } finally {
    await gw.close();
  }
});

Deno.test("an upstream request error is answered at once without blaming or rotating keys", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK, "AIzaGood-2": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    await assert.rejects(
      client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "[[BAD]]" }],
      }),
      (err: unknown) =>
        err instanceof OpenAI.BadRequestError && /Invalid JSON payload/.test(err.message),
    );
    await assert.rejects(
      client.chat.completions.create({
        model: "gemini-9-nonexistent",
        messages: [{ role: "user", content: "x" }],
      }),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
    const generateCalls = gw.fake.requests.filter((r) => r.path.includes("generateContent"));
    assert.equal(generateCalls.length, 2, "each bad request reached the upstream exactly once");
    const keys = await gw.admin<{ data: { status: string }[] }>("GET", "/admin/api/keys");
    assert.deepEqual(keys.json.data.map((k) => k.status), ["active", "active"]);
  } finally {
    await gw.close();
  }
});

Deno.test("the upstream gets exactly one credential, never the client's Authorization header", async () => {
  const gw = await startGateway({ keys: { "AQ.Ab8RN6-new-format-key": OK } });
  try {
    const userKey = await gw.createUserKey();
    const client = gw.openai(userKey);
    await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "x" }],
    });
    const req = gw.fake.requests.at(-1)!;
    assert.equal(req.headers["x-goog-api-key"], "AQ.Ab8RN6-new-format-key");
    assert.equal(req.headers["authorization"], undefined);
    assert.equal(req.search.includes("key="), false);
    assert.ok(!JSON.stringify(req.headers).includes(userKey));
  } finally {
    await gw.close();
  }
});

Deno.test("/v1/models lists upstream models without the models/ prefix, and one model by id", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.ok(ids.includes("gemini-2.5-flash"));
    assert.ok(ids.includes("gemini-embedding-001"));
    assert.ok(ids.every((id) => !id.startsWith("models/")));
    assert.ok(!ids.includes("imagen-4.0-generate-001"), "models we cannot serve are left out");
    const one = await client.models.retrieve("gemini-2.5-pro");
    assert.equal(one.id, "gemini-2.5-pro");
    assert.equal(one.object, "model");
    await assert.rejects(
      client.models.retrieve("nope-1"),
      (e: unknown) => e instanceof OpenAI.NotFoundError,
    );
    // An id with an encoded slash or a percent sign is read once, as sent.
    assert.equal((await client.models.retrieve("models/gemini-2.5-pro")).id, "gemini-2.5-pro");
    await assert.rejects(
      client.models.retrieve("100%"),
      (e: unknown) => e instanceof OpenAI.NotFoundError && e.message.includes("'100%'"),
    );
    // Cached briefly: the second listing did not call the upstream again.
    const listCalls = gw.fake.requests.filter((r) => r.path === "/v1beta/models").length;
    assert.equal(listCalls, 1);
  } finally {
    await gw.close();
  }
});

Deno.test("a client that gives up on a slow answer stops the upstream call and is logged as 499, blaming no key", async () => {
  // The upstream holds its answer until its request is aborted (or 10 s pass).
  let upstreamAborted: (() => void) | null = null;
  const aborted = new Promise<void>((resolve) => (upstreamAborted = resolve));
  const held: typeof fetch = (_input, init) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve(new Response("{}")), 10_000);
      init?.signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        upstreamAborted?.();
        reject(init.signal?.reason);
      }, { once: true });
    });
  const gw = await startGateway({ keys: { "AIzaGood-1": OK }, upstreamFetch: held });
  // What the gateway logs as a failure: a client that leaves is not one.
  const logged: string[] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => logged.push(args.map(String).join(" "));
  try {
    const apiKey = await gw.createUserKey();
    const client = new AbortController();
    const started = performance.now();
    const req = fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "hi" }],
      }),
      signal: client.signal,
    });
    await new Promise((r) => setTimeout(r, 100));
    client.abort();
    await req.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), 5_000)));
    const outcome = await Promise.race([aborted, timeout]);
    clearTimeout(timer);
    assert.notEqual(outcome, "late", "upstream call aborted");
    assert.ok(performance.now() - started < 5_000);
    // A stream the client leaves before its first byte: the same.
    const streamClient = new AbortController();
    const streamReq = fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({
        model: "gemini-2.5-flash",
        stream: true,
        messages: [{ role: "user", content: "hi" }],
      }),
      signal: streamClient.signal,
    });
    await new Promise((r) => setTimeout(r, 100));
    streamClient.abort();
    await streamReq.catch(() => {});
    // Both are in the request log as 499 client_closed, with their attempt; no key is blamed.
    type Log = { data: { status: number; error_class: string; attempts: number }[] };
    let log = await gw.admin<Log>("GET", "/admin/api/request-log");
    for (let i = 0; i < 50 && log.json.data.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      log = await gw.admin<Log>("GET", "/admin/api/request-log");
    }
    assert.deepEqual(
      log.json.data.map((e) => [e.status, e.error_class, e.attempts]),
      [[499, "client_closed", 1], [499, "client_closed", 1]],
    );
    const stats = await gw.admin<{ totals: { errors: number; failed_requests: number } }>(
      "GET",
      "/admin/api/stats",
    );
    assert.deepEqual([stats.json.totals.errors, stats.json.totals.failed_requests], [0, 0]);
  } finally {
    await gw.close();
    console.error = consoleError;
  }
  assert.deepEqual(logged, []);
});

Deno.test("a chat stream that goes quiet upstream ends with an error event once the upstream timeout passes", async () => {
  // The upstream sends its first event, then nothing: the idle timeout must end the stream.
  const gw = await startGateway({
    keys: { "AIzaQuiet-1": OK },
    env: { UPSTREAM_TIMEOUT_MS: "1000" },
    upstreamFetch: stallingStreams,
  });
  try {
    const key = await gw.createUserKey();
    const started = performance.now();
    const res = await post<string>(`${gw.url}/v1/chat/completions`, {
      apiKey: key,
      body: {
        model: "gemini-2.5-flash",
        stream: true,
        messages: [{ role: "user", content: "hi there" }],
      },
    });
    const waited = performance.now() - started;
    assert.equal(res.status, 200);
    const events = res.json.split("\n\n").filter((e) => e.startsWith("data: "));
    assert.ok(events.length >= 2, "the first upstream event and then the error");
    const last = JSON.parse(events.at(-1)!.slice("data: ".length));
    assert.equal(last.error.code, "upstream_stream_error");
    assert.match(last.error.message, /sent nothing for 1000 ms/);
    assert.ok(waited >= 1000 && waited < 5000, `ended after ${waited} ms`);
  } finally {
    await gw.close();
  }
});
