/**
 * The Messages API's pure parts: Anthropic blocks spelled as chat messages, Claude model names,
 * and the builder's blocks and events.
 */
import assert from "node:assert/strict";
import { MessagesRequestSchema } from "../../lib/anthropic/messages_schema.ts";
import {
  chatMessages,
  CLAUDE_STANDIN_MODEL,
  messagesModel,
  toChatRequest,
} from "../../lib/translate/messages_request.ts";
import { MessageBuilder } from "../../lib/translate/messages_response.ts";
import { TranslateError } from "../../lib/translate/chat_request.ts";

function parse(body: Record<string, unknown>) {
  return MessagesRequestSchema.parse({ model: "gemini-2.5-flash", max_tokens: 100, ...body });
}

Deno.test("tool results come before the user's words; thoughts are skipped; system turns stay system", () => {
  const req = parse({
    messages: [
      { role: "user", content: "hi" },
      {
        role: "assistant",
        content: [
          { type: "thinking", thinking: "hm", signature: "" },
          { type: "text", text: "let me look" },
          { type: "tool_use", id: "call_1", name: "Read", input: { path: "a" } },
        ],
      },
      {
        role: "user",
        content: [
          { type: "text", text: "and this" },
          {
            type: "tool_result",
            tool_use_id: "call_1",
            is_error: true,
            content: [
              { type: "text", text: "no such file" },
              { type: "image", source: { type: "base64", media_type: "image/png", data: "AA==" } },
            ],
          },
        ],
      },
      { role: "system", content: [{ type: "text", text: "be kind" }] },
    ],
  });
  assert.deepEqual(chatMessages(req.messages), [
    { role: "user", content: "hi" },
    {
      role: "assistant",
      content: "let me look",
      tool_calls: [{
        id: "call_1",
        type: "function",
        function: { name: "Read", arguments: '{"path":"a"}' },
      }],
    },
    { role: "tool", tool_call_id: "call_1", content: "Error: no such file" },
    {
      role: "user",
      content: [
        { type: "text", text: "and this" },
        { type: "image_url", image_url: { url: "data:image/png;base64,AA==" } },
      ],
    },
    { role: "system", content: "be kind" },
  ]);
});

Deno.test("Claude names run on an alias or the stand-in; Gemini names on themselves", () => {
  assert.equal(messagesModel("claude-opus-4-1", {}), CLAUDE_STANDIN_MODEL);
  assert.equal(
    messagesModel("claude-opus-4-1", { "claude-opus-4-1": "gemini-2.5-pro" }),
    "claude-opus-4-1",
  );
  assert.equal(messagesModel("gemini-2.5-pro", {}), "gemini-2.5-pro");
});

Deno.test("settings take chat's names; more than 5 stop sequences is refused by name", () => {
  const { chat } = toChatRequest(
    parse({
      system: "sys",
      messages: [{ role: "user", content: "x" }],
      stop_sequences: ["a"],
      tools: [{ name: "f", input_schema: { type: "object" } }, {
        type: "web_search_20250305",
        name: "web_search",
      }],
      tool_choice: { type: "any", disable_parallel_tool_use: true },
      thinking: { type: "enabled", budget_tokens: 512 },
    }),
    "gemini-2.5-flash",
  );
  assert.equal(chat.messages[0].content, "sys");
  assert.deepEqual(chat.stop, ["a"]);
  assert.equal(chat.max_completion_tokens, 100);
  assert.equal(chat.tool_choice, "required");
  assert.equal(chat.parallel_tool_calls, false);
  assert.deepEqual(chat.web_search_options, {});
  assert.deepEqual(chat.extra_body?.google?.thinking_config, {
    thinking_budget: 512,
    include_thoughts: true,
  });
  // A thinking model name, or the admin's thinking mode, decides when the request does not.
  for (const defaults of [{ suffixed: true }, { mode: "budget" }]) {
    const { chat: decided } = toChatRequest(
      parse({ messages: [{ role: "user", content: "x" }] }),
      "gemini-2.5-pro-thinking",
      defaults,
    );
    assert.equal(decided.reasoning_effort, undefined);
    assert.deepEqual(decided.extra_body?.google?.thinking_config, { include_thoughts: false });
  }
  // Without thinking asked for, or with it off, Gemini thinks least and shows nothing.
  for (const thinking of [undefined, { type: "disabled" }]) {
    const { chat: quiet } = toChatRequest(
      parse({ messages: [{ role: "user", content: "x" }], ...(thinking ? { thinking } : {}) }),
      "gemini-2.5-flash",
    );
    assert.equal(quiet.reasoning_effort, "none");
    assert.deepEqual(quiet.extra_body?.google?.thinking_config, { include_thoughts: false });
  }
  assert.throws(
    () =>
      toChatRequest(
        parse({
          messages: [{ role: "user", content: "x" }],
          stop_sequences: ["1", "2", "3", "4", "5", "6"],
        }),
        "gemini-2.5-flash",
      ),
    (err: unknown) => err instanceof TranslateError && err.param === "stop_sequences",
  );
});

Deno.test("the builder opens and closes blocks in order and ends with the stop reason and usage", () => {
  const b = new MessageBuilder({ id: "msg_1", model: "m" });
  const events = [
    ...b.thinking("hm"),
    ...b.text("Hel"),
    ...b.text("lo"),
    ...b.call({ id: "call_1", type: "function", function: { name: "f", arguments: '{"a":1}' } }),
  ];
  b.finish("tool_calls", {
    prompt_tokens: 10,
    completion_tokens: 4,
    total_tokens: 14,
    prompt_tokens_details: { cached_tokens: 3 },
    completion_tokens_details: { reasoning_tokens: 1 },
  });
  events.push(...b.end());
  assert.deepEqual(events.map((e) => e.type), [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_delta", // the thought's signature
    "content_block_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
  ]);
  const starts = events.filter((e) => e.type === "content_block_start").map((e) => e.index);
  assert.deepEqual(starts, [0, 1, 2]);
  const delta = events.find((e) => e.type === "message_delta")!;
  assert.deepEqual(delta.delta, { stop_reason: "tool_use", stop_sequence: null });
  assert.deepEqual(delta.usage, {
    input_tokens: 7,
    output_tokens: 4,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 3,
  });
  const message = b.message();
  assert.deepEqual(message.content, [
    { type: "thinking", thinking: "hm", signature: "" },
    { type: "text", text: "Hello" },
    { type: "tool_use", id: "call_1", name: "f", input: { a: 1 } },
  ]);
});

Deno.test("errors about chat fields name the request's own blocks", () => {
  const png = { type: "image", source: { type: "base64", media_type: "image/png", data: "AA==" } };
  const { paramOf } = toChatRequest(
    parse({
      system: "sys",
      messages: [
        { role: "user", content: "hi" },
        {
          role: "assistant",
          content: [{ type: "text", text: "x" }, {
            type: "tool_use",
            id: "c1",
            name: "f",
            input: {},
          }],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "c1", content: [png] },
            { type: "text", text: "and" },
          ],
        },
      ],
    }),
    "gemini-2.5-flash",
  );
  assert.equal(paramOf("messages[0].content"), "system");
  assert.equal(paramOf("messages[2].tool_calls[0].function.arguments"), "messages[1].content[1]");
  assert.equal(paramOf("messages[3].tool_call_id"), "messages[2].content[0]");
  assert.equal(
    paramOf("messages[4].content[0].image_url.url"),
    "messages[2].content[0].content[0]",
  );
  assert.equal(paramOf("messages[4].content[1].text"), "messages[2].content[1]");
  assert.equal(paramOf("stop"), "stop_sequences");
});
