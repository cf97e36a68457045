/**
 * Tool calling through the gateway with the real `openai` client against the strict fake upstream:
 * declarations (schemas cleaned of what Gemini refuses), tool_choice, parallel calls, streamed
 * tool-call deltas with `index`, and Gemini 3 thought signatures that survive clients which drop
 * unknown fields (the fake refuses a Gemini 3 history whose signatures are missing or foreign).
 */
import assert from "node:assert/strict";
import type OpenAI from "openai";
import { startGateway, type TestGateway } from "./harness.ts";
import { DEFAULT_MODELS, DUMMY_THOUGHT_SIGNATURE } from "../fakes/fake_gemini.ts";

const OK = { kind: "ok" } as const;
const G3 = "gemini-3-flash-preview";

type Json = Record<string, unknown>;
interface SentPart {
  text?: string;
  functionCall?: { name: string; args: Json; id?: string };
  functionResponse?: { name: string; response: Json };
  thoughtSignature?: string;
}
interface SentBody {
  contents: { role: string; parts: SentPart[] }[];
  tools?: { functionDeclarations: Json[] }[];
  toolConfig?: { functionCallingConfig: { mode: string; allowedFunctionNames?: string[] } };
  generationConfig?: Json;
}

function generateBodies(gw: TestGateway): SentBody[] {
  return gw.fake.requests.filter((r) => /:(stream)?[gG]enerateContent$/.test(r.path))
    .map((r) => r.body as SentBody);
}

const weatherTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather for a city",
    parameters: {
      $schema: "http://json-schema.org/draft-07/schema#",
      type: "object",
      additionalProperties: false,
      properties: {
        city: { type: "string", description: "City name" },
        unit: { type: ["string", "null"], enum: ["c", "f", null] },
        days: { type: "integer", minimum: 1, exclusiveMaximum: 15 },
        kind: { const: "forecast" },
        tags: { type: "array", items: { type: "string" }, uniqueItems: true },
        where: { $ref: "#/$defs/place" },
      },
      required: ["city", "nope"],
      $defs: {
        place: {
          type: "object",
          properties: { lat: { type: "number" }, lon: { type: "number" } },
          additionalProperties: false,
        },
      },
    },
    strict: true,
  },
};

const noArgsTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: "function",
  function: {
    name: "now",
    description: "Current time",
    parameters: { type: "object", properties: {} },
  },
};

