/**
 * `/v1/embeddings` with the real `openai` client (which asks for base64 by default and decodes it
 * as little-endian float32) against the fake upstream's deterministic vectors.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;

Deno.test("embeddings: the SDK's default base64 decodes to the same vectors as float", async () => {
  const gw = await startGateway({ keys: { "AIzaEmbed-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const floats = await client.embeddings.create({
      model: "gemini-embedding-001",
      input: ["alpha", "beta"],
      encoding_format: "float",
    });
    const sent = gw.fake.requests.at(-1)!;
    assert.equal(sent.path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    assert.deepEqual(
      (sent.body as { requests: { model: string }[] }).requests.map((r) => r.model),
      ["models/gemini-embedding-001", "models/gemini-embedding-001"],
    );
    // No encoding_format: the SDK sends "base64" and decodes it.
    const decoded = await client.embeddings.create({
      model: "gemini-embedding-001",
      input: ["alpha", "beta"],
    });
    assert.equal((gw.fake.requests.at(-1)!.body as { requests: unknown[] }).requests.length, 2);
    assert.equal(decoded.data.length, 2);
    assert.equal(decoded.data[0].embedding.length, 768);
    for (let i = 0; i < 2; i++) {
      const a = floats.data[i].embedding;
      const b = decoded.data[i].embedding;
      assert.ok(a.every((v, j) => Math.abs(v - b[j]) < 1e-6), `vector ${i} round-trips`);
    }
    assert.notDeepEqual(floats.data[0].embedding, floats.data[1].embedding);
    assert.equal(decoded.object, "list");
    assert.ok(decoded.usage.prompt_tokens > 0);
    assert.equal(decoded.usage.total_tokens, decoded.usage.prompt_tokens);
    assert.equal(decoded.model, "gemini-embedding-001");

    // The raw answer really is base64 when asked for.
    const raw = await fetch(`${gw.url}/v1/embeddings`, {
      method: "POST",
      headers: { authorization: `Bearer ${client.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "gemini-embedding-001",
        input: "alpha",
        encoding_format: "base64",
      }),
    });
    const body = await raw.json();
    assert.equal(typeof body.data[0].embedding, "string");
    assert.equal(atob(body.data[0].embedding).length, 768 * 4);
  } finally {
    await gw.close();
  }
});

Deno.test("embeddings: dimensions, batching past 100 inputs, default model and bad input", async () => {
  const gw = await startGateway({ keys: { "AIzaEmbed-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const small = await client.embeddings.create({
      model: "text-embedding-3-small",
      input: "hello",
      dimensions: 8,
    });
    assert.equal(small.data[0].embedding.length, 8);
    assert.equal(small.model, "text-embedding-3-small");
    const first = gw.fake.requests.at(-1)!;
    assert.equal(first.path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    assert.equal(
      (first.body as { requests: { outputDimensionality: number }[] }).requests[0]
        .outputDimensionality,
      8,
    );
    gw.fake.reset();
    const many = await client.embeddings.create({
      model: "gemini-embedding-001",
      input: Array.from({ length: 150 }, (_, i) => `text ${i}`),
      dimensions: 4,
    });
    assert.equal(many.data.length, 150);
    assert.deepEqual(many.data.map((d) => d.index), Array.from({ length: 150 }, (_, i) => i));
    assert.equal(gw.fake.requests.length, 2, "two batches of at most 100");
    const tokens = await client.embeddings.create({
      model: "gemini-embedding-001",
      input: [1, 2, 3],
    })
      .catch((e) => e);
    assert.ok(tokens instanceof OpenAI.BadRequestError);
    assert.equal(tokens.param, "input");
    const empty = await client.embeddings.create({ model: "gemini-embedding-001", input: "" })
      .catch((e) => e);
    assert.equal(empty.status, 400);
    const chatModel = await client.embeddings.create({ model: "gemini-2.5-flash", input: "x" })
      .catch((e) => e);
    assert.ok(chatModel instanceof OpenAI.NotFoundError, "the upstream's 404 passes through");
  } finally {
    await gw.close();
  }
});
