/**
 * Pure translation pieces of the API surface: thinking per model family, schema cleaning, tool-call
 * ids, model names and aliases, continuation overlap, embeddings encoding.
 */
import assert from "node:assert/strict";
import { ChatCompletionRequestSchema } from "../../lib/openai/chat_schema.ts";
import {
  chatRequestRefs,
  toGeminiChatRequest,
  toolResultObject,
  TranslateError,
} from "../../lib/translate/chat_request.ts";
import {
  addUsage,
  sourcesFooter,
  toChatCompletion,
  webSources,
} from "../../lib/translate/chat_response.ts";
import { ChatStreamTranslator } from "../../lib/translate/chat_stream.ts";
import {
  continuationRequest,
  overlapLength,
  OverlapTrimmer,
} from "../../lib/translate/continuation.ts";
import { float32Base64, toBatchEmbedRequests } from "../../lib/translate/embeddings.ts";
import { aliasModels, aliasProblem, resolveModel } from "../../lib/translate/models.ts";
import {
  SchemaError,
  toGeminiParameters,
  toResponseJsonSchema,
} from "../../lib/translate/schema.ts";
import { thinkingConfigFor, thinkingFamily } from "../../lib/translate/thinking.ts";
import {
  DUMMY_THOUGHT_SIGNATURE,
  makeToolCallId,
  parseToolCallId,
  signatureHash,
} from "../../lib/translate/tool_ids.ts";

const AUTO = { mode: "auto", budget: -1, includeThoughts: false } as const;

Deno.test("thinking never produces a value outside a model's range", () => {
  for (const effort of ["none", "minimal", "low", "medium", "high", "xhigh", "max"] as const) {
    const pro = thinkingConfigFor("gemini-2.5-pro", { effort }, AUTO)!;
    assert.ok(pro.thinkingBudget! >= 128 && pro.thinkingBudget! <= 32768, `pro ${effort}`);
    const lite = thinkingConfigFor("gemini-2.5-flash-lite", { effort }, AUTO)!;
    assert.ok(lite.thinkingBudget === 0 || lite.thinkingBudget! >= 512, `lite ${effort}`);
    const g3pro = thinkingConfigFor("gemini-3-pro-preview", { effort }, AUTO)!;
    assert.ok(["LOW", "HIGH"].includes(g3pro.thinkingLevel!), `3 pro ${effort}`);
    const g31pro = thinkingConfigFor("gemini-3.1-pro-preview", { effort }, AUTO)!;
    assert.notEqual(g31pro.thinkingLevel, "MINIMAL", `3.1 pro ${effort}`);
    const future = thinkingConfigFor("gemini-4-ultra", { effort }, AUTO)!;
    assert.ok(["LOW", "HIGH"].includes(future.thinkingLevel!), `unknown generation ${effort}`);
  }
  // Explicit budgets are fitted to the model.
  assert.deepEqual(
    thinkingConfigFor("gemini-2.5-pro", { explicit: { budget: 0 } }, AUTO),
    { thinkingBudget: 128 },
  );
  assert.deepEqual(
    thinkingConfigFor("gemini-2.5-flash-lite", { explicit: { budget: 100 } }, AUTO),
    { thinkingBudget: 512 },
  );
  assert.deepEqual(
    thinkingConfigFor("gemini-3-pro-preview", { explicit: { budget: 8192 } }, AUTO),
    { thinkingLevel: "HIGH" },
  );
  // Models that cannot think get nothing, whatever was asked.
  for (const model of ["gemini-2.0-flash", "gemma-3-27b-it", "gemini-2.5-flash-image", "x"]) {
    assert.equal(thinkingFamily(model).kind, "none", model);
    assert.equal(
      thinkingConfigFor(model, { effort: "high" }, { ...AUTO, includeThoughts: true }),
      undefined,
    );
  }
  assert.deepEqual(
    thinkingConfigFor("gemini-flash-latest", {}, { ...AUTO, includeThoughts: true }),
    { includeThoughts: true },
  );
  assert.throws(() =>
    thinkingConfigFor("gemini-2.5-flash", { explicit: { level: "extreme" } }, AUTO)
  );
});

