/**
 * Per-key, per-model limits end to end: no upstream call to a key over its limit (RPM, TPM with
 * real token counts corrected after the estimate), limits learned from a 429's quotaValue, model
 * enable/disable, and the pool's effective limits (one quota per project).
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { OpenAiErrorBody } from "../../lib/openai/errors.ts";
import { post, startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const MODEL = "gemini-2.5-flash";

interface KeyView {
  id: string;
  masked: string;
}

async function idsByMask(gw: TestGateway): Promise<Map<string, string>> {
  const res = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
  return new Map(res.json.data.map((k) => [k.masked, k.id]));
}

function calls(gw: TestGateway, key: string): number {
  return gw.fake.requests.filter((r) => r.key === key && r.path.includes("enerateContent")).length;
}

Deno.test("no upstream call reaches a key over its RPM; the client gets 503 with Retry-After, then service again", async () => {
  const gw = await startGateway({ keys: { "AIzaFirst-key-0001": OK, "AIzaSecond-key-002": OK } });
  try {
    const set = await gw.admin("PATCH", `/admin/api/models/${MODEL}`, { rpm: 3 });
    assert.equal(set.status, 200);
    const apiKey = await gw.createUserKey();
    const statuses: number[] = [];
    let refusal: { status: number; headers: Headers; json: OpenAiErrorBody } | null = null;
    for (let i = 0; i < 9; i++) {
      const res = await post<OpenAiErrorBody>(`${gw.url}/v1/chat/completions`, {
        apiKey,
        body: { model: MODEL, messages: [{ role: "user", content: `n${i}` }], stream: i % 3 === 0 },
      });
      statuses.push(res.status);
      if (res.status !== 200) refusal ??= res;
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 503, 503, 503]);
    assert.equal(calls(gw, "AIzaFirst-key-0001"), 3);
    assert.equal(calls(gw, "AIzaSecond-key-002"), 3);
    assert.equal(refusal!.json.error.code, "no_available_key");
    assert.match(refusal!.json.error.message, /rate limits/);
    const wait = Number(refusal!.headers.get("retry-after"));
    assert.ok(wait >= 1 && wait <= 120, `Retry-After ${wait}`);
    gw.clock.advance(wait * 1000);
    const after = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { model: MODEL, messages: [{ role: "user", content: "again" }] },
    });
    assert.equal(after.status, 200);
    // Another model is not limited.
    const other = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { model: "gemini-2.5-pro", messages: [{ role: "user", content: "x" }] },
    });
    assert.equal(other.status, 200);
  } finally {
    await gw.close();
  }
});

Deno.test("TPM is checked with the estimate first and the real usageMetadata count after", async () => {
  const gw = await startGateway({ keys: { "AIzaOnly-key-00001": OK } });
  try {
    await gw.admin("PATCH", `/admin/api/models/${MODEL}`, { tpm: 50 });
    const apiKey = await gw.createUserKey();
    // 40 one-letter words: estimated at 20 tokens (80 characters / 4), really 40 (the fake counts words).
    const words = Array.from({ length: 40 }, () => "a").join(" ");
    const body = { model: MODEL, messages: [{ role: "user", content: words }] };
    assert.equal((await post(`${gw.url}/v1/chat/completions`, { apiKey, body })).status, 200);
    await gw.app.drain();
    const limits = await gw.admin<{ scopes: { model: string; usage: { tpm: number } }[] }>(
      "GET",
      `/admin/api/limits?model=${MODEL}`,
    );
    assert.equal(limits.json.scopes[0].usage.tpm, 40, "the window holds the real count");
    // 40 used + 20 estimated > 50: the key is skipped before the call (with the estimate alone,
    // 20 + 20 would have passed).
    const second = await post<OpenAiErrorBody>(`${gw.url}/v1/chat/completions`, { apiKey, body });
    assert.equal(second.status, 503);
    assert.equal(calls(gw, "AIzaOnly-key-00001"), 1);
  } finally {
    await gw.close();
  }
});

Deno.test("limits named by a 429 (quotaValue) are learned for the key and model and shown in force", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaLimited-key-001": { kind: "rate_limited", retryDelaySeconds: 5, quotaValue: "2" },
      "AIzaGood-key-00002": OK,
    },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 4; i++) {
      await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "x" }],
      });
    }
    const ids = await idsByMask(gw);
    const limits = await gw.admin<{
      scopes: { scope: string; limits: { rpm: number | null }; source: { learned: unknown } }[];
    }>("GET", `/admin/api/limits?model=${MODEL}`);
    const learned = limits.json.scopes.find((s) => s.scope === `key:${ids.get("AIza…-001")}`)!;
    assert.equal(learned.limits.rpm, 2);
    assert.deepEqual(learned.source.learned, { rpm: 2, tpm: null, rpd: null });
    const good = limits.json.scopes.find((s) => s.scope === `key:${ids.get("AIza…0002")}`)!;
    assert.equal(good.limits.rpm, null);
    // The dashboard asks for the pool's limits only: no row per scope.
    const light = await gw.admin<Record<string, unknown>>(
      "GET",
      `/admin/api/limits?model=${MODEL}&scopes=0`,
    );
    assert.deepEqual(Object.keys(light.json), ["data"]);
    assert.deepEqual(light.json.data, (limits.json as unknown as { data: unknown }).data);
  } finally {
    await gw.close();
  }
});

Deno.test("a quotaValue out of range is not learned: a cold isolate and the admin list keep working", async () => {
  const kv = await Deno.openKv(":memory:");
  const keys = {
    "AIzaHuge-quota-0001": { kind: "rate_limited", quotaValue: "2000000000" },
    "AIzaTiny-quota-0002": { kind: "rate_limited", quotaValue: "0.5" },
    "AIzaGood-key-00003": OK,
  } as const;
  const a = await startGateway({ kv, keys });
  let b: TestGateway | undefined;
  try {
    const secret = await a.createUserKey();
    const chat = (gw: TestGateway) =>
      post(`${gw.url}/v1/chat/completions`, {
        apiKey: secret,
        body: { model: MODEL, messages: [{ role: "user", content: "hi" }] },
      });
    for (let i = 0; i < 4; i++) assert.equal((await chat(a)).status, 200);
    assert.ok(calls(a, "AIzaHuge-quota-0001") > 0 && calls(a, "AIzaTiny-quota-0002") > 0);
    b = await startGateway({ kv, fake: a.fake });
    assert.equal((await chat(b)).status, 200, "a cold isolate loads the pool");
    const list = await b.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
    assert.equal(list.status, 200);
    const limits = await b.admin<{ scopes: { source: { learned: unknown } }[] }>(
      "GET",
      `/admin/api/limits?model=${MODEL}`,
    );
    assert.equal(limits.status, 200);
    assert.ok(limits.json.scopes.every((s) => s.source.learned === null), "nothing was learned");
  } finally {
    await b?.close();
    await a.close();
    kv.close();
  }
});

Deno.test("a stored record with an out-of-range limit is repaired when read, not a 500 for every request", async () => {
  const kv = await Deno.openKv(":memory:");
  const a = await startGateway({
    kv,
    keys: { "AIzaGood-key-00001": OK, "AIzaGood-key-00002": OK },
  });
  let b: TestGateway | undefined;
  try {
    const [first, second] = [...(await idsByMask(a)).values()];
    // What an older version stored from a 429 naming quotaValue "2000000000" or "0.5".
    const bad = { rpm: 2_000_000_000, tpm: 0, rpd: 250 };
    const stored = await kv.get<Record<string, unknown>>(["gk", first]);
    await kv.set(["gk", first], {
      ...stored.value,
      project: "",
      learned: { [MODEL]: bad, "other-model": "junk" },
    });
    const other = await kv.get<Record<string, unknown>>(["gk", second]);
    await kv.set(["gk", second], { ...other.value, project: "proj-a" });
    await kv.set(["gp", "proj-a"], { name: "proj-a", learned: { [MODEL]: bad }, limits: {} });
    // A key record that cannot be read at all is skipped, not fatal.
    await kv.set(["gk", "k_broken"], { id: "k_broken", label: 3 });

    b = await startGateway({ kv, fake: a.fake });
    const secret = await b.createUserKey();
    const res = await post(`${b.url}/v1/chat/completions`, {
      apiKey: secret,
      body: { model: MODEL, messages: [{ role: "user", content: "hi" }] },
    });
    assert.equal(res.status, 200);
    const list = await b.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.data.map((k) => k.id).sort(), [first, second].sort());
    const projects = await b.admin<{ data: { name: string; learned: unknown }[] }>(
      "GET",
      "/admin/api/projects",
    );
    assert.equal(projects.status, 200);
    assert.deepEqual(projects.json.data.find((p) => p.name === "proj-a")?.learned, {
      [MODEL]: { rpm: null, tpm: null, rpd: 250 },
    });
    // A change through the admin API stores the repaired record.
    assert.equal((await b.admin("PATCH", `/admin/api/keys/${first}`, { label: "x" })).status, 200);
    const repaired = await kv.get<{ learned: unknown }>(["gk", first]);
    assert.deepEqual(repaired.value?.learned, { [MODEL]: { rpm: null, tpm: null, rpd: 250 } });
  } finally {
    await b?.close();
    await a.close();
    kv.close();
  }
});

Deno.test("a disabled model is hidden from /v1/models and refused with 403 before any upstream call", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-00001": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    assert.ok((await client.models.list()).data.some((m) => m.id === "gemini-2.5-pro"));
    const off = await gw.admin<{ enabled: boolean; listed_upstream: boolean }>(
      "PATCH",
      "/admin/api/models/gemini-2.5-pro",
      { enabled: false },
    );
    assert.deepEqual([off.json.enabled, off.json.listed_upstream], [false, true]);
    const listed = (await client.models.list()).data.map((m) => m.id);
    assert.ok(!listed.includes("gemini-2.5-pro"));
    assert.ok(listed.includes(MODEL));
    await assert.rejects(
      client.models.retrieve("gemini-2.5-pro"),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 404,
    );
    gw.fake.reset();
    await assert.rejects(
      client.chat.completions.create({
        model: "gemini-2.5-pro",
        messages: [{ role: "user", content: "x" }],
      }),
      (e: unknown) =>
        e instanceof OpenAI.APIError && e.status === 403 && e.code === "model_disabled",
    );
    assert.equal(gw.fake.requests.length, 0);
    const admin = await gw.admin<{ data: { id: string; enabled: boolean }[] }>(
      "GET",
      "/admin/api/models",
    );
    assert.equal(admin.json.data.find((m) => m.id === "gemini-2.5-pro")?.enabled, false);
    assert.equal((await gw.admin("DELETE", "/admin/api/models/gemini-2.5-pro")).status, 204);
    assert.ok((await client.models.list()).data.some((m) => m.id === "gemini-2.5-pro"));
    const bad = await gw.admin<OpenAiErrorBody>("PATCH", `/admin/api/models/${MODEL}`, { rpm: -1 });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "rpm");
  } finally {
    await gw.close();
  }
});

Deno.test("the pool's effective limits sum usable quota scopes: keys of one project count once", async () => {
  const gw = await startGateway({
    keys: { "AIzaAlpha-key-0001": OK, "AIzaAlpha-key-0002": OK, "AIzaLone-key-00003": OK },
  });
  try {
    await gw.admin("PATCH", `/admin/api/models/${MODEL}`, { rpm: 10, rpd: 250 });
    const ids = await idsByMask(gw);
    for (const m of ["AIza…0001", "AIza…0002"]) {
      await gw.admin("PATCH", `/admin/api/keys/${ids.get(m)}`, { project: "alpha" });
    }
    const res = await gw.admin<{
      data: {
        model: string;
        pool: { rpm: number | null; tpm: number | null; rpd: number | null };
        multiplier: number;
        usable_keys: number;
      }[];
    }>("GET", `/admin/api/limits?model=${MODEL}`);
    const row = res.json.data.find((r) => r.model === MODEL)!;
    assert.deepEqual(row.pool, { rpm: 20, tpm: null, rpd: 500 });
    assert.equal(row.multiplier, 2);
    assert.equal(row.usable_keys, 3);
  } finally {
    await gw.close();
  }
});
