/**
 * Chat-completion features through the gateway, with the real `openai` client against the strict
 * fake upstream (which refuses what Gemini refuses): structured output, thinking per model family
 * and admin defaults, thoughts as reasoning_content, sampling extras, log probabilities, safety
 * settings, prompt injection, model aliases and thinking suffixes, and anti-truncation.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { DEFAULT_MODELS, type FakeModel, type GenerateRequestView } from "../fakes/fake_gemini.ts";
import { startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;

type Json = Record<string, unknown>;
interface SentBody {
  contents: { role: string; parts: { text?: string }[] }[];
  systemInstruction?: { parts: { text: string }[] };
  generationConfig?: Json & { thinkingConfig?: Json };
  safetySettings?: { category: string; threshold: string }[];
}

function bodies(gw: TestGateway): SentBody[] {
  return gw.fake.requests.filter((r) => /:(stream)?[gG]enerateContent$/.test(r.path))
    .map((r) => r.body as SentBody);
}

function paths(gw: TestGateway): string[] {
  return gw.fake.requests.filter((r) => r.path.includes("enerateContent")).map((r) => r.path);
}

const MODELS: FakeModel[] = [
  ...DEFAULT_MODELS,
  {
    name: "gemini-3-pro-preview",
    supportedGenerationMethods: ["generateContent", "countTokens"],
    thinking: true,
  },
  { name: "gemini-2.0-flash", supportedGenerationMethods: ["generateContent", "countTokens"] },
];

async function strictGateway(extra: { reply?: (v: GenerateRequestView) => string } = {}) {
  return await startGateway({
    keys: { "AIzaFeat-1": OK },
    fakeOptions: { strict: true, models: MODELS, ...extra },
  });
}

Deno.test("response_format json_schema and json_object become Gemini's JSON mode", async () => {
  const gw = await strictGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const res = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "a person" }],
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "person",
          strict: true,
          schema: {
            $schema: "https://json-schema.org/draft/2020-12/schema",
            type: "object",
            properties: { name: { type: "string" }, age: { type: "integer" } },
            required: ["name", "age"],
            additionalProperties: false,
          },
        },
      },
    });
    assert.deepEqual(JSON.parse(res.choices[0].message.content!), { name: "text", age: 1 });
    const config = bodies(gw)[0].generationConfig!;
    assert.equal(config.responseMimeType, "application/json");
    assert.deepEqual(config.responseJsonSchema, {
      type: "object",
      properties: { name: { type: "string" }, age: { type: "integer" } },
      required: ["name", "age"],
      additionalProperties: false,
    });
    const obj = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "anything" }],
      response_format: { type: "json_object" },
    });
    assert.deepEqual(JSON.parse(obj.choices[0].message.content!), { echo: "anything" });
    assert.equal(bodies(gw)[1].generationConfig!.responseMimeType, "application/json");
    assert.equal(bodies(gw)[1].generationConfig!.responseJsonSchema, undefined);
  } finally {
    await gw.close();
  }
});

Deno.test("reasoning_effort maps per model family to values each model accepts", async () => {
  const gw = await strictGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const cases: [string, OpenAI.ReasoningEffort, Json | undefined][] = [
      ["gemini-2.5-flash", "none", { thinkingBudget: 0 }],
      ["gemini-2.5-flash", "low", { thinkingBudget: 1024, includeThoughts: true }],
      ["gemini-2.5-pro", "none", { thinkingBudget: 128, includeThoughts: true }],
      ["gemini-2.5-pro", "high", { thinkingBudget: 32768, includeThoughts: true }],
      ["gemini-2.5-flash-lite", "minimal", { thinkingBudget: 512, includeThoughts: true }],
      ["gemini-3-flash-preview", "none", { thinkingLevel: "MINIMAL", includeThoughts: true }],
      ["gemini-3-flash-preview", "medium", { thinkingLevel: "MEDIUM", includeThoughts: true }],
      ["gemini-3-pro-preview", "medium", { thinkingLevel: "HIGH", includeThoughts: true }],
      ["gemini-3-pro-preview", "minimal", { thinkingLevel: "LOW", includeThoughts: true }],
      ["gemini-2.0-flash", "high", undefined],
    ];
    for (const [model, effort, expected] of cases) {
      const res = await client.chat.completions.create({
        model,
        messages: [{ role: "user", content: "think" }],
        reasoning_effort: effort,
      });
      assert.equal(res.choices[0].message.content, "Echo: think", `${model} ${effort} accepted`);
      assert.deepEqual(
        bodies(gw).at(-1)!.generationConfig?.thinkingConfig,
        expected,
        `${model} ${effort}`,
      );
    }
  } finally {
    await gw.close();
  }
});

Deno.test("thoughts come back as reasoning_content with reasoning_tokens, never in content", async () => {
  const gw = await strictGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const res = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "ponder" }],
    });
    const message = res.choices[0].message as OpenAI.Chat.ChatCompletionMessage & {
      reasoning_content?: string;
    };
    assert.equal(message.content, "Echo: ponder");
    assert.equal(message.reasoning_content, "Thinking about it.");
    assert.equal(res.usage?.completion_tokens_details?.reasoning_tokens, 5);

    const stream = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "ponder more" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let reasoning = "";
    let content = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string };
      reasoning += delta?.reasoning_content ?? "";
      content += delta?.content ?? "";
      usage = chunk.usage ?? usage;
    }
    assert.equal(reasoning, "Thinking about it.");
    assert.equal(content, "Echo: ponder more");
    assert.equal(usage?.completion_tokens_details?.reasoning_tokens, 5);
  } finally {
    await gw.close();
  }
});

Deno.test("extra_body thinking_config, model suffixes and admin defaults steer thinking", async () => {
  const gw = await strictGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const ask = (model: string, extra: Json = {}) =>
      client.chat.completions.create({
        model,
        messages: [{ role: "user", content: "q" }],
        ...extra,
      } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    await ask("gemini-2.5-flash", {
      extra_body: {
        google: { thinking_config: { thinking_budget: 99999, include_thoughts: false } },
      },
    });
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, {
      thinkingBudget: 24576,
    });
    await ask("gemini-3-flash-preview", {
      extra_body: { google: { thinking_config: { thinking_level: "low" } } },
    });
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, {
      thinkingLevel: "LOW",
      includeThoughts: true,
    });
    const both = await ask("gemini-2.5-flash", {
      extra_body: { google: { thinking_config: { thinking_budget: 1, thinking_level: "low" } } },
    }).catch((e) => e);
    assert.equal(both.status, 400);
    assert.equal(both.param, "extra_body.google.thinking_config");

    const off = await ask("gemini-2.5-flash-nothinking");
    assert.equal(off.model, "gemini-2.5-flash-nothinking");
    assert.match(paths(gw).at(-1)!, /models\/gemini-2\.5-flash:generateContent$/);
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, { thinkingBudget: 0 });
    await ask("gemini-2.5-pro-nothinking");
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, {
      thinkingBudget: 128,
      includeThoughts: true,
    });
    await ask("gemini-3-pro-preview-maxthinking");
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, {
      thinkingLevel: "HIGH",
      includeThoughts: true,
    });

    assert.equal(
      (await gw.admin("PATCH", "/admin/api/settings", {
        thinkingMode: "budget",
        thinkingBudget: 2048,
        includeThoughts: false,
      })).status,
      200,
    );
    await ask("gemini-2.5-flash");
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, { thinkingBudget: 2048 });
    await ask("gemini-3-pro-preview");
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, { thinkingLevel: "LOW" });
    await ask("gemini-2.5-flash-thinking");
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, {
      thinkingBudget: 2048,
      includeThoughts: true,
    });
    await gw.admin("PATCH", "/admin/api/settings", { thinkingMode: "off" });
    await ask("gemini-2.5-pro");
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, { thinkingBudget: 128 });
    const bad = await gw.admin("PATCH", "/admin/api/settings", { thinkingMode: "always" });
    assert.equal(bad.status, 400);
  } finally {
    await gw.close();
  }
});

Deno.test("seed, penalties, top_k and log probabilities reach Gemini; unknown fields are ignored", async () => {
  const gw = await strictGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const res = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "one two" }],
      seed: 7,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      top_k: 40,
      logprobs: true,
      top_logprobs: 2,
      user: "someone",
      metadata: { team: "a" },
      parallel_tool_calls: false,
      service_tier: "auto",
    } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    const { thinkingConfig: _t, ...config } = bodies(gw)[0].generationConfig!;
    assert.deepEqual(config, {
      seed: 7,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      topK: 40,
      responseLogprobs: true,
      logprobs: 2,
    });
    const logprobs = res.choices[0].logprobs?.content ?? [];
    assert.deepEqual(logprobs.map((l) => l.token), ["Echo: ", "one ", "two"]);
    assert.equal(logprobs[1].top_logprobs.length, 2);
    assert.deepEqual(logprobs[2].bytes, [...new TextEncoder().encode("two")]);

    const wrong = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "x" }],
      top_k: "many",
    } as unknown as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming).catch((e) => e);
    assert.equal(wrong.status, 400);
    assert.equal(wrong.param, "top_k");
    const lonely = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "x" }],
      top_logprobs: 3,
    }).catch((e) => e);
    assert.equal(lonely.status, 400);
    assert.equal(lonely.param, "top_logprobs");
  } finally {
    await gw.close();
  }
});

Deno.test("safety settings default to least blocking and follow the admin and the request", async () => {
  const gw = await strictGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const ask = (extra: Json = {}) =>
      client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
        ...extra,
      } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    await ask();
    const defaults = bodies(gw)[0].safetySettings!;
    assert.equal(defaults.length, 5);
    assert.ok(
      defaults.every((s) =>
        s.threshold === (s.category === "HARM_CATEGORY_CIVIC_INTEGRITY" ? "BLOCK_NONE" : "OFF")
      ),
    );
    await gw.admin("PATCH", "/admin/api/settings", { safetyThreshold: "BLOCK_ONLY_HIGH" });
    await ask();
    assert.ok(bodies(gw)[1].safetySettings!.every((s) => s.threshold === "BLOCK_ONLY_HIGH"));
    await ask({
      extra_body: {
        google: {
          safety_settings: [{ category: "HARM_CATEGORY_HARASSMENT", threshold: "block_none" }],
        },
      },
    });
    assert.deepEqual(bodies(gw)[2].safetySettings, [
      { category: "HARM_CATEGORY_HARASSMENT", threshold: "BLOCK_NONE" },
    ]);
    await gw.admin("PATCH", "/admin/api/settings", { safetyThreshold: "UNSET" });
    await ask();
    assert.equal(bodies(gw)[3].safetySettings, undefined);
  } finally {
    await gw.close();
  }
});

Deno.test("admin prompt injection goes to the system instruction, first user or last user turn", async () => {
  const gw = await strictGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
      { role: "system", content: "Client system." },
      { role: "user", content: "first" },
      { role: "assistant", content: "answer" },
      { role: "user", content: "last" },
    ];
    const run = () => client.chat.completions.create({ model: "gemini-2.5-flash", messages });
    await gw.admin("PATCH", "/admin/api/settings", { promptInjection: "Always answer in French." });
    await run();
    assert.deepEqual(bodies(gw)[0].systemInstruction, {
      parts: [{ text: "Always answer in French.\n\nClient system." }],
    });
    await gw.admin("PATCH", "/admin/api/settings", { promptInjectionPosition: "user_prefix" });
    await run();
    assert.deepEqual(bodies(gw)[1].contents[0].parts, [
      { text: "Always answer in French.\n\n" },
      { text: "first" },
    ]);
    await gw.admin("PATCH", "/admin/api/settings", { promptInjectionPosition: "user_suffix" });
    const res = await run();
    assert.deepEqual(bodies(gw)[2].contents[2].parts, [
      { text: "last" },
      { text: "\n\nAlways answer in French." },
    ]);
    assert.equal(res.choices[0].message.content, "Echo: last \n\nAlways answer in French.");
  } finally {
    await gw.close();
  }
});

Deno.test("admin aliases route client model names to Gemini models and appear in /v1/models", async () => {
  const gw = await strictGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const put = await gw.admin<{ aliases: Record<string, string> }>("PUT", "/admin/api/aliases", {
      aliases: { "gpt-4o": "gemini-2.5-flash", "gpt-4o-mini": "gemini-2.5-flash-lite-nothinking" },
    });
    assert.equal(put.status, 200);
    assert.deepEqual((await gw.admin("GET", "/admin/api/aliases")).json, put.json);
    const res = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "hi" }],
    });
    assert.equal(res.model, "gpt-4o");
    assert.match(paths(gw).at(-1)!, /models\/gemini-2\.5-flash:generateContent$/);
    await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hi" }],
    });
    assert.match(paths(gw).at(-1)!, /models\/gemini-2\.5-flash-lite:generateContent$/);
    assert.deepEqual(bodies(gw).at(-1)!.generationConfig?.thinkingConfig, { thinkingBudget: 0 });
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.ok(ids.includes("gpt-4o") && ids.includes("gpt-4o-mini"));
    assert.equal((await client.models.retrieve("gpt-4o")).owned_by, "gateway");

    const selfLoop = await gw.admin("PUT", "/admin/api/aliases", { aliases: { a: "a" } });
    assert.equal(selfLoop.status, 400);
    const badName = await gw.admin("PUT", "/admin/api/aliases", { aliases: { "bad name": "x" } });
    assert.equal(badName.status, 400);
  } finally {
    await gw.close();
  }
});

/** A reply that writes a long text and, in continuation rounds, goes on where the model turn ended. */
function longReply(full: string) {
  return (view: GenerateRequestView): string => {
    const contents = view.body.contents as { role: string; parts: { text?: string }[] }[];
    const partial = contents.filter((c) => c.role === "model").map((c) =>
      c.parts.map((p) => p.text ?? "").join("")
    ).at(-1);
    if (!partial) return full;
    assert.ok(full.startsWith(partial), `the model turn is the answer so far: ${partial}`);
    // Repeat the last 12 characters, as models do, to exercise the overlap trimming.
    return full.slice(Math.max(0, partial.length - 12));
  };
}

