/**
 * Per-user-key limits enforced through KV: requests per minute and concurrent requests under 100
 * simultaneous requests with no overshoot, budgets of tokens and requests per day and month,
 * allowed models, expiry; refusals are
 * OpenAI-shaped 429s with Retry-After, or 403s.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { OpenAiErrorBody } from "../../lib/openai/errors.ts";
import { nextPacificMidnight, nextPacificMonthStart } from "../../lib/pool/calendar.ts";
import { post, stallingStreams, startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const CHAT = { model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }] };

async function userKey(gw: TestGateway, body: Record<string, unknown>): Promise<string> {
  const res = await gw.admin<{ key: string }>("POST", "/admin/api/user-keys", {
    name: "limited",
    ...body,
  });
  assert.equal(res.status, 201, JSON.stringify(res.json));
  return res.json.key;
}

function generateCalls(gw: TestGateway): number {
  return gw.fake.requests.filter((r) => r.path.includes("generateContent")).length;
}

Deno.test("100 concurrent requests never overshoot a user key's RPM; refusals are 429 with Retry-After", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK, "AIzaGood-key-0002": OK } });
  try {
    const apiKey = await userKey(gw, { rpm: 10 });
    const results = await Promise.all(
      Array.from(
        { length: 100 },
        () => post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT }),
      ),
    );
    const ok = results.filter((r) => r.status === 200).length;
    const refused = results.filter((r) => r.status === 429);
    assert.equal(ok + refused.length, 100);
    assert.equal(ok, 10, "exactly the limit is admitted");
    assert.equal(generateCalls(gw), 10);
    for (const r of refused) {
      assert.equal(r.json.error.code, "rate_limit_exceeded");
      assert.equal(r.json.error.type, "rate_limit_error");
      assert.ok(Number(r.headers.get("retry-after")) >= 1);
    }
    // The next minute admits again.
    gw.clock.advance(60_000);
    assert.equal((await post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT })).status, 200);
  } finally {
    await gw.close();
  }
});

Deno.test("100 concurrent requests never overshoot a user key's max concurrency, and slots come back", async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const upstreamFetch: typeof fetch = async (input, init) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      await gate;
      return await fetch(input, init);
    } finally {
      inFlight--;
    }
  };
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK }, upstreamFetch });
  let pending: Promise<unknown>[] = [];
  try {
    const apiKey = await userKey(gw, { max_concurrency: 5 });
    let answered = 0;
    const requests = Array.from({ length: 100 }, (_, i) =>
      post(`${gw.url}/v1/chat/completions`, {
        apiKey,
        body: { ...CHAT, stream: i % 2 === 0 },
      }).then((r) => {
        answered++;
        return r;
      }));
    pending = requests;
    // The refusals come back at once while the admitted requests reach the upstream and wait.
    for (let i = 0; i < 3000 && (answered < 95 || inFlight < 5); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(answered, 95);
    assert.equal(inFlight, 5);
    open();
    const results = await Promise.all(requests);
    assert.equal(maxInFlight, 5, "never more than 5 at once");
    assert.equal(results.filter((r) => r.status === 200).length, 5);
    const refused = results.filter((r) => r.status === 429);
    assert.equal(refused.length, 95);
    assert.match(refused[0].json.error.message, /5 concurrent requests/);
    assert.equal(refused[0].headers.get("retry-after"), "1");
    // Every slot was given back (streams included), so 5 more fit at once again.
    await gw.app.drain();
    const again = await Promise.all(
      Array.from(
        { length: 5 },
        () => post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT }),
      ),
    );
    assert.deepEqual(again.map((r) => r.status), [200, 200, 200, 200, 200]);
  } finally {
    open();
    await Promise.allSettled(pending);
    await gw.close();
  }
});

Deno.test("a user key's tokens per day stop it until midnight Pacific", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const apiKey = await userKey(gw, { tokens_per_day: 5 });
    const first = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { ...CHAT, messages: [{ role: "user", content: "one two three four five six" }] },
    });
    assert.equal(first.status, 200);
    await gw.app.drain();
    const listed = await gw.admin<{ data: { tokens_today: number }[] }>(
      "GET",
      "/admin/api/user-keys",
    );
    assert.ok(listed.json.data[0].tokens_today >= 6);
    const second = await post<OpenAiErrorBody>(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: CHAT,
    });
    assert.equal(second.status, 429);
    assert.equal(second.json.error.code, "tokens_per_day_exceeded");
    const expected = Math.ceil((nextPacificMidnight(gw.clock.now()) - gw.clock.now()) / 1000);
    assert.equal(Number(second.headers.get("retry-after")), expected);
    gw.clock.t = nextPacificMidnight(gw.clock.now());
    assert.equal((await post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT })).status, 200);
  } finally {
    await gw.close();
  }
});

Deno.test("a user key's requests per day count answered requests, shared by /v1 and the native API", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const apiKey = await userKey(gw, { requests_per_day: 3 });
    assert.equal((await post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT })).status, 200);
    // A request refused before the upstream (a bad body) is not an answered request.
    const bad = await post(`${gw.url}/v1/chat/completions`, { apiKey, body: { model: "x" } });
    assert.equal(bad.status, 400);
    const native = await post(
      `${gw.url}/v1beta/models/gemini-2.5-flash:generateContent`,
      { apiKey, body: { contents: [{ role: "user", parts: [{ text: "hi" }] }] } },
    );
    assert.equal(native.status, 200);
    assert.equal((await post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT })).status, 200);
    const refused = await post<OpenAiErrorBody>(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: CHAT,
    });
    assert.equal(refused.status, 429);
    assert.equal(refused.json.error.code, "requests_per_day_exceeded");
    assert.match(refused.json.error.message, /3 requests per day/);
    const expected = Math.ceil((nextPacificMidnight(gw.clock.now()) - gw.clock.now()) / 1000);
    assert.equal(Number(refused.headers.get("retry-after")), expected);
    // The native API answers the same refusal in Google's shape.
    const nativeRefused = await post<{ error: { code: number; status: string } }>(
      `${gw.url}/v1beta/models/gemini-2.5-flash:generateContent`,
      { apiKey, body: { contents: [{ role: "user", parts: [{ text: "hi" }] }] } },
    );
    assert.equal(nativeRefused.status, 429);
    assert.equal(nativeRefused.json.error.status, "RESOURCE_EXHAUSTED");
    assert.equal(generateCalls(gw), 3);
    const listed = await gw.admin<{ data: Record<string, number>[] }>(
      "GET",
      "/admin/api/user-keys",
    );
    assert.equal(listed.json.data[0].requests_today, 3);
    assert.equal(listed.json.data[0].requests_this_month, 3);
    gw.clock.t = nextPacificMidnight(gw.clock.now());
    assert.equal((await post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT })).status, 200);
  } finally {
    await gw.close();
  }
});

Deno.test("a stream that broke after its first event still spends the user key's budgets", async () => {
  const gw = await startGateway({
    keys: { "AIzaGood-key-0001": OK },
    env: { UPSTREAM_TIMEOUT_MS: "1000" },
    upstreamFetch: stallingStreams,
  });
  try {
    const apiKey = await userKey(gw, { requests_per_day: 1 });
    const broken = await post<string>(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { ...CHAT, messages: [{ role: "user", content: "hi there friend" }], stream: true },
    });
    assert.equal(broken.status, 200);
    assert.match(broken.json, /"reasoning_content":"Thinking/, "the client got the first words");
    assert.match(broken.json, /upstream_stream_error/, "then the stream broke");
    await gw.app.drain();
    const listed = await gw.admin<{ data: Record<string, number>[] }>(
      "GET",
      "/admin/api/user-keys",
    );
    assert.equal(listed.json.data[0].requests_today, 1);
    assert.ok(listed.json.data[0].tokens_today > 0, JSON.stringify(listed.json.data[0]));
    const refused = await post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT });
    assert.equal(refused.status, 429);
  } finally {
    await gw.close();
  }
});

Deno.test("a user key's monthly token budget holds across days and resets on the 1st (Pacific)", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    // Mid-month, so that the next day is in the same month.
    gw.clock.t = Date.UTC(2026, 11, 10, 20);
    const apiKey = await userKey(gw, { tokens_per_month: 5, requests_per_month: 100 });
    const first = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { ...CHAT, messages: [{ role: "user", content: "one two three four five six" }] },
    });
    assert.equal(first.status, 200);
    const refused = await post<OpenAiErrorBody>(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: CHAT,
    });
    assert.equal(refused.status, 429);
    assert.equal(refused.json.error.code, "tokens_per_month_exceeded");
    const expected = Math.ceil((nextPacificMonthStart(gw.clock.now()) - gw.clock.now()) / 1000);
    assert.equal(Number(refused.headers.get("retry-after")), expected);
    // A new day is not a new month.
    gw.clock.t = nextPacificMidnight(gw.clock.now());
    const nextDay = await post<OpenAiErrorBody>(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: CHAT,
    });
    assert.equal(nextDay.json.error.code, "tokens_per_month_exceeded");
    await gw.app.drain();
    const listed = await gw.admin<{ data: Record<string, number>[] }>(
      "GET",
      "/admin/api/user-keys",
    );
    const row = listed.json.data[0];
    assert.equal(row.tokens_today, 0, "a new day");
    assert.ok(row.tokens_this_month >= 6);
    assert.equal(row.requests_this_month, 1);
    assert.equal(row.tokens_per_month, 5);
    // Raising the budget lets the key through at once (the admin change reaches the limiter).
    const raised = await gw.admin<Record<string, number>>(
      "PATCH",
      `/admin/api/user-keys/${listed.json.data[0].id}`,
      { tokens_per_month: 1000 },
    );
    assert.equal(raised.json.tokens_per_month, 1000);
    assert.ok(raised.json.tokens_this_month >= 6, "the answer carries the month's usage");
    assert.equal((await post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT })).status, 200);
    // The next month starts from zero.
    await gw.admin("PATCH", `/admin/api/user-keys/${listed.json.data[0].id}`, {
      tokens_per_month: 5,
    });
    gw.clock.t = nextPacificMonthStart(gw.clock.now());
    assert.equal((await post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT })).status, 200);
  } finally {
    await gw.close();
  }
});

Deno.test("allowed models and expiry are enforced with 403s; /v1/models lists only allowed models", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const expires = new Date(gw.clock.now() + 3_600_000).toISOString();
    const apiKey = await userKey(gw, { models: ["gemini-2.5-flash-*"], expires_at: expires });
    const client = gw.openai(apiKey);
    const ok = await client.chat.completions.create({
      model: "gemini-2.5-flash-lite",
      messages: [{ role: "user", content: "x" }],
    });
    assert.equal(ok.choices[0].message.content, "Echo: x");
    await assert.rejects(
      client.chat.completions.create({
        model: "gemini-2.5-pro",
        messages: [{ role: "user", content: "x" }],
      }),
      (e: unknown) =>
        e instanceof OpenAI.APIError && e.status === 403 && e.code === "model_not_allowed" &&
        e.param === "model",
    );
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [
      "gemini-2.5-flash-lite",
      "gemini-2.5-flash-image",
      "gemini-2.5-flash-preview-tts",
    ]);
    gw.clock.advance(3_600_000);
    await assert.rejects(
      client.chat.completions.create({
        model: "gemini-2.5-flash-lite",
        messages: [{ role: "user", content: "x" }],
      }),
      (e: unknown) =>
        e instanceof OpenAI.APIError && e.status === 403 && e.code === "api_key_expired",
    );
    assert.equal(generateCalls(gw), 1, "refused requests never went upstream");
  } finally {
    await gw.close();
  }
});

Deno.test("a user key's allowed addresses are enforced on /v1 and the native API, with 403s", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const created = await gw.admin<{ id: string; key: string; allowed_ips: string[] }>(
      "POST",
      "/admin/api/user-keys",
      { name: "office", allowed_ips: ["203.0.113.0/24", "2001:db8::/32"] },
    );
    assert.equal(created.status, 201);
    assert.deepEqual(created.json.allowed_ips, ["203.0.113.0/24", "2001:db8::/32"]);
    const apiKey = created.json.key;
    // The tests call from 127.0.0.1: not in the list.
    const chat = await post<OpenAiErrorBody>(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: CHAT,
    });
    assert.equal(chat.status, 403);
    assert.equal(chat.json.error.code, "ip_not_allowed");
    assert.match(chat.json.error.message, /127\.0\.0\.1/);
    const models = await fetch(`${gw.url}/v1/models`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    assert.equal(models.status, 403);
    await models.body?.cancel();
    const native = await post<{ error: { code: number; status: string } }>(
      `${gw.url}/v1beta/models/gemini-2.5-flash:generateContent`,
      { apiKey, body: { contents: [{ role: "user", parts: [{ text: "hi" }] }] } },
    );
    assert.equal(native.status, 403);
    assert.equal(native.json.error.status, "PERMISSION_DENIED");
    assert.equal(generateCalls(gw), 0, "refused requests never went upstream");
    const opened = await gw.admin<{ allowed_ips: string[] }>(
      "PATCH",
      `/admin/api/user-keys/${created.json.id}`,
      { allowed_ips: ["127.0.0.0/8", "::1"] },
    );
    assert.deepEqual(opened.json.allowed_ips, ["127.0.0.0/8", "::1"]);
    assert.equal((await post(`${gw.url}/v1/chat/completions`, { apiKey, body: CHAT })).status, 200);
    const cleared = await gw.admin<{ allowed_ips: string[] | null }>(
      "PATCH",
      `/admin/api/user-keys/${created.json.id}`,
      { allowed_ips: null },
    );
    assert.equal(cleared.json.allowed_ips, null);
    // Entries that are not addresses or ranges, and an empty list, are refused.
    for (const bad of [["10.0.0.0/33"], ["example.com"], []]) {
      const res = await gw.admin<OpenAiErrorBody>(
        "PATCH",
        `/admin/api/user-keys/${created.json.id}`,
        { allowed_ips: bad },
      );
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.match(String(res.json.error.param), /^allowed_ips/);
    }
  } finally {
    await gw.close();
  }
});

Deno.test("behind a trusted proxy the allow-list sees the forwarded client; otherwise the header is ignored", async () => {
  for (const trustProxy of ["0", "1"]) {
    const gw = await startGateway({
      keys: { "AIzaGood-key-0001": OK },
      env: { TRUST_PROXY: trustProxy },
    });
    try {
      const created = await gw.admin<{ key: string }>("POST", "/admin/api/user-keys", {
        name: "office",
        allowed_ips: ["203.0.113.0/24"],
      });
      const apiKey = created.json.key;
      // The proxy appends the address it was reached from; what the client wrote comes before.
      const forwarded = { "x-forwarded-for": "198.51.100.9, 203.0.113.7" };
      const inside = await post(`${gw.url}/v1/chat/completions`, {
        apiKey,
        body: CHAT,
        headers: forwarded,
      });
      assert.equal(inside.status, trustProxy === "1" ? 200 : 403, `TRUST_PROXY=${trustProxy}`);
      // A client naming an allowed address itself, through the proxy, is not believed.
      const spoofed = await post(`${gw.url}/v1/chat/completions`, {
        apiKey,
        body: CHAT,
        headers: { "x-forwarded-for": "203.0.113.7, 198.51.100.9" },
      });
      assert.equal(spoofed.status, 403);
    } finally {
      await gw.close();
    }
  }
});

Deno.test("user-key limits are validated and shown by the admin API", async () => {
  const gw = await startGateway({});
  try {
    const bad = await gw.admin<OpenAiErrorBody>("POST", "/admin/api/user-keys", {
      name: "x",
      max_concurrency: 0,
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "max_concurrency");
    const badModel = await gw.admin<OpenAiErrorBody>("POST", "/admin/api/user-keys", {
      name: "x",
      models: ["gem*ini"],
    });
    assert.equal(badModel.status, 400);
    const created = await gw.admin<{ id: string; tokens_per_day: number }>(
      "POST",
      "/admin/api/user-keys",
      { name: "x", tokens_per_day: 1000, max_concurrency: 2, models: ["a"], expires_at: null },
    );
    assert.equal(created.json.tokens_per_day, 1000);
    for (const field of ["requests_per_day", "tokens_per_month", "requests_per_month"]) {
      const zero = await gw.admin<OpenAiErrorBody>(
        "PATCH",
        `/admin/api/user-keys/${created.json.id}`,
        {
          [field]: 0,
        },
      );
      assert.equal(zero.status, 400, field);
      assert.equal(zero.json.error.param, field);
    }
    const budgets = await gw.admin<Record<string, number | null>>(
      "PATCH",
      `/admin/api/user-keys/${created.json.id}`,
      { requests_per_day: 50, requests_per_month: 900 },
    );
    assert.deepEqual(
      [budgets.json.tokens_per_day, budgets.json.requests_per_day, budgets.json.tokens_per_month],
      [1000, 50, null],
      "a patch changes only the fields it names",
    );
    assert.equal(budgets.json.requests_per_month, 900);
    const patched = await gw.admin<{ max_concurrency: number | null; models: string[] | null }>(
      "PATCH",
      `/admin/api/user-keys/${created.json.id}`,
      { max_concurrency: null, models: null },
    );
    assert.deepEqual([patched.json.max_concurrency, patched.json.models], [null, null]);
  } finally {
    await gw.close();
  }
});
