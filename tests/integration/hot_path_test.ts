/**
 * The request hot path keeps its promises while avoiding KV: user-limit leases never overshoot
 * across isolates and cost no KV round trip on steady traffic, user keys are read once per token
 * however many requests wait for them, revocation still lands within the cache bound, and batched
 * usage is visible to admin reads and to the token budget before it is written.
 */
import assert from "node:assert/strict";
import { FakeClock, post, startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const CHAT = { model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }] };

/** KV operations seen by a recording wrapper: the first key part of each read and write. */
interface KvLog {
  reads: string[];
  writes: string[];
}

/** A `Deno.Kv` that records which key spaces are read (get, getMany) and written (commit). */
function recordingKv(kv: Deno.Kv, log: KvLog): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "get") {
        return (key: Deno.KvKey, options?: { consistency?: Deno.KvConsistencyLevel }) => {
          log.reads.push(String(key[0]));
          return target.get(key, options);
        };
      }
      if (prop === "getMany") {
        return (keys: Deno.KvKey[], options?: { consistency?: Deno.KvConsistencyLevel }) => {
          for (const key of keys) log.reads.push(String(key[0]));
          return target.getMany(keys, options);
        };
      }
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const spaces = new Set<string>();
          const set = op.set.bind(op);
          const mutate = op.mutate.bind(op);
          const commit = op.commit.bind(op);
          op.set = (key, value, options) => {
            spaces.add(String(key[0]));
            set(key, value, options);
            return op;
          };
          op.mutate = (...mutations) => {
            for (const m of mutations) spaces.add(String(m.key[0]));
            mutate(...mutations);
            return op;
          };
          op.commit = () => {
            log.writes.push(...spaces);
            return commit();
          };
          return op;
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * A `Deno.Kv` whose round trips (get, getMany, a list's batch, set, delete, commit) run at once but
 * answer only when the test releases them, all pending ones together, as a wave. The waves some work
 * needs are the KV round trips on its critical path: reads made together share a wave, reads made
 * one after another take one each. Released for good by `open()`.
 */
class WaveKv {
  readonly kv: Deno.Kv;
  #pending: (() => void)[] = [];
  #issued = 0;
  #open = false;

  constructor(inner: Deno.Kv) {
    const hold = <T>(op: Promise<T>): Promise<T> => {
      if (this.#open) return op;
      this.#issued++;
      op.catch(() => {});
      return new Promise<T>((resolve, reject) => {
        this.#pending.push(() => op.then(resolve, reject));
      });
    };
    const list = <T>(iter: Deno.KvListIterator<T>, options?: Deno.KvListOptions) => {
      const batch = Math.max(1, Math.min(500, options?.batchSize ?? options?.limit ?? 100));
      const next = iter.next.bind(iter);
      let calls = 0;
      // The iterator reads a batch on its first call and after each full batch.
      iter.next = () => (calls++ % batch === 0 ? hold(next()) : next());
      return iter;
    };
    this.kv = new Proxy(inner, {
      get(target, prop) {
        switch (prop) {
          case "get":
          case "getMany":
          case "set":
          case "delete":
            return (...args: unknown[]) =>
              hold((Reflect.get(target, prop) as (...a: unknown[]) => Promise<unknown>).apply(
                target,
                args,
              ));
          case "list":
            return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) =>
              list(target.list(selector, options), options);
          case "atomic":
            return () => {
              const op = target.atomic();
              const commit = op.commit.bind(op);
              op.commit = () => hold(commit());
              return op;
            };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  /**
   * Releases waves until `done()`; returns how many it took. A wave is released once round trips
   * are pending and no new one was made for a while (the work between them has run).
   */
  async wavesUntil(done: () => boolean): Promise<number> {
    let waves = 0;
    for (let checks = 0; checks < 200 && !done(); checks++) {
      const issued = this.#issued;
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (done() || this.#issued !== issued || this.#pending.length === 0) continue;
      waves++;
      for (const release of this.#pending.splice(0)) release();
    }
    assert.ok(done(), "the work finished");
    return waves;
  }

  /** Round trips made so far. */
  get issued(): number {
    return this.#issued;
  }

  /** Waits (up to 5 s) until more than `count` round trips have been made. */
  async issuedMoreThan(count: number): Promise<void> {
    for (let i = 0; i < 500 && this.#issued <= count; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Answers every round trip, pending or new, at once from now on. */
  open(): void {
    this.#open = true;
    for (const release of this.#pending.splice(0)) release();
  }
}

async function userKey(gw: TestGateway, body: Record<string, unknown>): Promise<string> {
  const res = await gw.admin<{ key: string }>("POST", "/admin/api/user-keys", {
    name: "hot",
    ...body,
  });
  assert.equal(res.status, 201, JSON.stringify(res.json));
  return res.json.key;
}

function chat(gw: TestGateway, apiKey: string) {
  return post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT });
}

Deno.test("two isolates together never admit more than a key's RPM, leasing permits in blocks", async () => {
  const clock = new FakeClock();
  const a = await startGateway({ keys: { "AIzaGood-key-0001": OK }, clock });
  const b = await startGateway({ fake: a.fake, kv: a.kv, clock });
  try {
    const apiKey = await userKey(a, { rpm: 50 });
    // Each isolate alone asks for more than the limit, so no leased permit goes unused.
    const results = await Promise.all(
      Array.from({ length: 120 }, (_, i) => chat(i % 2 ? a : b, apiKey)),
    );
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, 50, "exactly the limit across both");
    assert.equal(statuses.filter((s) => s === 429).length, 70);
    // The next minute starts over for both isolates.
    clock.advance(60_000);
    assert.equal((await chat(b, apiKey)).status, 200);
    assert.equal((await chat(a, apiKey)).status, 200);
  } finally {
    await b.close();
    await a.close();
  }
});

Deno.test("a key's concurrency slots are shared across isolates and come back when one shuts down", async () => {
  const clock = new FakeClock();
  let open!: () => void;
  let gate = Promise.resolve();
  let waiting = 0;
  const held: typeof fetch = async (input, init) => {
    waiting++;
    await gate;
    waiting--;
    return await fetch(input, init);
  };
  const a = await startGateway({ keys: { "AIzaGood-key-0001": OK }, clock, upstreamFetch: held });
  const b = await startGateway({ fake: a.fake, kv: a.kv, clock });
  let pending: Promise<unknown>[] = [];
  try {
    const apiKey = await userKey(a, { max_concurrency: 3 });
    gate = new Promise<void>((resolve) => (open = resolve));
    pending = Array.from({ length: 3 }, () => chat(a, apiKey));
    // Until the three requests hold their slots on isolate a (they wait at the upstream).
    for (let i = 0; i < 3000 && waiting < 3; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(waiting, 3);
    const refused = await chat(b, apiKey);
    assert.equal(refused.status, 429);
    assert.match(refused.json.error.message, /3 concurrent requests/);
    open();
    assert.deepEqual((await Promise.all(pending)).map((r) => (r as { status: number }).status), [
      200,
      200,
      200,
    ]);
    // Isolate a keeps its idle slots until it gives them back; a shutdown gives them back at once.
    await a.app.shutdown();
    const again = await Promise.all(Array.from({ length: 3 }, () => chat(b, apiKey)));
    assert.deepEqual(again.map((r) => r.status), [200, 200, 200]);
  } finally {
    open?.();
    await Promise.allSettled(pending);
    await b.close();
    await a.close();
  }
});

Deno.test("steady traffic of a limited key reads and writes no user-limit record per request", async () => {
  const log: KvLog = { reads: [], writes: [] };
  const kv = await Deno.openKv(":memory:");
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK }, kv: recordingKv(kv, log) });
  try {
    const apiKey = await userKey(gw, { rpm: 100_000, max_concurrency: 50 });
    assert.equal((await chat(gw, apiKey)).status, 200);
    await gw.app.drain();
    log.reads.length = 0;
    log.writes.length = 0;
    for (let i = 0; i < 20; i++) assert.equal((await chat(gw, apiKey)).status, 200);
    assert.deepEqual(log.reads.filter((s) => s === "ul" || s === "uk"), [], "no lease or key read");
    assert.deepEqual(log.writes.filter((s) => s === "ul"), [], "no lease written");
  } finally {
    await gw.close();
    kv.close();
  }
});

Deno.test("concurrent requests with a user key not cached yet read it from KV once", async () => {
  const log: KvLog = { reads: [], writes: [] };
  const kv = await Deno.openKv(":memory:");
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK }, kv: recordingKv(kv, log) });
  try {
    const apiKey = await userKey(gw, {});
    log.reads.length = 0;
    const results = await Promise.all(Array.from({ length: 20 }, () => chat(gw, apiKey)));
    assert.ok(results.every((r) => r.status === 200));
    assert.equal(log.reads.filter((s) => s === "uk").length, 1);
  } finally {
    await gw.close();
    kv.close();
  }
});

Deno.test("a cached user key is served while it refreshes, and a revocation lands within the bound", async () => {
  const clock = new FakeClock();
  const a = await startGateway({ keys: { "AIzaGood-key-0001": OK }, clock });
  const b = await startGateway({ fake: a.fake, kv: a.kv, clock });
  try {
    const created = await a.admin<{ id: string; key: string }>("POST", "/admin/api/user-keys", {
      name: "x",
    });
    assert.equal((await chat(b, created.json.key)).status, 200);
    await a.admin("DELETE", `/admin/api/user-keys/${created.json.id}`);
    // Younger than the refresh age: served from memory, nothing read.
    clock.advance(2_000);
    assert.equal((await chat(b, created.json.key)).status, 200);
    // Older: still served (well within 5 s), while one read in the background refreshes it.
    clock.advance(1_000);
    assert.equal((await chat(b, created.json.key)).status, 200);
    await b.app.drain();
    assert.equal((await chat(b, created.json.key)).status, 401);
  } finally {
    await b.close();
    await a.close();
  }
});

Deno.test("batched usage is in admin reads and in the token budget before it is written", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const apiKey = await userKey(gw, { tokens_per_day: 5 });
    const first = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { ...CHAT, messages: [{ role: "user", content: "one two three four five six" }] },
    });
    assert.equal(first.status, 200);
    // No drain: this isolate's own usage counts at once.
    const second = await chat(gw, apiKey);
    assert.equal(second.status, 429);
    assert.equal(second.json.error.code, "tokens_per_day_exceeded");
    const stats = await gw.admin<{ totals: { requests: number } }>("GET", "/admin/api/stats");
    assert.equal(stats.json.totals.requests, 1);
    const logged = await gw.admin<{ data: { status: number }[] }>(
      "GET",
      "/admin/api/request-log",
    );
    assert.deepEqual(logged.json.data.map((e) => e.status), [200]);
  } finally {
    await gw.close();
  }
});