const FULL = "one two three four five six seven eight nine ten eleven twelve thirteen " +
  "fourteen fifteen sixteen seventeen eighteen nineteen twenty";

async function truncatingGateway() {
  const gw = await startGateway({
    keys: { "AIzaFeat-1": OK },
    fakeOptions: { strict: true, reply: longReply(FULL), outputLimit: 6, streamChunks: 2 },
  });
  await gw.admin("PATCH", "/admin/api/settings", { antiTruncation: true, antiTruncationRounds: 5 });
  return gw;
}

Deno.test("anti-truncation continues an answer cut at the model's output limit, without repeats", async () => {
  const gw = await truncatingGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const res = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "count to twenty" }],
    });
    assert.equal(res.choices[0].message.content, FULL);
    assert.equal(res.choices[0].finish_reason, "stop");
    const sent = bodies(gw);
    assert.ok(sent.length >= 4, `several rounds (${sent.length})`);
    const second = sent[1].contents;
    assert.deepEqual(second.map((c) => c.role), ["user", "model", "user"]);
    assert.equal(second[1].parts[0].text, "one two three four five six");
    assert.ok(res.usage!.prompt_tokens > sent.length, "usage is summed over rounds");

    // A limit the client chose is respected: no continuation.
    const chosen = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "count" }],
      max_tokens: 3,
    });
    assert.equal(chosen.choices[0].finish_reason, "length");
    assert.equal(bodies(gw).length, sent.length + 1);
  } finally {
    await gw.close();
  }
});

