import assert from "node:assert/strict";
import { type RequestOutcome, UsageRecorder } from "../../lib/accounting.ts";
import { pacificDayNumber } from "../../lib/pool/calendar.ts";
import {
  commitChunks,
  readUsageStats,
  recordUsage,
  rollUpUsage,
  UsageBatch,
  type UsageEvent,
  usageMutations,
} from "../../lib/store/usage.ts";
import {
  budgetCounterId,
  budgetIdsOf,
  budgetIncrements,
  budgetKey,
  BUDGETS,
} from "../../lib/store/user_budgets.ts";

Deno.test("a failed attempt then a success counts one request, two attempts and one error", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.UTC(2026, 10, 26, 12, 30);
    await recordUsage(kv, {
      now,
      model: "m",
      userId: "u1",
      attempts: [{ keyId: "k1", ok: false }, { keyId: "k2", ok: true }],
      ok: true,
      promptTokens: 10,
      completionTokens: 7,
      thinkingTokens: 3,
    });
    await recordUsage(kv, {
      now,
      model: "m",
      userId: "u1",
      attempts: [],
      ok: false,
      promptTokens: 0,
      completionTokens: 0,
      thinkingTokens: 0,
    });
    const s = await readUsageStats(kv, now);
    assert.deepEqual(s.totals, { req: 1, att: 2, err: 1, fail: 1, in: 10, out: 7, think: 3 });
    // Per model and per user key too, as the admin API documents for every counter set.
    assert.deepEqual(s.models.m, s.totals);
    assert.deepEqual(s.users.u1, s.totals);
    assert.equal(s.keys.k1.err, 1);
    assert.equal(s.keys.k1.req, 0);
    assert.equal(s.keys.k2.req, 1);
    assert.equal(s.keys.k2.att, 1);
    assert.equal(s.users.u1.req, 1);
    assert.equal(s.users.u1.fail, 1);
    assert.equal(s.minutes.at(-1)!.counts.req, 1);
    assert.equal(s.minutes.at(-1)!.t, now);
    assert.equal(s.hours.at(-1)!.counts.in, 10);
  } finally {
    kv.close();
  }
});

Deno.test("usage mutations are sums only and skip zero counters", () => {
  const m = usageMutations({
    now: 0,
    model: "m",
    userId: null,
    attempts: [{ keyId: "k", ok: true }],
    ok: true,
    promptTokens: 0,
    completionTokens: 0,
    thinkingTokens: 0,
  });
  assert.ok(m.every((x) => x.type === "sum"));
  assert.ok(m.every((x) => !x.key.includes("in")));
  assert.ok(m.length > 0);
});

Deno.test("usage also feeds the Pacific-day RPD window per attempt and the user's daily token budget", () => {
  const now = Date.UTC(2026, 10, 26, 7, 30); // 23:30 on Nov 25 in Los Angeles
  const m = usageMutations({
    now,
    model: "m",
    userId: "u1",
    attempts: [{ keyId: "k1", ok: false }, { keyId: "k2", ok: true }],
    ok: true,
    promptTokens: 10,
    completionTokens: 5,
    thinkingTokens: 0,
  });
  const keys = m.map((x) => JSON.stringify(x.key));
  const day = pacificDayNumber(now);
  assert.equal(day, Date.UTC(2026, 10, 25) / 86_400_000);
  assert.ok(keys.includes(JSON.stringify(["usage", "pd", day, "k1", "m", "att"])));
  assert.ok(keys.includes(JSON.stringify(["usage", "pd", day, "k2", "m", "att"])));
  const counter = (key: Deno.KvKey) =>
    (m.find((x) => JSON.stringify(x.key) === JSON.stringify(key)) as { value: Deno.KvU64 })
      .value.value;
  // The user key's budgets: 15 tokens and 1 request, in the Pacific day and month.
  const month = 2026 * 12 + 10;
  assert.equal(counter(["ul_tok", day, "u1"]), 15n);
  assert.equal(counter(["ul_req", day, "u1"]), 1n);
  assert.equal(counter(["ul_tok_m", month, "u1"]), 15n);
  assert.equal(counter(["ul_req_m", month, "u1"]), 1n);
  // A request no key could serve costs the user key no budget.
  const failed = usageMutations({
    now,
    model: "m",
    userId: "u1",
    attempts: [{ keyId: "k1", ok: false }],
    ok: false,
    promptTokens: 0,
    completionTokens: 0,
    thinkingTokens: 0,
  });
  assert.deepEqual(failed.filter((x) => String(x.key[0]).startsWith("ul_")), []);
  // Failed attempts are counted by cause: in the hour, and in all.
  const caused = usageMutations({
    now,
    model: "m",
    userId: null,
    attempts: [{ keyId: "k1", ok: false, cause: "daily_quota" }, { keyId: "k2", ok: true }],
    ok: true,
    promptTokens: 1,
    completionTokens: 1,
    thinkingTokens: 0,
  });
  const hour = Math.floor(now / 3_600_000);
  const causeKeys = caused.map((x) => JSON.stringify(x.key)).filter((k) => k.includes("daily"));
  assert.deepEqual(causeKeys.toSorted(), [
    JSON.stringify(["usage_cause", hour, "daily_quota"]),
    JSON.stringify(["usage_total", "cause", "daily_quota"]),
  ]);
});

