import assert from "node:assert/strict";
import { Deadlines } from "../../lib/deadlines.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("a deadline fires once its time is up (within a tick), a cleared one never", async () => {
  const deadlines = new Deadlines(150); // ticks every 100 ms
  const fired: string[] = [];
  const t0 = performance.now();
  let firedAfter = 0;
  deadlines.start(() => {
    fired.push("late");
    firedAfter = performance.now() - t0;
  });
  const answered = deadlines.start(() => fired.push("answered"));
  await sleep(50);
  deadlines.clear(answered);
  assert.equal(deadlines.pending, 1);
  await sleep(400);
  assert.deepEqual(fired, ["late"]);
  assert.ok(firedAfter >= 150, `fired after ${firedAfter} ms`);
  assert.equal(deadlines.pending, 0);
});

Deno.test("with no deadline pending the timer stops at its next tick, or at once on stop", async () => {
  const deadlines = new Deadlines(1000); // ticks every 100 ms
  const a = deadlines.start(() => assert.fail("cleared"));
  deadlines.clear(a);
  deadlines.clear(a);
  assert.equal(deadlines.pending, 0);
  // The test's timer sanitizer fails this test if a tick timer is still armed at its end.
  await sleep(150);
  const b = deadlines.start(() => assert.fail("cleared"));
  deadlines.stop();
  deadlines.clear(b);
  deadlines.stop();
});
