import assert from "node:assert/strict";
import { ClientWatch, lateReadSeesDeparture } from "../../lib/client_watch.ts";

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
  const watch = new ClientWatch({ graceMs: 40, lateReads: true });
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
  const watch = new ClientWatch({ graceMs: 40, lateReads: true });
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
  const watch = new ClientWatch({ graceMs: 40, lateReads: true });
  const req = new FakeRequest();
  const signal = watch.signalOf(req);
  req.controller.abort();
  assert.equal(signal.aborted, false, "not watched yet");
  await sleep(120);
  assert.equal(signal.aborted, true);
  watch.release(req);
});

Deno.test("where a late read would miss a client already gone, a request is watched at once", () => {
  const watch = new ClientWatch({ graceMs: 40, lateReads: false });
  const req = new FakeRequest();
  const signal = watch.signalOf(req);
  assert.equal(req.reads, 1, "read when the request starts");
  assert.equal(watch.waiting, 0, "nothing waits for the grace time");
  assert.equal(watch.signalOf(req), signal, "one signal per request");
  assert.equal(req.reads, 1);
  req.controller.abort(new Error("client gone"));
  assert.equal(signal.aborted, true, "followed without waiting for the grace time");
  assert.equal((signal.reason as Error).message, "client gone");
  watch.release(req);
});

Deno.test("late reads are trusted from Deno 2.8 on, the versions that see a client already gone", () => {
  for (const version of ["2.5.7", "2.6.8", "2.7.14"]) {
    assert.equal(lateReadSeesDeparture(version), false, version);
  }
  for (const version of ["2.8.0", "2.8.3", "2.9.6", "2.10.0", "3.0.0"]) {
    assert.equal(lateReadSeesDeparture(version), true, version);
  }
});
