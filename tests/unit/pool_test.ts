/**
 * The pool's pure parts: usability, weighted round robin over positions, 429 reading, limits and
 * usage windows, Pacific midnight across DST, token estimates, health history.
 */
import assert from "node:assert/strict";
import {
  nextPacificMidnight,
  nextPacificMonthStart,
  pacificDate,
  pacificDayNumber,
  pacificDayStart,
  pacificMonthNumber,
  pacificMonthStart,
} from "../../lib/pool/calendar.ts";
import { estimateRequestTokens, IMAGE_TOKENS } from "../../lib/pool/estimate.ts";
import { consecutiveFailingDays, noteHealthDay } from "../../lib/pool/health.ts";
import {
  effectiveLimits,
  fitsAgainAt,
  noUsage,
  UsageTracker,
  wouldExceed,
} from "../../lib/pool/limits.ts";
import { readQuotaFailure } from "../../lib/pool/quota.ts";
import {
  adaptiveScore,
  buildCandidates,
  isUsable,
  pickRoundRobin,
  slotOwner,
  strideFor,
} from "../../lib/pool/selection.ts";
import { type GeminiKeyRecord, keyStatus } from "../../lib/store/gemini_keys.ts";

function key(id: string, patch: Partial<GeminiKeyRecord> = {}): GeminiKeyRecord {
  return {
    id,
    label: "",
    sealed: "",
    fingerprint: id,
    masked: id,
    enabled: true,
    weight: 1,
    project: "",
    invalid: null,
    cooldowns: {},
    consecutiveErrors: 0,
    learned: {},
    health: { checkedAt: null, result: null, message: null, days: {} },
    proxy: null,
    createdAt: 0,
    updatedAt: 0,
    ...patch,
  };
}

const HOUR = 3_600_000;

Deno.test("cooldowns of a key or of its project apply per model or to every model, and expire", () => {
  const rest = { until: 1000, reason: "429", cause: "rate_limit" as const };
  const k = key("a", { cooldowns: { "gemini-2.5-pro": rest } });
  assert.equal(isUsable(k, "gemini-2.5-pro", { now: 500 }), false);
  assert.equal(isUsable(k, "gemini-2.5-flash", { now: 500 }), true);
  assert.equal(isUsable(k, "gemini-2.5-pro", { now: 1000 }), true);
  const all = key("b", { cooldowns: { "*": { ...rest, cause: "errors" } } });
  assert.equal(isUsable(all, "anything", { now: 999 }), false);
  assert.equal(isUsable(key("c", { enabled: false }), "m", { now: 0 }), false);
  assert.equal(isUsable(key("d", { invalid: { reason: "bad", at: 0 } }), "m", { now: 0 }), false);
  const member = key("e", { project: "p" });
  assert.equal(isUsable(member, "m", { now: 500, projectCooldowns: { m: rest } }), false);
  assert.equal(isUsable(member, "other", { now: 500, projectCooldowns: { m: rest } }), true);
  assert.equal(keyStatus(k, 500).status, "cooldown");
  assert.equal(keyStatus(k, 2000).status, "active");
  const state = keyStatus(member, 500, { m: { ...rest, until: 900, cause: "daily_quota" } });
  assert.deepEqual([state.status, state.until, state.cause], ["cooldown", 900, "daily_quota"]);
});

Deno.test("candidates skip resting keys and remember when the first one recovers", () => {
  const keys = [
    key("a", { weight: 2 }),
    key("b", { cooldowns: { m: { until: 3000, reason: "", cause: "rate_limit" } } }),
    key("c", { project: "p" }),
    key("d", { weight: 3 }),
  ];
  const c = buildCandidates(keys, "m", {
    now: 1000,
    projectCooldowns: (p) =>
      p === "p" ? { m: { until: 2000, reason: "", cause: "rate_limit" } } : undefined,
  });
  assert.deepEqual(c.keys.map((k) => k.id), ["a", "d"]);
  assert.equal(c.total, 5);
  assert.equal(c.validUntil, 2000);
  assert.deepEqual([0, 1, 2, 3, 4].map((s) => slotOwner(c.cum, s)), [0, 0, 1, 1, 1]);
});

