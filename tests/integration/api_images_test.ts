/**
 * Image output: an image model's pictures in chat answers (as Markdown data-URL images, streamed or
 * not), `modalities`, `POST /v1/images/generations` on Gemini image models and Imagen, and
 * `POST /v1/images/edits`, driven by the official `openai` client.
 */
import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";
import { TINY_PNG } from "../fakes/fake_gemini.ts";
import { post, startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47];

function generateBodies(gw: TestGateway, method = "generateContent") {
  return gw.fake.requests
    .filter((r) => r.path.endsWith(`:${method}`) || r.path.endsWith(":streamGenerateContent"))
    .map((r) => r.body as { generationConfig?: Record<string, unknown> });
}

Deno.test("an image model's picture is in the chat answer as a Markdown image, streamed or not", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const image = `![image](data:image/png;base64,${TINY_PNG})`;
    const reply = await client.chat.completions.create({
      model: "gemini-2.5-flash-image",
      messages: [{ role: "user", content: "draw a cat" }],
    });
    const content = reply.choices[0].message.content ?? "";
    assert.equal(content, `Echo: draw a cat\n\n${image}\n\n`);
    const stream = await client.chat.completions.create({
      model: "gemini-2.5-flash-image",
      messages: [{ role: "user", content: "draw a dog" }],
      stream: true,
    });
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
    assert.ok(streamed.startsWith("Echo: draw a dog"), streamed.slice(0, 60));
    assert.ok(streamed.includes(image));
    // With anti-truncation on, the answer passes through its rounds: the picture still comes once,
    // after the text.
    await gw.admin("PATCH", "/admin/api/settings", { antiTruncation: true });
    const once = (text: string) => text.split("![image](").length - 1;
    const rounded = await client.chat.completions.create({
      model: "gemini-2.5-flash-image",
      messages: [{ role: "user", content: "draw a bird" }],
    });
    assert.equal(rounded.choices[0].message.content, `Echo: draw a bird\n\n${image}\n\n`);
    const roundedStream = await client.chat.completions.create({
      model: "gemini-2.5-flash-image",
      messages: [{ role: "user", content: "draw a fish" }],
      stream: true,
    });
    let fish = "";
    for await (const chunk of roundedStream) fish += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(once(fish), 1, fish.slice(0, 80));
    assert.ok(fish.startsWith("Echo: draw a fish"), fish.slice(0, 40));
  } finally {
    await gw.close();
  }
});

Deno.test("a picture from an earlier answer goes back upstream as an image, not as base64 text", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const first = await client.chat.completions.create({
      model: "gemini-2.5-flash-image",
      messages: [{ role: "user", content: "draw a cat" }],
    });
    await client.chat.completions.create({
      model: "gemini-2.5-flash-image",
      messages: [
        { role: "user", content: "draw a cat" },
        { role: "assistant", content: first.choices[0].message.content },
        { role: "user", content: "make it blue" },
      ],
    });
    type Body = { contents: { role: string; parts: Record<string, unknown>[] }[] };
    const sent = gw.fake.requests.filter((r) => r.path.includes(":generateContent")).at(-1)!
      .body as Body;
    assert.deepEqual(sent.contents[1], {
      role: "model",
      parts: [
        { text: "Echo: draw a cat" },
        { inlineData: { mimeType: "image/png", data: TINY_PNG } },
      ],
    });
  } finally {
    await gw.close();
  }
});

Deno.test("modalities become responseModalities; audio output is refused with a 400", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const apiKey = await gw.createUserKey();
    const textOnly = await post<{ choices: { message: { content: string } }[] }>(
      `${gw.url}/v1/chat/completions`,
      {
        apiKey,
        body: {
          model: "gemini-2.5-flash-image",
          modalities: ["text"],
          messages: [{ role: "user", content: "describe a cat" }],
        },
      },
    );
    assert.equal(textOnly.status, 200);
    assert.ok(!textOnly.json.choices[0].message.content.includes("!["), "no picture");
    assert.deepEqual(generateBodies(gw).at(-1)?.generationConfig?.responseModalities, ["TEXT"]);
    const audio = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: {
        model: "gemini-2.5-flash",
        modalities: ["text", "audio"],
        messages: [{ role: "user", content: "x" }],
      },
    });
    assert.equal(audio.status, 400);
    assert.equal(audio.json.error.param, "modalities");
  } finally {
    await gw.close();
  }
});

