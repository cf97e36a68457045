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
