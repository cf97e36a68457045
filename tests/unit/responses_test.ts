/**
 * The Responses API's pure parts and its store: items spelled as chat messages, the builder's
 * items and events, and stored records split across KV values.
 */
import assert from "node:assert/strict";
import { ResponsesRequestSchema } from "../../lib/openai/responses_schema.ts";
import {
  DAY_MS,
  deleteResponse,
  deleteStaleResponseUsage,
  deleteUserResponses,
  loadConversation,
  loadResponse,
  MAX_STORED_BYTES,
  storedBytes,
  storeResponse,
} from "../../lib/store/responses.ts";
import { inputMessages, toChatRequest } from "../../lib/translate/responses_request.ts";
import {
  inputItemsOf,
  InputItemsQuerySchema,
  pageOf,
} from "../../lib/translate/responses_items.ts";
import { ResponseBuilder, type ResponseContext } from "../../lib/translate/responses_response.ts";

const PNG = "data:image/png;base64,iVBORw0KGgo=";

function parse(body: Record<string, unknown>) {
  return ResponsesRequestSchema.parse({ model: "gemini-2.5-flash", ...body });
}

Deno.test("input items become chat messages: calls join their assistant turn, tool media follows", () => {
  const req = parse({
    input: [
      { role: "user", content: "hi" },
      {
        type: "message",
        role: "assistant",
        id: "msg_1",
        status: "completed",
        content: [{ type: "output_text", text: "calling", annotations: [] }],
      },
      { type: "reasoning", id: "rs_1", summary: [] },
      { type: "function_call", call_id: "call_a", name: "a", arguments: "{}" },
      { type: "function_call", call_id: "call_b", name: "b", arguments: '{"x":1}' },
      { type: "function_call_output", call_id: "call_a", output: "A" },
      {
        type: "function_call_output",
        call_id: "call_b",
        output: [{ type: "input_text", text: "B" }, { type: "input_image", image_url: PNG }],
      },
      { role: "user", content: [{ type: "input_text", text: "and?" }] },
    ],
  });
  assert.deepEqual(inputMessages(req.input), [
    { role: "user", content: "hi" },
    {
      role: "assistant",
      content: "calling",
      tool_calls: [
        { id: "call_a", type: "function", function: { name: "a", arguments: "{}" } },
        { id: "call_b", type: "function", function: { name: "b", arguments: '{"x":1}' } },
      ],
    },
    { role: "tool", tool_call_id: "call_a", content: "A" },
    { role: "tool", tool_call_id: "call_b", content: "B" },
    { role: "user", content: [{ type: "image_url", image_url: { url: PNG } }] },
    { role: "user", content: [{ type: "text", text: "and?" }] },
  ]);
});

Deno.test("a request's settings take chat's names; a history comes before the input", () => {
  const { chat, toolOrigins } = toChatRequest(
    parse({
      instructions: "sys",
      input: "now",
      max_output_tokens: 50,
      tools: [{ type: "custom", name: "patch" }, { type: "web_search" }],
      tool_choice: { type: "custom", name: "patch" },
      text: { format: { type: "json_object" } },
      reasoning: { effort: "high" },
    }),
    [{ type: "message", role: "user", content: "before" }],
  );
  assert.deepEqual(chat.messages.map((m) => m.content), ["sys", "before", "now"]);
  assert.equal(chat.max_completion_tokens, 50);
  assert.equal(chat.tools?.[0].function.name, "patch");
  assert.deepEqual(chat.tool_choice, { type: "function", function: { name: "patch" } });
  assert.deepEqual(chat.web_search_options, {});
  assert.deepEqual(chat.response_format, { type: "json_object" });
  assert.equal(chat.reasoning_effort, "high");
  assert.deepEqual([...toolOrigins], [["patch", { name: "patch", custom: true }]]);
});

function context(): ResponseContext {
  let n = 0;
  return {
    id: "resp_1",
    createdAt: 1,
    model: "m",
    echo: {
      instructions: null,
      max_output_tokens: null,
      parallel_tool_calls: true,
      previous_response_id: null,
      reasoning: { effort: null, summary: null },
      store: true,
      temperature: null,
      text: { format: { type: "text" } },
      tool_choice: "auto",
      tools: [],
      top_p: null,
      truncation: "disabled",
      user: null,
      metadata: {},
    },
    toolOrigins: new Map(),
    itemId: (prefix) => `${prefix}${++n}`,
  };
}