Deno.test("images.generate draws with the default Gemini image model: sizes become aspect ratios, n pictures, b64 or data URLs", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const one = await client.images.generate({ model: "gpt-image-1", prompt: "a red fox" });
    assert.equal(one.data?.length, 1);
    const bytes = Uint8Array.from(atob(one.data![0].b64_json!), (ch) => ch.charCodeAt(0));
    assert.deepEqual([...bytes.slice(0, 4)], PNG_MAGIC);
    assert.ok((one.usage?.total_tokens ?? 0) > 0);
    const calls = gw.fake.requests.filter((r) => r.path.includes(":generateContent"));
    assert.equal(calls.length, 1);
    assert.match(calls[0].path, /gemini-2\.5-flash-image:generateContent$/);
    const two = await client.images.generate({
      model: "gemini-2.5-flash-image",
      prompt: "a wide valley",
      n: 2,
      size: "1536x1024",
      response_format: "url",
    });
    assert.equal(two.data?.length, 2);
    for (const d of two.data!) assert.equal(d.url, `data:image/png;base64,${TINY_PNG}`);
    const last = generateBodies(gw).at(-1)!.generationConfig!;
    assert.deepEqual(last.imageConfig, { aspectRatio: "3:2" });
    assert.deepEqual(last.responseModalities, ["TEXT", "IMAGE"]);
    assert.equal(gw.fake.requests.filter((r) => r.path.includes(":generateContent")).length, 3);
    await gw.app.drain();
    const log = await gw.admin<{ data: { model: string; status: number }[] }>(
      "GET",
      "/admin/api/request-log",
    );
    assert.deepEqual(log.json.data.map((e) => [e.model, e.status]), [
      ["gemini-2.5-flash-image", 200],
      ["gemini-2.5-flash-image", 200],
    ]);
  } finally {
    await gw.close();
  }
});

Deno.test("Imagen models are called through :predict with n samples and the aspect ratio", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const res = await client.images.generate({
      model: "imagen-4.0-generate-001",
      prompt: "a lighthouse",
      n: 3,
      size: "1024x1792",
    });
    assert.equal(res.data?.length, 3);
    const predict = gw.fake.requests.filter((r) => r.path.endsWith(":predict"));
    assert.equal(predict.length, 1);
    assert.deepEqual(predict[0].body, {
      instances: [{ prompt: "a lighthouse" }],
      parameters: { sampleCount: 3, aspectRatio: "9:16" },
    });
    // Imagen draws fewer shapes than Gemini: 1536x1024 (3:2) becomes Imagen's nearest, 4:3.
    await client.images.generate({
      model: "imagen-4.0-generate-001",
      prompt: "x",
      size: "1536x1024",
    });
    const last = gw.fake.requests.filter((r) => r.path.endsWith(":predict")).at(-1)!.body as {
      parameters: { aspectRatio: string };
    };
    assert.equal(last.parameters.aspectRatio, "4:3");
  } finally {
    await gw.close();
  }
});

Deno.test("bad image requests get 400s naming the field; a model that draws nothing says what it said", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const cases: [Record<string, unknown>, string][] = [
      [{ prompt: "x", size: "huge" }, "size"],
      [{ prompt: "   " }, "prompt"],
      [{ prompt: "x", n: 5 }, "n"],
      [{ prompt: "x", response_format: "png" }, "response_format"],
    ];
    for (const [body, param] of cases) {
      await assert.rejects(
        client.images.generate(body as unknown as OpenAI.ImageGenerateParamsNonStreaming),
        (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === param,
        JSON.stringify(body),
      );
    }
    // A text model answers in words: no picture, and the answer says so.
    await assert.rejects(
      client.images.generate({ model: "gemini-2.5-flash", prompt: "draw" }),
      (e: unknown) =>
        e instanceof OpenAI.BadRequestError && e.code === "image_generation_failed" &&
        /Echo: draw/.test(e.message),
    );
    assert.equal(gw.fake.requests.filter((r) => r.path.includes(":generateContent")).length, 1);
  } finally {
    await gw.close();
  }
});