async function dump(kv: Deno.Kv): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of kv.list({ prefix: [] })) {
    const v = e.value instanceof Deno.KvU64 ? `u64:${e.value.value}` : JSON.stringify(e.value);
    out.set(JSON.stringify(e.key), v);
  }
  return out;
}

Deno.test("a batch of usage events writes exactly the counters one write per event would", async () => {
  const perEvent = await Deno.openKv(":memory:");
  const batched = await Deno.openKv(":memory:");
  try {
    const batch = new UsageBatch();
    const base = Date.UTC(2026, 10, 26, 7, 58);
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 48271) % 2147483647) % n;
    for (let i = 0; i < 200; i++) {
      const attempts = Array.from({ length: 1 + rand(3) }, (_, j) => ({
        keyId: `k${rand(4)}`,
        ok: j > 0 || rand(2) === 0,
      }));
      const event: UsageEvent = {
        // Across minutes, hours and a Pacific midnight.
        now: base + rand(5) * 60_000 + rand(1000),
        model: ["m1", "m2", "a\u0000b"][rand(3)],
        userId: [null, "u1", "u2"][rand(3)],
        attempts,
        ok: rand(4) > 0,
        promptTokens: rand(50),
        completionTokens: rand(30),
        thinkingTokens: rand(10),
      };
      await recordUsage(perEvent, event);
      batch.add(event);
    }
    assert.equal(batch.events, 200);
    assert.ok(batch.groups < 200, "events of the same shape share one group");
    const { written, error } = await commitChunks(batched, batch.chunks());
    assert.equal(error, null);
    assert.ok(written.length >= 1);
    assert.deepEqual(await dump(batched), await dump(perEvent));
  } finally {
    perEvent.close();
    batched.close();
  }
});

Deno.test("a large batch is split into atomic operations within KV's limits, budgets first", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const batch = new UsageBatch();
    const now = Date.UTC(2026, 10, 26, 12);
    for (let i = 0; i < 600; i++) {
      batch.add({
        now,
        model: `model-${i}-${"x".repeat(40)}`,
        userId: `uk_${i}`,
        attempts: [{ keyId: "k1", ok: true }],
        ok: true,
        promptTokens: 3,
        completionTokens: 2,
        thinkingTokens: 0,
      });
      batch.addExtra([{
        type: "set",
        key: ["rlog", now, `r${i}`],
        value: { i, pad: "y".repeat(500) },
      }]);
    }
    const chunks = batch.chunks();
    assert.ok(chunks.length > 1);
    for (const c of chunks) assert.ok(c.mutations.length <= 1000);
    assert.equal(chunks[0].mutations[0].key[0], "ul_tok");
    // Every budget counter's amount is in the chunk that writes it (the recorder's ledger).
    const counted = new Map<string, number>();
    for (const c of chunks) for (const [id, n] of c.budgets) counted.set(id, n);
    for (const b of BUDGETS) {
      const id = budgetCounterId(
        budgetKey(b, b.period === "day" ? pacificDayNumber(now) : 2026 * 12 + 10, "uk_7"),
      );
      assert.equal(counted.get(id), b.metric === "tokens" ? 5 : 1, b.name);
    }
    assert.equal(counted.size, 600 * BUDGETS.length);
    const { written, error } = await commitChunks(kv, chunks);
    assert.equal(error, null);
    assert.equal(written.length, chunks.length);
    const s = await readUsageStats(kv, now);
    assert.equal(s.totals.req, 600);
    assert.equal(s.totals.in, 1800);
    let logged = 0;
    for await (const _ of kv.list({ prefix: ["rlog"] })) logged++;
    assert.equal(logged, 600);
  } finally {
    kv.close();
  }
});