Deno.test("the builder orders items and numbers events; a cut answer ends incomplete", () => {
  const b = new ResponseBuilder(context());
  const events = [
    ...b.reasoning("hm"),
    ...b.text("Hel"),
    ...b.text("lo"),
    ...b.call({ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }),
  ];
  b.finish("length", {
    prompt_tokens: 3,
    completion_tokens: 4,
    total_tokens: 7,
    prompt_tokens_details: { cached_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 1 },
  });
  events.push(...b.end());
  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  assert.deepEqual(
    events.filter((e) => e.type === "response.output_item.added").map((e) => e.output_index),
    [0, 1, 2],
  );
  // Every item added is done before the response ends, in order.
  const done = events.filter((e) => e.type === "response.output_item.done");
  assert.deepEqual(done.map((e) => e.output_index), [0, 1, 2]);
  const last = events.at(-1)!;
  assert.equal(last.type, "response.incomplete");
  const response = last.response as ReturnType<ResponseBuilder["response"]>;
  assert.deepEqual(response.incomplete_details, { reason: "max_output_tokens" });
  assert.deepEqual(response.output.map((o) => o.type), ["reasoning", "message", "function_call"]);
  const message = response.output[1];
  assert.ok(message.type === "message");
  assert.equal(message.content[0].text, "Hello");
  assert.equal(message.status, "completed", "closed by the call that followed it");
  assert.equal(response.usage?.output_tokens_details.reasoning_tokens, 1);
});

Deno.test("stored responses span KV values, stay with their user key, and expire", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.now();
    const big = "é".repeat(100_000); // 200 kB of UTF-8: four values
    const record = {
      response: { id: "resp_a", created_at: Math.floor(now / 1000), output: [big] },
      input: [{ type: "message", role: "user", content: "hi" }],
      ancestors: [],
    };
    const ttlMs = 30 * DAY_MS;
    const kept = { now, ttlMs };
    assert.equal(await storeResponse(kv, "u1", record, ttlMs), true);
    const parts = await Array.fromAsync(kv.list({ prefix: ["response", "u1", "resp_a"] }));
    assert.equal(parts.length, 4);
    const stored = {
      ...record,
      chainBytes: JSON.stringify(record).length,
      expiresAt: record.response.created_at * 1000 + ttlMs,
    };
    assert.deepEqual(await loadResponse(kv, "u1", "resp_a", kept), stored);
    assert.equal(await loadResponse(kv, "u2", "resp_a", kept), null, "another key's");
    const later = { now: now + ttlMs, ttlMs };
    assert.equal(await loadResponse(kv, "u1", "resp_a", later), null, "expired");
    // A retention shortened since: the record is past it already.
    const shorter = { now: now + 2 * DAY_MS, ttlMs: DAY_MS };
    assert.equal(await loadResponse(kv, "u1", "resp_a", shorter), null, "past a shorter retention");

    const huge = { ...record, response: { ...record.response, id: "resp_b" } };
    huge.input = [{ type: "message", role: "user", content: "x".repeat(MAX_STORED_BYTES) }];
    assert.equal(await storeResponse(kv, "u1", huge, ttlMs), false);
    assert.equal(
      (await Array.fromAsync(kv.list({ prefix: ["response", "u1", "resp_b"] }))).length,
      0,
    );

    assert.equal(await deleteResponse(kv, "u1", "resp_a"), true);
    assert.equal(await loadResponse(kv, "u1", "resp_a", kept), null);
    assert.equal(await deleteResponse(kv, "u1", "resp_a"), false);

    // A deleted user key takes its responses with it, and no one else's.
    for (const id of ["resp_c", "resp_d"]) {
      await storeResponse(kv, "u1", { ...record, response: { ...record.response, id } }, ttlMs);
    }
    await storeResponse(kv, "u2", record, ttlMs);
    // 8 parts, and the key's two storage counters (stored, freed).
    assert.equal(await deleteUserResponses(kv, "u1"), 10);
    assert.equal((await Array.fromAsync(kv.list({ prefix: ["response", "u1"] }))).length, 0);
    assert.equal(await storedBytes(kv, "u1", now), 0);
    assert.deepEqual(await loadResponse(kv, "u2", "resp_a", kept), stored);
  } finally {
    kv.close();
  }
});

