import assert from "node:assert/strict";
import {
  ChatCompletionRequestSchema,
  readChatCompletionRequest,
} from "../../lib/openai/chat_schema.ts";

const PLAIN = {
  model: "gemini-2.5-flash",
  messages: [
    { role: "system", content: "Be terse." },
    { role: "developer", content: "Really.", name: null },
    { role: "user", content: "Hi", name: "ann" },
    { role: "assistant", content: "Hello" },
    { role: "user", content: "" },
  ],
  stream: true,
  stream_options: { include_usage: true },
  temperature: 0.7,
  top_p: 1,
  top_k: 40,
  max_tokens: 100,
  max_completion_tokens: null,
  n: 1,
  seed: -5,
  presence_penalty: -2,
  frequency_penalty: 2,
  logprobs: false,
  parallel_tool_calls: true,
  user: "u-1",
};

Deno.test("a plain chat request is read as is, without a copy, as the schema reads it", () => {
  const json = structuredClone(PLAIN);
  const read = readChatCompletionRequest(json);
  assert.ok(read.success);
  assert.equal(read.data, json, "no copy");
  assert.deepEqual(read.data, ChatCompletionRequestSchema.parse(structuredClone(PLAIN)));
});

/** Every field of PLAIN set to each of these in turn, plus whole-message and whole-body cases. */
const VALUES: unknown[] = [
  undefined,
  null,
  0,
  -1,
  1,
  1.5,
  2,
  2.5,
  8,
  9,
  -2.5,
  2 ** 53,
  1e-300,
  "",
  "x",
  "m".repeat(128),
  "m".repeat(129),
  "m\u0001",
  true,
  [],
  ["a"],
  ["a", "b", "c", "d", "e", "f"],
  {},
  { include_usage: false },
  { include_usage: "yes" },
  { include_usage: true, extra: 1 },
];

function variants(): unknown[] {
  const out: unknown[] = [];
  for (const field of Object.keys(PLAIN)) {
    for (const value of VALUES) out.push({ ...structuredClone(PLAIN), [field]: value });
  }
  const messages: unknown[] = [
    { role: "user", content: null },
    { role: "user", content: [{ type: "text", text: "a" }] },
    { role: "user", content: "a", name: 3 },
    { role: "user", content: "a", extra: true },
    { role: "assistant" },
    { role: "assistant", content: null },
    { role: "tool", content: "r", tool_call_id: "c1" },
    { role: "tool", content: "r" },
    { role: "function", name: "f", content: "r" },
    { role: "bot", content: "a" },
    { content: "a" },
    "user: a",
    null,
  ];
  for (const m of messages) out.push({ ...structuredClone(PLAIN), messages: [m] });
  out.push(
    { ...structuredClone(PLAIN), messages: [] },
    { ...structuredClone(PLAIN), tools: [] },
    { ...structuredClone(PLAIN), unknown_field: 1 },
    JSON.parse('{"model":"m","messages":[{"role":"user","content":"a"}],"__proto__":{"x":1}}'),
    { model: "m" },
    { messages: PLAIN.messages },
    [PLAIN],
    "text",
    null,
  );
  return out;
}

Deno.test("every other body gets exactly what the schema makes of it", () => {
  let fast = 0;
  for (const v of variants()) {
    const input = structuredClone(v);
    const read = readChatCompletionRequest(input);
    const zod = ChatCompletionRequestSchema.safeParse(structuredClone(v));
    const shown = JSON.stringify(v);
    assert.equal(read.success, zod.success, shown);
    if (read.success && zod.success) {
      assert.deepEqual(read.data, zod.data, shown);
      if (read.data === input) fast++;
    } else if (!read.success && !zod.success) {
      assert.deepEqual(read.error.issues, zod.error.issues, shown);
    }
  }
  assert.ok(fast > 50, `${fast} variants took the plain path`);
});
