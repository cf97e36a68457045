/**
 * The key pool's strategies and limits, on a real `KeyPool` over `:memory:` KV with a frozen clock
 * and a seeded random generator: distributions over 1,000 picks with weights 1:2:3:4 (tolerances
 * stated per test), a round-robin rotation shared by two isolates, per-key and per-project limits
 * honoured before any call.
 */
import assert from "node:assert/strict";
import { KeyPool, type KeyPool as KeyPoolType, type PoolKey } from "../../lib/pool/key_pool.ts";
import { randomBytes, Sealer } from "../../lib/secrets.ts";
import { addGeminiKeys, listGeminiKeys } from "../../lib/store/gemini_keys.ts";
import { patchModelConfig } from "../../lib/store/models.ts";
import { readCursor } from "../../lib/store/pool_cursor.ts";
import { nextPacificMidnight } from "../../lib/pool/calendar.ts";
import { patchSettings } from "../../lib/store/settings.ts";
import { runWithFailover } from "../../lib/pool/failover.ts";
import { UpstreamRequestError, UpstreamTimeoutError } from "../../lib/gemini/client.ts";

/** mulberry32: a small seeded generator, so distributions are reproducible. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let sealer: Sealer | null = null;
async function getSealer(): Promise<Sealer> {
  return sealer ??= await Sealer.fromPassphrase("test-passphrase-0123456789", randomBytes(16));
}

interface Setup {
  kv: Deno.Kv;
  clock: { t: number };
  pool: KeyPoolType;
  /** Key id by secret. */
  ids: Map<string, string>;
  newPool(seed?: number): KeyPoolType;
}

async function setup(
  options: {
    weights: number[];
    strategy: "round_robin" | "least_used" | "adaptive";
    projects?: string[];
    seed?: number;
  },
): Promise<Setup> {
  const kv = await Deno.openKv(":memory:");
  const clock = { t: Date.UTC(2026, 10, 26, 12, 0, 0) };
  const s = await getSealer();
  const ids = new Map<string, string>();
  for (const [i, weight] of options.weights.entries()) {
    const secret = `AIzaTest-key-${i}`;
    const { added } = await addGeminiKeys(kv, s, [secret], {
      weight,
      project: options.projects?.[i] ?? "",
      now: clock.t,
    });
    ids.set(secret, added[0].id);
  }
  await patchSettings(kv, { strategy: options.strategy });
  const newPool = (seed = options.seed ?? 1) =>
    new KeyPool({ kv, sealer: s, now: () => clock.t, random: seeded(seed) });
  return { kv, clock, pool: newPool(), ids, newPool };
}

async function tally(pool: KeyPoolType, n: number, model = "m"): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const picked = await pool.pick(model, new Set());
    assert.ok("secret" in picked, "a key is picked");
    counts.set(picked.secret, (counts.get(picked.secret) ?? 0) + 1);
  }
  return counts;
}

function shares(counts: Map<string, number>, n: number): number[] {
  return [0, 1, 2, 3].map((i) => (counts.get(`AIzaTest-key-${i}`) ?? 0) / n);
}

const EXPECTED = [0.1, 0.2, 0.3, 0.4];

/** The requests counted today (RPD) over every key of `s`'s pool, on model "m". */
async function requestsToday(s: { kv: Deno.Kv; pool: KeyPoolType }): Promise<number> {
  let n = 0;
  for (const k of await listGeminiKeys(s.kv)) n += (await s.pool.usageOf(k, "m")).rpd;
  return n;
}