Deno.test("each key's stored bytes count until the answers expire; deletes free them once", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.UTC(2026, 11, 6, 12);
    const record = (id: string, daysAgo: number, text: string) => ({
      response: { id, created_at: Math.floor((now - daysAgo * DAY_MS) / 1000), output: [] },
      input: [text],
      ancestors: [],
    });
    // What is stored of a record: its JSON, with the conversation's bytes and expiry last.
    const size = (r: ReturnType<typeof record>, ttlMs: number) =>
      new TextEncoder().encode(JSON.stringify({
        ...r,
        chainBytes: JSON.stringify(r).length,
        expiresAt: r.response.created_at * 1000 + ttlMs,
      })).length;
    // a is kept 3 days, b 30 days from 10 days ago, c 3 days from 5 days ago (expired now).
    const a = record("resp_a", 0, "a".repeat(1000));
    const b = record("resp_b", 10, "b".repeat(2000));
    const c = record("resp_c", 5, "c".repeat(4000));
    assert.equal(await storeResponse(kv, "u", a, 3 * DAY_MS), true);
    assert.equal(await storeResponse(kv, "u", b, 30 * DAY_MS), true);
    assert.equal(await storeResponse(kv, "u", c, 3 * DAY_MS), true);
    await storeResponse(kv, "v", a, 3 * DAY_MS);
    const used = size(a, 3 * DAY_MS) + size(b, 30 * DAY_MS);
    assert.equal(
      await storedBytes(kv, "u", now),
      used,
      "c expired; a retention change alters none",
    );
    // Deletes racing for one answer: one wins, and its bytes are freed once.
    const deletes = await Promise.all([1, 2, 3].map(() => deleteResponse(kv, "u", "resp_b")));
    assert.equal(deletes.filter(Boolean).length, 1, JSON.stringify(deletes));
    assert.equal(await storedBytes(kv, "u", now), size(a, 3 * DAY_MS));
    assert.equal(await storedBytes(kv, "v", now), size(a, 3 * DAY_MS), "each key counts its own");
    // What the cap leaves: a record larger than the room is not stored, and not counted.
    const d = record("resp_d", 0, "d".repeat(500));
    const dSize = size(d, DAY_MS);
    assert.equal(await storeResponse(kv, "u", d, DAY_MS, { roomBytes: dSize - 1 }), false);
    assert.equal(await loadResponse(kv, "u", "resp_d", { now, ttlMs: DAY_MS }), null);
    assert.equal(await storeResponse(kv, "u", d, DAY_MS, { roomBytes: dSize }), true);
    assert.equal(await storedBytes(kv, "u", now), size(a, 3 * DAY_MS) + dSize);
    // Four days on, a (kept 3 days) and d (1 day) have expired: nothing counts.
    assert.equal(await storedBytes(kv, "u", now + 4 * DAY_MS), 0);
    // The cleanup drops the counters of days past (c's expiry, 2 days ago).
    assert.equal(await deleteStaleResponseUsage(kv, now), 1);
    assert.equal(await deleteStaleResponseUsage(kv, now), 0);
    assert.equal(await storedBytes(kv, "u", now), size(a, 3 * DAY_MS) + dSize);
  } finally {
    kv.close();
  }
});

Deno.test("a conversation is read back turn by turn, and a missing earlier answer is named", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.now();
    const kept = { now, ttlMs: DAY_MS };
    // Each turn is stored with the bytes of the ones before it: the conversation's grow.
    let bytes = 0;
    const turn = async (id: string, text: string, ancestors: string[]) => {
      const record = {
        response: { id, created_at: Math.floor(now / 1000), output: [`out ${text}`] },
        input: [`in ${text}`],
        ancestors,
      };
      await storeResponse(kv, "u", record, DAY_MS, { earlierBytes: bytes });
      bytes += JSON.stringify(record).length;
    };
    await turn("resp_1", "1", []);
    await turn("resp_2", "2", ["resp_1"]);
    await turn("resp_3", "3", ["resp_1", "resp_2"]);
    assert.deepEqual(await loadConversation(kv, "u", "resp_3", kept), {
      ok: true,
      turns: [
        { id: "resp_1", input: ["in 1"], output: ["out 1"] },
        { id: "resp_2", input: ["in 2"], output: ["out 2"] },
        { id: "resp_3", input: ["in 3"], output: ["out 3"] },
      ],
      bytes,
    });
    await deleteResponse(kv, "u", "resp_2");
    assert.deepEqual(await loadConversation(kv, "u", "resp_3", kept), {
      ok: false,
      missing: "resp_2",
    });
    assert.deepEqual(await loadConversation(kv, "v", "resp_3", kept), {
      ok: false,
      missing: "resp_3",
    });
  } finally {
    kv.close();
  }
});

