/**
 * Tests of the fake Gemini upstream, through plain fetch and through @google/genai, so that the
 * fake can be trusted as a stand-in for generativelanguage.googleapis.com.
 *
 * @module
 */
import { ApiError, GoogleGenAI } from "@google/genai";
import {
  type FakeGemini,
  type FakeGeminiOptions,
  type RecordedRequest,
  startFakeGemini,
} from "./fake_gemini.ts";

type Json = Record<string, unknown>;

/** Starts a quiet fake, runs the body, always closes the fake. */
async function withFake(
  options: FakeGeminiOptions,
  body: (fake: FakeGemini) => Promise<void>,
): Promise<void> {
  const fake = await startFakeGemini({ quiet: true, ...options });
  try {
    await body(fake);
  } finally {
    await fake.close();
  }
}

/** Fails the test with a message when the condition is false. */
function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

/** Deep equality via JSON (enough for wire shapes). */
function assertEquals(actual: unknown, expected: unknown, message = ""): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message}\nexpected: ${e}\nactual:   ${a}`);
}

/** Narrows to a JSON object or fails. */
function obj(value: unknown, what = "value"): Json {
  assert(
    typeof value === "object" && value !== null && !Array.isArray(value),
    `${what} not object`,
  );
  return value as Json;
}

/** Narrows to an array or fails. */
function arr(value: unknown, what = "value"): unknown[] {
  assert(Array.isArray(value), `${what} is not an array`);
  return value;
}

/** POSTs JSON with an API key header. */
function post(
  url: string,
  key: string | null,
  body: unknown,
  extra?: HeadersInit,
): Promise<Response> {
  const headers = new Headers(extra);
  headers.set("content-type", "application/json");
  if (key !== null) headers.set("x-goog-api-key", key);
  return fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
}

/** GETs with an API key header. */
function get(url: string, key: string | null): Promise<Response> {
  return fetch(url, { headers: key === null ? {} : { "x-goog-api-key": key } });
}

/** Reads a Google error body and checks the common envelope. */
async function readError(res: Response, code: number, status: string): Promise<Json> {
  assertEquals(res.status, code, "http status");
  assertEquals(res.headers.get("content-type"), "application/json; charset=UTF-8", "content-type");
  const body = obj(await res.json(), "error body");
  assertEquals(Object.keys(body), ["error"], "top-level keys");
  const error = obj(body.error, "error");
  assertEquals(error.code, code, "error.code");
  assertEquals(error.status, status, "error.status");
  assert(typeof error.message === "string" && error.message.length > 0, "error.message");
  return error;
}

/** Finds a `details[]` entry by its @type suffix. */
function detail(error: Json, type: string): Json {
  const found = arr(error.details, "details").map((d) => obj(d)).find((d) =>
    d["@type"] === `type.googleapis.com/google.rpc.${type}`
  );
  assert(found !== undefined, `no ${type} in details`);
  return found;
}

/** A generateContent body with one user turn. */
function userTurn(text: string, extra: Json = {}): Json {
  return { contents: [{ role: "user", parts: [{ text }] }], ...extra };
}

/** Splits a raw SSE body into its `data:` payloads, checking the framing. */
function sseEvents(raw: string, delimiter: string): Json[] {
  assert(raw.endsWith(delimiter), "stream does not end with the delimiter");
  const events = raw.slice(0, -delimiter.length).split(delimiter);
  return events.map((e) => {
    assert(e.startsWith("data: "), `event not framed as data: ${JSON.stringify(e)}`);
    assert(!e.includes("[DONE]"), "unexpected [DONE]");
    return obj(JSON.parse(e.slice(6)), "event");
  });
}

/** The text parts of the first candidate of a response. */
function textOf(response: Json, candidate = 0): string {
  const c = obj(arr(response.candidates, "candidates")[candidate], "candidate");
  if (c.content === undefined) return "";
  return arr(obj(c.content).parts).map((p) => obj(p)).filter((p) => p.thought !== true)
    .map((p) => String(p.text ?? "")).join("");
}

/**
 * Like withFake, plus a factory of @google/genai clients pointed at the fake. The SDK does not
 * always read the bodies it fetches (the upload-start answer, the rest of a stream after an error
 * event), so every response it gets is kept and cancelled at the end for the leak sanitizer.
 */
async function withSdk(
  options: FakeGeminiOptions,
  body: (fake: FakeGemini, sdk: (apiKey: string) => GoogleGenAI) => Promise<void>,
): Promise<void> {
  const opened: Response[] = [];
  const tracked: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    opened.push(res);
    return res;
  };
  await withFake(options, async (fake) => {
    try {
      await body(fake, (apiKey) =>
        new GoogleGenAI({
          apiKey,
          httpOptions: { baseUrl: fake.url, apiVersion: "v1beta", fetch: tracked },
        }));
    } finally {
      for (const res of opened) await res.body?.cancel().catch(() => {});
    }
  });
}

const V = "/v1beta";
const FLASH = `${V}/models/gemini-2.5-flash`;

// ---------- errors by key behaviour ----------

Deno.test("an invalid key gets 400 INVALID_ARGUMENT with an API_KEY_INVALID ErrorInfo", async () => {
  await withFake({}, async (fake) => {
    const res = await post(`${fake.url}${FLASH}:generateContent`, "nobody", userTurn("hi"));
    const error = await readError(res, 400, "INVALID_ARGUMENT");
    assertEquals(error.message, "API key not valid. Please pass a valid API key.");
    const info = detail(error, "ErrorInfo");
    assertEquals(info.reason, "API_KEY_INVALID");
    assertEquals(info.domain, "googleapis.com");
    assertEquals(obj(info.metadata).service, "generativelanguage.googleapis.com");
  });
});

Deno.test("a leaked key gets 403 PERMISSION_DENIED without details", async () => {
  await withFake({ keys: { leaky: { kind: "leaked" } } }, async (fake) => {
    const res = await get(`${fake.url}${V}/models`, "leaky");
    const error = await readError(res, 403, "PERMISSION_DENIED");
    assertEquals(error.message, "Your API key was reported as leaked. Please use another API key.");
    assertEquals(error.details, undefined);
  });
});

Deno.test("a rate-limited key gets 429 with QuotaFailure, Help and RetryInfo", async () => {
  await withFake({
    keys: {
      rpm: { kind: "rate_limited" },
      rpd: { kind: "rate_limited", perDay: true, retryDelaySeconds: 7, quotaValue: "0" },
    },
  }, async (fake) => {
    const minute = await readError(
      await post(`${fake.url}${FLASH}:generateContent`, "rpm", userTurn("hi")),
      429,
      "RESOURCE_EXHAUSTED",
    );
    assertEquals(detail(minute, "RetryInfo").retryDelay, "15s");
    const violation = obj(arr(detail(minute, "QuotaFailure").violations)[0]);
    assertEquals(violation.quotaId, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier");
    assertEquals(obj(violation.quotaDimensions).model, "gemini-2.5-flash");
    assert(typeof violation.quotaValue === "string", "quotaValue is a string");
    assert(arr(detail(minute, "Help").links).length === 1, "help link");

    const day = await readError(
      await post(`${fake.url}${FLASH}:streamGenerateContent?alt=sse`, "rpd", userTurn("hi")),
      429,
      "RESOURCE_EXHAUSTED",
    );
    assertEquals(detail(day, "RetryInfo").retryDelay, "7s");
    const v2 = obj(arr(detail(day, "QuotaFailure").violations)[0]);
    assertEquals(v2.quotaId, "GenerateRequestsPerDayPerProjectPerModel-FreeTier");
    assertEquals(v2.quotaValue, "0");
  });
});

Deno.test("unavailable and internal keys get 503 and 500 with Google's messages", async () => {
  await withFake({
    keys: { busy: { kind: "unavailable" }, broken: { kind: "internal" } },
  }, async (fake) => {
    const e503 = await readError(
      await post(`${fake.url}${FLASH}:generateContent`, "busy", userTurn("hi")),
      503,
      "UNAVAILABLE",
    );
    assertEquals(e503.message, "The model is overloaded. Please try again later.");
    const e500 = await readError(
      await post(`${fake.url}${FLASH}:countTokens`, "broken", userTurn("hi")),
      500,
      "INTERNAL",
    );
    assert(String(e500.message).startsWith("An internal error has occurred."), "500 message");
  });
});

Deno.test("two credentials get 400 and no credential gets 403", async () => {
  await withFake({ keys: { good: { kind: "ok" } } }, async (fake) => {
    const both = await post(`${fake.url}${FLASH}:generateContent`, "good", userTurn("hi"), {
      authorization: "Bearer client-token",
    });
    const e400 = await readError(both, 400, "INVALID_ARGUMENT");
    assertEquals(
      e400.message,
      "Multiple authentication credentials received. Please pass only one.",
    );
    assertEquals(e400.details, undefined);

    const bothQuery = await fetch(`${fake.url}${V}/models?key=good`, {
      headers: { authorization: "Bearer x" },
    });
    await readError(bothQuery, 400, "INVALID_ARGUMENT");

    const none = await get(`${fake.url}${V}/models`, null);
    const e403 = await readError(none, 403, "PERMISSION_DENIED");
    assert(
      String(e403.message).startsWith("Method doesn't allow unregistered callers"),
      "403 text",
    );

    const bearerOnly = await fetch(`${fake.url}${V}/models`, {
      headers: { authorization: "Bearer x" },
    });
    await readError(bearerOnly, 401, "UNAUTHENTICATED");
  });
});

Deno.test("the key can be sent as ?key= and calls are counted per key until reset", async () => {
  await withFake({ keys: { a: { kind: "ok" } } }, async (fake) => {
    const res = await fetch(`${fake.url}${V}/models?key=a`);
    assertEquals(res.status, 200);
    await res.body?.cancel();
    await (await get(`${fake.url}${V}/models`, "a")).body?.cancel();
    await (await get(`${fake.url}${V}/models`, "b")).body?.cancel();
    assertEquals(fake.callsFor("a"), 2);
    assertEquals(fake.callsFor("b"), 1);
    assertEquals(fake.requests.map((r) => r.key), ["a", "a", "b"]);

    fake.setKey("a", { kind: "unavailable" });
    await readError(await get(`${fake.url}${V}/models`, "a"), 503, "UNAVAILABLE");
    fake.setKey("b", { kind: "ok" });
    const ok = await get(`${fake.url}${V}/models`, "b");
    assertEquals(ok.status, 200);
    await ok.body?.cancel();

    fake.reset();
    assertEquals(fake.requests.length, 0);
    assertEquals(fake.callsFor("a"), 0);
  });
});

Deno.test("unknown paths and methods get 404 in Google's error shape", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    await readError(await get(`${fake.url}/v1beta/nothing`, "k"), 404, "NOT_FOUND");
    await readError(await get(`${fake.url}/v2/models`, "k"), 404, "NOT_FOUND");
    await readError(await get(`${fake.url}${FLASH}:generateContent`, "k"), 404, "NOT_FOUND");
    await readError(
      await post(`${fake.url}${FLASH}:doSomething`, "k", {}),
      404,
      "NOT_FOUND",
    );
  });
});

// ---------- models ----------

Deno.test("models.list pages with an opaque token until every model is returned", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    const all = obj(await (await get(`${fake.url}${V}/models`, "k")).json());
    const everything = arr(all.models).map((m) => String(obj(m).name));
    assertEquals(all.nextPageToken, undefined, "one page by default");
    assertEquals(everything, [
      "models/gemini-2.5-flash",
      "models/gemini-2.5-pro",
      "models/gemini-2.5-flash-lite",
      "models/gemini-3-flash-preview",
      "models/gemini-embedding-001",
      "models/text-embedding-004",
      "models/gemini-2.5-flash-image",
      "models/gemini-2.5-flash-preview-tts",
      "models/imagen-4.0-generate-001",
    ]);

    const paged: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const q = token === undefined ? "" : `&pageToken=${encodeURIComponent(token)}`;
      const page = obj(await (await get(`${fake.url}${V}/models?pageSize=3${q}`, "k")).json());
      const models = arr(page.models);
      assert(models.length <= 3, "page too big");
      paged.push(...models.map((m) => String(obj(m).name)));
      token = typeof page.nextPageToken === "string" ? page.nextPageToken : undefined;
      pages++;
    } while (token !== undefined);
    assertEquals(pages, 3);
    assertEquals(paged, everything);

    const bad = await get(`${fake.url}${V}/models?pageToken=garbage`, "k");
    await readError(bad, 400, "INVALID_ARGUMENT");

    const one = obj(await (await get(`${fake.url}${FLASH}`, "k")).json());
    assertEquals(one.name, "models/gemini-2.5-flash");
    assertEquals(one.baseModelId, "gemini-2.5-flash");
    assertEquals(one.supportedGenerationMethods, ["generateContent", "countTokens"]);
    assertEquals(one.thinking, true);
    for (const field of ["version", "displayName", "description", "inputTokenLimit"]) {
      assert(one[field] !== undefined, `model lacks ${field}`);
    }
    await readError(await get(`${fake.url}${V}/models/gemini-0`, "k"), 404, "NOT_FOUND");
  });
});

Deno.test("custom models replace the default list", async () => {
  await withFake({
    keys: { k: { kind: "ok" } },
    models: [{ name: "models/custom-1", supportedGenerationMethods: ["generateContent"] }],
  }, async (fake) => {
    const list = obj(await (await get(`${fake.url}${V}/models`, "k")).json());
    assertEquals(arr(list.models).map((m) => obj(m).name), ["models/custom-1"]);
    const res = await post(`${fake.url}${V}/models/custom-1:generateContent`, "k", userTurn("x"));
    assertEquals(textOf(obj(await res.json())), "Echo: x");
    await readError(
      await post(`${fake.url}${FLASH}:generateContent`, "k", userTurn("x")),
      404,
      "NOT_FOUND",
    );
  });
});

// ---------- generateContent ----------

Deno.test("generateContent echoes the last user text with word-count usage", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    const body = {
      systemInstruction: { parts: [{ text: "Be brief." }] },
      contents: [
        { role: "user", parts: [{ text: "first question" }] },
        { role: "model", parts: [{ text: "first answer" }] },
        { role: "user", parts: [{ text: "hello there" }, { text: "friend" }] },
      ],
    };
    const res = await post(`${fake.url}${FLASH}:generateContent`, "k", body);
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("content-type"), "application/json; charset=UTF-8");
    const out = obj(await res.json());
    const cand = obj(arr(out.candidates)[0]);
    assertEquals(cand.content, {
      parts: [{ text: "Echo: hello there friend" }],
      role: "model",
    });
    assertEquals(cand.finishReason, "STOP");
    assertEquals(cand.index, 0);
    const usage = obj(out.usageMetadata);
    assertEquals(usage.promptTokenCount, 9);
    assertEquals(usage.candidatesTokenCount, 4);
    assertEquals(usage.totalTokenCount, 13);
    assertEquals(usage.thoughtsTokenCount, undefined);
    assertEquals(out.modelVersion, "gemini-2.5-flash");
    assert(typeof out.responseId === "string" && out.responseId.length > 0, "responseId");
  });
});

Deno.test("generationConfig candidateCount, maxOutputTokens, stopSequences and thinking are honoured", async () => {
  await withFake({
    keys: { k: { kind: "ok" } },
    reply: (view) => `${view.model} says one two three STOP four five`,
  }, async (fake) => {
    const url = `${fake.url}${FLASH}:generateContent`;
    const n = obj(
      await (await post(
        url,
        "k",
        userTurn("x", {
          generationConfig: { candidateCount: 3 },
        }),
      )).json(),
    );
    assertEquals(arr(n.candidates).map((c) => obj(c).index), [0, 1, 2]);

    const max = obj(
      await (await post(
        url,
        "k",
        userTurn("x", {
          generationConfig: { maxOutputTokens: 3 },
        }),
      )).json(),
    );
    assertEquals(textOf(max), "gemini-2.5-flash says one");
    assertEquals(obj(arr(max.candidates)[0]).finishReason, "MAX_TOKENS");
    assertEquals(obj(max.usageMetadata).candidatesTokenCount, 3);

    const stop = obj(
      await (await post(
        url,
        "k",
        userTurn("x", {
          generationConfig: { stopSequences: ["four", " STOP"] },
        }),
      )).json(),
    );
    assertEquals(textOf(stop), "gemini-2.5-flash says one two three");
    assertEquals(obj(arr(stop.candidates)[0]).finishReason, "STOP");

    const thoughts = obj(
      await (await post(
        url,
        "k",
        userTurn("x", {
          generationConfig: { thinkingConfig: { includeThoughts: true, thinkingBudget: 1024 } },
        }),
      )).json(),
    );
    const parts = arr(obj(obj(arr(thoughts.candidates)[0]).content).parts);
    assertEquals(parts[0], { text: "Thinking about it.", thought: true });
    const u = obj(thoughts.usageMetadata);
    assertEquals(u.thoughtsTokenCount, 5);
    assertEquals(
      u.totalTokenCount,
      Number(u.promptTokenCount) + Number(u.candidatesTokenCount) + 5,
    );

    const level = obj(
      await (await post(
        url,
        "k",
        userTurn("x", {
          generationConfig: { thinkingConfig: { thinkingLevel: "LOW" } },
        }),
      )).json(),
    );
    assertEquals(arr(obj(obj(arr(level.candidates)[0]).content).parts).length, 1);
    assertEquals(obj(level.usageMetadata).thoughtsTokenCount, 5);

    const off = obj(
      await (await post(
        url,
        "k",
        userTurn("x", {
          generationConfig: { thinkingConfig: { thinkingBudget: 0 } },
        }),
      )).json(),
    );
    assertEquals(obj(off.usageMetadata).thoughtsTokenCount, undefined);
  });
});

Deno.test("bad requests get 400 INVALID_ARGUMENT without ErrorInfo and unknown models get 404", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    const url = `${fake.url}${FLASH}:generateContent`;
    for (const body of ["{not json", JSON.stringify({}), JSON.stringify({ contents: [] })]) {
      const res = await fetch(url, {
        method: "POST",
        headers: { "x-goog-api-key": "k", "content-type": "application/json" },
        body,
      });
      const error = await readError(res, 400, "INVALID_ARGUMENT");
      assertEquals(error.details, undefined);
    }
    const bad = await readError(
      await post(url, "k", userTurn("please [[BAD]]")),
      400,
      "INVALID_ARGUMENT",
    );
    assertEquals(bad.message, "Invalid JSON payload received.");
    assertEquals(bad.details, undefined);

    const missing = await readError(
      await post(`${fake.url}${V}/models/x:generateContent`, "k", userTurn("hi")),
      404,
      "NOT_FOUND",
    );
    assertEquals(
      missing.message,
      "models/x is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.",
    );
    await readError(
      await post(
        `${fake.url}${V}/models/gemini-embedding-001:generateContent`,
        "k",
        userTurn("hi"),
      ),
      404,
      "NOT_FOUND",
    );
  });
});

Deno.test("[[SAFETY]] finishes with SAFETY and no text, [[BLOCK]] blocks the prompt", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    const safety = obj(
      await (await post(`${fake.url}${FLASH}:generateContent`, "k", userTurn("[[SAFETY]]")))
        .json(),
    );
    const cand = obj(arr(safety.candidates)[0]);
    assertEquals(cand.finishReason, "SAFETY");
    assertEquals(cand.content, undefined);

    const block = obj(
      await (await post(`${fake.url}${FLASH}:generateContent`, "k", userTurn("[[BLOCK]]"))).json(),
    );
    assertEquals(obj(block.promptFeedback).blockReason, "SAFETY");
    assertEquals(block.candidates, undefined);

    const streamed = await post(
      `${fake.url}${FLASH}:streamGenerateContent?alt=sse`,
      "k",
      userTurn("[[SAFETY]]"),
    );
    const events = sseEvents(await streamed.text(), "\r\n\r\n");
    assertEquals(events.length, 1);
    assertEquals(obj(arr(events[0].candidates)[0]).finishReason, "SAFETY");
  });
});

// ---------- streaming ----------

for (const delimiter of ["\n\n", "\r\n\r\n", "\r\r"] as const) {
  Deno.test(`streamGenerateContent frames events as "data: <json>" + ${JSON.stringify(delimiter)} without [DONE]`, async () => {
    await withFake(
      { keys: { k: { kind: "ok" } }, sseDelimiter: delimiter, streamChunks: 4 },
      async (fake) => {
        const res = await post(
          `${fake.url}${FLASH}:streamGenerateContent?alt=sse`,
          "k",
          userTurn("streaming is fun to test"),
        );
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "text/event-stream");
        const raw = await res.text();
        const events = sseEvents(raw, delimiter);
        assertEquals(events.length, 4);
        assertEquals(events.map((e) => textOf(e)).join(""), "Echo: streaming is fun to test");
        const ids = new Set(events.map((e) => e.responseId));
        assertEquals(ids.size, 1, "one responseId per stream");
        for (const e of events.slice(0, -1)) {
          assertEquals(obj(arr(e.candidates)[0]).finishReason, undefined);
          assertEquals(Object.keys(obj(e.usageMetadata)), ["promptTokenCount", "totalTokenCount"]);
        }
        const last = events[events.length - 1];
        assertEquals(obj(arr(last.candidates)[0]).finishReason, "STOP");
        const usage = obj(last.usageMetadata);
        assertEquals(usage.promptTokenCount, 5);
        assertEquals(usage.candidatesTokenCount, 6);
        assertEquals(usage.totalTokenCount, 11);
      },
    );
  });
}

Deno.test("a streamed thinking answer sends the thought part first and MAX_TOKENS last", async () => {
  await withFake({ keys: { k: { kind: "ok" } }, streamChunks: 2 }, async (fake) => {
    const res = await post(
      `${fake.url}${FLASH}:streamGenerateContent?alt=sse`,
      "k",
      userTurn("a b c d e f", {
        generationConfig: { maxOutputTokens: 4, thinkingConfig: { includeThoughts: true } },
      }),
    );
    const events = sseEvents(await res.text(), "\r\n\r\n");
    assertEquals(events.length, 3);
    assertEquals(
      arr(obj(obj(arr(events[0].candidates)[0]).content).parts)[0],
      { text: "Thinking about it.", thought: true },
    );
    assertEquals(events.slice(1).map((e) => textOf(e)).join(""), "Echo: a b c");
    const last = obj(arr(events[2].candidates)[0]);
    assertEquals(last.finishReason, "MAX_TOKENS");
    assertEquals(obj(events[2].usageMetadata).thoughtsTokenCount, 5);
  });
});

Deno.test("[[CUT]] ends a stream without finishReason and [[MIDERROR]] sends an error event", async () => {
  await withFake({ keys: { k: { kind: "ok" } }, sseDelimiter: "\n\n" }, async (fake) => {
    const url = `${fake.url}${FLASH}:streamGenerateContent?alt=sse`;
    const cut = sseEvents(await (await post(url, "k", userTurn("go [[CUT]]"))).text(), "\n\n");
    assertEquals(cut.length, 1);
    assertEquals(obj(arr(cut[0].candidates)[0]).finishReason, undefined);

    const mid = sseEvents(await (await post(url, "k", userTurn("go [[MIDERROR]]"))).text(), "\n\n");
    assertEquals(mid.length, 2);
    assert(textOf(mid[0]).length > 0, "first chunk has text");
    assertEquals(mid[1], {
      error: { code: 500, message: "Internal error encountered.", status: "INTERNAL" },
    });

    const plain = obj(
      await (await post(`${fake.url}${FLASH}:generateContent`, "k", userTurn("go [[CUT]]")))
        .json(),
    );
    assertEquals(obj(arr(plain.candidates)[0]).finishReason, "STOP");
  });
});

Deno.test("streamGenerateContent without alt=sse answers one JSON array", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    const res = await post(`${fake.url}${FLASH}:streamGenerateContent`, "k", userTurn("abc def"));
    const chunks = arr(await res.json()).map((c) => obj(c));
    assertEquals(chunks.length, 3);
    assertEquals(chunks.map((c) => textOf(c)).join(""), "Echo: abc def");
  });
});

// ---------- timing and failures ----------

Deno.test("a slow key's wait ends when the client aborts", async () => {
  await withFake({ keys: { slow: { kind: "slow", delayMs: 60_000 } } }, async (fake) => {
    const controller = new AbortController();
    const started = Date.now();
    const timer = setTimeout(() => controller.abort(), 50);
    let rejected = false;
    try {
      await fetch(`${fake.url}${V}/models`, {
        headers: { "x-goog-api-key": "slow" },
        signal: controller.signal,
      });
    } catch {
      rejected = true;
    } finally {
      clearTimeout(timer);
    }
    assert(rejected, "aborted fetch should reject");
    assert(Date.now() - started < 2_000, "abort took too long");
  });
});

Deno.test("close() ends pending slow waits at once", async () => {
  await withFake({ keys: { slow: { kind: "slow", delayMs: 60_000 } } }, async (fake) => {
    const started = Date.now();
    const pending = post(`${fake.url}${FLASH}:generateContent`, "slow", userTurn("hi")).then(
      async (res) => {
        await res.body?.cancel();
        return res.status;
      },
      () => "rejected",
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    await fake.close();
    const outcome = await pending;
    assert(outcome === 499 || outcome === "rejected", `unexpected outcome ${outcome}`);
    assert(Date.now() - started < 2_000, "close() did not abort the wait");
  });
});

Deno.test("a slow key answers normally after its delay, as does a [[SLOW:ms]] prompt", async () => {
  await withFake(
    { keys: { slow: { kind: "slow", delayMs: 150 }, k: { kind: "ok" } } },
    async (fake) => {
      let t = Date.now();
      const res = await post(`${fake.url}${FLASH}:generateContent`, "slow", userTurn("hi"));
      assertEquals(textOf(obj(await res.json())), "Echo: hi");
      assert(Date.now() - t >= 140, "slow key answered too early");

      t = Date.now();
      const res2 = await post(`${fake.url}${FLASH}:generateContent`, "k", userTurn("[[SLOW:120]]"));
      assertEquals(res2.status, 200);
      await res2.body?.cancel();
      assert(Date.now() - t >= 110, "[[SLOW]] answered too early");
    },
  );
});

Deno.test("latencyMs delays every answer, errors included", async () => {
  await withFake({ latencyMs: 100 }, async (fake) => {
    const t = Date.now();
    await readError(await get(`${fake.url}${V}/models`, "unknown"), 400, "INVALID_ARGUMENT");
    assert(Date.now() - t >= 90, "latency not applied");
  });
});

Deno.test("a network key breaks the connection so the client sees a failure", async () => {
  await withFake({ keys: { net: { kind: "network" } } }, async (fake) => {
    let failed = false;
    try {
      const res = await post(`${fake.url}${FLASH}:generateContent`, "net", userTurn("hi"));
      await res.text();
    } catch {
      failed = true;
    }
    assert(failed, "expected fetch or body read to fail");
  });
});

// ---------- countTokens and embeddings ----------

Deno.test("countTokens counts words and embeddings are deterministic", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    const count = obj(
      await (await post(`${fake.url}${FLASH}:countTokens`, "k", userTurn("one two three"))).json(),
    );
    assertEquals(count.totalTokens, 3);
    const inner = obj(
      await (await post(`${fake.url}${FLASH}:countTokens`, "k", {
        generateContentRequest: {
          model: "models/gemini-2.5-flash",
          ...userTurn("a b"),
          systemInstruction: { parts: [{ text: "c d e" }] },
        },
      })).json(),
    );
    assertEquals(inner.totalTokens, 5);

    const E = `${fake.url}${V}/models/gemini-embedding-001`;
    const embedOnce = async (text: string, dims?: number) => {
      const body: Json = { content: { parts: [{ text }] } };
      if (dims !== undefined) body.outputDimensionality = dims;
      const out = obj(await (await post(`${E}:embedContent`, "k", body)).json());
      return arr(obj(out.embedding).values).map(Number);
    };
    const a1 = await embedOnce("alpha");
    const a2 = await embedOnce("alpha");
    const b = await embedOnce("beta");
    assertEquals(a1.length, 768);
    assertEquals(a1, a2);
    assert(JSON.stringify(a1) !== JSON.stringify(b), "different texts, same vector");
    const norm = Math.sqrt(a1.reduce((s, v) => s + v * v, 0));
    assert(Math.abs(norm - 1) < 1e-6, "vector is not unit length");
    assertEquals((await embedOnce("alpha", 16)).length, 16);

    const batch = obj(
      await (await post(`${E}:batchEmbedContents`, "k", {
        requests: ["alpha", "beta"].map((text) => ({
          model: "models/gemini-embedding-001",
          content: { parts: [{ text }] },
        })),
      })).json(),
    );
    const vectors = arr(batch.embeddings).map((e) => arr(obj(e).values).map(Number));
    assertEquals(vectors, [a1, b]);

    await readError(
      await post(`${E}:batchEmbedContents`, "k", {
        requests: [{ model: "models/text-embedding-004", content: { parts: [{ text: "x" }] } }],
      }),
      400,
      "INVALID_ARGUMENT",
    );
    await readError(
      await post(`${fake.url}${FLASH}:embedContent`, "k", {
        content: { parts: [{ text: "x" }] },
      }),
      404,
      "NOT_FOUND",
    );
  });
});

// ---------- files ----------

/** Starts a resumable upload session with raw fetch; returns the upload URL. */
async function startUpload(
  fake: FakeGemini,
  key: string,
  size: number,
  mimeType: string,
  displayName = "doc",
): Promise<string> {
  const res = await fetch(`${fake.url}/upload/v1beta/files`, {
    method: "POST",
    headers: {
      "x-goog-api-key": key,
      "content-type": "application/json",
      "x-goog-upload-protocol": "resumable",
      "x-goog-upload-command": "start",
      "x-goog-upload-header-content-length": String(size),
      "x-goog-upload-header-content-type": mimeType,
    },
    body: JSON.stringify({ file: { displayName } }),
  });
  assertEquals(res.status, 200);
  await res.body?.cancel();
  const url = res.headers.get("x-goog-upload-url");
  assert(url !== null, "no x-goog-upload-url");
  assert(url.startsWith(`${fake.url}/upload/v1beta/files?upload_id=`), url);
  assert(url.endsWith("&upload_protocol=resumable"), url);
  assert(
    (res.headers.get("access-control-expose-headers") ?? "").includes("x-goog-upload-url"),
    "expose header",
  );
  return url;
}

/** Sends one upload chunk. */
function sendChunk(
  url: string,
  key: string | null,
  command: string,
  offset: number,
  body: BodyInit,
): Promise<Response> {
  const headers: Record<string, string> = {
    "x-goog-upload-command": command,
    "x-goog-upload-offset": String(offset),
  };
  if (key !== null) headers["x-goog-api-key"] = key;
  return fetch(url, { method: "POST", headers, body });
}

/** Uploads bytes in one shot and returns the File resource. */
async function uploadFile(
  fake: FakeGemini,
  key: string,
  bytes: Uint8Array<ArrayBuffer>,
  mime: string,
): Promise<Json> {
  const url = await startUpload(fake, key, bytes.length, mime);
  const res = await sendChunk(url, key, "upload, finalize", 0, bytes);
  assertEquals(res.headers.get("x-goog-upload-status"), "final");
  return obj(obj(await res.json()).file);
}

Deno.test("a resumable upload in chunks checks offsets and returns the File", async () => {
  await withFake({ keys: { "AIzaA@proj1": { kind: "ok" } } }, async (fake) => {
    const key = "AIzaA@proj1";
    const url = await startUpload(fake, key, 10, "application/pdf", "report.pdf");

    const first = await sendChunk(url, key, "upload", 0, new Uint8Array(4));
    assertEquals(first.status, 200);
    assertEquals(first.headers.get("x-goog-upload-status"), "active");
    await first.body?.cancel();

    const wrong = await sendChunk(url, key, "upload", 2, new Uint8Array(3));
    await readError(wrong, 400, "INVALID_ARGUMENT");

    const query = await sendChunk(url, key, "query", 0, new Uint8Array(0));
    assertEquals(query.headers.get("x-goog-upload-size-received"), "4");
    await query.body?.cancel();

    // Without the key: the session URL alone is enough, as with Google's curl samples.
    const last = await sendChunk(url, null, "upload, finalize", 4, new Uint8Array(6));
    assertEquals(last.status, 200);
    assertEquals(last.headers.get("x-goog-upload-status"), "final");
    const file = obj(obj(await last.json()).file);
    const id = String(file.name).slice("files/".length);
    assert(/^[a-z0-9]{12}$/.test(id), `file id ${id}`);
    assertEquals(file.displayName, "report.pdf");
    assertEquals(file.mimeType, "application/pdf");
    assertEquals(file.sizeBytes, "10");
    assertEquals(file.state, "ACTIVE");
    assertEquals(file.source, "UPLOADED");
    assertEquals(file.uri, `${fake.url}/v1beta/files/${id}`);
    const created = Date.parse(String(file.createTime));
    const expires = Date.parse(String(file.expirationTime));
    assertEquals(expires - created, 48 * 3600 * 1000);
    assert(typeof file.sha256Hash === "string" && file.sha256Hash.length > 0, "sha256Hash");
    for (const field of ["updateTime"]) assert(typeof file[field] === "string", field);

    const again = await sendChunk(url, key, "upload, finalize", 10, new Uint8Array(1));
    await readError(again, 404, "NOT_FOUND");

    const bytes = fake.requests.filter((r) => r.search.includes("upload_id")).map((r) => r.bytes);
    assertEquals(bytes, [4, 3, 0, 6, 1]);
    assert(fake.requests.every((r) => r.search.includes("upload_id") ? r.body === null : true));
  });
});

Deno.test("a 100 MB streamed upload is counted without being kept", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    const size = 100 * 1024 * 1024;
    const url = await startUpload(fake, "k", size, "application/octet-stream");
    const block = new Uint8Array(1024 * 1024);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= size) {
          controller.close();
          return;
        }
        controller.enqueue(block);
        sent += block.length;
      },
    });
    const res = await sendChunk(url, "k", "upload, finalize", 0, body);
    const file = obj(obj(await res.json()).file);
    assertEquals(file.sizeBytes, String(size));
    const rec = fake.requests[fake.requests.length - 1];
    assertEquals(rec.bytes, size);
    assertEquals(rec.body, null);
  });
});

Deno.test("files belong to the key's project: other projects get 403 everywhere", async () => {
  await withFake({
    keys: { "k1@p1": { kind: "ok" }, "k2@p1": { kind: "ok" }, "k3@p2": { kind: "ok" } },
  }, async (fake) => {
    const file = await uploadFile(fake, "k1@p1", new Uint8Array([1, 2, 3]), "text/plain");
    const id = String(file.name).slice(6);
    const fileUrl = `${fake.url}${V}/files/${id}`;

    const same = obj(await (await get(fileUrl, "k2@p1")).json());
    assertEquals(same.name, file.name);

    const denied = await readError(await get(fileUrl, "k3@p2"), 403, "PERMISSION_DENIED");
    assertEquals(
      denied.message,
      `You do not have permission to access the File files/${id} or it may not exist.`,
    );
    await readError(
      await fetch(fileUrl, { method: "DELETE", headers: { "x-goog-api-key": "k3@p2" } }),
      403,
      "PERMISSION_DENIED",
    );
    const withFile = {
      contents: [{
        role: "user",
        parts: [{ fileData: { mimeType: "text/plain", fileUri: String(file.uri) } }, {
          text: "summarize",
        }],
      }],
    };
    await readError(
      await post(`${fake.url}${FLASH}:generateContent`, "k3@p2", withFile),
      403,
      "PERMISSION_DENIED",
    );
    const ok = obj(
      await (await post(`${fake.url}${FLASH}:generateContent`, "k2@p1", withFile)).json(),
    );
    assertEquals(textOf(ok), "Echo: summarize");

    const ghost = {
      contents: [{
        parts: [{ fileData: { mimeType: "text/plain", fileUri: `${fake.url}${V}/files/nope` } }],
      }],
    };
    await readError(
      await post(`${fake.url}${FLASH}:generateContent`, "k1@p1", ghost),
      403,
      "PERMISSION_DENIED",
    );
    await readError(await get(`${fake.url}${V}/files/nope`, "k1@p1"), 403, "PERMISSION_DENIED");
  });
});

Deno.test("a video file is PROCESSING until its second GET", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    const file = await uploadFile(fake, "k", new Uint8Array(8), "video/mp4");
    assertEquals(file.state, "PROCESSING");
    const body = {
      contents: [{
        role: "user",
        parts: [{ fileData: { mimeType: "video/mp4", fileUri: String(file.uri) } }, { text: "hi" }],
      }],
    };
    await readError(
      await post(`${fake.url}${FLASH}:generateContent`, "k", body),
      400,
      "FAILED_PRECONDITION",
    );
    const url = `${fake.url}${V}/${String(file.name)}`;
    assertEquals(obj(await (await get(url, "k")).json()).state, "PROCESSING");
    assertEquals(obj(await (await get(url, "k")).json()).state, "ACTIVE");
    const res = await post(`${fake.url}${FLASH}:generateContent`, "k", body);
    assertEquals(textOf(obj(await res.json())), "Echo: hi");
  });
});

Deno.test("files.list pages per project and delete removes a file", async () => {
  await withFake({ keys: { "a@p": { kind: "ok" }, "b@q": { kind: "ok" } } }, async (fake) => {
    const names: string[] = [];
    for (let i = 0; i < 5; i++) {
      names.push(String((await uploadFile(fake, "a@p", new Uint8Array(1), "text/plain")).name));
    }
    await uploadFile(fake, "b@q", new Uint8Array(1), "text/plain");

    const listed: string[] = [];
    let token: string | undefined;
    do {
      const q = token === undefined ? "" : `&pageToken=${token}`;
      const page = obj(await (await get(`${fake.url}${V}/files?pageSize=2${q}`, "a@p")).json());
      listed.push(...arr(page.files).map((f) => String(obj(f).name)));
      token = typeof page.nextPageToken === "string" ? page.nextPageToken : undefined;
    } while (token !== undefined);
    assertEquals(listed, names);

    const del = await fetch(`${fake.url}${V}/${names[0]}`, {
      method: "DELETE",
      headers: { "x-goog-api-key": "a@p" },
    });
    assertEquals(del.status, 200);
    assertEquals(await del.json(), {});
    await readError(await get(`${fake.url}${V}/${names[0]}`, "a@p"), 403, "PERMISSION_DENIED");
    const rest = obj(await (await get(`${fake.url}${V}/files`, "a@p")).json());
    assertEquals(arr(rest.files).length, 4);
  });
});

Deno.test("recorded requests keep method, path, lower-cased headers, key, parsed body and size", async () => {
  await withFake({ keys: { k: { kind: "ok" } } }, async (fake) => {
    const body = userTurn("héllo");
    const res = await post(`${fake.url}${FLASH}:generateContent?foo=1`, "k", body, {
      "X-Custom-Header": "Yes",
    });
    await res.body?.cancel();
    const rec: RecordedRequest = fake.requests[0];
    assertEquals(rec.method, "POST");
    assertEquals(rec.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assertEquals(rec.search, "?foo=1");
    assertEquals(rec.headers["x-custom-header"], "Yes");
    assertEquals(rec.key, "k");
    assertEquals(rec.body, body);
    assertEquals(rec.bytes, new TextEncoder().encode(JSON.stringify(body)).length);
  });
});

// ---------- through @google/genai ----------

Deno.test("@google/genai lists and gets models through the fake", async () => {
  await withSdk({ keys: { sdk: { kind: "ok" } } }, async (fake, sdk) => {
    const ai = sdk("sdk");
    const names: string[] = [];
    const pager = await ai.models.list({ config: { pageSize: 5 } });
    for await (const model of pager) names.push(String(model.name));
    assertEquals(names.length, 9);
    assertEquals(names[0], "models/gemini-2.5-flash");
    const paths = fake.requests.map((r) => r.path + r.search);
    assertEquals(paths.length, 2, `pages fetched: ${paths.join(" ")}`);
    assert(paths[0].startsWith("/v1beta/models?pageSize=5"), paths[0]);
    assert(paths[1].includes("pageToken="), paths[1]);
    assertEquals(fake.requests[0].headers["x-goog-api-key"], "sdk");

    const model = await ai.models.get({ model: "gemini-2.5-pro" });
    assertEquals(model.name, "models/gemini-2.5-pro");
    assertEquals(model.inputTokenLimit, 1048576);
  });
});

Deno.test("@google/genai generateContent and generateContentStream work against the fake", async () => {
  await withSdk({ keys: { sdk: { kind: "ok" } } }, async (fake, sdk) => {
    const ai = sdk("sdk");
    const res = await ai.models.generateContent({
      model: "gemini-2.5-flash",
      contents: "Hello from the SDK",
      config: { systemInstruction: "Be nice.", thinkingConfig: { includeThoughts: true } },
    });
    assertEquals(res.text, "Echo: Hello from the SDK");
    assertEquals(res.usageMetadata?.thoughtsTokenCount, 5);
    assertEquals(res.candidates?.[0]?.finishReason, "STOP");
    const sent = obj(fake.requests[0].body);
    assertEquals(fake.requests[0].path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert(sent.systemInstruction !== undefined, "systemInstruction sent");
    assert(obj(sent.generationConfig).thinkingConfig !== undefined, "thinkingConfig sent");

    const stream = await ai.models.generateContentStream({
      model: "gemini-2.5-flash",
      contents: "streamed hello",
    });
    let text = "";
    let chunks = 0;
    let finish: string | undefined;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.text ?? "";
      finish = chunk.candidates?.[0]?.finishReason ?? finish;
    }
    assertEquals(chunks, 3);
    assertEquals(text, "Echo: streamed hello");
    assertEquals(finish, "STOP");
    const streamReq = fake.requests[1];
    assertEquals(streamReq.path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assertEquals(streamReq.search, "?alt=sse");
  });
});

Deno.test("@google/genai surfaces the fake's errors as ApiError with Google's status", async () => {
  await withSdk(
    { keys: { limited: { kind: "rate_limited", retryDelaySeconds: 3 } } },
    async (fake, sdk) => {
      for (const [key, status] of [["limited", 429], ["unknown", 400]] as const) {
        let caught: unknown;
        try {
          await sdk(key).models.generateContent({ model: "gemini-2.5-flash", contents: "x" });
        } catch (error) {
          caught = error;
        }
        assert(caught instanceof ApiError, `expected ApiError, got ${String(caught)}`);
        assertEquals(caught.status, status);
        const parsed = obj(JSON.parse(caught.message));
        assertEquals(obj(parsed.error).code, status);
      }
      fake.setKey("ok-key", { kind: "ok" });
      const midStream = sdk("ok-key");
      let streamError: unknown;
      try {
        const stream = await midStream.models.generateContentStream({
          model: "gemini-2.5-flash",
          contents: "[[MIDERROR]]",
        });
        for await (const _ of stream) {
          // drain
        }
      } catch (error) {
        streamError = error;
      }
      assert(
        streamError instanceof ApiError,
        `mid-stream error not raised: ${String(streamError)}`,
      );
      assertEquals(streamError.status, 500);
    },
  );
});

Deno.test("@google/genai uploads a Blob with the resumable protocol and gets it back", async () => {
  await withSdk({ keys: { "sdk@projA": { kind: "ok" } } }, async (fake, sdk) => {
    const ai = sdk("sdk@projA");
    const blob = new Blob(["hello file world"], { type: "text/plain" });
    const file = await ai.files.upload({ file: blob, config: { displayName: "hello.txt" } });
    assert(file.name !== undefined, "file.name");
    assertEquals(file.displayName, "hello.txt");
    assertEquals(file.mimeType, "text/plain");
    assertEquals(file.sizeBytes, "16");
    assertEquals(file.state, "ACTIVE");

    const [start, chunk] = fake.requests;
    assertEquals(start.path, "/upload/v1beta/files");
    assertEquals(start.headers["x-goog-upload-protocol"], "resumable");
    assertEquals(start.headers["x-goog-upload-command"], "start");
    assertEquals(start.headers["x-goog-upload-header-content-length"], "16");
    assertEquals(start.headers["x-goog-upload-header-content-type"], "text/plain");
    assertEquals(obj(obj(start.body).file).displayName, "hello.txt");
    assertEquals(chunk.path, "/upload/v1beta/files");
    assertEquals(chunk.headers["x-goog-upload-command"], "upload, finalize");
    assertEquals(chunk.headers["x-goog-upload-offset"], "0");
    assertEquals(chunk.key, "sdk@projA");
    assertEquals(chunk.bytes, 16);

    const got = await ai.files.get({ name: file.name });
    assertEquals(got.name, file.name);
    assertEquals(got.uri, file.uri);
    const listed = [];
    for await (const f of await ai.files.list()) listed.push(f.name);
    assertEquals(listed, [file.name]);
    await ai.files.delete({ name: file.name });
    assertEquals(fake.requests[fake.requests.length - 1].method, "DELETE");
  });
});

Deno.test("@google/genai embedContent goes through batchEmbedContents and countTokens counts words", async () => {
  await withSdk({ keys: { sdk: { kind: "ok" } } }, async (fake, sdk) => {
    const ai = sdk("sdk");
    const res = await ai.models.embedContent({
      model: "gemini-embedding-001",
      contents: ["alpha", "beta"],
      config: { outputDimensionality: 8 },
    });
    assertEquals(res.embeddings?.length, 2);
    assertEquals(res.embeddings?.[0]?.values?.length, 8);
    assertEquals(fake.requests[0].path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    const again = await ai.models.embedContent({
      model: "gemini-embedding-001",
      contents: "alpha",
      config: { outputDimensionality: 8 },
    });
    assertEquals(again.embeddings?.[0]?.values, res.embeddings?.[0]?.values);

    const count = await ai.models.countTokens({
      model: "gemini-2.5-flash",
      contents: "one two three four",
    });
    assertEquals(count.totalTokens, 4);
  });
});
