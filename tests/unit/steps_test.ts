/** A job's steps run in order, each even when one before it failed. */
import assert from "node:assert/strict";
import { runSteps } from "../../lib/steps.ts";

Deno.test("a failing step does not stop the steps after it; the run then names it", async () => {
  const ran: string[] = [];
  const step = (name: string, fail = false) => () => {
    ran.push(name);
    return fail ? Promise.reject(new Error(`${name} broke`)) : Promise.resolve(name.length);
  };
  assert.deepEqual(await runSteps("Job", { one: step("one"), three: step("three") }), {
    one: 3,
    three: 5,
  });
  ran.length = 0;
  await assert.rejects(
    runSteps("Job", { a: step("a"), b: step("b", true), c: step("c") }),
    /^Error: Job failed: b: b broke$/,
  );
  assert.deepEqual(ran, ["a", "b", "c"]);
});