/** A usage recorder on `kv` with no settings; `settled` hears each settled request's prompt tokens. */
function recorderOn(
  kv: Deno.Kv,
  settled: (promptTokens: number) => void = () => {},
): UsageRecorder {
  return new UsageRecorder({
    kv,
    settings: () => undefined,
    settle: (_attempts, { promptTokens }) => settled(promptTokens),
    maskedOf: () => "AIza…test",
  });
}

/** A successful request of user `u1` on key `k1`, started at `now`. */
function outcomeAt(now: number, extra: Partial<RequestOutcome> = {}): RequestOutcome {
  return {
    model: "m",
    userId: "u1",
    attempts: [{ keyId: "k1", ok: true }],
    ok: true,
    status: 200,
    startedAt: now,
    ...extra,
  };
}

Deno.test("drain waits for a usage write already in flight, so nothing is written after KV closes", async () => {
  const kv = await Deno.openKv(":memory:");
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let commits = 0;
  // KV whose atomic commits wait for the gate: a write that is slow to land.
  const slow = new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = async () => {
            commits++;
            await gate;
            return await commit();
          };
          return op;
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  try {
    const settled: number[] = [];
    const recorder = recorderOn(slow, (promptTokens) => settled.push(promptTokens));
    const now = Date.UTC(2026, 10, 26, 12);
    recorder.record(
      outcomeAt(now, {
        usage: { promptTokenCount: 4, candidatesTokenCount: 2, totalTokenCount: 6 },
      }),
      now,
    );
    // A flush starts (as its timer would) and takes the batch: nothing is pending in memory now.
    const flushing = recorder.flush();
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(commits, 1, "the write is in flight");
    let drained = false;
    const draining = recorder.drain().then(() => (drained = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(drained, false, "drain returned while the write was still in flight");
    open();
    await draining;
    await flushing;
    assert.deepEqual(settled, [4]);
    const s = await readUsageStats(kv, now);
    assert.equal(s.totals.req, 1);
    assert.equal(s.totals.in, 4);
  } finally {
    open();
    kv.close();
  }
});

Deno.test("a batch due for writing at once is scheduled once, not again by every later request", async () => {
  const kv = await Deno.openKv(":memory:");
  const original = globalThis.setTimeout;
  let timers = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    timers++;
    return original(...args);
  }) as typeof setTimeout;
  try {
    const recorder = recorderOn(kv);
    const now = Date.UTC(2026, 10, 26, 12);
    // Past 2,000 request-log entries the batch is due at once; these all arrive before it runs.
    for (let i = 0; i < 2_500; i++) recorder.record(outcomeAt(now), now);
    assert.ok(timers <= 2, `${timers} timers for one batch`);
    await recorder.drain();
    const s = await readUsageStats(kv, now);
    assert.equal(s.totals.req, 2_500);
  } finally {
    globalThis.setTimeout = original;
    kv.close();
  }
});

Deno.test("the recorder's budget counter ids are the batch's, in every period", () => {
  // Across a month's end in Pacific time: the ids follow the day and the month.
  for (
    const now of [Date.UTC(2026, 10, 30, 12), Date.UTC(2026, 11, 1, 9), Date.UTC(2027, 0, 1, 9)]
  ) {
    const ids = budgetIdsOf("uk_x", now);
    const made = budgetIncrements("uk_x", now, { tokens: 5, requests: 1 });
    assert.deepEqual(
      [...ids.tokens, ...ids.requests].toSorted(),
      made.map((m) => m.id).toSorted(),
      new Date(now).toISOString(),
    );
  }
});