Deno.test("a cold isolate starts in two KV round trips, and its first chat waits for one before the upstream call", async () => {
  const keys = { "AIzaGood-key-0001": OK, "AIzaGood-key-0002": OK, "AIzaGood-key-0003": OK };
  const first = await startGateway({ keys });
  const apiKey = await userKey(first, {});
  const gated = new WaveKv(first.kv);
  let upstreamCalled = false;
  let second: TestGateway | null = null;
  try {
    // A new isolate on the same database: its keys, settings and user keys are all in KV.
    const starting = startGateway({
      fake: first.fake,
      kv: gated.kv,
      keys,
      upstreamFetch: (input, init) => {
        upstreamCalled = true;
        return fetch(input, init);
      },
    }).then((gw) => (second = gw));
    // The sealer's check, the admin hash and the round-robin cursor together, then the GEMINI_KEYS
    // already stored and the lease's commit (before: one after the other, and a write attempt per
    // key: 5 waves with these three keys).
    assert.equal(await gated.wavesUntil(() => second !== null), 2);
    await starting;
    const madeAtStart = gated.issued;
    const answer = second!.app.fetch(
      new Request(`${second!.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
        body: JSON.stringify(CHAT),
      }),
    );
    // Counted from the request's first read, as on Deploy, where the request that starts an
    // isolate waits while it starts.
    await gated.issuedMoreThan(madeAtStart);
    // The user key, with what start-up began loading (settings, key pool, recent usage); the
    // rotation's positions were leased during start-up (before: 6 waves).
    assert.equal(await gated.wavesUntil(() => upstreamCalled), 1);
    gated.open();
    assert.equal((await answer).status, 200);
  } finally {
    gated.open();
    await (second as TestGateway | null)?.close();
    await first.close();
  }
});
