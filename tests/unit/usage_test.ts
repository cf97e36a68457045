import assert from "node:assert/strict";
import { readUsageStats, recordUsage, usageMutations } from "../../lib/store/usage.ts";

Deno.test("a failed attempt then a success counts one request, two attempts and one error", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.UTC(2026, 10, 26, 12, 30);
    await recordUsage(kv, {
      now,
      model: "m",
      userId: "u1",
      attempts: [{ keyId: "k1", ok: false }, { keyId: "k2", ok: true }],
      ok: true,
      promptTokens: 10,
      completionTokens: 7,
      thinkingTokens: 3,
    });
    await recordUsage(kv, {
      now,
      model: "m",
      userId: "u1",
      attempts: [],
      ok: false,
      promptTokens: 0,
      completionTokens: 0,
      thinkingTokens: 0,
    });
    const s = await readUsageStats(kv, now);
    assert.deepEqual(s.totals, { req: 1, att: 0, err: 0, fail: 1, in: 10, out: 7, think: 3 });
    assert.equal(s.keys.k1.err, 1);
    assert.equal(s.keys.k1.req, 0);
    assert.equal(s.keys.k2.req, 1);
    assert.equal(s.keys.k2.att, 1);
    assert.equal(s.users.u1.req, 1);
    assert.equal(s.users.u1.fail, 1);
    assert.equal(s.minutes.at(-1)!.counts.req, 1);
    assert.equal(s.minutes.at(-1)!.t, now);
    assert.equal(s.hours.at(-1)!.counts.in, 10);
  } finally {
    kv.close();
  }
});

Deno.test("usage mutations are sums only and skip zero counters", () => {
  const m = usageMutations({
    now: 0,
    model: "m",
    userId: null,
    attempts: [{ keyId: "k", ok: true }],
    ok: true,
    promptTokens: 0,
    completionTokens: 0,
    thinkingTokens: 0,
  });
  assert.ok(m.every((x) => x.type === "sum"));
  assert.ok(m.every((x) => !x.key.includes("in")));
  assert.ok(m.length > 0);
});