Deno.test("round robin over positions gives every key exactly its weight in each cycle, interleaved", () => {
  for (const w of [1, 2, 3, 4, 7, 10, 12, 100, 1000]) {
    const s = strideFor(w);
    const seen = new Set(Array.from({ length: w }, (_, p) => (p * s) % w));
    assert.equal(seen.size, w, `stride ${s} is a permutation of ${w} slots`);
  }
  const keys = [key("a", { weight: 1 }), key("b", { weight: 2 }), key("c", { weight: 3 })];
  const c = buildCandidates(keys, "m", { now: 0, projectCooldowns: () => undefined });
  let p = 17;
  const tally: Record<string, number> = { a: 0, b: 0, c: 0 };
  const order: string[] = [];
  for (let i = 0; i < 600; i++) {
    const picked = pickRoundRobin(c, { accept: () => true, random: () => 0, position: () => p++ });
    tally[c.keys[picked].id]++;
    if (i < 6) order.push(c.keys[picked].id);
  }
  assert.deepEqual(tally, { a: 100, b: 200, c: 300 });
  assert.notDeepEqual(order, ["a", "b", "b", "c", "c", "c"], "slots are interleaved, not in runs");
  // A key that may not be used hands its turn to another one.
  const noA = pickRoundRobin(c, {
    accept: (i) => c.keys[i].id !== "c",
    random: () => 0,
    position: () => 5, // slot of c
  });
  assert.notEqual(c.keys[noA].id, "c");
});

const quota429 = (violations: { quotaId: string; quotaValue?: string }[]) =>
  JSON.stringify({
    error: {
      code: 429,
      status: "RESOURCE_EXHAUSTED",
      message: "quota",
      details: [
        { "@type": "type.googleapis.com/google.rpc.QuotaFailure", violations },
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "20s" },
      ],
    },
  });

