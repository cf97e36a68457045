import assert from "node:assert/strict";
import { ChatCompletionRequestSchema } from "../../lib/openai/chat_schema.ts";
import {
  parseDataUrl,
  textWithImages,
  toGeminiChatRequest,
  TranslateError,
} from "../../lib/translate/chat_request.ts";
import { mapFinishReason, mapUsage, toChatCompletion } from "../../lib/translate/chat_response.ts";
import { ChatStreamTranslator } from "../../lib/translate/chat_stream.ts";

const ctx = { id: "chatcmpl-1", created: 1, model: "gemini-2.5-flash" };

function req(body: unknown) {
  return ChatCompletionRequestSchema.parse(body);
}

Deno.test("consecutive same-role turns are merged and empty assistant turns dropped", () => {
  const { body } = toGeminiChatRequest(req({
    model: "gemini-2.5-flash",
    messages: [
      { role: "user", content: "a" },
      { role: "user", content: "b" },
      { role: "assistant", content: null },
      { role: "assistant", content: "c" },
    ],
  }));
  assert.deepEqual(body.contents, [
    { role: "user", parts: [{ text: "a" }, { text: "b" }] },
    { role: "model", parts: [{ text: "c" }] },
  ]);
});

Deno.test("image data URLs and input audio become inline data; remote image URLs are refused clearly", () => {
  const { body } = toGeminiChatRequest(req({
    model: "m",
    messages: [{
      role: "user",
      content: [
        { type: "text", text: "look" },
        { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
        { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } },
        // A data URL where bare base64 belongs: its prefix is taken off, its type kept.
        {
          type: "input_audio",
          input_audio: { data: "data:audio/mpeg;base64,SUQz", format: "mp3" },
        },
        { type: "input_audio", input_audio: { data: "data:;base64,SUQz", format: "mp3" } },
      ],
    }],
  }));
  assert.deepEqual(body.contents[0].parts, [
    { text: "look" },
    { inlineData: { mimeType: "image/png", data: "iVBORw0KGgo=" } },
    { inlineData: { mimeType: "audio/wav", data: "UklGRg==" } },
    { inlineData: { mimeType: "audio/mpeg", data: "SUQz" } },
    { inlineData: { mimeType: "audio/mp3", data: "SUQz" } },
  ]);
  assert.throws(
    () =>
      toGeminiChatRequest(req({
        model: "m",
        messages: [{
          role: "user",
          content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }],
        }],
      })),
    (e: unknown) =>
      e instanceof TranslateError && e.param === "messages[0].content[0].image_url.url",
  );
  assert.deepEqual(parseDataUrl("data:text/plain;charset=utf-8;base64,aGk="), {
    mimeType: "text/plain",
    data: "aGk=",
  });
  assert.equal(parseDataUrl("https://example.com"), null);
});

Deno.test("a conversation of only system messages is refused", () => {
  assert.throws(
    () => toGeminiChatRequest(req({ model: "m", messages: [{ role: "system", content: "x" }] })),
    TranslateError,
  );
});

Deno.test("finish reasons and usage map to OpenAI's, with thinking counted as completion", () => {
  assert.equal(mapFinishReason("STOP"), "stop");
  assert.equal(mapFinishReason("MAX_TOKENS"), "length");
  assert.equal(mapFinishReason("RECITATION"), "content_filter");
  assert.equal(mapFinishReason("MALFORMED_FUNCTION_CALL"), "stop");
  assert.equal(mapFinishReason("STOP", true), "tool_calls");
  assert.deepEqual(
    mapUsage({
      promptTokenCount: 10,
      candidatesTokenCount: 5,
      thoughtsTokenCount: 20,
      totalTokenCount: 35,
      cachedContentTokenCount: 4,
    }),
    {
      prompt_tokens: 10,
      completion_tokens: 25,
      total_tokens: 35,
      prompt_tokens_details: { cached_tokens: 4 },
      completion_tokens_details: { reasoning_tokens: 20 },
    },
  );
});

Deno.test("thought parts become reasoning_content, never content", () => {
  const out = toChatCompletion({
    candidates: [{
      content: { role: "model", parts: [{ text: "hmm", thought: true }, { text: "Answer." }] },
      finishReason: "STOP",
    }],
  }, ctx);
  assert.equal(out.choices[0].message.content, "Answer.");
  assert.equal(out.choices[0].message.reasoning_content, "hmm");
});

Deno.test("with think tags, thoughts go into content between <think> tags, streamed or not", () => {
  const tags = { ...ctx, thinkTags: true };
  const out = toChatCompletion({
    candidates: [{
      content: { role: "model", parts: [{ text: "hmm", thought: true }, { text: "Answer." }] },
      finishReason: "STOP",
    }],
  }, tags);
  assert.equal(out.choices[0].message.content, "<think>\nhmm\n</think>\n\nAnswer.");
  assert.equal(out.choices[0].message.reasoning_content, undefined);

  const t = new ChatStreamTranslator(tags, { includeUsage: false });
  const deltas = [
    { candidates: [{ content: { parts: [{ text: "hm", thought: true }] } }] },
    { candidates: [{ content: { parts: [{ text: "m", thought: true }, { text: "Ans" }] } }] },
    { candidates: [{ content: { parts: [{ text: "wer." }] }, finishReason: "STOP" }] },
  ].flatMap((res) => t.push(res)).map((c) => c.choices[0].delta.content ?? "");
  assert.equal(deltas.join(""), "<think>\nhmm\n</think>\n\nAnswer.");
  // Thoughts with no answer after them are closed before the stream finishes.
  const only = new ChatStreamTranslator(tags, { includeUsage: false });
  const closed = [
    { candidates: [{ content: { parts: [{ text: "hmm", thought: true }] } }] },
    { candidates: [{ content: { parts: [] }, finishReason: "MAX_TOKENS" }] },
  ].flatMap((res) => only.push(res)).map((c) => c.choices[0].delta.content ?? "");
  assert.equal(closed.join(""), "<think>\nhmm\n</think>\n\n");
});

