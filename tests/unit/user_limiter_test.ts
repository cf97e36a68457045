/**
 * The user-key limiter when KV fails: a budget read that fails refuses the request with an error
 * (never an unhandled rejection that would end the process) and gives back what the window had
 * admitted, so the key is not left short of a concurrency slot. And when KV is slow: a request
 * arriving while idle slots are given back does not run on a slot the give-back drops.
 */
import assert from "node:assert/strict";
import { UserLimiter } from "../../lib/auth/user_limiter.ts";
import { LEASE_MS } from "../../lib/store/rate_limits.ts";
import { type UserKeyRecord, UserKeyRecordSchema } from "../../lib/store/user_keys.ts";

/** A KV whose `getMany` fails while `down.value` is true. */
function flakyKv(real: Deno.Kv, down: { value: boolean }): Deno.Kv {
  return new Proxy(real, {
    get(target, prop) {
      if (prop === "getMany") {
        return (keys: Deno.KvKey[]) =>
          down.value ? Promise.reject(new Error("KV down")) : target.getMany(keys);
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

function limitedKey(): UserKeyRecord {
  return UserKeyRecordSchema.parse({
    id: "uk_test",
    name: "t",
    hash: "h",
    prefix: "sk-…",
    enabled: true,
    rpm: null,
    maxConcurrency: 1,
    tokensPerDay: 1000,
    createdAt: 0,
    updatedAt: 0,
  });
}

Deno.test("a failed budget read is an error of that request: nothing unhandled, no slot kept", async () => {
  const real = await Deno.openKv(":memory:");
  const down = { value: false };
  let clock = Date.parse("2026-03-10T12:00:00Z");
  const limiter = new UserLimiter({
    kv: flakyKv(real, down),
    now: () => clock,
    budgetSince: () => 0,
  });
  try {
    const key = limitedKey();
    const first = await limiter.admit(key);
    assert.ok(first.allowed);
    first.release?.();
    // A new Pacific day: the counters must be read before admitting, and KV fails.
    clock += 86_400_000;
    down.value = true;
    await assert.rejects(limiter.admit(key), /KV down/);
    // The first admission of a key reads its window lease and budgets side by side: the same.
    await assert.rejects(limiter.admit({ ...key, id: "uk_other" }), /KV down/);
    down.value = false;
    const after = await limiter.admit(key);
    assert.ok(after.allowed, `the slot came back: ${JSON.stringify(after)}`);
    after.release?.();
  } finally {
    await limiter.close();
    real.close();
  }
});

/** A KV whose atomic commits take `ms` (a remote round trip); `commits.n` counts those begun. */
function slowCommits(real: Deno.Kv, ms: number, commits: { n: number }): Deno.Kv {
  return new Proxy(real, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = async () => {
            commits.n++;
            await new Promise((r) => setTimeout(r, ms));
            return await commit();
          };
          return op;
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

Deno.test("a request arriving while idle slots are given back leases its own: max_concurrency holds across isolates", async () => {
  const real = await Deno.openKv(":memory:");
  const commits = { n: 0 };
  const kv = slowCommits(real, 300, commits);
  const a = new UserLimiter({ kv, now: Date.now, budgetSince: () => 0 });
  const b = new UserLimiter({ kv, now: Date.now, budgetSince: () => 0 });
  const key = UserKeyRecordSchema.parse({
    id: "uk_conc",
    name: "c",
    hash: "h",
    prefix: "sk-…",
    enabled: true,
    rpm: null,
    maxConcurrency: 2,
    createdAt: 0,
    updatedAt: 0,
  });
  const admitted: (() => void)[] = [];
  try {
    const first = await a.admit(key);
    assert.ok(first.allowed);
    first.release?.();
    // The idle sweep starts giving the unused slots back (a commit begins)...
    const before = commits.n;
    while (commits.n === before) await new Promise((r) => setTimeout(r, 20));
    // ...and a request arrives on isolate A meanwhile.
    const onA = await a.admit(key);
    assert.ok(onA.allowed, "A is admitted (after leasing a slot of its own)");
    admitted.push(() => onA.release?.());
    const onB1 = await b.admit(key);
    assert.ok(onB1.allowed);
    admitted.push(() => onB1.release?.());
    const onB2 = await b.admit(key);
    assert.equal(onB2.allowed, false, "a third concurrent request exceeds max_concurrency 2");
    if (!onB2.allowed) assert.equal(onB2.limit, "concurrency");
  } finally {
    for (const release of admitted) release();
    await a.drain();
    await b.drain();
    real.close();
  }
});

Deno.test("a request running longer than a lease keeps its slot: the idle sweep renews the hold", async () => {
  const kv = await Deno.openKv(":memory:");
  let t = Date.UTC(2026, 11, 6, 12);
  const now = () => t;
  const a = new UserLimiter({ kv, now, budgetSince: () => 0 });
  const b = new UserLimiter({ kv, now, budgetSince: () => 0 });
  const key = UserKeyRecordSchema.parse({
    id: "uk_long",
    name: "l",
    hash: "h",
    prefix: "sk-…",
    enabled: true,
    rpm: null,
    maxConcurrency: 1,
    createdAt: 0,
    updatedAt: 0,
  });
  const admitted: (() => void)[] = [];
  try {
    const long = await a.admit(key);
    assert.ok(long.allowed);
    admitted.push(() => long.release?.());
    // The request runs on: near the end of the lease, A's sweep (once a second) renews it...
    t += LEASE_MS - 60_000;
    await new Promise((r) => setTimeout(r, 1_500));
    // ...so past the first lease's end, the slot is still A's.
    t += 120_000;
    const other = await b.admit(key);
    if (other.allowed) admitted.push(() => other.release?.());
    assert.equal(other.allowed, false, "a second request exceeds max_concurrency 1");
  } finally {
    for (const release of admitted) release();
    await a.drain();
    await b.drain();
    kv.close();
  }
});