Deno.test("function parameters are reduced to Gemini's schema subset", () => {
  assert.equal(toGeminiParameters({ type: "object", properties: {} }), undefined);
  assert.equal(toGeminiParameters(undefined), undefined);
  const out = toGeminiParameters({
    type: "object",
    properties: {
      a: { anyOf: [{ type: "string" }, { type: "null" }], description: "maybe" },
      b: { oneOf: [{ type: "string" }, { type: "integer" }] },
      c: { allOf: [{ properties: { x: { type: "string" } } }, { required: ["x"] }] },
      d: { type: "integer", enum: [1, 2], format: "int32" },
      e: { type: "string", format: "email", pattern: "^.+@.+$" },
      f: { type: "array" },
      g: { type: "object", properties: {}, propertyNames: { pattern: "^x" } },
    },
  });
  assert.deepEqual(out, {
    type: "object",
    properties: {
      a: { type: "string", description: "maybe", nullable: true },
      b: { anyOf: [{ type: "string" }, { type: "integer" }] },
      c: { type: "object", properties: { x: { type: "string" } }, required: ["x"] },
      d: { type: "integer", format: "int32", description: "Allowed values: 1, 2" },
      e: { type: "string", pattern: "^.+@.+$" },
      f: { type: "array", items: { type: "string" } },
      g: { type: "object" },
    },
  });
  // A self-referencing schema is cut off instead of looping.
  const tree = toGeminiParameters({
    type: "object",
    properties: { node: { $ref: "#/$defs/node" } },
    $defs: { node: { type: "object", properties: { child: { $ref: "#/$defs/node" } } } },
  });
  assert.ok(JSON.stringify(tree).length < 20_000);
  // The self-reference is cut where it meets itself: one level of the definition, then an object.
  assert.deepEqual(tree, {
    type: "object",
    properties: {
      node: { type: "object", properties: { child: { type: "object" } } },
    },
  });
  // A definition that refers to itself twice does not double at every level (2^24 nodes).
  const twice = toGeminiParameters({
    type: "object",
    $defs: {
      a: { type: "object", properties: { k0: { $ref: "#/$defs/a" }, k1: { $ref: "#/$defs/a" } } },
    },
    properties: { root: { $ref: "#/$defs/a" } },
  });
  assert.ok(JSON.stringify(twice).length < 1_000, JSON.stringify(twice));
  // Type lists spread into anyOf copies at every level: past the node budget, refused.
  let wide: Record<string, unknown> = { type: "string" };
  for (let i = 0; i < 12; i++) {
    wide = { type: ["string", "number", "object"], properties: { a: wide, b: wide } };
  }
  assert.throws(() => toGeminiParameters({ type: "object", properties: { w: wide } }), SchemaError);
  // A response_format schema nested too deep is refused, not a stack overflow.
  let deep: Record<string, unknown> = { type: "string" };
  for (let i = 0; i < 5_000; i++) deep = { type: "array", items: deep };
  assert.throws(() => toResponseJsonSchema(deep), SchemaError);
  assert.deepEqual(
    toResponseJsonSchema({
      $schema: "x",
      type: "object",
      properties: { strict: { type: "boolean" }, $schema: { type: "string" } },
      strict: true,
    }),
    { type: "object", properties: { strict: { type: "boolean" }, $schema: { type: "string" } } },
  );
});

