/**
 * Anthropic's Messages API (`POST /v1/messages`) driven by the real `@anthropic-ai/sdk` client, as
 * Claude Code speaks it: text, streams through the SDK's message stream, system prompts, tools
 * across two turns with Gemini 3 signatures, thinking, Claude model names, count_tokens, and
 * errors in Anthropic's shape.
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { TINY_PNG } from "../fakes/fake_gemini.ts";
import {
  assertOwnSignature,
  generateBodies,
  sentCall,
  sseData,
  startGateway,
  type TestGateway,
} from "./harness.ts";

const OK = { kind: "ok" } as const;
const G3 = "gemini-3-flash-preview";

type Json = Record<string, unknown>;

function paths(gw: TestGateway): string[] {
  return gw.fake.requests.filter((r) => /:(stream)?[gG]enerateContent$/.test(r.path))
    .map((r) => r.path);
}

function anthropic(gw: TestGateway, apiKey: string): Anthropic {
  return new Anthropic({ apiKey, baseURL: gw.url, maxRetries: 0 });
}

Deno.test("messages: a text answer, whole and streamed, with a system prompt and usage", async () => {
  const gw = await startGateway({ keys: { "AIzaMsg-1": OK } });
  try {
    const client = anthropic(gw, await gw.createUserKey());
    const whole = await client.messages.create({
      model: "gemini-2.5-flash",
      max_tokens: 1024,
      system: [{ type: "text", text: "Answer briefly", cache_control: { type: "ephemeral" } }],
      messages: [{ role: "user", content: "hello there" }],
    });
    assert.match(whole.id, /^msg_/);
    assert.equal(whole.type, "message");
    assert.equal(whole.role, "assistant");
    assert.equal(whole.model, "gemini-2.5-flash");
    assert.deepEqual(whole.content, [{ type: "text", text: "Echo: hello there" }]);
    assert.equal(whole.stop_reason, "end_turn");
    assert.ok(whole.usage.input_tokens > 0 && whole.usage.output_tokens > 0);
    assert.equal(generateBodies(gw)[0].systemInstruction?.parts[0].text, "Answer briefly");

    const stream = client.messages.stream({
      model: "gemini-2.5-flash",
      max_tokens: 1024,
      messages: [{ role: "user", content: "hello there" }],
    });
    let text = "";
    stream.on("text", (t) => text += t);
    const final = await stream.finalMessage();
    assert.equal(text, "Echo: hello there");
    assert.deepEqual(final.content, [{ type: "text", text: "Echo: hello there" }]);
    assert.equal(final.stop_reason, "end_turn");
    assert.ok(final.usage.input_tokens > 0 && final.usage.output_tokens > 0, "usage at the end");
  } finally {
    await gw.close();
  }
});

Deno.test("messages: a Gemini 3 tool_use and its tool_result make a second turn with the real signature", async () => {
  const gw = await startGateway({ keys: { "AIzaMsg-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = anthropic(gw, await gw.createUserKey());
    const tools: Anthropic.Tool[] = [{
      name: "get_weather",
      description: "Weather for a city",
      input_schema: { type: "object", properties: { city: { type: "string" } } },
    }];
    const asked: Anthropic.MessageParam = {
      role: "user",
      content: 'weather? [[CALL:get_weather:{"city":"Paris"}]]',
    };
    const first = await client.messages.stream({
      model: G3,
      max_tokens: 1024,
      tools,
      messages: [asked],
    }).finalMessage();
    assert.equal(first.stop_reason, "tool_use");
    const use = first.content.find((b) => b.type === "tool_use");
    assert.ok(use && use.type === "tool_use", JSON.stringify(first.content));
    assert.equal(use.name, "get_weather");
    assert.deepEqual(use.input, { city: "Paris" });
    const second = await client.messages.create({
      model: G3,
      max_tokens: 1024,
      tools,
      messages: [
        asked,
        { role: "assistant", content: first.content },
        {
          role: "user",
          content: [{ type: "tool_result", tool_use_id: use.id, content: '{"temperature":21}' }],
        },
      ],
    });
    assert.deepEqual(second.content, [{
      type: "text",
      text: 'Results: get_weather={"temperature":21}',
    }]);
    const replay = generateBodies(gw)[1];
    const call = replay.contents[1].parts[0];
    assert.ok(call.functionCall, JSON.stringify(replay.contents));
    assertOwnSignature(call);
  } finally {
    await gw.close();
  }
});

Deno.test("messages: thinking comes as thinking blocks; Claude names run on an alias or the stand-in", async () => {
  const gw = await startGateway({ keys: { "AIzaMsg-1": OK } });
  try {
    const client = anthropic(gw, await gw.createUserKey());
    const params = {
      model: "claude-sonnet-4-5-20250929",
      max_tokens: 4096,
      thinking: { type: "enabled" as const, budget_tokens: 2048 },
      messages: [{ role: "user" as const, content: "think first" }],
    };
    const whole = await client.messages.create(params);
    const streamed = await client.messages.stream(params).finalMessage();
    for (const m of [whole, streamed]) {
      assert.equal(m.model, "claude-sonnet-4-5-20250929");
      assert.deepEqual(m.content.map((b) => b.type), ["thinking", "text"]);
      const thought = m.content[0];
      assert.ok(thought.type === "thinking");
      assert.equal(thought.thinking, "Thinking about it.");
    }
    assert.match(paths(gw)[0], /\/models\/gemini-2\.5-flash:generateContent$/);
    const config = generateBodies(gw)[0].generationConfig?.thinkingConfig as Json;
    assert.deepEqual(config, { thinkingBudget: 2048, includeThoughts: true });

    // An alias of the Claude name decides its model.
    await gw.admin("PUT", "/admin/api/aliases", {
      aliases: { "claude-haiku-4-5": "gemini-2.5-flash-lite" },
    });
    await client.messages.create({
      model: "claude-haiku-4-5",
      max_tokens: 100,
      messages: [{ role: "user", content: "hi" }],
    });
    assert.match(paths(gw).at(-1)!, /\/models\/gemini-2\.5-flash-lite:generateContent$/);
  } finally {
    await gw.close();
  }
});

Deno.test("messages: images, stop sequences, token limits and count_tokens", async () => {
  const gw = await startGateway({ keys: { "AIzaMsg-1": OK } });
  try {
    const key = await gw.createUserKey();
    const client = anthropic(gw, key);
    await client.messages.create({
      model: "gemini-2.5-flash",
      max_tokens: 100,
      stop_sequences: ["END"],
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "what is this?" },
          { type: "image", source: { type: "base64", media_type: "image/png", data: TINY_PNG } },
        ],
      }],
    });
    const sent = generateBodies(gw)[0];
    assert.deepEqual(sent.contents[0].parts[1], {
      inlineData: { mimeType: "image/png", data: TINY_PNG },
    });
    assert.deepEqual(sent.generationConfig?.stopSequences, ["END"]);
    assert.equal(sent.generationConfig?.maxOutputTokens, 100);

    for (const streamed of [false, true]) {
      const params = {
        model: "gemini-2.5-flash",
        max_tokens: 2,
        messages: [{ role: "user" as const, content: "one two three four five six" }],
      };
      const cut = streamed
        ? await client.messages.stream(params).finalMessage()
        : await client.messages.create(params);
      assert.equal(cut.stop_reason, "max_tokens");
    }

    const counted = await client.messages.countTokens({
      model: "claude-sonnet-4-5",
      system: "x".repeat(400),
      messages: [{ role: "user", content: "y".repeat(400) }],
    });
    assert.ok(
      counted.input_tokens >= 200 && counted.input_tokens < 260,
      String(counted.input_tokens),
    );
    // A document by URL is counted without being downloaded (this host does not exist).
    const withUrl = await client.messages.countTokens({
      model: "gemini-2.5-flash",
      messages: [{
        role: "user",
        content: [{
          type: "document",
          source: { type: "url", url: "https://nowhere.invalid/a.pdf" },
        }],
      }],
    });
    assert.ok(withUrl.input_tokens >= 258, String(withUrl.input_tokens));
  } finally {
    await gw.close();
  }
});

Deno.test("messages: errors come in Anthropic's shape, and the key may come as x-api-key", async () => {
  const gw = await startGateway({ keys: { "AIzaMsg-1": OK } });
  try {
    const key = await gw.createUserKey();
    const send = (body: unknown, headers: Record<string, string>) =>
      fetch(`${gw.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
    const ok = await send(
      { model: "gemini-2.5-flash", max_tokens: 10, messages: [{ role: "user", content: "hi" }] },
      { "x-api-key": key, "anthropic-version": "2023-06-01" },
    );
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).type, "message");

    const cases: [unknown, Record<string, string>, number, string][] = [
      [{ model: "m", max_tokens: 1, messages: [] }, {}, 401, "authentication_error"],
      [
        { model: "m", max_tokens: 1, messages: [] },
        { "x-api-key": "sk-wrong" },
        401,
        "authentication_error",
      ],
      [
        { model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }] },
        { "x-api-key": key },
        400,
        "invalid_request_error",
      ],
      [
        {
          model: "gemini-2.5-flash",
          max_tokens: 10,
          tools: [{ type: "bash_20250124", name: "bash" }],
          messages: [{ role: "user", content: "hi" }],
        },
        { "x-api-key": key },
        400,
        "invalid_request_error",
      ],
      [
        { model: "gemini-nope", max_tokens: 10, messages: [{ role: "user", content: "hi" }] },
        { "x-api-key": key },
        404,
        "not_found_error",
      ],
      [
        {
          model: "gemini-2.5-flash",
          max_tokens: 10,
          mcp_servers: [{ type: "url", url: "https://mcp.example", name: "x" }],
          messages: [{ role: "user", content: "hi" }],
        },
        { "x-api-key": key },
        400,
        "invalid_request_error",
      ],
    ];
    // A problem the chat path finds is named in the request's own fields.
    const orphan = await send({
      model: "gemini-2.5-flash",
      max_tokens: 10,
      system: "sys",
      messages: [
        { role: "user", content: "hi" },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "zz", content: "x" }] },
      ],
    }, { "x-api-key": key });
    const orphanError = await orphan.json();
    assert.equal(orphan.status, 400, JSON.stringify(orphanError));
    assert.equal(orphanError.type, "error");
    assert.match(orphanError.error.message, /^messages\[1\]\.content\[0\]: /);
    for (const [body, headers, status, type] of cases) {
      const res = await send(body, headers);
      const json = await res.json();
      assert.equal(res.status, status, JSON.stringify(json));
      assert.equal(json.type, "error");
      assert.equal(json.error.type, type, JSON.stringify(json));
      assert.equal(typeof json.error.message, "string");
      // The field is named once, not again before a message that names it.
      assert.doesNotMatch(json.error.message, /^([^:\s]+): .*'\1'/, json.error.message);
    }

    // The SDK lists models in its own shape, and raises a missing one as its NotFoundError.
    const client = anthropic(gw, key);
    const models = await client.models.list();
    const ids = models.data.map((m) => m.id);
    assert.ok(ids.includes("gemini-2.5-flash"), ids.join(","));
    assert.equal(models.data[0].type, "model");
    assert.equal((await client.models.retrieve("gemini-2.5-flash")).id, "gemini-2.5-flash");
    await assert.rejects(
      () => client.models.retrieve("gemini-nope"),
      (err: unknown) => err instanceof Anthropic.NotFoundError,
    );

    // The SDK raises a stream that breaks part way.
    await assert.rejects(
      () =>
        client.messages.stream({
          model: "gemini-2.5-flash",
          max_tokens: 100,
          messages: [{ role: "user", content: "[[MIDERROR]]" }],
        }).finalMessage(),
      (err: unknown) => err instanceof Anthropic.APIError && /Internal error/.test(err.message),
    );
  } finally {
    await gw.close();
  }
});

Deno.test("messages: Claude Code's own requests (recorded from 2.1.197) run a tool loop", async () => {
  const gw = await startGateway({ keys: { "AIzaMsg-1": OK }, fakeOptions: { strict: true } });
  try {
    const key = await gw.createUserKey();
    // As Claude Code sent it: system blocks with cache_control, a system message between turns,
    // adaptive thinking, output_config.effort, context_management, metadata, ?beta=true.
    const recorded = JSON.parse(
      await Deno.readTextFile(
        new URL("./fixtures/claude_code_2.1.197_request.json", import.meta.url),
      ),
    );
    const send = (body: unknown) =>
      fetch(`${gw.url}/v1/messages?beta=true`, {
        method: "POST",
        headers: {
          "x-api-key": key,
          "anthropic-version": "2023-06-01",
          "content-type": "application/json",
        },
        body: JSON.stringify(body),
      });
    const first = await sseData(await send(recorded));
    assert.deepEqual(first.at(-1), { type: "message_stop" });
    const blocks = first.filter((e) => e.type === "content_block_start")
      .map((e) => e.content_block as Json);
    const use = blocks.find((b) => b.type === "tool_use")!;
    assert.equal(use.name, "Bash");
    const input = first.filter((e) => e.type === "content_block_delta")
      .map((e) => e.delta as Json).filter((d) => d.type === "input_json_delta")
      .map((d) => d.partial_json).join("");
    assert.deepEqual(JSON.parse(input), { command: "echo hi-from-claude", description: "say hi" });
    const sent = generateBodies(gw)[0];
    assert.ok(sent.systemInstruction?.parts[0].text.includes("Claude agent"));
    // Claude Code's second turn: the answer, then the tool's result.
    const second = await sseData(
      await send({
        ...recorded,
        messages: [
          ...recorded.messages,
          { role: "assistant", content: [{ ...use, input: JSON.parse(input) }] },
          {
            role: "user",
            content: [{
              type: "tool_result",
              tool_use_id: use.id,
              content: "hi-from-claude",
              is_error: false,
              cache_control: { type: "ephemeral" },
            }],
          },
        ],
      }),
    );
    const text = second.filter((e) => e.type === "content_block_delta")
      .map((e) => e.delta as Json).filter((d) => d.type === "text_delta").map((d) => d.text)
      .join("");
    assert.equal(text, 'Results: Bash={"output":"hi-from-claude"}');
    assertOwnSignature(sentCall(gw, 1));
  } finally {
    await gw.close();
  }
});

Deno.test("messages: a failure after the heartbeats began keeps its kind, so Claude Code can retry", async () => {
  const gw = await startGateway({
    keys: { "AIzaMsg-1": { kind: "unavailable" } },
    fakeOptions: { quiet: true, latencyMs: 2_500 },
  });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { streamHeartbeatSeconds: 1, maxAttempts: 1 });
    const key = await gw.createUserKey();
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json" },
      body: JSON.stringify({
        model: "gemini-2.5-flash",
        max_tokens: 100,
        stream: true,
        messages: [{ role: "user", content: "x" }],
      }),
    });
    assert.equal(res.status, 200, "the stream had begun");
    // The message started with the first heartbeat, pings kept the line alive, then the error.
    const events = await sseData(res);
    const types = events.map((e) => e.type);
    assert.equal(types[0], "message_start", types.join(","));
    assert.ok(types.slice(1, -1).length >= 1 && types.slice(1, -1).every((t) => t === "ping"));
    assert.equal(types.at(-1), "error");
    assert.equal((events.at(-1)!.error as Json).type, "overloaded_error");

    // An unknown route under /v1/messages answers in Anthropic's shape too.
    const unknown = await fetch(`${gw.url}/v1/messages/nope`, { headers: { "x-api-key": key } });
    assert.equal(unknown.status, 404);
    const body = await unknown.json();
    assert.equal(body.type, "error", JSON.stringify(body));
    assert.equal(body.error.type, "not_found_error");
  } finally {
    await gw.close();
  }
});

Deno.test("the request log says which API each request used", async () => {
  const gw = await startGateway({ keys: { "AIzaMsg-1": OK } });
  try {
    const key = await gw.createUserKey();
    const body = { model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }] };
    const calls: [string, unknown][] = [
      ["/v1/chat/completions", body],
      ["/v1/responses", { model: "gemini-2.5-flash", input: "hi" }],
      ["/v1/messages", { ...body, max_tokens: 10 }],
      ["/v1beta/models/gemini-2.5-flash:generateContent", {
        contents: [{ role: "user", parts: [{ text: "hi" }] }],
      }],
    ];
    for (const [path, json] of calls) {
      const res = await fetch(`${gw.url}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify(json),
      });
      assert.equal(res.status, 200, `${path}: ${await res.text()}`);
    }
    await gw.app.drain();
    const log = await gw.admin<{ data: { api: string | null }[] }>("GET", "/admin/api/request-log");
    assert.deepEqual(log.json.data.map((e) => e.api).sort(), [
      "chat",
      "gemini",
      "messages",
      "responses",
    ]);
    const csv = await fetch(`${gw.url}/admin/api/request-log?format=csv`, {
      headers: { authorization: "Bearer test-admin-password" },
    });
    const [head, first] = (await csv.text()).split("\r\n");
    assert.ok(head.endsWith(",api"), head);
    assert.match(first, /,(chat|gemini|messages|responses)$/);
  } finally {
    await gw.close();
  }
});