Deno.test("round robin: 1,000 picks give weights 1:2:3:4 exactly (within one pick)", async () => {
  const s = await setup({ weights: [1, 2, 3, 4], strategy: "round_robin" });
  try {
    const counts = await tally(s.pool, 1000);
    shares(counts, 1000).forEach((share, i) =>
      assert.ok(Math.abs(share * 1000 - EXPECTED[i] * 1000) <= 1, `key ${i}: ${share}`)
    );
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

Deno.test("round robin: two isolates share one rotation leased from KV in blocks", async () => {
  const s = await setup({ weights: [1, 2, 3, 4], strategy: "round_robin" });
  const other = s.newPool(2);
  try {
    const counts = new Map<string, number>();
    for (let i = 0; i < 1000; i++) {
      const picked = await (i % 2 ? other : s.pool).pick("m", new Set());
      assert.ok("secret" in picked);
      counts.set(picked.secret, (counts.get(picked.secret) ?? 0) + 1);
    }
    await Promise.all([s.pool.settle(), other.settle()]);
    // Every position was leased once from the shared counter (500 per isolate, in blocks of 32
    // that double while they are used up fast): at most a block and a prefetched one unused each.
    const leased = await readCursor(s.kv);
    assert.ok(leased >= 1000 && leased <= 1000 + 2 * (256 + 512), `cursor at ${leased}`);
    // Tolerance: each isolate may stop mid-cycle of 10 positions: +-2 picks per key.
    shares(counts, 1000).forEach((share, i) =>
      assert.ok(Math.abs(share * 1000 - EXPECTED[i] * 1000) <= 4, `key ${i}: ${share}`)
    );
  } finally {
    await Promise.all([s.pool.settle(), other.settle()]);
    s.kv.close();
  }
});

Deno.test("round robin: a busy isolate leases ever larger blocks, and the rotation stays exact", async () => {
  const s = await setup({ weights: [1, 2, 3, 4], strategy: "round_robin" });
  try {
    const counts = new Map<string, number>();
    const cursors = new Set<number>();
    for (let i = 0; i < 3000; i++) {
      const picked = await s.pool.pick("m", new Set());
      assert.ok("secret" in picked);
      counts.set(picked.secret, (counts.get(picked.secret) ?? 0) + 1);
      cursors.add(await readCursor(s.kv));
    }
    // Blocks of 32, 64, ... up to 1,024: about 8 leases, where fixed blocks of 32 take 94.
    assert.ok(cursors.size <= 12, `${cursors.size} leases`);
    shares(counts, 3000).forEach((share, i) =>
      assert.ok(Math.abs(share * 3000 - EXPECTED[i] * 3000) <= 1, `key ${i}: ${share}`)
    );
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

Deno.test("least used: 1,000 picks within one window follow weights 1:2:3:4 (within 1%)", async () => {
  const s = await setup({ weights: [1, 2, 3, 4], strategy: "least_used" });
  try {
    const counts = await tally(s.pool, 1000);
    shares(counts, 1000).forEach((share, i) =>
      assert.ok(Math.abs(share - EXPECTED[i]) <= 0.01, `key ${i}: ${share}`)
    );
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

Deno.test("least used balances by recent usage in the window, not by lifetime counts", async () => {
  const s = await setup({ weights: [1, 1, 1, 1], strategy: "least_used" });
  try {
    // Key 0 served a lot a while ago; in a new window it is as fresh as the others.
    const hot = [...s.ids.values()][0];
    for (let i = 0; i < 50; i++) {
      const p = await s.pool.pick("m", new Set([...s.ids.values()].filter((id) => id !== hot)));
      assert.ok("secret" in p && p.id === hot);
    }
    const busy = await tally(s.pool, 40);
    assert.equal(busy.get("AIzaTest-key-0") ?? 0, 0, "the key used this minute rests");
    s.clock.t += 3 * 60_000;
    const later = await tally(s.pool, 400);
    shares(later, 400).forEach((share) => assert.ok(Math.abs(share - 0.25) <= 0.01, `${share}`));
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

Deno.test("adaptive: with equal health 1,000 picks follow weights 1:2:3:4 (within 3 points)", async () => {
  const s = await setup({ weights: [1, 2, 3, 4], strategy: "adaptive", seed: 42 });
  try {
    const counts = await tally(s.pool, 1000);
    shares(counts, 1000).forEach((share, i) =>
      assert.ok(Math.abs(share - EXPECTED[i]) <= 0.03, `key ${i}: ${share}`)
    );
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

Deno.test("adaptive: a failing or slow key gets far less traffic, but still some", async () => {
  const s = await setup({ weights: [1, 1, 1, 1], strategy: "adaptive", seed: 7 });
  try {
    const ids = [...s.ids.values()];
    for (let i = 0; i < 10; i++) {
      s.pool.noteOutcome(ids[0], { ok: false });
      s.pool.noteOutcome(ids[1], { ok: true, latencyMs: 8000 });
      s.pool.noteOutcome(ids[2], { ok: true, latencyMs: 300 });
      s.pool.noteOutcome(ids[3], { ok: true, latencyMs: 300 });
    }
    const [failing, slow, good1, good2] = shares(await tally(s.pool, 1000), 1000);
    // Two weighted draws, the better wins: a worse key wins only against itself (~1/16),
    // the slow key also beats the failing one (~3/16).
    assert.ok(failing > 0 && failing < 0.12, `failing ${failing}`);
    assert.ok(slow > failing && slow < 0.25, `slow ${slow}`);
    assert.ok(good1 > 0.3 && good2 > 0.3, `good ${good1} ${good2}`);
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

for (const strategy of ["round_robin", "least_used", "adaptive"] as const) {
  Deno.test(`${strategy}: no key is picked beyond its RPM; the pool says when one fits again`, async () => {
    const s = await setup({ weights: [1, 2, 1], strategy });
    try {
      await patchModelConfig(s.kv, "m", { patch: { limits: { rpm: 3 } }, now: s.clock.t });
      s.pool.invalidate();
      const counts = await tally(s.pool, 9);
      for (const n of counts.values()) assert.equal(n, 3);
      const none = await s.pool.pick("m", new Set());
      assert.ok(!("secret" in none));
      assert.equal(none.limited, true);
      assert.ok(none.retryAt !== null && none.retryAt > s.clock.t);
      // Other models are not limited.
      assert.ok("secret" in await s.pool.pick("other", new Set()));
      s.clock.t = none.retryAt!;
      assert.ok("secret" in await s.pool.pick("m", new Set()), "it fits again when told");
    } finally {
      await s.pool.settle();
      s.kv.close();
    }
  });
}

Deno.test("keys of one project share its limits; tokens are estimated first and corrected after", async () => {
  const s = await setup({
    weights: [1, 1, 1, 1],
    strategy: "round_robin",
    projects: ["alpha", "alpha", "alpha", ""],
  });
  try {
    await patchModelConfig(s.kv, "m", { patch: { limits: { rpm: 2, tpm: 1000 } }, now: s.clock.t });
    s.pool.invalidate();
    const picks: PoolKey[] = [];
    for (let i = 0; i < 4; i++) {
      const p = await s.pool.pick("m", new Set(), { estimatedTokens: 10 });
      assert.ok("secret" in p);
      picks.push(p);
    }
    const inAlpha = picks.filter((p) => p.project === "alpha").length;
    assert.equal(inAlpha, 2, "three keys of one project together make two requests a minute");
    assert.ok(!("secret" in await s.pool.pick("m", new Set(), { estimatedTokens: 10 })));
    // The lone key's first request really used 990 input tokens (estimated 10): its window is
    // corrected to the real count once the usage is settled.
    const lone = picks.find((p) => p.project === "")!;
    s.pool.settleUsage([{ keyId: lone.id, ok: true, reservation: lone.reservation }], {
      ok: true,
      promptTokens: 990,
    });
    const usage = await s.pool.usageOf(
      (await listGeminiKeys(s.kv)).find((k) => k.id === lone.id)!,
      "m",
    );
    assert.equal(usage.tpm, 990 + 10);
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

Deno.test("a 429 naming a per-day quota rests until retryDelay; a second one in a row parks until Pacific midnight", async () => {
  const s = await setup({ weights: [1], strategy: "round_robin" });
  try {
    const id = [...s.ids.values()][0];
    const body = JSON.stringify({
      error: {
        code: 429,
        status: "RESOURCE_EXHAUSTED",
        message: "quota",
        details: [{
          "@type": "type.googleapis.com/google.rpc.QuotaFailure",
          violations: [
            { quotaId: "GenerateRequestsPerDayPerProjectPerModel-FreeTier", quotaValue: "20" },
            { quotaId: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", quotaValue: "5" },
          ],
        }],
      },
    });
    const note = () =>
      s.pool.noteRateLimited(id, {
        model: "m",
        retryAfterMs: 47_000,
        defaultCooldownMs: 60_000,
        body,
        reason: "quota",
      });
    await note();
    let [key] = await listGeminiKeys(s.kv);
    assert.equal(key.cooldowns.m.cause, "rate_limit");
    assert.equal(key.cooldowns.m.until, s.clock.t + 47_000);
    assert.deepEqual(key.learned.m, { rpm: 5, tpm: null, rpd: 20 });
    s.clock.t += 48_000;
    await note();
    [key] = await listGeminiKeys(s.kv);
    assert.equal(key.cooldowns.m.cause, "daily_quota");
    assert.equal(key.cooldowns.m.until, nextPacificMidnight(s.clock.t));
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

Deno.test("a streak of upstream errors on one model rests the key for that model only", async () => {
  const s = await setup({ weights: [1], strategy: "round_robin" });
  try {
    const id = [...s.ids.values()][0];
    for (let i = 0; i < 3; i++) {
      await s.pool.noteError(id, "The model is overloaded.", { model: "gemini-2.5-pro" });
    }
    const [key] = await listGeminiKeys(s.kv);
    assert.equal(key.consecutiveErrors, 3);
    assert.equal(key.cooldowns["gemini-2.5-pro"]?.cause, "errors");
    assert.equal(key.cooldowns["*"], undefined);
    const pool = s.newPool();
    const pro = await pool.pick("gemini-2.5-pro", new Set());
    assert.ok(!("secret" in pro), "the overloaded model has no key for now");
    const flash = await pool.pick("gemini-2.5-flash", new Set());
    assert.ok("secret" in flash, "another model still gets the key");
    // A timeout rests the key at once, for the model that was too slow.
    await pool.noteError(id, "did not answer", { model: "gemini-2.5-flash-lite", rest: true });
    const [after] = await listGeminiKeys(s.kv);
    assert.equal(after.cooldowns["gemini-2.5-flash-lite"]?.cause, "errors");
    await pool.settle();
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

Deno.test("an attempt the caller aborted ends the failover at once, blaming no key", async () => {
  const s = await setup({ weights: [1, 1], strategy: "round_robin" });
  try {
    let calls = 0;
    const options = {
      model: "m",
      maxAttempts: 5,
      defaultCooldownMs: 60_000,
      now: () => s.clock.t,
    };
    const aborted = await runWithFailover(s.pool, options, () => {
      calls++;
      return Promise.reject(new DOMException("The signal has been aborted", "AbortError"));
    });
    assert.equal(calls, 1, "no other key was asked");
    assert.ok(!aborted.ok);
    assert.deepEqual([aborted.failure.kind, aborted.failure.status], ["client_closed", 499]);
    // The attempt reached Gemini: it is counted (not as the key's error), and settled later.
    assert.deepEqual(aborted.attempts.map((a) => a.ok), [true]);
    for (const key of await listGeminiKeys(s.kv)) {
      assert.equal(key.consecutiveErrors, 0, "no key was blamed");
    }
    // A caller gone before the first pick: nothing is sent, nothing is booked.
    calls = 0;
    const gone = new AbortController();
    gone.abort();
    const early = await runWithFailover(s.pool, { ...options, signal: gone.signal }, () => {
      calls++;
      return Promise.resolve({ ok: true as const, value: 1 });
    });
    assert.equal(calls, 0);
    assert.ok(!early.ok);
    assert.equal(early.failure.kind, "client_closed");
    assert.deepEqual(early.attempts, []);
    // Gone while the key was being picked: the pick's reservation is taken back.
    const requests = () => requestsToday(s);
    const before = await requests();
    const during = new AbortController();
    const pick = s.pool.pick.bind(s.pool);
    s.pool.pick = async (...args: Parameters<typeof pick>) => {
      const picked = await pick(...args);
      during.abort();
      return picked;
    };
    const mid = await runWithFailover(s.pool, { ...options, signal: during.signal }, () => {
      calls++;
      return Promise.resolve({ ok: true as const, value: 1 });
    });
    s.pool.pick = pick;
    assert.equal(calls, 0);
    assert.ok(!mid.ok && mid.failure.kind === "client_closed");
    assert.deepEqual(mid.attempts, []);
    assert.equal(await requests(), before, "no request is left counted");
    // A timeout is the key's: counted, and the next key is asked.
    calls = 0;
    const timedOut = await runWithFailover(s.pool, options, () => {
      calls++;
      return Promise.reject(new UpstreamTimeoutError(1000));
    });
    assert.equal(timedOut.ok, false);
    assert.equal(calls, 2);
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});

Deno.test("a request that cannot be built is the client's: one call, no key blamed, nothing booked", async () => {
  const s = await setup({ weights: [1, 1, 1], strategy: "round_robin" });
  try {
    const requests = () => requestsToday(s);
    const before = await requests();
    let calls = 0;
    const options = { model: "m", maxAttempts: 5, defaultCooldownMs: 60_000, now: () => s.clock.t };
    for (let i = 0; i < 4; i++) {
      const result = await runWithFailover(s.pool, options, () => {
        calls++;
        return Promise.reject(new UpstreamRequestError("The value of a header cannot be sent"));
      });
      assert.ok(!result.ok);
      assert.deepEqual([result.failure.kind, result.failure.status], ["client", 400]);
      assert.match(result.failure.message, /cannot be sent/);
      assert.deepEqual(result.attempts, []);
    }
    assert.equal(calls, 4, "no other key was asked");
    for (const key of await listGeminiKeys(s.kv)) {
      assert.equal(key.consecutiveErrors, 0, "no key was blamed");
      assert.deepEqual(key.cooldowns, {});
    }
    assert.equal(await requests(), before, "no request is left counted");
  } finally {
    await s.pool.settle();
    s.kv.close();
  }
});