Deno.test("tool-call ids carry a short hash, and Gemini's own ids pass back untouched", async () => {
  const hash = await signatureHash("sig".repeat(200));
  assert.equal(hash.length, 24);
  assert.equal(await signatureHash("sig".repeat(200)), hash);
  assert.notEqual(await signatureHash("sig".repeat(200), "id-1"), hash);
  const id = makeToolCallId("abcdefghijkl", hash);
  assert.equal(id, `call_abcdefghijkl${hash}`);
  assert.deepEqual(parseToolCallId(id), { kind: "gateway", hash });
  assert.deepEqual(parseToolCallId("call_abcdefghijkl"), { kind: "gateway", hash: null });
  assert.deepEqual(parseToolCallId("call_whatever"), { kind: "gateway", hash: null });
  assert.deepEqual(parseToolCallId("fc-123"), { kind: "gemini", id: "fc-123" });

  // A hash that was found puts the signature (and Gemini's id) back on the call.
  const req = ChatCompletionRequestSchema.parse({
    model: "gemini-3-flash-preview",
    messages: [
      { role: "user", content: "x" },
      {
        role: "assistant",
        tool_calls: [
          { id, type: "function", function: { name: "f", arguments: '{"a":1}' } },
          { id: "call_second12345", type: "function", function: { name: "g", arguments: "[1]" } },
        ],
      },
      { role: "tool", tool_call_id: id, content: "[1,2]" },
      { role: "tool", tool_call_id: "call_second12345", content: '{"ok":true}' },
    ],
  });
  assert.deepEqual(chatRequestRefs(req).toolCallHashes, [hash]);
  const { body } = toGeminiChatRequest(req, {
    refs: { toolCalls: new Map([[hash, { signature: "SIG", geminiId: "gid" }]]) },
  });
  assert.deepEqual(body.contents[1].parts, [
    { functionCall: { name: "f", args: { a: 1 }, id: "gid" }, thoughtSignature: "SIG" },
    { functionCall: { name: "g", args: { value: [1] } } },
  ]);
  assert.deepEqual(body.contents[2].parts, [
    { functionResponse: { name: "f", response: { output: [1, 2] }, id: "gid" } },
    { functionResponse: { name: "g", response: { ok: true } } },
  ]);
  // Without the record, the first call of the step gets Google's dummy (Gemini 3 only).
  const fallback = toGeminiChatRequest(req);
  assert.equal(fallback.body.contents[1].parts[0].thoughtSignature, DUMMY_THOUGHT_SIGNATURE);
  assert.equal(fallback.body.contents[1].parts[1].thoughtSignature, undefined);
  assert.deepEqual(toolResultObject("plain text"), { output: "plain text" });

  // A signature is valid only for the model that made it: the same model gets it back, another
  // gets the dummy, even when the client echoed the signature itself.
  const made = (model: string) => ({
    refs: { toolCalls: new Map([[hash, { signature: "SIG", geminiId: "gid", model }]]) },
  });
  const same = toGeminiChatRequest(req, made("gemini-3-flash-preview"));
  assert.equal(same.body.contents[1].parts[0].thoughtSignature, "SIG");
  const switched = toGeminiChatRequest(req, made("gemini-3-pro-preview"));
  assert.equal(switched.body.contents[1].parts[0].thoughtSignature, DUMMY_THOUGHT_SIGNATURE);
  assert.deepEqual(switched.body.contents[1].parts[0].functionCall, {
    name: "f",
    args: { a: 1 },
    id: "gid",
  });
  const echoed = ChatCompletionRequestSchema.parse({
    ...req,
    messages: req.messages.map((m) =>
      m.role === "assistant"
        ? {
          ...m,
          tool_calls: m.tool_calls?.map((c) => ({
            ...c,
            extra_content: { google: { thought_signature: "SIG" } },
          })),
        }
        : m
    ),
  });
  const echoedSwitch = toGeminiChatRequest(echoed, made("gemini-3-pro-preview"));
  assert.equal(echoedSwitch.body.contents[1].parts[0].thoughtSignature, DUMMY_THOUGHT_SIGNATURE);
  // A call the gateway has no record of keeps what the client sent.
  assert.equal(echoedSwitch.body.contents[1].parts[1].thoughtSignature, "SIG");
  const echoedSame = toGeminiChatRequest(echoed, made("gemini-3-flash-preview"));
  assert.equal(echoedSame.body.contents[1].parts[1].thoughtSignature, "SIG");
});