Deno.test("the real openai client runs a two-turn Gemini 3 tool conversation with runTools", async () => {
  const gw = await startGateway({ keys: { "AIzaTools-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const seenArgs: unknown[] = [];
    const runner = client.chat.completions.runTools({
      model: G3,
      messages: [{ role: "user", content: 'weather? [[CALL:get_weather:{"city":"Paris"}]]' }],
      tools: [{
        type: "function",
        function: {
          name: "get_weather",
          description: "Weather for a city",
          parameters: { type: "object", properties: { city: { type: "string" } } },
          parse: JSON.parse,
          function: (args: unknown) => {
            seenArgs.push(args);
            return { temperature: 21 };
          },
        },
      }],
    });
    const content = await runner.finalContent();
    assert.deepEqual(seenArgs, [{ city: "Paris" }]);
    assert.equal(content, 'Results: get_weather={"temperature":21}');
    const bodies = generateBodies(gw);
    assert.equal(bodies.length, 2, "two upstream turns");
    const call = bodies[1].contents[1].parts[0];
    assert.ok(call.functionCall, "the second turn replays the function call");
    assert.ok(call.thoughtSignature && call.thoughtSignature !== DUMMY_THOUGHT_SIGNATURE);
  } finally {
    await gw.close();
  }
});

Deno.test("a client that drops unknown fields still sends the signature back through the tool-call id", async () => {
  const gw = await startGateway({ keys: { "AIzaTools-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const first = await client.chat.completions.create({
      model: G3,
      messages: [{ role: "user", content: '[[CALL:get_weather:{"city":"Oslo"}]]' }],
      tools: [weatherTool],
    });
    assert.equal(first.choices[0].finish_reason, "tool_calls");
    const call = first.choices[0].message.tool_calls![0];
    assert.equal(call.type, "function");
    assert.match(call.id, /^call_[A-Za-z0-9]{12}[0-9a-f]{24}$/);
    assert.ok(call.id.length < 64, "the id stays short");
    assert.equal(generateBodies(gw).length, 1);
    if (call.type !== "function") throw new Error("function call expected");
    // Only the standard fields go back, as strict clients do.
    const second = await client.chat.completions.create({
      model: G3,
      messages: [
        { role: "user", content: '[[CALL:get_weather:{"city":"Oslo"}]]' },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: call.id, type: "function", function: call.function }],
        },
        { role: "tool", tool_call_id: call.id, content: "sunny" },
      ],
      tools: [weatherTool],
    });
    assert.equal(second.choices[0].message.content, 'Results: get_weather={"output":"sunny"}');
    const replay = generateBodies(gw)[1].contents[1].parts[0];
    assert.ok(replay.thoughtSignature && replay.thoughtSignature !== DUMMY_THOUGHT_SIGNATURE);

    // Another isolate on the same KV finds the signature too (the memory copy is per isolate).
    await gw.app.drain();
    const other = await startGateway({ kv: gw.kv, fake: gw.fake, keys: { "AIzaTools-1": OK } });
    try {
      const key = await other.createUserKey();
      const res = await other.openai(key).chat.completions.create({
        model: G3,
        messages: [
          { role: "user", content: '[[CALL:get_weather:{"city":"Oslo"}]]' },
          {
            role: "assistant",
            content: null,
            tool_calls: [{ id: call.id, type: "function", function: call.function }],
          },
          { role: "tool", tool_call_id: call.id, content: '{"sky":"clear"}' },
        ],
        tools: [weatherTool],
      });
      assert.equal(res.choices[0].message.content, 'Results: get_weather={"sky":"clear"}');
      const replayed = generateBodies(gw).at(-1)!.contents[1].parts[0];
      assert.equal(replayed.thoughtSignature, replay.thoughtSignature);
    } finally {
      await other.close();
    }
  } finally {
    await gw.close();
  }
});

Deno.test("a conversation that moves to another model replays its calls with the dummy signature, not the other model's", async () => {
  const gw = await startGateway({
    keys: { "AIzaTools-1": OK },
    fakeOptions: {
      strict: true,
      models: [...DEFAULT_MODELS, {
        name: "gemini-3-pro-preview",
        displayName: "Gemini 3 Pro Preview",
        supportedGenerationMethods: ["generateContent", "countTokens"],
        inputTokenLimit: 1048576,
        outputTokenLimit: 65536,
        thinking: true,
      }],
    },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    const ask = { role: "user", content: '[[CALL:get_weather:{"city":"Oslo"}]]' } as const;
    const first = await client.chat.completions.create({
      model: G3,
      messages: [ask],
      tools: [weatherTool],
    });
    const message = first.choices[0].message;
    const call = message.tool_calls![0];
    // The whole assistant message goes back, the signature it carries included.
    const history = [ask, message, {
      role: "tool" as const,
      tool_call_id: call.id,
      content: "sunny",
    }];
    const other = await client.chat.completions.create({
      model: "gemini-3-pro-preview",
      messages: history,
      tools: [weatherTool],
    });
    assert.equal(other.choices[0].message.content, 'Results: get_weather={"output":"sunny"}');
    assert.equal(
      generateBodies(gw)[1].contents[1].parts[0].thoughtSignature,
      DUMMY_THOUGHT_SIGNATURE,
    );
    // Back on the model that made it, the call keeps its own signature.
    await client.chat.completions.create({ model: G3, messages: history, tools: [weatherTool] });
    const own = generateBodies(gw)[2].contents[1].parts[0].thoughtSignature;
    assert.ok(own && own !== DUMMY_THOUGHT_SIGNATURE);
  } finally {
    await gw.close();
  }
});

Deno.test("unknown tool-call ids fall back to Google's dummy signature instead of failing", async () => {
  const gw = await startGateway({ keys: { "AIzaTools-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const res = await client.chat.completions.create({
      model: G3,
      messages: [
        { role: "user", content: "what is the weather" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{
            id: "call_fromAnotherProxy",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Rome"}' },
          }],
        },
        { role: "tool", tool_call_id: "call_fromAnotherProxy", content: "rain" },
      ],
      tools: [weatherTool],
    });
    assert.equal(res.choices[0].message.content, 'Results: get_weather={"output":"rain"}');
    const part = generateBodies(gw)[0].contents[1].parts[0];
    assert.equal(part.thoughtSignature, DUMMY_THOUGHT_SIGNATURE);
    // Gemini 2.5 gets no dummy (it does not validate signatures).
    await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [
        { role: "user", content: "what is the weather" },
        {
          role: "assistant",
          tool_calls: [{
            id: "call_x",
            type: "function",
            function: { name: "get_weather", arguments: "{}" },
          }],
        },
        { role: "tool", tool_call_id: "call_x", content: "rain" },
      ],
      tools: [weatherTool],
    });
    assert.equal(generateBodies(gw)[1].contents[1].parts[0].thoughtSignature, undefined);
  } finally {
    await gw.close();
  }
});