Deno.test("anti-truncation keeps a stream live across rounds and joins them seamlessly", async () => {
  const gw = await truncatingGateway();
  try {
    const client = gw.openai(await gw.createUserKey());
    const stream = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "count to twenty" }],
      stream: true,
    });
    let text = "";
    const finishes: string[] = [];
    let deltas = 0;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c?.delta.content) {
        text += c.delta.content;
        deltas++;
      }
      if (c?.finish_reason) finishes.push(c.finish_reason);
    }
    assert.equal(text, FULL);
    assert.deepEqual(finishes, ["stop"], "one finish, at the very end");
    assert.ok(deltas >= 4, "the answer streamed in pieces");
    assert.ok(bodies(gw).length >= 4);
  } finally {
    await gw.close();
  }
});

/** A streamed chat answer to `content`: the first choice's text and its last finish reason. */
async function streamed(
  client: OpenAI,
  content: string,
  extra: { max_tokens?: number } = {},
): Promise<{ text: string; finish: string | null }> {
  const stream = await client.chat.completions.create({
    model: "gemini-2.5-flash",
    messages: [{ role: "user", content }],
    stream: true,
    ...extra,
  });
  let text = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  return { text, finish };
}

/** The text of a streamed chat answer to `content`. */
async function streamedText(client: OpenAI, content: string): Promise<string> {
  return (await streamed(client, content)).text;
}

