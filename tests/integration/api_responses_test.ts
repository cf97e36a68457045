/**
 * OpenAI's Responses API (`POST /v1/responses`) driven by the real `openai` client: text, streams
 * through the SDK's strict stream helper, instructions, tools (function and custom) across two
 * turns with Gemini 3 thought signatures, reasoning summaries, structured output, images, limits
 * and the errors of what Gemini cannot do.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { TINY_PNG } from "../fakes/fake_gemini.ts";
import {
  DAY_MS,
  loadResponse,
  MAX_CONVERSATION_BYTES,
  storeResponse,
} from "../../lib/store/responses.ts";
import {
  assertOwnSignature,
  generateBodies,
  post,
  sentCall,
  sseData,
  startGateway,
} from "./harness.ts";

const OK = { kind: "ok" } as const;
const G3 = "gemini-3-flash-preview";

const weatherTool: OpenAI.Responses.Tool = {
  type: "function",
  name: "get_weather",
  description: "Weather for a city",
  parameters: { type: "object", properties: { city: { type: "string" } } },
  strict: false,
};

type Json = Record<string, unknown>;

Deno.test("responses: a text answer, whole and streamed, with instructions and usage", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const whole = await client.responses.create({
      model: "gemini-2.5-flash",
      instructions: "Answer briefly",
      input: "hello there",
      metadata: { run: "1" },
    });
    assert.match(whole.id, /^resp_/);
    assert.equal(whole.object, "response");
    assert.equal(whole.status, "completed");
    assert.equal(whole.model, "gemini-2.5-flash");
    assert.equal(whole.output_text, "Echo: hello there");
    assert.equal(whole.instructions, "Answer briefly");
    assert.deepEqual(whole.metadata, { run: "1" });
    const message = whole.output.find((o) => o.type === "message");
    assert.ok(message && message.type === "message");
    assert.match(message.id, /^msg_/);
    assert.equal(message.status, "completed");
    assert.ok(whole.usage && whole.usage.input_tokens > 0 && whole.usage.output_tokens > 0);
    assert.equal(whole.usage.total_tokens, whole.usage.input_tokens + whole.usage.output_tokens);
    const sent = generateBodies(gw)[0];
    assert.equal(sent.systemInstruction?.parts[0].text, "Answer briefly");

    const stream = client.responses.stream({ model: "gemini-2.5-flash", input: "hello there" });
    const types: string[] = [];
    const sequence: number[] = [];
    let deltas = "";
    for await (const event of stream) {
      types.push(event.type);
      sequence.push(event.sequence_number);
      if (event.type === "response.output_text.delta") deltas += event.delta;
    }
    const final = await stream.finalResponse();
    assert.equal(final.output_text, "Echo: hello there");
    assert.equal(deltas, "Echo: hello there");
    assert.equal(final.status, "completed");
    assert.ok(final.usage && final.usage.output_tokens > 0, "usage on the completed event");
    assert.deepEqual(sequence, sequence.map((_, i) => i), "sequence numbers count from 0");
    assert.equal(types[0], "response.created");
    assert.equal(types[1], "response.in_progress");
    assert.equal(types.at(-1), "response.completed");
    for (
      const t of [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
      ]
    ) assert.ok(types.includes(t), `${t} in ${types.join(",")}`);
  } finally {
    await gw.close();
  }
});

Deno.test("responses: a Gemini 3 function call and its output make a second turn with the real signature", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const tools = [weatherTool];
    const input: OpenAI.Responses.ResponseInput = [
      { role: "user", content: 'weather? [[CALL:get_weather:{"city":"Paris"}]]' },
    ];
    // The first turn streams: the SDK's helper assembles the call.
    const stream = client.responses.stream({ model: G3, input, tools });
    const first = await stream.finalResponse();
    const call = first.output.find((o) => o.type === "function_call");
    assert.ok(call && call.type === "function_call", JSON.stringify(first.output));
    assert.equal(call.name, "get_weather");
    assert.deepEqual(JSON.parse(call.arguments), { city: "Paris" });
    assert.match(call.id ?? "", /^fc_/);
    // The client echoes the whole output back (as the SDK's docs show), then the call's output.
    const second = await client.responses.create({
      model: G3,
      tools,
      input: [
        ...input,
        ...first.output,
        { type: "function_call_output", call_id: call.call_id, output: '{"temperature":21}' },
      ] as OpenAI.Responses.ResponseInput,
    });
    assert.equal(second.output_text, 'Results: get_weather={"temperature":21}');
    const replay = generateBodies(gw)[1];
    const replayed = replay.contents[1].parts[0];
    assert.ok(replayed.functionCall, JSON.stringify(replay.contents));
    assertOwnSignature(replayed);
    assert.ok(replay.contents[2].parts[0].functionResponse, "the output answers the call");
  } finally {
    await gw.close();
  }
});

Deno.test("responses: a custom tool is called with free text and its output goes back", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const tools: OpenAI.Responses.Tool[] = [{
      type: "custom",
      name: "apply_patch",
      description: "Applies a patch",
    }];
    const asked = 'fix it [[CALL:apply_patch:{"input":"*** Begin Patch"}]]';
    for (const streamed of [false, true]) {
      const res = streamed
        ? await client.responses.stream({ model: "gemini-2.5-flash", input: asked, tools })
          .finalResponse()
        : await client.responses.create({ model: "gemini-2.5-flash", input: asked, tools });
      const call = res.output.find((o) => o.type === "custom_tool_call");
      assert.ok(call && call.type === "custom_tool_call", JSON.stringify(res.output));
      assert.equal(call.input, "*** Begin Patch");
      assert.equal(call.name, "apply_patch");
    }
    const declared = generateBodies(gw)[0].tools?.[0] as { functionDeclarations: Json[] };
    assert.equal(declared.functionDeclarations[0].name, "apply_patch");
    const after = await client.responses.create({
      model: "gemini-2.5-flash",
      tools,
      input: [
        { role: "user", content: asked },
        { type: "custom_tool_call", call_id: "call_patch1", name: "apply_patch", input: "x" },
        { type: "custom_tool_call_output", call_id: "call_patch1", output: "Done" },
      ],
    });
    assert.equal(after.output_text, 'Results: apply_patch={"output":"Done"}');
  } finally {
    await gw.close();
  }
});

Deno.test("responses: a namespace's tools are called by name and namespace, as Codex declares them", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const tools = [{
      type: "namespace",
      name: "crm",
      description: "Customer records",
      tools: [{
        type: "function",
        name: "find",
        description: "Finds a customer",
        parameters: { type: "object", properties: { q: { type: "string" } } },
        strict: false,
      }],
    }] as unknown as OpenAI.Responses.Tool[];
    const asked = 'who? [[CALL:crm.find:{"q":"Ada"}]]';
    const first = await client.responses.stream({ model: "gemini-2.5-flash", input: asked, tools })
      .finalResponse();
    const call = first.output.find((o) => o.type === "function_call");
    assert.ok(call && call.type === "function_call", JSON.stringify(first.output));
    assert.equal(call.name, "find");
    assert.equal((call as { namespace?: string }).namespace, "crm");
    const declared = generateBodies(gw)[0].tools?.[0] as { functionDeclarations: Json[] };
    assert.equal(declared.functionDeclarations[0].name, "crm.find");
    const second = await client.responses.create({
      model: "gemini-2.5-flash",
      tools,
      input: [
        { role: "user", content: asked },
        ...first.output,
        { type: "function_call_output", call_id: call.call_id, output: "found" },
      ] as OpenAI.Responses.ResponseInput,
    });
    assert.equal(second.output_text, 'Results: crm.find={"output":"found"}');
  } finally {
    await gw.close();
  }
});

Deno.test("responses: reasoning summaries come as reasoning items, streamed or not", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const params = {
      model: "gemini-2.5-flash",
      input: "think first",
      reasoning: { effort: "low" as const, summary: "auto" as const },
    };
    const whole = await client.responses.create(params);
    const streamed = await client.responses.stream(params).finalResponse();
    for (const res of [whole, streamed]) {
      assert.equal(res.output[0].type, "reasoning", JSON.stringify(res.output));
      const reasoning = res.output[0];
      assert.ok(reasoning.type === "reasoning");
      assert.deepEqual(reasoning.summary, [{ type: "summary_text", text: "Thinking about it." }]);
      assert.equal(res.output_text, "Echo: think first");
      assert.ok((res.usage?.output_tokens_details.reasoning_tokens ?? 0) > 0);
    }
    const config = generateBodies(gw)[0].generationConfig?.thinkingConfig as Json;
    assert.equal(config.includeThoughts, true);
    assert.equal(config.thinkingBudget, 1024, "effort low maps to a budget");
  } finally {
    await gw.close();
  }
});

Deno.test("responses: structured output, images, token limits", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const json = await client.responses.create({
      model: "gemini-2.5-flash",
      input: "a person",
      text: {
        format: {
          type: "json_schema",
          name: "person",
          schema: {
            type: "object",
            properties: { name: { type: "string" } },
            required: ["name"],
            additionalProperties: false,
          },
          strict: true,
        },
      },
    });
    assert.equal(typeof JSON.parse(json.output_text).name, "string");
    assert.equal(generateBodies(gw)[0].generationConfig?.responseMimeType, "application/json");

    await client.responses.create({
      model: "gemini-2.5-flash",
      input: [{
        role: "user",
        content: [
          { type: "input_text", text: "what is this?" },
          { type: "input_image", image_url: `data:image/png;base64,${TINY_PNG}`, detail: "auto" },
        ],
      }],
    });
    const parts = generateBodies(gw)[1].contents[0].parts;
    assert.deepEqual(parts[1], { inlineData: { mimeType: "image/png", data: TINY_PNG } });

    for (const streamed of [false, true]) {
      const params = {
        model: "gemini-2.5-flash",
        input: "one two three four five six",
        max_output_tokens: 2,
      };
      const cut = streamed
        ? await client.responses.stream(params).finalResponse()
        : await client.responses.create(params);
      assert.equal(cut.status, "incomplete");
      assert.deepEqual(cut.incomplete_details, { reason: "max_output_tokens" });
    }
  } finally {
    await gw.close();
  }
});

Deno.test("responses: what Gemini cannot do is a 400 naming the field", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const key = await gw.createUserKey();
    const cases: [Json, string][] = [
      [{ input: "hi", tools: [{ type: "file_search", vector_store_ids: ["v"] }] }, "tools[0].type"],
      [{ input: "hi", tools: [{ type: "function" }] }, "tools[0].name"],
      [{ input: [{ type: "item_reference", id: "msg_1" }] }, "input[0]"],
      [
        { input: [{ role: "user", content: [{ type: "input_file", file_url: "ftp://x/a.pdf" }] }] },
        "input[0].content[0]",
      ],
      [{ input: [{ type: "computer_call", id: "x" }] }, "input[0].type"],
      [{ input: [] }, "input"],
      // Problems the chat path finds are named in the request's own fields.
      [{
        instructions: "sys",
        input: [
          { role: "user", content: "hi" },
          { type: "function_call", call_id: "call_1", name: "f", arguments: "{nope" },
          { type: "function_call_output", call_id: "call_1", output: "x" },
        ],
      }, "input[1]"],
      [{ input: [{ type: "function_call_output", call_id: "call_zz", output: "x" }] }, "input[0]"],
      [{ input: "hi", background: true }, "background"],
      [{ input: "hi", conversation: "conv_1" }, "conversation"],
      [{ input: "hi", prompt: { id: "pmpt_1" } }, "prompt"],
    ];
    for (const [body, param] of cases) {
      const res = await post(`${gw.url}/v1/responses`, {
        apiKey: key,
        body: { model: "gemini-2.5-flash", ...body },
      });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.json.error.param, param, JSON.stringify(res.json));
    }
    assert.equal(generateBodies(gw).length, 0, "nothing reached the upstream");
  } finally {
    await gw.close();
  }
});

Deno.test("responses: a stream that breaks part way fails the response and the SDK raises it", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const stream = client.responses.stream({ model: "gemini-2.5-flash", input: "[[MIDERROR]]" });
    const types: string[] = [];
    let failed: { store?: boolean } | null = null;
    await assert.rejects(async () => {
      for await (const event of stream) {
        types.push(event.type);
        if (event.type === "response.failed") failed = event.response as { store?: boolean };
      }
    }, (err: unknown) => err instanceof OpenAI.APIError && /Internal error/.test(err.message));
    assert.ok(types.includes("response.output_text.delta"), types.join(","));
    assert.equal(types.at(-1), "response.failed");
    assert.equal(failed!.store, false, "a failed answer says it is not stored");
  } finally {
    await gw.close();
  }
});

Deno.test("responses: stored answers are continued with previous_response_id, read and deleted", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const tools = [weatherTool];
    const first = await client.responses.create({
      model: G3,
      instructions: "Be brief",
      input: 'weather? [[CALL:get_weather:{"city":"Paris"}]]',
      tools,
    });
    assert.equal((first as { store?: boolean }).store, true);
    const call = first.output.find((o) => o.type === "function_call");
    assert.ok(call && call.type === "function_call");
    // The tool loop the Responses API documents: only the call's output, and the previous id.
    const second = await client.responses.stream({
      model: G3,
      previous_response_id: first.id,
      input: [{ type: "function_call_output", call_id: call.call_id, output: '{"t":21}' }],
      tools,
    }).finalResponse();
    assert.equal(second.output_text, 'Results: get_weather={"t":21}');
    assert.equal(second.previous_response_id, first.id);
    assert.equal((second as { store?: boolean }).store, true);
    const replay = generateBodies(gw)[1];
    assert.equal(replay.systemInstruction, undefined, "instructions are not carried over");
    assert.equal(replay.contents.length, 3, JSON.stringify(replay.contents));
    assert.match(String(replay.contents[0].parts[0].text), /weather\?/);
    assertOwnSignature(replay.contents[1].parts[0]);
    // A third turn continues the streamed one: the whole conversation goes up again.
    const third = await client.responses.create({
      model: G3,
      previous_response_id: second.id,
      input: "thanks",
    });
    assert.equal(third.output_text, "Echo: thanks");
    assert.equal(generateBodies(gw)[2].contents.length, 5);

    // Each answer keeps its own turn only: the third holds one input item, not the conversation.
    const thirdParts = await Array.fromAsync(gw.kv.list<Uint8Array>({ prefix: ["response"] }));
    const thirdRecord = thirdParts.filter((e) => e.key[2] === third.id)
      .map((e) => new TextDecoder().decode(e.value)).join("");
    const stored = JSON.parse(thirdRecord);
    assert.equal(stored.input.length, 1);
    assert.deepEqual(stored.ancestors, [first.id, second.id]);

    const read = await client.responses.retrieve(second.id);
    assert.equal(read.id, second.id);
    assert.equal(read.output_text, second.output_text);
    // Another user key sees none of them.
    const other = gw.openai(await gw.createUserKey({ name: "other" }));
    await assert.rejects(
      () => other.responses.retrieve(second.id),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
    await assert.rejects(
      () => other.responses.create({ model: G3, previous_response_id: first.id, input: "hi" }),
      (err: unknown) =>
        err instanceof OpenAI.NotFoundError &&
        (err.error as { param?: string }).param === "previous_response_id",
    );
    const deleted: unknown = await client.responses.delete(second.id);
    assert.deepEqual(deleted, { id: second.id, object: "response", deleted: true });
    // The third continues the deleted second: continuing it says which answer is gone.
    await assert.rejects(
      () => client.responses.create({ model: G3, previous_response_id: third.id, input: "x" }),
      (err: unknown) =>
        err instanceof OpenAI.NotFoundError && err.message.includes(second.id) &&
        (err.error as { param?: string }).param === "previous_response_id",
    );
    // An id the gateway never gives is a plain 404, whatever its length.
    const long = `resp_${"a".repeat(3000)}`;
    for (
      const call of [
        () => client.responses.retrieve(long),
        () => client.responses.delete(long),
        () => client.responses.create({ model: G3, previous_response_id: long, input: "x" }),
      ]
    ) {
      await assert.rejects(call, (err: unknown) => err instanceof OpenAI.NotFoundError);
    }
    await assert.rejects(
      () => client.responses.retrieve(second.id),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
    await assert.rejects(
      () => client.responses.create({ model: G3, previous_response_id: second.id, input: "x" }),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
    const unstored = await client.responses.create({ model: G3, input: "hi", store: false });
    assert.equal((unstored as { store?: boolean }).store, false);
    await assert.rejects(
      () => client.responses.retrieve(unstored.id),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
    // With retention 0 the admin keeps none: answers say so, and earlier ones are gone.
    await gw.admin("PATCH", "/admin/api/settings", { responsesRetentionDays: 0 });
    const none = await client.responses.create({ model: G3, input: "hi" });
    assert.equal((none as { store?: boolean }).store, false);
    await assert.rejects(
      () => client.responses.retrieve(first.id),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
  } finally {
    await gw.close();
  }
});

Deno.test("responses: input_items lists what an answer was made from, page by page", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const first = await client.responses.create({
      model: G3,
      input: [{ role: "developer", content: "Be brief" }, { role: "user", content: "one" }],
    });
    const second = await client.responses.create({
      model: G3,
      previous_response_id: first.id,
      input: [{ role: "user", content: [{ type: "input_text", text: "two" }] }],
    });
    // Oldest first: the first turn's input and answer, then the second's own input.
    const asc = await client.responses.inputItems.list(second.id, { order: "asc" });
    assert.equal(asc.has_more, false);
    const items = asc.data as unknown as Array<Record<string, unknown>>;
    assert.deepEqual(items.map((i) => [i.type, i.role]), [
      ["message", "developer"],
      ["message", "user"],
      ["message", "assistant"],
      ["message", "user"],
    ]);
    assert.deepEqual(items[0].content, [{ type: "input_text", text: "Be brief" }]);
    assert.deepEqual(items[3].content, [{ type: "input_text", text: "two" }]);
    assert.equal(items[2].id, first.output[0].id, "an answer's items keep their ids");
    assert.equal(new Set(items.map((i) => i.id)).size, 4);
    // The same input item has the same id in every later answer's list.
    const own = await client.responses.inputItems.list(first.id, { order: "asc" });
    assert.deepEqual(own.data.map((i) => i.id), items.slice(0, 2).map((i) => i.id));

    // Newest first by default; the SDK walks the pages with the `after` cursor.
    const walked = [];
    for await (const item of client.responses.inputItems.list(second.id, { limit: 1 })) {
      walked.push(item.id);
    }
    assert.deepEqual(walked, items.map((i) => i.id).reverse());
    const before = await client.get(`/responses/${second.id}/input_items`, {
      query: { order: "asc", limit: 1, before: items[2].id },
    });
    assert.deepEqual(before, {
      object: "list",
      data: [items[1]],
      first_id: items[1].id,
      last_id: items[1].id,
      has_more: true,
    });

    // Bad queries are 400s naming the field; other keys and gone answers are 404s.
    for (
      const [query, param] of [
        ["limit=0", "limit"],
        ["limit=101", "limit"],
        ["order=sideways", "order"],
        ["after=msg_nope", "after"],
        ["before=msg_nope", "before"],
      ]
    ) {
      await assert.rejects(
        () => client.get(`/responses/${second.id}/input_items?${query}`),
        (err: unknown) =>
          err instanceof OpenAI.BadRequestError &&
          (err.error as { param?: string }).param === param,
        query,
      );
    }
    const other = gw.openai(await gw.createUserKey({ name: "other" }));
    await assert.rejects(
      () => other.responses.inputItems.list(second.id),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
    await client.responses.delete(first.id);
    await assert.rejects(
      () => client.responses.inputItems.list(second.id),
      (err: unknown) => err instanceof OpenAI.NotFoundError && err.message.includes(first.id),
    );
  } finally {
    await gw.close();
  }
});

Deno.test("responses: a user key's stored answers stop at the admin's cap, and deletes make room", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const other = gw.openai(await gw.createUserKey({ name: "other" }));
    const res = await gw.admin("PATCH", "/admin/api/settings", { responsesStorageMb: 1 });
    assert.equal(res.status, 200);
    // Each turn keeps ~600 kB (its input, and the echo of it): the second is past 1 MB.
    const input = "x".repeat(300_000);
    const stored = (r: unknown) => (r as { store?: boolean }).store;
    const first = await client.responses.create({ model: G3, input });
    assert.equal(stored(first), true);
    const second = await client.responses.create({ model: G3, input });
    assert.equal(stored(second), false, "past the cap: answered, not stored");
    await assert.rejects(
      () => client.responses.retrieve(second.id),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
    const streamed = await client.responses.stream({ model: G3, input }).finalResponse();
    assert.equal(stored(streamed), false, "streamed answers too");
    assert.equal(stored(await other.responses.create({ model: G3, input })), true, "per key");
    await client.responses.delete(first.id);
    assert.equal(stored(await client.responses.create({ model: G3, input })), true);
    // 0 lifts the cap.
    await gw.admin("PATCH", "/admin/api/settings", { responsesStorageMb: 0 });
    assert.equal(stored(await client.responses.create({ model: G3, input })), true);
    const bad = await gw.admin("PATCH", "/admin/api/settings", { responsesStorageMb: -1 });
    assert.equal(bad.status, 400);
  } finally {
    await gw.close();
  }
});

Deno.test("responses: a conversation whose stored answers outgrow the limit is not continued", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const first = await client.responses.create({ model: G3, input: "hi" });
    const second = await client.responses.create({
      model: G3,
      input: "more",
      previous_response_id: first.id,
    });
    // Each answer records the bytes of its conversation so far.
    const userId = (await gw.admin<{ data: { id: string }[] }>("GET", "/admin/api/user-keys"))
      .json.data[0].id;
    const kept = { now: gw.clock.now(), ttlMs: DAY_MS };
    const a = (await loadResponse(gw.kv, userId, first.id, kept))!;
    const b = (await loadResponse(gw.kv, userId, second.id, kept))!;
    assert.ok(a.chainBytes > 0 && b.chainBytes > a.chainBytes, `${a.chainBytes} ${b.chainBytes}`);
    // An answer whose conversation holds more than the limit (stored here directly).
    await storeResponse(
      gw.kv,
      userId,
      {
        response: { ...b.response, id: "resp_big" },
        input: b.input,
        ancestors: [],
      },
      DAY_MS,
      { earlierBytes: MAX_CONVERSATION_BYTES },
    );
    await assert.rejects(
      () => client.responses.create({ model: G3, input: "x", previous_response_id: "resp_big" }),
      (err: unknown) =>
        err instanceof OpenAI.BadRequestError &&
        (err.error as { code?: string }).code === "conversation_too_long",
    );
  } finally {
    await gw.close();
  }
});

Deno.test("responses: input_tokens estimates a request, with the conversation it continues", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const counted = await client.responses.inputTokens.count({
      model: G3,
      instructions: "x".repeat(400),
      input: "y".repeat(400),
    });
    assert.equal(counted.object, "response.input_tokens");
    assert.ok(
      counted.input_tokens >= 200 && counted.input_tokens < 260,
      String(counted.input_tokens),
    );
    // No upstream call is made, so no quota is spent.
    assert.equal(generateBodies(gw).length, 0);
    // Instructions alone (no input) are counted too.
    const instructions = await client.responses.inputTokens.count({
      instructions: "x".repeat(400),
    });
    assert.ok(
      instructions.input_tokens >= 100 && instructions.input_tokens < 130,
      JSON.stringify(instructions),
    );
    const first = await client.responses.create({ model: G3, input: "z".repeat(2000) });
    const alone = await client.responses.inputTokens.count({ input: "next" });
    const continued = await client.responses.inputTokens.count({
      input: "next",
      previous_response_id: first.id,
    });
    assert.ok(continued.input_tokens >= alone.input_tokens + 500, JSON.stringify(continued));
    // An image by URL is counted without being downloaded (this host does not exist).
    const withUrl = await client.responses.inputTokens.count({
      input: [{
        role: "user",
        content: [{
          type: "input_image",
          image_url: "https://nowhere.invalid/a.png",
          detail: "auto",
        }],
      }],
    });
    assert.ok(withUrl.input_tokens >= 258, String(withUrl.input_tokens));
    await assert.rejects(
      () => client.responses.inputTokens.count({ input: "x", previous_response_id: "resp_gone" }),
      (err: unknown) =>
        err instanceof OpenAI.NotFoundError &&
        (err.error as { param?: string }).param === "previous_response_id",
    );
    await assert.rejects(
      () =>
        client.responses.inputTokens.count({
          input: "x",
          tools: [{ type: "file_search", vector_store_ids: ["vs_1"] }],
        }),
      (err: unknown) =>
        err instanceof OpenAI.BadRequestError &&
        (err.error as { param?: string }).param === "tools[0].type",
    );
  } finally {
    await gw.close();
  }
});

Deno.test("responses: Codex's own requests (recorded from Codex CLI 0.171) run a tool loop", async () => {
  const gw = await startGateway({ keys: { "AIzaResp-1": OK }, fakeOptions: { strict: true } });
  try {
    const key = await gw.createUserKey();
    // Codex's first turn as it sent it: developer instructions, function tools, a namespace, web
    // search (with options), store: false, include, prompt_cache_key, client_metadata, ids on
    // input items.
    const recorded = JSON.parse(
      await Deno.readTextFile(new URL("./fixtures/codex_0.171_request.json", import.meta.url)),
    );
    const send = (body: unknown) =>
      fetch(`${gw.url}/v1/responses`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const first = await send(recorded);
    assert.equal(first.status, 200);
    const turn1 = await sseData(first);
    const done = turn1.at(-1)!;
    assert.equal(done.type, "response.completed", JSON.stringify(done));
    const output = (done.response as { output: Json[] }).output;
    const call = output.find((o) => o.type === "function_call")!;
    assert.equal(call.name, "exec_command");
    const sent = generateBodies(gw)[0];
    assert.deepEqual(sent.tools?.map((t) => Object.keys(t)), [["functionDeclarations"]]);
    // Codex's second turn: everything again, the answer's items, and the command's output.
    const second = await send({
      ...recorded,
      input: [
        ...recorded.input,
        ...output,
        { type: "function_call_output", id: "fco_1", call_id: call.call_id, output: "hi" },
      ],
    });
    const turn2 = await sseData(second);
    const end = turn2.at(-1)!;
    assert.equal(end.type, "response.completed", JSON.stringify(end));
    const message = (end.response as { output: { type: string; content?: { text: string }[] }[] })
      .output.find((o) => o.type === "message");
    assert.equal(message?.content?.[0].text, 'Results: exec_command={"output":"hi"}');
    assertOwnSignature(sentCall(gw, 1));
  } finally {
    await gw.close();
  }
});

Deno.test("responses: a slow start shows the response created with the first heartbeat", async () => {
  const gw = await startGateway({
    keys: { "AIzaResp-1": OK },
    fakeOptions: { latencyMs: 1_600 },
  });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { streamHeartbeatSeconds: 1 });
    const key = await gw.createUserKey();
    const res = await fetch(`${gw.url}/v1/responses`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gemini-2.5-flash", input: "slowly", stream: true }),
    });
    const text = await res.text();
    const created = text.indexOf("event: response.created");
    const beat = text.indexOf(": keep-alive");
    assert.ok(created >= 0 && beat > created, text.slice(0, 300));
    assert.equal(text.split("event: response.created").length - 1, 1, "created once");
    assert.match(text, /event: response\.completed/);
    assert.match(text, /Echo: slowly/);
  } finally {
    await gw.close();
  }
});