Deno.test("errors about chat fields name the request's own: items, calls, media from tool outputs", () => {
  const image = { type: "input_image", image_url: PNG };
  const { paramOf } = toChatRequest(
    parse({
      instructions: "sys",
      input: [
        { role: "user", content: [{ type: "input_text", text: "hi" }, image] },
        { type: "function_call", call_id: "call_a", name: "a", arguments: "{}" },
        { type: "function_call", call_id: "call_b", name: "b", arguments: "{}" },
        { type: "function_call_output", call_id: "call_a", output: [image] },
        { type: "function_call_output", call_id: "call_b", output: [image] },
      ],
    }),
  );
  assert.equal(paramOf("messages[0].content"), "instructions");
  assert.equal(paramOf("messages[1].content[1].image_url.url"), "input[0].content[1]");
  assert.equal(paramOf("messages[2].tool_calls[1].function.arguments"), "input[2]");
  assert.equal(paramOf("messages[4].tool_call_id"), "input[4]");
  assert.equal(paramOf("messages[5].content[1].image_url.url"), "input[4].output[0]");
  assert.equal(paramOf("max_completion_tokens"), "max_output_tokens");
  assert.equal(paramOf("stream_options"), null);
});

Deno.test("input items are listed with ids of their turn, echoes left out, and paged both ways", () => {
  const input = parse({
    input: [
      { type: "function_call", call_id: "call_1", name: "f", arguments: "{}" },
      { type: "reasoning", id: "rs_echo", summary: [] },
      { type: "function_call_output", call_id: "call_1", output: "42" },
      { type: "custom_tool_call_output", call_id: "call_2", output: "done" },
      { role: "assistant", content: "said" },
    ],
  }).input;
  assert.ok(Array.isArray(input));
  const items = inputItemsOf([
    { id: "resp_a", input, output: [{ id: "rs_1", type: "reasoning" }, "not an item"] },
    { id: "resp_b", input: [], output: [{ id: "msg_last", type: "message" }] },
  ]);
  assert.deepEqual(items, [
    {
      id: "fc_a_0",
      type: "function_call",
      call_id: "call_1",
      name: "f",
      arguments: "{}",
      status: "completed",
    },
    {
      id: "fco_a_2",
      type: "function_call_output",
      call_id: "call_1",
      output: "42",
      status: "completed",
    },
    {
      id: "ctco_a_3",
      type: "custom_tool_call_output",
      call_id: "call_2",
      output: "done",
      status: "completed",
    },
    {
      id: "msg_a_4",
      type: "message",
      role: "assistant",
      content: [{ type: "output_text", text: "said", annotations: [] }],
      status: "completed",
    },
    { id: "rs_1", type: "reasoning" },
  ]);
  const ids = (query: Record<string, string>) => {
    const page = pageOf(items, InputItemsQuerySchema.parse(query));
    return page.ok ? [page.data.map((i) => i.id), page.has_more] : page;
  };
  assert.deepEqual(ids({ limit: "2" }), [["rs_1", "msg_a_4"], true]);
  assert.deepEqual(ids({ order: "asc", after: "fc_a_0", before: "msg_a_4" }), [
    ["fco_a_2", "ctco_a_3"],
    false,
  ]);
  assert.deepEqual(ids({ order: "asc", before: "rs_1", limit: "1" }), [["msg_a_4"], true]);
  assert.deepEqual(ids({ order: "asc", before: "fc_a_0" }), [[], false]);
  assert.deepEqual(ids({ order: "asc", after: "rs_1", before: "fc_a_0" }), [[], false]);
  assert.deepEqual(ids({ after: "nope" }), { ok: false, param: "after", id: "nope" });
});