Deno.test("anti-truncation resumes a stream the upstream cut before its end", async () => {
  const gw = await startGateway({
    keys: { "AIzaFeat-1": OK },
    fakeOptions: { strict: true, reply: longReply(FULL), streamChunks: 3 },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    const ask = () => streamedText(client, "count [[CUT]]");
    await assert.rejects(ask(), /before the answer was complete/, "off by default: an error event");
    await gw.admin("PATCH", "/admin/api/settings", { antiTruncation: true });
    assert.equal(await ask(), FULL);
  } finally {
    await gw.close();
  }
});

/** An SSE answer of `chunks`, whose body then fails (`reset`), stays open (`hang`) or ends. */
function scriptedSse(chunks: Json[], after: "reset" | "hang" | "end" = "end"): Response {
  const encoder = new TextEncoder();
  let sent = false;
  return new Response(
    new ReadableStream<Uint8Array>({
      async pull(c) {
        if (!sent) {
          sent = true;
          for (const chunk of chunks) {
            c.enqueue(encoder.encode(`data: ${JSON.stringify(chunk)}\r\n\r\n`));
          }
          return;
        }
        // The failure comes with a later read, as a connection's would.
        await new Promise((resolve) => setTimeout(resolve, 10));
        if (after === "reset") c.error(new TypeError("connection reset"));
        if (after === "end") c.close();
        if (after === "hang") await new Promise(() => {});
      },
    }),
    { headers: { "content-type": "text/event-stream" } },
  );
}

const textChunk = (text: string, finishReason?: string): Json => ({
  candidates: [{
    index: 0,
    content: { role: "model", parts: [{ text }] },
    ...(finishReason ? { finishReason } : {}),
  }],
  usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 2, totalTokenCount: 5 },
});

