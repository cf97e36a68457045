/**
 * The benchmark compares like with like: its upstream-direct and forwarder paths send the very
 * Gemini request the gateway makes of the benchmark's chat (a gateway that asked for more, such as
 * thoughts, would make the upstream do more work on its path only).
 */
import assert from "node:assert/strict";
import { startGateway } from "./harness.ts";
import { BENCH_CHAT, BENCH_MODEL, upstreamBodyOf } from "../bench/requests.ts";

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
