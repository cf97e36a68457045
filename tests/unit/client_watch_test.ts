import assert from "node:assert/strict";
import { ClientWatch } from "../../lib/client_watch.ts";

/** A request stand-in that counts reads of its signal. */
class FakeRequest {
  reads = 0;
  readonly controller = new AbortController();
  get signal(): AbortSignal {
    this.reads++;
    return this.controller.signal;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("a request released within the grace time never has its signal read", async () => {
  const watch = new ClientWatch({ graceMs: 40 });
  const req = new FakeRequest();
  const signal = watch.signalOf(req);
  assert.equal(watch.signalOf(req), signal, "one signal per request");
  watch.release(req);
  await sleep(100);
  assert.equal(req.reads, 0);
  assert.equal(watch.waiting, 0);
  req.controller.abort();
  assert.equal(signal.aborted, false);
});

Deno.test("a request still running after the grace time follows its client going away", async () => {
  const watch = new ClientWatch({ graceMs: 40 });
  const slow = new FakeRequest();
  const signal = watch.signalOf(slow);
  await sleep(120);
  assert.equal(slow.reads, 1, "watched once the grace time is over");
  assert.equal(watch.signalOf(slow), signal, "the same signal after linking");
  assert.equal(signal.aborted, false);
  slow.controller.abort(new Error("client gone"));
  assert.equal(signal.aborted, true);
  assert.equal((signal.reason as Error).message, "client gone");
  watch.release(slow);
});

Deno.test("a client that left before the request was watched is seen at once when it is", async () => {
  const watch = new ClientWatch({ graceMs: 40 });
  const req = new FakeRequest();
  const signal = watch.signalOf(req);
  req.controller.abort();
  assert.equal(signal.aborted, false, "not watched yet");
  await sleep(120);
  assert.equal(signal.aborted, true);
  watch.release(req);
});