/** A gateway whose generate calls are answered by `script` (call n, streamed or not). */
async function scriptedGateway(
  script: (n: number, stream: boolean, body: Json) => Response,
  env: Record<string, string> = {},
) {
  let n = 0;
  return await startGateway({
    keys: { "AIzaFeat-1": OK },
    env,
    upstreamFetch: (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (!url.includes("enerateContent")) return fetch(input, init);
      const sent = init?.body;
      const body = JSON.parse(
        typeof sent === "string" ? sent : new TextDecoder().decode(sent as Uint8Array),
      );
      return Promise.resolve(script(n++, url.includes(":stream"), body));
    },
  });
}

Deno.test("anti-truncation continues a stream whose connection failed, and a failure after the finish is no error", async () => {
  const gw = await scriptedGateway((n) =>
    n === 0
      ? scriptedSse([textChunk("The first half of the answer, ")], "reset")
      : n === 1
      ? scriptedSse([textChunk("and the second half.", "STOP")])
      : scriptedSse([textChunk("A whole answer.", "STOP")], "reset")
  );
  try {
    await gw.admin("PATCH", "/admin/api/settings", { antiTruncation: true });
    const client = gw.openai(await gw.createUserKey());
    const ask = () => streamedText(client, "hi");
    assert.equal(await ask(), "The first half of the answer, and the second half.");
    // Its last chunk came, then the connection failed: the answer is whole, and ends cleanly.
    assert.equal(await ask(), "A whole answer.");
  } finally {
    await gw.close();
  }
});