Deno.test("images.edit sends the pictures (and the mask, as guidance) with the prompt to a Gemini image model", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const png = Uint8Array.from(atob(TINY_PNG), (ch) => ch.charCodeAt(0));
    const file = (name: string, type?: string) => toFile(png, name, type ? { type } : {});
    const one = await client.images.edit({
      model: "gpt-image-1",
      image: await file("cat.png", "image/png"),
      prompt: "make it blue",
    });
    assert.equal(one.data?.length, 1);
    const drawn = Uint8Array.from(atob(one.data![0].b64_json!), (ch) => ch.charCodeAt(0));
    assert.deepEqual([...drawn.slice(0, 4)], PNG_MAGIC);
    const parts = (b: unknown) =>
      (b as { contents: { parts: Record<string, unknown>[] }[] })
        .contents[0].parts;
    assert.deepEqual(parts(generateBodies(gw)[0]), [
      { inlineData: { mimeType: "image/png", data: TINY_PNG } },
      { text: "make it blue" },
    ]);
    assert.match(gw.fake.requests[0].path, /gemini-2\.5-flash-image:generateContent$/);

    // Several pictures (`image[]`), one untyped (its bytes say PNG), a mask, n and a size.
    const many = await client.images.edit({
      image: [await file("a.png", "image/png"), await file("b.bin")],
      mask: await file("mask.png", "image/png"),
      prompt: "put them together",
      n: 2,
      size: "1024x1536",
      response_format: "url",
    });
    assert.equal(many.data?.length, 2);
    assert.equal(many.data![0].url, `data:image/png;base64,${TINY_PNG}`);
    const sent = parts(generateBodies(gw).at(-1));
    assert.equal(sent.length, 5);
    assert.deepEqual(sent.slice(0, 3).map((p) => (p.inlineData as { mimeType: string }).mimeType), [
      "image/png",
      "image/png",
      "image/png",
    ]);
    assert.match(String(sent[3].text), /mask/);
    assert.equal(sent[4].text, "put them together");
    assert.deepEqual(generateBodies(gw).at(-1)!.generationConfig!.imageConfig, {
      aspectRatio: "2:3",
    });
    assert.equal(generateBodies(gw).length, 3, "one call per picture");

    // Bad edits are 400s (or a 413) naming the field, before any upstream call.
    const bad: [() => Promise<unknown>, number, string][] = [
      [
        async () =>
          client.images.edit({
            image: await toFile(new TextEncoder().encode("hello"), "notes.txt", {
              type: "text/plain",
            }),
            prompt: "x",
          }),
        400,
        "image",
      ],
      [async () => client.images.edit({ image: await file("a.png"), prompt: " " }), 400, "prompt"],
      [
        async () =>
          client.images.edit({
            image: await file("a.png"),
            prompt: "x",
            model: "imagen-4.0-generate-001",
          }),
        400,
        "model",
      ],
      [async () => client.images.edit({ image: await file("a.png"), prompt: "x", n: 9 }), 400, "n"],
      [
        async () =>
          client.images.edit({
            image: await toFile(new Uint8Array(15 * 1024 * 1024), "big.png", { type: "image/png" }),
            prompt: "x",
          }),
        413,
        "image",
      ],
      [() => client.post("/images/edits", { body: { prompt: "x" } }), 400, "image"],
    ];
    for (const [call, status, param] of bad) {
      await assert.rejects(
        call,
        (e: unknown) => e instanceof OpenAI.APIError && e.status === status && e.param === param,
        `${status} ${param}`,
      );
    }
    assert.equal(generateBodies(gw).length, 3, "nothing more reached the upstream");
  } finally {
    await gw.close();
  }
});

Deno.test("pictures drawn before a later one fails still count their tokens", async () => {
  let calls = 0;
  const gw = await startGateway({
    keys: { "AIzaGood-key-0001": OK },
    upstreamFetch: (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (url.includes(":generateContent") && ++calls === 2) {
        return Promise.resolve(Response.json(
          { error: { code: 400, message: "bad thing", status: "INVALID_ARGUMENT" } },
          { status: 400 },
        ));
      }
      return fetch(input, init);
    },
  });
  try {
    const key = await gw.createUserKey();
    const res = await post(`${gw.url}/v1/images/generations`, {
      apiKey: key,
      body: { prompt: "a cat", n: 2 },
    });
    assert.equal(res.status, 400);
    await gw.app.drain();
    const stats = await gw.admin<{ totals: { input_tokens: number; failed_requests: number } }>(
      "GET",
      "/admin/api/stats",
    );
    assert.equal(stats.json.totals.failed_requests, 1);
    assert.ok(stats.json.totals.input_tokens > 0, "the first picture's tokens are counted");
  } finally {
    await gw.close();
  }
});