Deno.test("streamed parallel tool calls carry index, and the SDK's stream helper assembles them", async () => {
  const gw = await startGateway({ keys: { "AIzaTools-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const stream = client.chat.completions.stream({
      model: G3,
      messages: [{
        role: "user",
        content: '[[CALL:get_weather:{"city":"Paris"}]] [[CALL:get_weather:{"city":"Lima"}]]',
      }],
      tools: [weatherTool],
      stream_options: { include_usage: true },
    });
    const deltas: OpenAI.Chat.Completions.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    stream.on("chunk", (chunk) => {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? []) deltas.push(d);
    });
    const final = await stream.finalChatCompletion();
    assert.deepEqual(deltas.map((d) => d.index), [0, 1]);
    const calls = final.choices[0].message.tool_calls ?? [];
    assert.equal(calls.length, 2);
    assert.deepEqual(
      calls.map((c) => c.type === "function" ? JSON.parse(c.function.arguments) : null),
      [{ city: "Paris" }, { city: "Lima" }],
    );
    assert.equal(final.choices[0].finish_reason, "tool_calls");
    assert.notEqual(calls[0].id, calls[1].id);
    // Only the first parallel call carries the signature; the second id points at nothing stored.
    assert.match(calls[0].id, /^call_[A-Za-z0-9]{12}[0-9a-f]{24}$/);
    assert.match(calls[1].id, /^call_[A-Za-z0-9]{12}$/);

    // Both results go back in one user turn; the strict fake accepts the replay.
    const follow = await client.chat.completions.create({
      model: G3,
      messages: [
        { role: "user", content: "two cities" },
        {
          role: "assistant",
          content: null,
          tool_calls: calls.map((c) => ({
            id: c.id,
            type: "function" as const,
            function: c.type === "function" ? c.function : { name: "x", arguments: "{}" },
          })),
        },
        { role: "tool", tool_call_id: calls[0].id, content: "warm" },
        { role: "tool", tool_call_id: calls[1].id, content: "cold" },
      ],
      tools: [weatherTool],
    });
    assert.equal(
      follow.choices[0].message.content,
      'Results: get_weather={"output":"warm"}; get_weather={"output":"cold"}',
    );
    const sent = generateBodies(gw).at(-1)!;
    assert.deepEqual(sent.contents.map((c) => c.role), ["user", "model", "user"]);
    assert.equal(sent.contents[2].parts.length, 2);
  } finally {
    await gw.close();
  }
});