Deno.test("a cut stream is continued within the client's max_tokens", async () => {
  const limits: unknown[] = [];
  const gw = await scriptedGateway((n, _stream, body) => {
    limits.push((body.generationConfig as Json | undefined)?.maxOutputTokens);
    return n === 0
      ? scriptedSse([textChunk("The first half, ")], "reset")
      : scriptedSse([textChunk("the second half.", "STOP")]);
  });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { antiTruncation: true });
    const client = gw.openai(await gw.createUserKey());
    const { text } = await streamed(client, "hi", { max_tokens: 50 });
    assert.equal(text, "The first half, the second half.");
    // The first round wrote 2 tokens (its usage): the second may write the other 48.
    assert.deepEqual(limits, [50, 48]);
  } finally {
    await gw.close();
  }
});

Deno.test("a cut stream whose rounds used the whole max_tokens ends at the limit, not with another round", async () => {
  let calls = 0;
  const gw = await scriptedGateway(() => {
    calls++;
    const chunk = textChunk("Four tokens of text, ");
    (chunk.usageMetadata as Json).candidatesTokenCount = 4;
    return scriptedSse([chunk], "reset");
  });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { antiTruncation: true });
    const client = gw.openai(await gw.createUserKey());
    const { text, finish } = await streamed(client, "hi", { max_tokens: 4 });
    assert.equal(text, "Four tokens of text, ");
    assert.equal(finish, "length");
    assert.equal(calls, 1, "no round was asked for what the limit no longer allows");
  } finally {
    await gw.close();
  }
});

Deno.test("a continued stream shows the first round's thoughts only, never a second <think> mid-answer", async () => {
  const thinking = (thought: string, text: string, finishReason?: string): Json => ({
    candidates: [{
      index: 0,
      content: { role: "model", parts: [{ text: thought, thought: true }, { text }] },
      ...(finishReason ? { finishReason } : {}),
    }],
  });
  const gw = await scriptedGateway((n) =>
    n % 2 === 0
      ? scriptedSse([thinking("First thoughts.", "The first half, ")], "reset")
      : scriptedSse([thinking("Thoughts about going on.", "the second half.", "STOP")])
  );
  try {
    await gw.admin("PATCH", "/admin/api/settings", {
      antiTruncation: true,
      thoughtsFormat: "think_tags",
    });
    const client = gw.openai(await gw.createUserKey());
    const text = await streamedText(client, "hi");
    assert.equal(text.split("<think>").length, 2, text);
    assert.doesNotMatch(text, /going on/);
    assert.match(text, /The first half, the second half\.$/);
  } finally {
    await gw.close();
  }
});

Deno.test("a stream whose body stays open after its finish ends cleanly at the timeout, not continued", async () => {
  const gw = await scriptedGateway(
    () => scriptedSse([textChunk("Complete answer.", "STOP")], "hang"),
    { UPSTREAM_TIMEOUT_MS: "1000" },
  );
  try {
    const client = gw.openai(await gw.createUserKey());
    for (const antiTruncation of [false, true]) {
      await gw.admin("PATCH", "/admin/api/settings", { antiTruncation });
      assert.equal(
        await streamedText(client, "hi"),
        "Complete answer.",
        `antiTruncation ${antiTruncation}`,
      );
    }
  } finally {
    await gw.close();
  }
});

Deno.test("a continued whole answer keeps the rounds' pictures and function calls", async () => {
  const round = (parts: Json[], finishReason: string): Response =>
    Response.json({
      candidates: [{ index: 0, content: { role: "model", parts }, finishReason }],
      usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 10, totalTokenCount: 15 },
    });
  const gw = await scriptedGateway((n) =>
    n === 0
      ? round([
        { text: "Here is the picture and the start of a long answer that " },
        { inlineData: { mimeType: "image/png", data: "iVBORw0KGgo=" } },
      ], "MAX_TOKENS")
      : round(
        [{ text: "continues here." }, { functionCall: { name: "lookup", args: { q: "x" } } }],
        "STOP",
      )
  );
  try {
    await gw.admin("PATCH", "/admin/api/settings", { antiTruncation: true });
    const client = gw.openai(await gw.createUserKey());
    const res = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "hi" }],
      tools: [{
        type: "function",
        function: {
          name: "lookup",
          parameters: { type: "object", properties: { q: { type: "string" } } },
        },
      }],
    });
    const choice = res.choices[0];
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(
      choice.message.tool_calls?.[0].type === "function" &&
        choice.message.tool_calls[0].function.name,
      "lookup",
    );
    assert.match(
      choice.message.content ?? "",
      /^Here is the picture and the start of a long answer that /,
    );
    assert.match(choice.message.content ?? "", /continues here\./);
    assert.match(choice.message.content ?? "", /!\[image\]\(data:image\/png;base64,iVBORw0KGgo=\)/);
  } finally {
    await gw.close();
  }
});

