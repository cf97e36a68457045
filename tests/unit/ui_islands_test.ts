/**
 * The logic inside the islands that needs no browser: key state counts, keys at risk and failing
 * days, latency figures, RPM and limit parsing, request log filters, job reports, bounded bulk work.
 */
import assert from "node:assert/strict";
import { keysAtRisk, keyStateCounts, latencyStats } from "../../islands/dashboard.tsx";
import { eachLimited, failingDays } from "../../islands/gemini_keys.tsx";
import { reportLine } from "../../islands/jobs.tsx";
import { matchesFilter } from "../../islands/request_log.tsx";
import { changedBody, draftOf, limitsBody, toLocalInput } from "../../islands/user_keys.tsx";
import type { KeyView, RequestLogEntryView, UserKeyView } from "../../lib/ui/wire.ts";
import { parseLimit } from "../../lib/ui/format.ts";

function key(partial: Partial<KeyView>): KeyView {
  return {
    id: "k",
    label: "",
    masked: "AIza…0000",
    enabled: true,
    weight: 1,
    status: "active",
    ...partial,
  };
}

Deno.test("key states count disabled keys apart; keys at risk are the failing enabled ones, worst first", () => {
  const keys = [
    key({ id: "a" }),
    key({ id: "b", status: "cooldown" }),
    key({ id: "c", status: "invalid" }),
    key({ id: "d", enabled: false, status: "invalid" }),
    key({ id: "e", consecutive_errors: 2 }),
  ];
  assert.deepEqual(keyStateCounts(keys), { active: 2, cooldown: 1, invalid: 1, disabled: 1 });
  assert.deepEqual(keysAtRisk(keys).map((k) => k.id), ["c", "b", "e"]);
});

Deno.test("the RPM field: empty is unlimited, positive integers pass, the rest is refused", () => {
  assert.equal(parseLimit(""), null);
  assert.equal(parseLimit(" 60 "), 60);
  for (const bad of ["0", "-3", "1.5", "abc"]) assert.equal(parseLimit(bad), undefined, bad);
});

Deno.test("bulk work runs with bounded concurrency and reports progress", async () => {
  let running = 0;
  let peak = 0;
  const progress: number[] = [];
  await eachLimited([1, 2, 3, 4, 5, 6, 7], async () => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, 1));
    running--;
  }, { limit: 3, onProgress: (done) => progress.push(done) });
  assert.equal(peak, 3);
  assert.deepEqual(progress, [1, 2, 3, 4, 5, 6, 7]);
});

Deno.test("failing days count back from today (or yesterday) while every day only failed", () => {
  const now = Date.parse("2026-11-26T10:00:00Z");
  assert.equal(failingDays(undefined, now), 0);
  assert.equal(
    failingDays({ "2026-11-26": "fail", "2026-11-25": "fail", "2026-11-24": "ok" }, now),
    2,
  );
  assert.equal(
    failingDays({ "2026-11-25": "fail", "2026-11-24": "fail" }, now),
    2,
    "today not yet",
  );
  assert.equal(failingDays({ "2026-11-26": "ok", "2026-11-25": "fail" }, now), 0);
});

function entry(partial: Partial<RequestLogEntryView>): RequestLogEntryView {
  return {
    id: "r",
    time: "2026-11-26T10:00:00Z",
    model: "gemini-2.5-flash",
    status: 200,
    latency_ms: 100,
    input_tokens: 1,
    output_tokens: 1,
    ...partial,
  };
}

Deno.test("latency figures come from successful requests only", () => {
  assert.equal(latencyStats([]), null);
  assert.equal(latencyStats([entry({ status: 500 })]), null);
  const stats = latencyStats([
    ...Array.from({ length: 19 }, (_, i) => entry({ latency_ms: (i + 1) * 10 })),
    entry({ latency_ms: 5000 }),
    entry({ latency_ms: 9999, status: 429 }),
  ]);
  assert.deepEqual(stats, { p50: 100, p95: 190, n: 20 });
});

