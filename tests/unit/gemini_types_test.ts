import assert from "node:assert/strict";
import {
  GenerateContentResponseSchema,
  readGenerateContentResponse,
} from "../../lib/gemini/types.ts";

const PLAIN = {
  candidates: [{
    content: {
      role: "model",
      parts: [
        { text: "hi", thought: true, thoughtSignature: "s" },
        { functionCall: { id: "c1", name: "f", args: { a: 1 } } },
        { inlineData: { mimeType: "image/png", data: "AA" } },
        { fileData: { fileUri: "files/x" } },
      ],
    },
    finishReason: "STOP",
    index: 0,
    safetyRatings: [],
  }],
  usageMetadata: { promptTokenCount: 3, totalTokenCount: 7, promptTokensDetails: [] },
  modelVersion: "m",
  extra: { kept: true },
};

Deno.test("an upstream answer already in the schema's shape is read as is, without a copy", () => {
  const json = structuredClone(PLAIN);
  const read = readGenerateContentResponse(json);
  assert.ok(read.success);
  assert.equal(read.data, json);
  assert.deepEqual(read.data, GenerateContentResponseSchema.parse(structuredClone(PLAIN)));
});

Deno.test("other upstream answers get exactly what the schema makes of them", () => {
  const variants: unknown[] = [
    { candidates: [{ content: { role: "model" } }] }, // parts default to []
    { candidates: [{ content: { parts: [], extra: 1 } }] }, // strict content drops `extra`
    { candidates: [{ content: { parts: [{ inlineData: { mimeType: "a", data: "b", x: 1 } }] } }] },
    { candidates: [{ content: { parts: [{ functionCall: { name: "f" } }] } }] },
    { candidates: [{ content: { parts: [{ text: null }] } }] }, // invalid
    { usageMetadata: { promptTokenCount: "3" } }, // invalid
    { candidates: "x" }, // invalid
    [PLAIN],
    null,
  ];
  for (const v of variants) {
    const zod = GenerateContentResponseSchema.safeParse(structuredClone(v));
    const read = readGenerateContentResponse(structuredClone(v));
    assert.equal(read.success, zod.success, JSON.stringify(v));
    if (read.success && zod.success) assert.deepEqual(read.data, zod.data, JSON.stringify(v));
  }
});