/** A cited web page, as the gateway annotates one. */
interface Citation {
  type: string;
  url_citation: { url: string; title: string; start_index: number; end_index: number };
}

/**
 * One chat through the openai client, streamed or not: its content, its annotations, its
 * reasoning_content and its model.
 */
async function chatAnswer(
  client: OpenAI,
  body: { model: string; messages: OpenAI.Chat.ChatCompletionMessageParam[] } & Json,
  stream: boolean,
): Promise<{ content: string; annotations: Citation[]; reasoning?: string; model: string }> {
  type Extra = { annotations?: Citation[]; reasoning_content?: string };
  if (!stream) {
    const res = await client.chat.completions.create({ ...body, stream: false });
    const message = res.choices[0].message as typeof res.choices[0]["message"] & Extra;
    return {
      content: message.content ?? "",
      annotations: message.annotations ?? [],
      reasoning: message.reasoning_content,
      model: res.model,
    };
  }
  const chunks = await client.chat.completions.create({ ...body, stream: true });
  const out = {
    content: "",
    annotations: [] as Citation[],
    reasoning: undefined as string | undefined,
    model: "",
  };
  for await (const chunk of chunks) {
    out.model = chunk.model;
    const delta = chunk.choices[0]?.delta as { content?: string } & Extra | undefined;
    out.content += delta?.content ?? "";
    if (delta?.reasoning_content) out.reasoning = (out.reasoning ?? "") + delta.reasoning_content;
    if (delta?.annotations) out.annotations = delta.annotations;
  }
  return out;
}

Deno.test("web search: a -search model name or web_search_options turns on Google Search, and the pages come back as sources", async () => {
  const gw = await startGateway({ keys: { "AIzaSearch-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const asked = { role: "user", content: "What is new today?" } as const;
    const found = await chatAnswer(
      client,
      { model: "gemini-2.5-flash-search", messages: [asked] },
      false,
    );
    const content = found.content;
    assert.ok(content.startsWith("Echo: What is new today?"), content);
    // Each page once, in order, as a numbered Markdown link after the answer.
    assert.ok(
      content.endsWith(
        "\n\n---\n1. [example.com](https://vertexaisearch.cloud.google.com/grounding-api-redirect/fake-1)" +
          "\n2. [example.org](https://vertexaisearch.cloud.google.com/grounding-api-redirect/fake-2)",
      ),
      content,
    );
    // The annotations point at those links.
    assert.equal(found.annotations.length, 2);
    for (const a of found.annotations) {
      assert.equal(a.type, "url_citation");
      const span = content.slice(a.url_citation.start_index, a.url_citation.end_index);
      assert.equal(span, `[${a.url_citation.title}](${a.url_citation.url})`);
    }
    const tools = (n: number) => (bodies(gw)[n] as SentBody & { tools?: Json[] }).tools;
    assert.deepEqual(tools(0), [{ googleSearch: {} }]);
    assert.match(paths(gw)[0], /\/models\/gemini-2\.5-flash:generateContent$/);
    assert.equal(found.model, "gemini-2.5-flash-search");

    // Streamed, through OpenAI's own option: the same text, the sources in the last content delta.
    const streamed = await chatAnswer(
      client,
      { model: "gemini-2.5-flash", messages: [asked], web_search_options: {} },
      true,
    );
    assert.equal(streamed.content, content);
    assert.deepEqual(streamed.annotations, found.annotations);
    assert.deepEqual(tools(1), [{ googleSearch: {} }]);

    // Without search, no tool and no sources.
    const plain = await chatAnswer(client, { model: "gemini-2.5-flash", messages: [asked] }, false);
    assert.equal(plain.content, "Echo: What is new today?");
    assert.equal(tools(2), undefined);

    // Beside function tools, which Gemini refuses to mix with it, search gives way: the request is
    // answered, with the functions only.
    const withTools = await chatAnswer(client, {
      model: "gemini-2.5-flash-search",
      messages: [asked],
      web_search_options: {},
      tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }],
    }, false);
    assert.equal(withTools.content, "Echo: What is new today?");
    assert.deepEqual(tools(3)?.map((t) => Object.keys(t)), [["functionDeclarations"]]);
  } finally {
    await gw.close();
  }
});

