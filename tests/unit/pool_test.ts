import assert from "node:assert/strict";
import { isUsable, soonestRecovery, WeightedRoundRobin } from "../../lib/pool/selection.ts";
import type { GeminiKeyRecord } from "../../lib/store/gemini_keys.ts";
import { keyStatus } from "../../lib/store/gemini_keys.ts";

function key(id: string, patch: Partial<GeminiKeyRecord> = {}): GeminiKeyRecord {
  return {
    id,
    label: "",
    sealed: "",
    fingerprint: id,
    masked: id,
    enabled: true,
    weight: 1,
    invalid: null,
    cooldowns: {},
    consecutiveErrors: 0,
    createdAt: 0,
    updatedAt: 0,
    ...patch,
  };
}

Deno.test("smooth weighted round robin interleaves keys in proportion to their weights", () => {
  const rr = new WeightedRoundRobin();
  const keys = [{ id: "a", weight: 5 }, { id: "b", weight: 1 }, { id: "c", weight: 1 }];
  const picks = Array.from({ length: 7 }, () => rr.pick(keys)!.id);
  assert.deepEqual(picks, ["a", "a", "b", "a", "c", "a", "a"]);
  const tally: Record<string, number> = { a: 0, b: 0, c: 0 };
  for (let i = 0; i < 700; i++) tally[rr.pick(keys)!.id]++;
  assert.deepEqual(tally, { a: 500, b: 100, c: 100 });
  assert.equal(rr.pick([]), null);
});

Deno.test("cooldowns apply per model or to every model, and expire", () => {
  const k = key("a", { cooldowns: { "gemini-2.5-pro": { until: 1000, reason: "429" } } });
  assert.equal(isUsable(k, "gemini-2.5-pro", 500), false);
  assert.equal(isUsable(k, "gemini-2.5-flash", 500), true);
  assert.equal(isUsable(k, "gemini-2.5-pro", 1000), true);
  const all = key("b", { cooldowns: { "*": { until: 1000, reason: "5xx" } } });
  assert.equal(isUsable(all, "anything", 999), false);
  assert.equal(isUsable(key("c", { enabled: false }), "m", 0), false);
  assert.equal(isUsable(key("d", { invalid: { reason: "bad", at: 0 } }), "m", 0), false);
  assert.equal(keyStatus(k, 500).status, "cooldown");
  assert.equal(keyStatus(k, 2000).status, "active");
});

Deno.test("the soonest recovery ignores invalid and disabled keys", () => {
  const keys = [
    key("a", { cooldowns: { m: { until: 3000, reason: "" } } }),
    key("b", { cooldowns: { "*": { until: 2000, reason: "" } } }),
    key("c", { invalid: { reason: "", at: 0 }, cooldowns: { m: { until: 1500, reason: "" } } }),
  ];
  assert.equal(soonestRecovery(keys, "m", 1000), 2000);
  assert.equal(soonestRecovery([key("x", { invalid: { reason: "", at: 0 } })], "m", 0), null);
});