Deno.test("the stream translator emits role, deltas, one finish chunk and a usage chunk", () => {
  const t = new ChatStreamTranslator(ctx, { includeUsage: true });
  const a = t.push({
    candidates: [{ content: { parts: [{ text: "Hel" }] } }],
    usageMetadata: { promptTokenCount: 3 },
  });
  const b = t.push({
    candidates: [{ content: { parts: [{ text: "lo" }] }, finishReason: "STOP" }],
    usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 2, totalTokenCount: 5 },
  });
  assert.deepEqual(a.map((c) => c.choices[0].delta), [{ role: "assistant", content: "" }, {
    content: "Hel",
  }]);
  assert.deepEqual(b.map((c) => [c.choices[0].delta, c.choices[0].finish_reason]), [
    [{ content: "lo" }, null],
    [{}, "stop"],
  ]);
  assert.equal(t.complete, true);
  const end = t.end();
  assert.equal(end.length, 1);
  assert.deepEqual(end[0].choices, []);
  assert.equal(end[0].usage?.total_tokens, 5);
  for (const c of [...a, ...b]) assert.equal(c.usage, null);
});

Deno.test("a stream translator without a finish reason reports itself incomplete", () => {
  const t = new ChatStreamTranslator(ctx, { includeUsage: false });
  t.push({ candidates: [{ content: { parts: [{ text: "partial" }] } }] });
  assert.equal(t.complete, false);
  assert.deepEqual(t.end(), []);
});

Deno.test("a stream chunk's SSE text is exactly its JSON, for every kind of chunk, with and without usage", () => {
  for (const includeUsage of [true, false]) {
    const t = new ChatStreamTranslator({ ...ctx, model: 'gemini "quoted" \u2028 模型' }, {
      includeUsage,
    });
    const chunks = [
      ...t.push({
        candidates: [{
          content: {
            parts: [
              { text: "思考", thought: true },
              { text: 'Hello "world"\n' },
              { functionCall: { name: "f", args: { a: [1, { b: null }] } } },
            ],
          },
          finishReason: "STOP",
        }],
        usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 2, totalTokenCount: 5 },
      }),
      ...t.end(),
    ];
    assert.ok(chunks.length >= 5);
    for (const chunk of chunks) {
      assert.equal(t.sse(chunk), `data: ${JSON.stringify(chunk)}\n\n`);
    }
  }
});

Deno.test("Markdown data-URL images in an answer's text become inline images; other text is kept", () => {
  assert.deepEqual(textWithImages("plain text, ![alt](https://example.com/a.png) too"), [
    { text: "plain text, ![alt](https://example.com/a.png) too" },
  ]);
  assert.deepEqual(
    textWithImages(
      "Here:\n\n![image](data:image/png;base64,AAAA)\n\nand ![x](data:image/JPEG;base64,BB+/==)",
    ),
    [
      { text: "Here:" },
      { inlineData: { mimeType: "image/png", data: "AAAA" } },
      { text: "and" },
      { inlineData: { mimeType: "image/jpeg", data: "BB+/==" } },
    ],
  );
  assert.deepEqual(textWithImages(""), []);
});

Deno.test("data-URL images are found as the old regex found them, in linear time", () => {
  // The regex the finder replaced: right, but it backtracked from every `![` (quadratic).
  const reference = (text: string) => {
    const re = /!\[[^\]\n]*\]\(data:(image\/[a-z0-9.+-]+);base64,([A-Za-z0-9+/]+={0,2})\)/gi;
    const parts: unknown[] = [];
    let last = 0;
    for (const m of text.matchAll(re)) {
      const before = text.slice(last, m.index).trim();
      if (before) parts.push({ text: before });
      parts.push({ inlineData: { mimeType: m[1].toLowerCase(), data: m[2] } });
      last = m.index + m[0].length;
    }
    const after = text.slice(last).trim();
    if (after) parts.push({ text: after });
    return text.includes("](data:image/") ? parts : text ? [{ text }] : [];
  };
  const tokens = [
    "![",
    "!",
    "[",
    "]",
    "(",
    ")",
    "](data:",
    "data:image/png;base64,",
    "image/",
    "QUJD",
    "=",
    "\n",
    " ",
    "x",
  ];
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let n = 0; n < 3000; n++) {
    let text = "";
    const length = 1 + Math.floor(random() * 24);
    for (let i = 0; i < length; i++) text += tokens[Math.floor(random() * tokens.length)];
    assert.deepEqual(textWithImages(text), reference(text), JSON.stringify(text));
  }
  // Many `![` and one image at the end: each character is looked at a bounded number of times.
  const hostile = "![".repeat(100_000) + "![a](data:image/png;base64,AAAA)";
  assert.deepEqual(textWithImages(hostile).at(-1), {
    inlineData: { mimeType: "image/png", data: "AAAA" },
  });
});