Deno.test("a thinking setting Gemini refuses is dropped and the same key asked again, streamed or not", async () => {
  // A newer model the gateway's table takes for a thinking one, which (here) does not think.
  const gw = await startGateway({
    keys: { "AIzaFeat-1": OK },
    fakeOptions: {
      strict: true,
      models: [
        ...MODELS,
        {
          name: "gemini-4-flash-experimental",
          supportedGenerationMethods: ["generateContent", "countTokens"],
        },
      ],
    },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    const reply = await client.chat.completions.create({
      model: "gemini-4-flash-experimental",
      reasoning_effort: "high",
      messages: [{ role: "user", content: "think hard" }],
    });
    assert.equal(reply.choices[0].message.content, "Echo: think hard");
    const stream = await client.chat.completions.create({
      model: "gemini-4-flash-experimental",
      reasoning_effort: "low",
      stream: true,
      messages: [{ role: "user", content: "again" }],
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(text, "Echo: again");
    // Each request: one refused call with thinkingConfig, then one without, on the same key.
    const calls = gw.fake.requests.filter((r) => r.path.includes("gemini-4-flash-experimental:"))
      .map((r) =>
        "thinkingConfig" in ((r.body as { generationConfig?: object }).generationConfig ?? {})
      );
    assert.deepEqual(calls, [true, false, true, false]);
    await gw.app.drain();
    const keys = await gw.admin<{ data: { status: string; consecutive_errors: number }[] }>(
      "GET",
      "/admin/api/keys",
    );
    assert.deepEqual([keys.json.data[0].status, keys.json.data[0].consecutive_errors], [
      "active",
      0,
    ]);
    // A request whose own error is not about thinking is still answered at once.
    await assert.rejects(
      client.chat.completions.create({
        model: "gemini-4-flash-experimental",
        messages: [{ role: "user", content: "[[BAD]]" }],
      }),
      (e: unknown) => e instanceof OpenAI.BadRequestError,
    );
  } finally {
    await gw.close();
  }
});

Deno.test("the admin can have thoughts sent in <think> tags, for apps that show only content", async () => {
  const gw = await startGateway({ keys: { "AIzaThink-1": OK }, fakeOptions: { strict: true } });
  try {
    const patched = await gw.admin("PATCH", "/admin/api/settings", {
      thoughtsFormat: "think_tags",
    });
    assert.equal(patched.status, 200);
    const client = gw.openai(await gw.createUserKey());
    const body = {
      model: "gemini-2.5-flash-search",
      messages: [{ role: "user" as const, content: "Think first." }],
    };
    const whole = await chatAnswer(client, body, false);
    assert.match(whole.content, /^<think>\n.+\n<\/think>\n\nEcho: Think first\.\n\n---\n1\. \[/s);
    assert.equal(whole.reasoning, undefined);
    const streamed = await chatAnswer(client, body, true);
    assert.equal(streamed.content, whole.content);
    assert.equal(streamed.reasoning, undefined);
    // The sources' annotations still point at their links, after the thoughts.
    for (const a of [...streamed.annotations, ...whole.annotations]) {
      const span = streamed.content.slice(a.url_citation.start_index, a.url_citation.end_index);
      assert.equal(span, `[${a.url_citation.title}](${a.url_citation.url})`);
    }
    assert.equal(
      (await gw.admin("PATCH", "/admin/api/settings", { thoughtsFormat: "xml" })).status,
      400,
    );
  } finally {
    await gw.close();
  }
});
