/** The size estimate KV values are checked with before they are written. */
import assert from "node:assert/strict";
import { serialize } from "node:v8";
import { KV_VALUE_LIMIT, kvValueSize } from "../../lib/store/kv_util.ts";
import { SettingsSchema } from "../../lib/store/settings.ts";

Deno.test("kvValueSize is never below V8's serialized size (what KV measures), and close to it", async () => {
  const cjk = (n: number) => "模".repeat(n);
  const values: unknown[] = [
    "",
    "ascii text",
    "café Latin-1",
    cjk(300),
    "emoji 🙂 and text",
    0,
    -1,
    2 ** 31,
    1.5,
    Number.MAX_SAFE_INTEGER,
    true,
    null,
    [],
    [1, "two", { three: 3 }],
    { a: 1, "1": "index-like key", 模: cjk(10) },
    new Uint8Array(1000),
    SettingsSchema.parse({}),
    SettingsSchema.parse({
      promptInjection: cjk(8000),
      aliases: Object.fromEntries(
        Array.from({ length: 100 }, (_, i) => [`${i}${cjk(125)}`, cjk(128)]),
      ),
    }),
  ];
  for (const value of values) {
    const actual = serialize(value).byteLength;
    const estimate = kvValueSize(value);
    assert.ok(
      estimate >= actual,
      `${estimate} < ${actual} for ${JSON.stringify(value)?.slice(0, 60)}`,
    );
    assert.ok(estimate <= actual * 1.5 + 40, `${estimate} far above ${actual}`);
  }
  // What the estimate lets through, KV takes.
  const kv = await Deno.openKv(":memory:");
  try {
    let text = "x";
    while (kvValueSize(text + "x".repeat(1000)) <= KV_VALUE_LIMIT) text += "x".repeat(1000);
    await kv.set(["fits"], text);
  } finally {
    kv.close();
  }
});