Deno.test("tool schemas are cleaned of what Gemini refuses and tool_choice maps to its modes", async () => {
  const gw = await startGateway({ keys: { "AIzaTools-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const ask = (tool_choice: OpenAI.Chat.Completions.ChatCompletionToolChoiceOption) =>
      client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "hello" }],
        tools: [weatherTool, noArgsTool],
        tool_choice,
      });
    const auto = await ask("auto");
    assert.equal(auto.choices[0].message.content, "Echo: hello");
    const body = generateBodies(gw)[0];
    const [weather, now] = body.tools![0].functionDeclarations;
    assert.deepEqual(now, { name: "now", description: "Current time" });
    assert.deepEqual(weather.parameters, {
      type: "object",
      properties: {
        city: { type: "string", description: "City name" },
        unit: { type: "string", enum: ["c", "f"], nullable: true },
        days: { type: "integer", minimum: 1 },
        kind: { type: "string", enum: ["forecast"] },
        tags: { type: "array", items: { type: "string" } },
        where: { type: "object", properties: { lat: { type: "number" }, lon: { type: "number" } } },
      },
      required: ["city"],
    });
    assert.equal(body.toolConfig?.functionCallingConfig.mode, "AUTO");

    const required = await ask("required");
    assert.equal(required.choices[0].finish_reason, "tool_calls");
    assert.equal(generateBodies(gw)[1].toolConfig?.functionCallingConfig.mode, "ANY");

    const named = await ask({ type: "function", function: { name: "now" } });
    assert.equal(named.choices[0].message.tool_calls?.[0].type, "function");
    const namedCall = named.choices[0].message.tool_calls![0];
    assert.equal(namedCall.type === "function" ? namedCall.function.name : "", "now");
    assert.deepEqual(generateBodies(gw)[2].toolConfig?.functionCallingConfig, {
      mode: "ANY",
      allowedFunctionNames: ["now"],
    });

    const none = await ask("none");
    assert.equal(none.choices[0].message.tool_calls, undefined);
    assert.equal(generateBodies(gw)[3].toolConfig?.functionCallingConfig.mode, "NONE");

    const unknown = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "x" }],
      tools: [weatherTool],
      tool_choice: { type: "function", function: { name: "missing" } },
    }).catch((e) => e);
    assert.equal(unknown.status, 400);
    assert.equal(unknown.param, "tool_choice.function.name");
  } finally {
    await gw.close();
  }
});

Deno.test("a tool message naming no earlier call is a 400 naming the message", async () => {
  const gw = await startGateway({ keys: { "AIzaTools-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const err = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [
        { role: "user", content: "x" },
        { role: "tool", tool_call_id: "call_nowhere", content: "1" },
      ],
    }).catch((e) => e);
    assert.equal(err.status, 400);
    assert.equal(err.param, "messages[1].tool_call_id");
    assert.equal(gw.fake.requests.filter((r) => r.path.includes("generate")).length, 0);
  } finally {
    await gw.close();
  }
});

Deno.test("schemas too large once expanded, or nested too deep, are 400s naming the schema", async () => {
  const gw = await startGateway({ keys: { "AIzaTools-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    let wide: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < 12; i++) {
      wide = { type: ["string", "number", "object"], properties: { a: wide, b: wide } };
    }
    const messages = [{ role: "user" as const, content: "x" }];
    const tools = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages,
      tools: [{
        type: "function",
        function: { name: "f", parameters: { type: "object", properties: { w: wide } } },
      }],
    }).catch((e) => e);
    assert.equal(tools.status, 400);
    assert.equal(tools.param, "tools[0].function.parameters");
    let deep: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < 5_000; i++) deep = { type: "array", items: deep };
    const format = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages,
      response_format: { type: "json_schema", json_schema: { name: "d", schema: deep } },
    }).catch((e) => e);
    assert.equal(format.status, 400);
    assert.equal(format.param, "response_format.json_schema.schema");
    assert.equal(gw.fake.requests.filter((r) => r.path.includes("generate")).length, 0);
  } finally {
    await gw.close();
  }
});