Deno.test("request log filters combine model, result, user key and key", () => {
  const e = entry({ user_key_name: "alice", key: "AIza…0001", status: 502 });
  const all = { model: "", result: "all" as const, user: "", key: "" };
  assert.ok(matchesFilter(e, all));
  assert.ok(matchesFilter(e, { ...all, result: "failed", user: "alice", key: "0001" }));
  assert.ok(!matchesFilter(e, { ...all, result: "ok" }));
  assert.ok(!matchesFilter(e, { ...all, model: "gemini-2.5-pro" }));
  assert.ok(!matchesFilter(e, { ...all, user: "bob" }));
  assert.ok(!matchesFilter(e, { ...all, key: "0002" }));
});

Deno.test("user key limits: empty fields mean no limit and every model, bad numbers are named", () => {
  const none = {
    rpm: "",
    tokensPerDay: "",
    requestsPerDay: "",
    tokensPerMonth: "",
    requestsPerMonth: "",
    maxConcurrency: "",
    models: "",
    allowedIps: "",
    expires: "",
  };
  const empty = limitsBody(none);
  assert.deepEqual(empty, {
    ok: true,
    body: {
      rpm: null,
      tokens_per_day: null,
      requests_per_day: null,
      tokens_per_month: null,
      requests_per_month: null,
      max_concurrency: null,
      models: null,
      allowed_ips: null,
      expires_at: null,
    },
  });
  const full = limitsBody({
    rpm: "60",
    tokensPerDay: "100000",
    requestsPerDay: "500",
    tokensPerMonth: "3000000",
    requestsPerMonth: "9000",
    maxConcurrency: "2",
    models: "gemini-2.5-flash, gemini-2.5-*",
    allowedIps: " 203.0.113.0/24,2001:db8::1  10.0.0.1 ",
    expires: "2027-01-02T03:04",
  });
  assert.ok(full.ok);
  assert.deepEqual(
    [full.body.requests_per_day, full.body.tokens_per_month, full.body.requests_per_month],
    [500, 3_000_000, 9000],
  );
  assert.deepEqual(full.body.models, ["gemini-2.5-flash", "gemini-2.5-*"]);
  assert.deepEqual(full.body.allowed_ips, ["203.0.113.0/24", "2001:db8::1", "10.0.0.1"]);
  assert.equal(full.body.expires_at, new Date("2027-01-02T03:04").toISOString());
  assert.deepEqual(
    limitsBody({ ...none, rpm: "1", tokensPerDay: "x" }),
    { ok: false, field: "tokensPerDay" },
  );
  assert.deepEqual(limitsBody({ ...none, requestsPerMonth: "1.5" }), {
    ok: false,
    field: "requestsPerMonth",
  });
  const key: UserKeyView = {
    id: "u",
    name: "n",
    prefix: "sk-…",
    enabled: true,
    rpm: 5,
    tokens_per_day: null,
    tokens_per_month: 7000,
    models: ["a"],
    expires_at: "2027-01-02T03:04:00.000Z",
  };
  const draft = draftOf(key);
  assert.deepEqual(
    [draft.rpm, draft.tokensPerDay, draft.tokensPerMonth, draft.requestsPerDay, draft.models],
    ["5", "", "7000", "", "a"],
  );
  assert.equal(new Date(draft.expires).toISOString(), "2027-01-02T03:04:00.000Z");
  assert.equal(toLocalInput(null), "");
});

Deno.test("a job report reads as one line", () => {
  assert.equal(reportLine({ checked: 3, removed: 0 }), "checked: 3 · removed: 0");
  assert.equal(reportLine(null), "");
  assert.equal(reportLine("done"), "done");
});

Deno.test("the user-key editor sends only what was edited: an expiry's seconds and untouched lists stay", () => {
  const key = {
    id: "uk_0123456789abcdef0123",
    name: "k",
    rpm: 60,
    models: ["gemini 2.5, odd"],
    expires_at: "2027-01-02T03:04:30.500Z",
  } as unknown as Parameters<typeof draftOf>[0];
  const original = draftOf(key);
  assert.deepEqual(changedBody(original, original), { ok: true, body: {} });
  const edited = changedBody(original, { ...original, rpm: "30" });
  assert.deepEqual(edited, { ok: true, body: { rpm: 30 } });
  assert.deepEqual(changedBody(original, { ...original, expires: "" }), {
    ok: true,
    body: { expires_at: null },
  });
  assert.deepEqual(changedBody(original, { ...original, rpm: "-1" }), { ok: false, field: "rpm" });
});