Deno.test("responses turn function calls into tool_calls, in streams with running indexes", () => {
  const res = {
    candidates: [{
      index: 0,
      finishReason: "STOP",
      content: {
        role: "model",
        parts: [
          { functionCall: { name: "a", args: { x: 1 } }, thoughtSignature: "S" },
          { functionCall: { name: "b", args: {} } },
        ],
      },
    }],
  };
  const ctx = { id: "chatcmpl-1", created: 1, model: "m", nameCall: () => "call_fixed" };
  const done = toChatCompletion(res, ctx);
  assert.equal(done.choices[0].finish_reason, "tool_calls");
  assert.equal(done.choices[0].message.content, null);
  assert.deepEqual(done.choices[0].message.tool_calls, [
    {
      id: "call_fixed",
      type: "function",
      function: { name: "a", arguments: '{"x":1}' },
      extra_content: { google: { thought_signature: "S" } },
    },
    { id: "call_fixed", type: "function", function: { name: "b", arguments: "{}" } },
  ]);
  const stream = new ChatStreamTranslator(ctx, { includeUsage: false });
  const first = stream.push({
    candidates: [{ index: 0, content: { parts: [res.candidates[0].content.parts[0]] } }],
  });
  const second = stream.push({
    candidates: [{
      index: 0,
      finishReason: "STOP",
      content: { parts: [res.candidates[0].content.parts[1]] },
    }],
  });
  const deltas = [...first, ...second].flatMap((c) => c.choices[0].delta.tool_calls ?? []);
  assert.deepEqual(deltas.map((d) => d.index), [0, 1]);
  assert.equal(second.at(-1)!.choices[0].finish_reason, "tool_calls");
  assert.deepEqual(addUsage({ promptTokenCount: 1 }, { promptTokenCount: 2, totalTokenCount: 5 }), {
    promptTokenCount: 3,
    totalTokenCount: 5,
  });
});

Deno.test("model names resolve through aliases, thinking suffixes and -search", () => {
  const aliases = {
    "gpt-4o": "gemini-2.5-flash",
    fast: "gemini-2.5-flash-nothinking",
    a: "b",
    b: "a",
  };
  assert.deepEqual(resolveModel("models/gemini-2.5-pro"), {
    model: "gemini-2.5-pro",
    suffix: null,
    search: false,
    alias: null,
  });
  assert.deepEqual(resolveModel("gpt-4o", aliases), {
    model: "gemini-2.5-flash",
    suffix: null,
    search: false,
    alias: "gpt-4o",
  });
  assert.deepEqual(resolveModel("fast", aliases), {
    model: "gemini-2.5-flash",
    suffix: "nothinking",
    search: false,
    alias: "fast",
  });
  assert.deepEqual(resolveModel("gpt-4o-thinking", aliases), {
    model: "gemini-2.5-flash",
    suffix: "thinking",
    search: false,
    alias: "gpt-4o",
  });
  // `-search` turns on Google Search, before or after a thinking suffix, on an alias too.
  for (const name of ["gpt-4o-search", "gpt-4o-nothinking-search", "gpt-4o-search-nothinking"]) {
    const r = resolveModel(name, aliases);
    assert.deepEqual([r.model, r.search, r.alias], ["gemini-2.5-flash", true, "gpt-4o"], name);
  }
  assert.equal(resolveModel("gpt-4o-search-nothinking", aliases).suffix, "nothinking");
  assert.equal(resolveModel("-search").model, "-search", "nothing left is no model");
  assert.equal(resolveModel("a", aliases).model.length, 1, "a loop ends");
  assert.equal(aliasProblem({ "gpt-4o": "gemini-2.5-flash" }), null);
  assert.match(aliasProblem({ x: "x" })!, /itself/);
  assert.match(aliasProblem({ "a b": "x" })!, /not a valid/);
  assert.deepEqual(
    aliasModels(aliases, [{ id: "gemini-2.5-flash" }]).map((m) => m.id),
    ["fast", "gpt-4o"],
  );
});