Deno.test("a 429 tells per-minute from per-day quotas, learns the limits it names, and spots limit 0", () => {
  const minute = readQuotaFailure(quota429([{
    quotaId: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    quotaValue: "10",
  }, { quotaId: "GenerateContentInputTokensPerModelPerMinute-FreeTier", quotaValue: "250000" }]));
  assert.equal(minute.perDayOnly, false);
  assert.equal(minute.mentionsPerDay, false);
  assert.deepEqual(minute.learned, { rpm: 10, tpm: 250000 });
  const day = readQuotaFailure(quota429([{
    quotaId: "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    quotaValue: "250",
  }]));
  assert.equal(day.perDayOnly, true);
  assert.deepEqual(day.learned, { rpd: 250 });
  const mixed = readQuotaFailure(quota429([
    { quotaId: "GenerateRequestsPerDayPerProjectPerModel-FreeTier", quotaValue: "20" },
    { quotaId: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", quotaValue: "5" },
  ]));
  assert.deepEqual([mixed.perDayOnly, mixed.mentionsPerDay], [false, true]);
  const none = readQuotaFailure(quota429([{
    quotaId: "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    quotaValue: "0",
  }]));
  assert.equal(none.noQuota, true);
  assert.deepEqual(none.learned, {});
  assert.equal(readQuotaFailure("not json").violations.length, 0);
});

Deno.test("a 429's quotaValue is learned only when it is a limit the store can keep (1 to 1e9)", () => {
  const learned = (quotaValue: string) =>
    readQuotaFailure(quota429([{
      quotaId: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
      quotaValue,
    }])).learned;
  assert.deepEqual(learned("0.5"), {}, "a fraction under 1 is no limit");
  assert.deepEqual(learned("2000000000"), {}, "beyond 1e9 is no limit in practice");
  assert.deepEqual(learned("1e400"), {});
  assert.deepEqual(learned("-3"), {});
  assert.deepEqual(learned("1000000000"), { rpm: 1_000_000_000 });
  assert.deepEqual(learned("7.9"), { rpm: 7 });
});

Deno.test("limits: an admin override wins over a learned limit, which wins over the model default", () => {
  assert.deepEqual(
    effectiveLimits({
      override: { rpm: 100, tpm: null, rpd: null },
      learned: { rpm: 10, rpd: 250 },
      defaults: { rpm: 5, tpm: 1000, rpd: 20 },
    }),
    { rpm: 100, tpm: 1000, rpd: 250 },
  );
  assert.deepEqual(effectiveLimits({}), { rpm: null, tpm: null, rpd: null });
});

Deno.test("the usage window counts local reservations until KV holds them, never twice", () => {
  const t0 = Date.UTC(2026, 10, 26, 12, 0, 0);
  const tracker = new UsageTracker();
  const a = tracker.reserve("k1", "m", { now: t0, tokens: 100 });
  tracker.reserve("k1", "m", { now: t0 + 1000, tokens: 50 });
  let u = tracker.window("m", t0 + 2000).usage("k1");
  assert.deepEqual([u.rpm, u.tpm], [2, 150]);
  // The first request really used 400 input tokens and was written to KV.
  tracker.commit([{ reservation: a, tokens: 400 }]);
  u = tracker.window("m", t0 + 2000).usage("k1");
  assert.deepEqual([u.rpm, u.tpm], [2, 450]);
  // A KV read that started before the commit does not contain it: keep the local count.
  const before = 0;
  tracker.applySnapshot({ minutes: new Map(), day: pacificDayNumber(t0), dayCounts: [] }, {
    mark: before,
    now: t0 + 2000,
  });
  assert.equal(tracker.window("m", t0 + 2000).usage("k1").tpm, 450);
  // A KV read that started after it holds it: the local copy is dropped.
  const mark = tracker.mark();
  const minute = Math.floor(t0 / 60_000);
  tracker.applySnapshot({
    minutes: new Map([[minute, [{ keyId: "k1", model: "m", att: 1, in: 400 }]]]),
    day: pacificDayNumber(t0),
    dayCounts: [{ keyId: "k1", model: "m", att: 1, in: 0 }],
  }, { mark, now: t0 + 2000 });
  u = tracker.window("m", t0 + 2000).usage("k1");
  assert.deepEqual([u.rpm, u.tpm, u.rpd], [2, 450, 2]);
  assert.equal(tracker.pending, 1);
  // Half a minute into the next minute, the previous minute counts half.
  u = tracker.window("m", t0 + 90_000).usage("k1");
  assert.deepEqual([u.rpm, u.tpm], [1, 225]);
  assert.equal(tracker.window("m", t0 + 90_000).usage("other").rpm, 0);
});

Deno.test("a key at its limit is refused, and told when one more request fits again", () => {
  const t0 = Date.UTC(2026, 10, 26, 12, 0, 0);
  const limits = { rpm: 3, tpm: 1000, rpd: 100 };
  const u = noUsage();
  u.cur.att = 3;
  u.rpm = 3;
  assert.equal(wouldExceed(u, limits, 10), true);
  assert.equal(wouldExceed({ ...u, rpm: 2 }, limits, 10), false);
  // The window slides: the 3 requests of this minute must weigh at most 2 in the next one.
  const at = fitsAgainAt(u, limits, { tokens: 10, now: t0 + 10_000 });
  assert.equal(at, t0 + 60_000 + 20_000);
  const day = { ...noUsage(), rpd: 100 };
  assert.equal(wouldExceed(day, limits, 1), true);
  assert.equal(fitsAgainAt(day, limits, { tokens: 1, now: t0 }), nextPacificMidnight(t0));
  // One request bigger than the whole TPM limit may still go into an empty window.
  assert.equal(wouldExceed(noUsage(), limits, 5000), false);
  assert.equal(wouldExceed({ ...noUsage(), tpm: 1 }, limits, 5000), true);
});

Deno.test("Pacific midnight is found across both DST changes", () => {
  const cases: [number, string, string][] = [
    [Date.UTC(2026, 2, 8, 4), "2026-03-07", "2026-03-08T08:00:00.000Z"], // PST evening
    [Date.UTC(2026, 2, 8, 19), "2026-03-08", "2026-03-09T07:00:00.000Z"], // first PDT day (23 h)
    [Date.UTC(2026, 10, 1, 6), "2026-10-31", "2026-11-01T07:00:00.000Z"], // last PDT evening
    [Date.UTC(2026, 10, 1, 20), "2026-11-01", "2026-11-02T08:00:00.000Z"], // first PST day (25 h)
    [Date.UTC(2026, 10, 1, 7), "2026-11-01", "2026-11-02T08:00:00.000Z"], // exactly midnight
  ];
  for (const [t, date, next] of cases) {
    assert.equal(pacificDate(t), date);
    assert.equal(new Date(nextPacificMidnight(t)).toISOString(), next);
  }
  const spring = pacificDayNumber(Date.UTC(2026, 2, 8, 19));
  assert.equal(pacificDayStart(spring + 1) - pacificDayStart(spring), 23 * HOUR);
  const fall = pacificDayNumber(Date.UTC(2026, 10, 1, 20));
  assert.equal(pacificDayStart(fall + 1) - pacificDayStart(fall), 25 * HOUR);
});

Deno.test("Pacific months start at midnight Pacific on the 1st, across years and DST", () => {
  const cases: [number, number, string][] = [
    // 1 Nov 2026 00:30 PDT: November has begun in Pacific time.
    [Date.UTC(2026, 10, 1, 7, 30), 2026 * 12 + 10, "2026-12-01T08:00:00.000Z"],
    // 31 Oct 2026 23:30 PDT (06:30 UTC on 1 Nov): still October.
    [Date.UTC(2026, 10, 1, 6, 30), 2026 * 12 + 9, "2026-11-01T07:00:00.000Z"],
    // New Year's Eve 20:00 PST is 04:00 UTC on 1 Jan: still December, the next month is January.
    [Date.UTC(2027, 0, 1, 4), 2026 * 12 + 11, "2027-01-01T08:00:00.000Z"],
    // A month starting in PDT (April).
    [Date.UTC(2027, 2, 20), 2027 * 12 + 2, "2027-04-01T07:00:00.000Z"],
  ];
  for (const [t, month, next] of cases) {
    assert.equal(pacificMonthNumber(t), month, new Date(t).toISOString());
    assert.equal(new Date(nextPacificMonthStart(t)).toISOString(), next);
    assert.equal(pacificMonthNumber(nextPacificMonthStart(t)), month + 1);
    assert.equal(pacificMonthNumber(nextPacificMonthStart(t) - 1), month);
  }
  assert.equal(new Date(pacificMonthStart(2027 * 12)).toISOString(), "2027-01-01T08:00:00.000Z");
});

Deno.test("token estimates count CJK characters one by one, Latin text by four, images flat", () => {
  const latin = estimateRequestTokens({
    contents: [{ role: "user", parts: [{ text: "a".repeat(400) }] }],
  });
  assert.equal(latin, 100);
  const cjk = estimateRequestTokens({
    contents: [{ role: "user", parts: [{ text: "你好世界".repeat(25) }] }],
    systemInstruction: { parts: [{ text: "abcd" }] },
  });
  assert.equal(cjk, 101);
  const image = estimateRequestTokens({
    contents: [{ parts: [{ inlineData: { mimeType: "image/png", data: "AAAA" } }] }],
  });
  assert.equal(image, IMAGE_TOKENS);
  assert.equal(estimateRequestTokens(null), 1);
});

Deno.test("a key's failing days count back from today only while it failed every check", () => {
  const day = (d: number) => Date.UTC(2026, 10, d, 12);
  let k = key("a");
  for (const d of [20, 21, 22, 23]) {
    k = { ...k, health: noteHealthDay(k.health, { now: day(d), ok: false }) };
  }
  assert.equal(consecutiveFailingDays(k, day(23)), 4);
  // Today has no check yet: count from yesterday.
  assert.equal(consecutiveFailingDays(k, day(24)), 4);
  // A gap of a whole day breaks the run.
  assert.equal(consecutiveFailingDays(k, day(25)), 0);
  // One success in a day makes it an ok day.
  k = { ...k, health: noteHealthDay(k.health, { now: day(22) + 1000, ok: true }) };
  k = { ...k, health: noteHealthDay(k.health, { now: day(22) + 2000, ok: false }) };
  assert.equal(consecutiveFailingDays(k, day(23)), 1);
});

Deno.test("the adaptive score prefers successful, fast keys with headroom", () => {
  const fresh = adaptiveScore(undefined, 1);
  assert.equal(fresh, 1);
  assert.ok(adaptiveScore({ success: 0.5, latencyMs: 0 }, 1) < fresh);
  assert.ok(adaptiveScore({ success: 1, latencyMs: 2000 }, 1) === 0.5);
  assert.ok(adaptiveScore({ success: 1, latencyMs: 0 }, 0) === 0.25);
});
