/**
 * The benchmark compares like with like: its upstream-direct and forwarder paths send the very
 * Gemini request the gateway makes of the benchmark's chat (a gateway that asked for more, such as
 * thoughts, would make the upstream do more work on its path only), and its turns give no path a
 * better place in the order than another.
 */
import assert from "node:assert/strict";
import { startGateway } from "./harness.ts";
import { BENCH_CHAT, BENCH_MODEL, upstreamBodyOf } from "../bench/requests.ts";
import { defaultRounds, roundOrder } from "../bench/bench.ts";

Deno.test("the bench's turns: every path in every position, and right after every other equally often", () => {
  const paths = ["direct", "forwarder", "gateway"] as const;
  const turns: string[] = [];
  const positions = new Map<string, number[]>();
  for (let round = 0; round < 6; round++) {
    const order = roundOrder<string>([...paths], round);
    assert.deepEqual([...order].sort(), [...paths].sort(), `round ${round} runs each path once`);
    order.forEach((p, i) => positions.set(p, [...(positions.get(p) ?? []), i]));
    turns.push(...order);
  }
  for (const p of paths) assert.deepEqual(positions.get(p)!.sort(), [0, 0, 1, 1, 2, 2]);
  // What each turn follows, the sequence taken as a cycle (as rounds 6 to 11 repeat it).
  const after = new Map<string, number>();
  turns.forEach((p, i) => {
    const before = turns[(i + turns.length - 1) % turns.length];
    after.set(`${before}>${p}`, (after.get(`${before}>${p}`) ?? 0) + 1);
  });
  for (const a of paths) {
    for (const b of paths) assert.equal(after.get(`${a}>${b}`), 2, `${a}>${b}`);
  }
  // Whole cycles of six in the default cells; 3 turns in cells too short for six.
  assert.deepEqual([1, 2, 3, 4, 5, 10].map((s) => defaultRounds(s * 1000)), [3, 3, 6, 6, 12, 12]);
});

Deno.test("the bench's direct and forwarder paths send the gateway's own upstream request", async () => {
  const gw = await startGateway({ keys: { "bench-key": { kind: "ok" } } });
  try {
    const client = gw.openai(await gw.createUserKey());
    gw.fake.reset();
    await client.chat.completions.create(BENCH_CHAT);
    const stream = await client.chat.completions.create({ ...BENCH_CHAT, stream: true });
    for await (const _ of stream) {
      // read to the end
    }
    const calls = gw.fake.requests.filter((r) => r.path.includes(`/models/${BENCH_MODEL}:`));
    assert.deepEqual(calls.map((r) => r.path.slice(r.path.lastIndexOf(":"))), [
      ":generateContent",
      ":streamGenerateContent",
    ]);
    for (const call of calls) assert.deepEqual(call.body, upstreamBodyOf(BENCH_CHAT));
  } finally {
    await gw.close();
  }
});