Deno.test("continuations drop the repeated overlap, also when it arrives in pieces", () => {
  assert.equal(overlapLength("the quick brown fox", "brown fox jumps"), 9);
  assert.equal(overlapLength("abc", "abcdef"), 0, "short coincidences are not overlaps");
  assert.equal(overlapLength("one two three", "four five"), 0);
  const trimmer = new OverlapTrimmer("alpha beta gamma delta");
  let out = "";
  for (const piece of ["gam", "ma del", "ta epsilon", " zeta"]) out += trimmer.push(piece);
  out += trimmer.end();
  assert.equal(out, " epsilon zeta");
  const fresh = new OverlapTrimmer("alpha beta gamma delta");
  assert.equal(fresh.push("something new entirely"), "something new entirely", "no hold-up");
  const body = continuationRequest(
    { contents: [{ role: "user", parts: [{ text: "q" }] }] },
    "part",
  );
  assert.deepEqual(body.contents.map((c) => c.role), ["user", "model", "user"]);
  assert.equal(body.contents[1].parts[0].text, "part");
  // No text yet (the model was thinking when it was cut): the request is simply asked again.
  const original = { contents: [{ role: "user", parts: [{ text: "q" }] }] };
  assert.equal(continuationRequest(original, ""), original);
  // An output limit covers the whole answer: a round gets what the earlier ones left of it.
  const limited = { ...original, generationConfig: { maxOutputTokens: 100, temperature: 0.5 } };
  assert.deepEqual(continuationRequest(limited, "part", 30).generationConfig, {
    maxOutputTokens: 70,
    temperature: 0.5,
  });
  assert.equal(continuationRequest(limited, "part", 500).generationConfig?.maxOutputTokens, 1);
  assert.equal(continuationRequest(original, "part", 30).generationConfig, undefined);
});

Deno.test("embeddings: base64 is little-endian float32 and inputs are batched by 100", () => {
  const b64 = float32Base64([1, -2.5]);
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  assert.equal(view.getFloat32(0, true), 1);
  assert.equal(view.getFloat32(4, true), -2.5);
  const plan = toBatchEmbedRequests({
    model: "text-embedding-3-large",
    input: Array.from({ length: 250 }, (_, i) => String(i)),
    dimensions: 16,
  });
  assert.equal(plan.model, "gemini-embedding-001");
  assert.deepEqual(plan.batches.map((b) => b.requests.length), [100, 100, 50]);
  assert.equal(plan.batches[0].requests[0].outputDimensionality, 16);
  assert.throws(
    () => toBatchEmbedRequests({ model: "m", input: [[1, 2]] }),
    (e: unknown) => e instanceof TranslateError && e.param === "input",
  );
});

Deno.test("web sources: each http(s) page once, safe in Markdown, the annotations over the links", () => {
  const sources = webSources({
    groundingChunks: [
      { web: { uri: "https://a.example/x(1)", title: "A [draft]\nnotes" } },
      { web: { uri: "javascript:alert(1)", title: "no" } },
      { retrievedContext: { uri: "https://b.example" } },
      { web: { uri: "https://a.example/x(1)", title: "again" } },
      { web: { uri: "https://c.example", title: "  " } },
      "junk",
    ],
  });
  assert.deepEqual(sources, [
    { url: "https://a.example/x(1)", title: "A [draft]\nnotes" },
    { url: "https://c.example", title: "https://c.example" },
  ]);
  const answer = "Answer.";
  const footer = sourcesFooter(sources, answer.length);
  assert.equal(
    footer.text,
    "\n\n---\n1. [A draft notes](https://a.example/x%281%29)\n2. [https://c.example](https://c.example)",
  );
  const content = answer + footer.text;
  assert.deepEqual(
    footer.annotations.map((a) =>
      content.slice(a.url_citation.start_index, a.url_citation.end_index)
    ),
    ["[A draft notes](https://a.example/x%281%29)", "[https://c.example](https://c.example)"],
  );
  assert.deepEqual(webSources(undefined), []);
  assert.deepEqual(webSources({ groundingChunks: "x" }), []);
});
