/**
 * `POST /v1/completions` (OpenAI's legacy text completions) through the chat path, driven by the
 * official `openai` client: a prompt continued, a gap filled before a `suffix`, `echo`, `n`,
 * `logprobs`, streams with usage, and the 400s of what the gateway cannot do.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { CONTINUE_INSTRUCTION, INSERT_INSTRUCTION } from "../../lib/translate/completions.ts";
import { startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;

type Json = Record<string, unknown>;

function bodies(gw: TestGateway) {
  return gw.fake.requests.filter((r) => r.path.includes("enerateContent")).map((r) =>
    r.body as {
      systemInstruction?: { parts: { text: string }[] };
      contents: { role: string; parts: { text?: string }[] }[];
      generationConfig?: Json;
    }
  );
}

Deno.test("completions: a prompt is continued, a gap is filled, echo, n and logprobs", async () => {
  const gw = await startGateway({ keys: { "AIzaDone-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const one = await client.completions.create({
      model: "gemini-2.5-flash",
      prompt: "Once upon a time",
      max_tokens: 50,
      stop: ["\n\n"],
    });
    assert.equal(one.object, "text_completion");
    assert.match(one.id, /^cmpl-/);
    assert.equal(one.choices[0].text, "Echo: Once upon a time");
    assert.equal(one.choices[0].finish_reason, "stop");
    assert.ok((one.usage?.total_tokens ?? 0) > 0);
    const sent = bodies(gw)[0];
    assert.equal(sent.systemInstruction?.parts[0].text, CONTINUE_INSTRUCTION);
    assert.deepEqual(sent.contents, [{ role: "user", parts: [{ text: "Once upon a time" }] }]);
    assert.equal(sent.generationConfig?.maxOutputTokens, 50);
    assert.deepEqual(sent.generationConfig?.stopSequences, ["\n\n"]);
    // As little thinking as the model allows: a completion client waits for text.
    assert.deepEqual(sent.generationConfig?.thinkingConfig, { thinkingBudget: 0 });
    // Unless the model's name asks for thinking, also behind -search or an alias.
    await gw.admin("PUT", "/admin/api/aliases", { aliases: { deep: "gemini-2.5-flash-thinking" } });
    for (const model of ["gemini-2.5-flash-thinking-search", "deep"]) {
      await client.completions.create({ model, prompt: "x" });
      const config = bodies(gw).at(-1)!.generationConfig?.thinkingConfig as Json;
      assert.notEqual(config.thinkingBudget, 0, model);
    }

    // A suffix asks for the text of the gap (editors' autocomplete).
    await client.completions.create({
      model: "gemini-2.5-flash",
      prompt: ["function add(a, b) {\n  return "],
      suffix: ";\n}",
    });
    const fill = bodies(gw).at(-1)!;
    assert.equal(fill.systemInstruction?.parts[0].text, INSERT_INSTRUCTION);
    assert.equal(
      fill.contents[0].parts[0].text,
      "<prefix>function add(a, b) {\n  return </prefix><suffix>;\n}</suffix>",
    );

    const echoed = await client.completions.create({
      model: "gemini-2.5-flash",
      prompt: "one two",
      echo: true,
      n: 2,
      logprobs: 2,
    });
    assert.equal(echoed.choices.length, 2);
    assert.equal(echoed.choices[1].text, "one twoEcho: one two");
    const lp = echoed.choices[0].logprobs!;
    assert.deepEqual(lp.tokens, ["Echo: ", "one ", "two"]);
    assert.deepEqual(lp.text_offset, [7, 13, 17], "offsets count the echoed prompt");
    assert.equal(Object.keys(lp.top_logprobs![1]).length, 2);
    assert.equal(lp.token_logprobs!.length, 3);
    // Offsets count characters (code points), as OpenAI's do: an emoji is one.
    const emoji = await client.completions.create({
      model: "gemini-2.5-flash",
      prompt: "😀 two",
      echo: true,
      logprobs: 1,
    });
    assert.deepEqual(emoji.choices[0].logprobs!.text_offset, [5, 11, 13]);

    // No tokens asked for: the prompt comes back (echo) without a call to Gemini.
    const calls = bodies(gw).length;
    const none = await client.completions.create({
      model: "gemini-2.5-flash",
      prompt: "just this",
      echo: true,
      max_tokens: 0,
    });
    assert.equal(none.choices[0].text, "just this");
    assert.equal(none.choices[0].finish_reason, "length");
    assert.equal(none.usage?.completion_tokens, 0);
    assert.ok((none.usage?.prompt_tokens ?? 0) > 0);
    const streamed = await client.completions.create({
      model: "gemini-2.5-flash",
      prompt: "just this",
      echo: true,
      max_tokens: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage = -1;
    for await (const chunk of streamed) {
      for (const c of chunk.choices) text += c.text;
      if (chunk.usage) usage = chunk.usage.completion_tokens;
    }
    assert.equal(text, "just this");
    assert.equal(usage, 0);
    assert.equal(bodies(gw).length, calls, "Gemini was not asked");
  } finally {
    await gw.close();
  }
});

Deno.test("completions: streamed, with echo and a usage chunk; errors name the field", async () => {
  const gw = await startGateway({ keys: { "AIzaDone-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const stream = await client.completions.create({
      model: "gemini-2.5-flash",
      prompt: "count with me",
      echo: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage = 0;
    for await (const chunk of stream) {
      assert.equal(chunk.object, "text_completion");
      for (const c of chunk.choices) {
        text += c.text;
        finish = c.finish_reason ?? finish;
      }
      usage += chunk.usage?.total_tokens ?? 0;
    }
    assert.equal(text, "count with meEcho: count with me");
    assert.equal(finish, "stop");
    assert.ok(usage > 0);

    const cases: [Json, string][] = [
      [{ prompt: ["a", "b"] }, "prompt"],
      [{ prompt: [1, 2, 3] }, "prompt"],
      [{ prompt: "x", best_of: 3 }, "best_of"],
      [{ prompt: "x", logprobs: 6 }, "logprobs"],
      [{ prompt: "x", model: "m".repeat(200) }, "model"],
      [{}, "prompt"],
    ];
    for (const [body, param] of cases) {
      await assert.rejects(
        () =>
          client.completions.create(
            {
              model: "gemini-2.5-flash",
              ...body,
            } as unknown as OpenAI.CompletionCreateParamsNonStreaming,
          ),
        (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === param,
        JSON.stringify(body),
      );
    }
    assert.equal(bodies(gw).length, 1, "refused requests reach no upstream");
    await gw.app.drain();
    const log = await gw.admin<{ data: { api: string | null }[] }>("GET", "/admin/api/request-log");
    assert.deepEqual(log.json.data.map((e) => e.api), ["completions"]);
  } finally {
    await gw.close();
  }
});