Deno.test("a stream that broke after content counts its tokens on its key and charges budgets, as a failure", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.UTC(2026, 10, 26, 12, 30);
    const event: UsageEvent = {
      now,
      model: "m",
      userId: "u1",
      attempts: [{ keyId: "k1", ok: true }],
      ok: false,
      served: true,
      promptTokens: 10,
      completionTokens: 7,
      thinkingTokens: 3,
    };
    await recordUsage(kv, event);
    // Not served: nothing of its tokens or budgets.
    await recordUsage(kv, { ...event, served: false });
    const s = await readUsageStats(kv, now);
    assert.deepEqual(s.totals, { req: 0, att: 2, err: 0, fail: 2, in: 10, out: 7, think: 3 });
    assert.equal(s.keys.k1.in, 10, "the key's TPM window sees the tokens");
    assert.equal(s.keys.k1.req, 0);
    const budgets = usageMutations(event).filter((m) =>
      m.key[0] === "ul_tok" || m.key[0] === "ul_req"
    );
    assert.ok(budgets.length > 0, "budgets are charged");
    assert.equal(
      usageMutations({ ...event, served: false }).filter((m) => String(m.key[0]).startsWith("ul_"))
        .length,
      0,
    );
  } finally {
    kv.close();
  }
});

Deno.test("the recorder counts over-long and unknown unserved model names as one, and KV-breaking chunks are dropped", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.UTC(2026, 10, 26, 12);
    const known = new Set(["m"]);
    const recorder = new UsageRecorder({
      kv,
      settings: () => undefined,
      settle: () => {},
      maskedOf: () => null,
      knownModel: (model) => known.has(model),
    });
    const failed = { ok: false, status: 404, errorClass: "client" };
    recorder.record(outcomeAt(now, { model: "x".repeat(2100) }), now);
    recorder.record(outcomeAt(now, { model: "junk-1", ...failed }), now);
    recorder.record(outcomeAt(now, { model: "junk-2", ...failed }), now);
    recorder.record(outcomeAt(now, { model: "m", ...failed }), now);
    recorder.record(outcomeAt(now, { model: "new-model" }), now); // served: its own name
    await recorder.drain();
    const s = await readUsageStats(kv, now);
    assert.deepEqual(Object.keys(s.models).sort(), ["(other)", "m", "new-model"]);
    assert.equal(s.models["(other)"].req, 1);
    assert.equal(s.models["(other)"].fail, 2);
    assert.equal(s.totals.req, 2);

    // A mutation KV can never take is dropped alone: the rest of its chunk, and the chunks after
    // it, are written.
    const event = (userId: string | null) => ({
      now,
      model: "m",
      userId,
      attempts: [],
      ok: true,
      promptTokens: 1,
      completionTokens: 0,
      thinkingTokens: 0,
    });
    const bad = new UsageBatch();
    bad.add(event("u9"));
    bad.addExtra([{ type: "set", key: ["rlog-test"], value: "x".repeat(70_000) }]);
    const alone = new UsageBatch();
    alone.addExtra([{
      type: "sum",
      key: ["usage_total", "all", "x".repeat(3000)],
      value: new Deno.KvU64(1n),
    }]);
    const good = new UsageBatch();
    good.add(event(null));
    const chunks = [...bad.chunks(), ...alone.chunks(), ...good.chunks()];
    assert.equal(chunks.length, 3);
    const { written, error } = await commitChunks(kv, chunks);
    assert.equal(error, null);
    assert.equal(typeof written[0], "string", "the counters beside the refused value were written");
    assert.equal(written[1], null);
    assert.equal(typeof written[2], "string");
    const stats = await readUsageStats(kv, now);
    assert.equal(stats.totals.req, 4);
    assert.equal(stats.users.u9.req, 1);
    assert.equal((await kv.get(["rlog-test"])).value, null);
  } finally {
    kv.close();
  }
});

Deno.test("the roll-up moves and deletes buckets in atomic writes within KV's key-size limit", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.UTC(2026, 10, 26, 12);
    // 40 models with long names (written before names were capped) and 600 keys' minutes.
    for (let i = 0; i < 40; i++) {
      await recordUsage(kv, {
        now,
        model: `m${i}-${"x".repeat(1500)}`,
        userId: null,
        attempts: [{ keyId: "k1", ok: true }],
        ok: true,
        promptTokens: 1,
        completionTokens: 1,
        thinkingTokens: 0,
      });
    }
    const report = await rollUpUsage(kv, now + 52 * 3_600_000);
    assert.ok(report.hourBucketsRolledUp >= 40 * 4, JSON.stringify(report));
    assert.ok(report.minuteBucketsDeleted >= 40 * 4, JSON.stringify(report));
    let hours = 0;
    for await (const _ of kv.list({ prefix: ["usage", "h"] })) hours++;
    assert.equal(hours, 0);
  } finally {
    kv.close();
  }
});
