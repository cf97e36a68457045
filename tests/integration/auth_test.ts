/**
 * Authentication and limits: user keys on /v1 (missing, wrong, disabled, revoked across isolates,
 * rotated with and without a grace period, RPM), and the admin API's password.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { FakeClock, kvText, post, startGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const BODY = { model: "gemini-2.5-flash", messages: [{ role: "user", content: "x" }] };

Deno.test("requests without a valid user key get 401 in OpenAI's shape and never reach upstream", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const endpoint = `${gw.url}/v1/chat/completions`;
    const missing = await post(endpoint, { body: BODY });
    assert.equal(missing.status, 401);
    assert.equal(missing.json.error.type, "authentication_error");
    assert.equal(missing.json.error.code, "missing_api_key");
    const wrong = await post(endpoint, {
      apiKey: "sk-this-is-not-a-real-key-000000000000000",
      body: BODY,
    });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error.code, "invalid_api_key");
    const gemini = await post(endpoint, { apiKey: "AIzaGood-key-0001", body: BODY });
    assert.equal(gemini.status, 401, "a Gemini key is not a user key");
    const models = await fetch(`${gw.url}/v1/models`);
    assert.equal(models.status, 401);
    await models.body?.cancel();
    assert.equal(gw.fake.requests.length, 0);
  } finally {
    await gw.close();
  }
});

Deno.test("user keys are sk- secrets shown once; listings never contain the secret", async () => {
  const gw = await startGateway({});
  try {
    const created = await gw.admin<{ id: string; key: string; prefix: string; rpm: number | null }>(
      "POST",
      "/admin/api/user-keys",
      { name: "phone app", rpm: 30 },
    );
    assert.equal(created.status, 201);
    assert.match(created.json.key, /^sk-[A-Za-z0-9_-]{43}$/);
    assert.equal(created.json.rpm, 30);
    const list = await gw.admin<{ data: { id: string; name: string; prefix: string }[] }>(
      "GET",
      "/admin/api/user-keys",
    );
    assert.equal(list.json.data.length, 1);
    assert.equal(list.json.data[0].name, "phone app");
    assert.ok(!JSON.stringify(list.json).includes(created.json.key.slice(8, 30)));
    assert.ok(created.json.key.startsWith(list.json.data[0].prefix.split("…")[0]));
    const bad = await gw.admin("POST", "/admin/api/user-keys", { name: "", rpm: -1 });
    assert.equal(bad.status, 400);
  } finally {
    await gw.close();
  }
});

Deno.test("disabling or deleting a user key takes effect at once on the same isolate", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const created = await gw.admin<{ id: string; key: string }>("POST", "/admin/api/user-keys", {
      name: "a",
    });
    const client = gw.openai(created.json.key);
    await client.chat.completions.create(BODY as OpenAI.ChatCompletionCreateParamsNonStreaming);
    await gw.admin("PATCH", `/admin/api/user-keys/${created.json.id}`, { enabled: false });
    await assert.rejects(
      client.chat.completions.create(BODY as OpenAI.ChatCompletionCreateParamsNonStreaming),
      (e: unknown) => e instanceof OpenAI.AuthenticationError && /disabled/.test(e.message),
    );
    await gw.admin("PATCH", `/admin/api/user-keys/${created.json.id}`, { enabled: true });
    await client.chat.completions.create(BODY as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.equal((await gw.admin("DELETE", `/admin/api/user-keys/${created.json.id}`)).status, 204);
    await assert.rejects(
      client.chat.completions.create(BODY as OpenAI.ChatCompletionCreateParamsNonStreaming),
      (e: unknown) => e instanceof OpenAI.AuthenticationError,
    );
    assert.equal((await gw.admin("DELETE", `/admin/api/user-keys/${created.json.id}`)).status, 404);
  } finally {
    await gw.close();
  }
});

Deno.test("a key revoked on one isolate is refused by another isolate within seconds", async () => {
  const clock = new FakeClock();
  const a = await startGateway({ keys: { "AIzaGood-key-0001": OK }, clock });
  const b = await startGateway({ fake: a.fake, kv: a.kv, clock });
  try {
    const created = await a.admin<{ id: string; key: string }>("POST", "/admin/api/user-keys", {
      name: "x",
    });
    const viaB = b.openai(created.json.key);
    await viaB.chat.completions.create(BODY as OpenAI.ChatCompletionCreateParamsNonStreaming);
    await a.admin("DELETE", `/admin/api/user-keys/${created.json.id}`);
    clock.advance(6_000);
    await assert.rejects(
      viaB.chat.completions.create(BODY as OpenAI.ChatCompletionCreateParamsNonStreaming),
      (e: unknown) => e instanceof OpenAI.AuthenticationError,
    );
  } finally {
    await b.close();
    await a.close();
  }
});

interface RotatedView {
  id: string;
  key: string;
  prefix: string;
  rpm: number | null;
  rotated_at: string | null;
  previous_valid_until: string | null;
  usage: { requests: number };
}

Deno.test("rotating a user key gives it a new secret and keeps its id, limits and usage; the old secret stops at once", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const created = await gw.admin<RotatedView>("POST", "/admin/api/user-keys", {
      name: "leaked",
      rpm: 50,
    });
    const old = created.json.key;
    assert.equal(
      (await post(`${gw.url}/v1/chat/completions`, { apiKey: old, body: BODY })).status,
      200,
    );
    // No body at all is fine: no grace period.
    const rotated = await gw.admin<RotatedView>(
      "POST",
      `/admin/api/user-keys/${created.json.id}/rotate`,
    );
    assert.equal(rotated.status, 200, JSON.stringify(rotated.json));
    const fresh = rotated.json.key;
    assert.match(fresh, /^sk-[A-Za-z0-9_-]{43}$/);
    assert.notEqual(fresh, old);
    assert.equal(rotated.json.id, created.json.id);
    assert.equal(rotated.json.rpm, 50);
    assert.equal(rotated.json.usage.requests, 1, "usage stays with the key");
    assert.equal(rotated.json.previous_valid_until, null);
    assert.ok(rotated.json.rotated_at);
    assert.ok(fresh.startsWith(rotated.json.prefix.split("…")[0]));
    const refused = await post(`${gw.url}/v1/chat/completions`, { apiKey: old, body: BODY });
    assert.equal(refused.status, 401);
    assert.equal(refused.json.error.code, "invalid_api_key");
    assert.equal(
      (await post(`${gw.url}/v1/chat/completions`, { apiKey: fresh, body: BODY })).status,
      200,
    );
    // A second rotation retires the first rotated secret too, and the list shows one key.
    const again = await gw.admin<RotatedView>(
      "POST",
      `/admin/api/user-keys/${created.json.id}/rotate`,
      {},
    );
    assert.equal(
      (await post(`${gw.url}/v1/chat/completions`, { apiKey: fresh, body: BODY })).status,
      401,
    );
    assert.equal(
      (await post(`${gw.url}/v1/chat/completions`, { apiKey: again.json.key, body: BODY })).status,
      200,
    );
    const list = await gw.admin<{ data: RotatedView[] }>("GET", "/admin/api/user-keys");
    assert.deepEqual(list.json.data.map((k) => [k.id, k.usage.requests]), [[created.json.id, 3]]);
    // Deleting the key deletes its aliases: nothing of it is left in KV.
    assert.equal((await gw.admin("DELETE", `/admin/api/user-keys/${created.json.id}`)).status, 204);
    for await (const e of gw.kv.list({ prefix: ["uk_alias"] })) assert.fail(`left: ${e.key}`);
    assert.equal(
      (await post(`${gw.url}/v1/chat/completions`, { apiKey: again.json.key, body: BODY })).status,
      401,
    );
  } finally {
    await gw.close();
  }
});

Deno.test("a rotation with a grace period keeps the old secret working until then, on every isolate", async () => {
  const clock = new FakeClock();
  const a = await startGateway({ keys: { "AIzaGood-key-0001": OK }, clock });
  const b = await startGateway({ fake: a.fake, kv: a.kv, clock });
  try {
    const created = await a.admin<RotatedView>("POST", "/admin/api/user-keys", { name: "app" });
    const old = created.json.key;
    assert.equal(
      (await post(`${b.url}/v1/chat/completions`, { apiKey: old, body: BODY })).status,
      200,
    );
    const rotated = await a.admin<RotatedView>(
      "POST",
      `/admin/api/user-keys/${created.json.id}/rotate`,
      { grace_seconds: 3600 },
    );
    assert.equal(
      rotated.json.previous_valid_until,
      new Date(clock.now() + 3_600_000).toISOString(),
    );
    for (const apiKey of [old, rotated.json.key]) {
      for (const gw of [a, b]) {
        assert.equal(
          (await post(`${gw.url}/v1/chat/completions`, { apiKey, body: BODY })).status,
          200,
        );
      }
    }
    // The old secret ends with the grace period, even from a cached lookup.
    clock.advance(3_600_000);
    for (const gw of [a, b]) {
      const old1 = await post(`${gw.url}/v1/chat/completions`, { apiKey: old, body: BODY });
      assert.equal(old1.status, 401);
      const fresh = await post(`${gw.url}/v1/chat/completions`, {
        apiKey: rotated.json.key,
        body: BODY,
      });
      assert.equal(fresh.status, 200);
    }
    const list = await a.admin<{ data: RotatedView[] }>("GET", "/admin/api/user-keys");
    assert.equal(list.json.data[0].previous_valid_until, null, "the grace period is over");
    // Bad grace periods and unknown keys are refused in the API's error shape.
    const tooLong = await a.admin<{ error: { param: string } }>(
      "POST",
      `/admin/api/user-keys/${created.json.id}/rotate`,
      { grace_seconds: 8 * 86400 },
    );
    assert.equal(tooLong.status, 400);
    assert.equal(tooLong.json.error.param, "grace_seconds");
    const missing = await a.admin<{ error: { code: string } }>(
      "POST",
      "/admin/api/user-keys/uk_nope/rotate",
    );
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.code, "user_key_not_found");
  } finally {
    await b.close();
    await a.close();
  }
});

Deno.test("a user key's rpm limit answers 429 with Retry-After, shared across isolates", async () => {
  const clock = new FakeClock();
  const a = await startGateway({ keys: { "AIzaGood-key-0001": OK }, clock });
  const b = await startGateway({ fake: a.fake, kv: a.kv, clock });
  try {
    const apiKey = await a.createUserKey({ rpm: 3 });
    const statuses: number[] = [];
    for (const gw of [a, b, a, b]) {
      const res = await post(`${gw.url}/v1/chat/completions`, { apiKey, body: BODY });
      statuses.push(res.status);
      if (res.status === 429) {
        assert.equal(res.json.error.type, "rate_limit_error");
        assert.ok(Number(res.headers.get("retry-after")) >= 1);
      }
    }
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    clock.advance(61_000);
    assert.equal((await post(`${a.url}/v1/chat/completions`, { apiKey, body: BODY })).status, 200);
  } finally {
    await b.close();
    await a.close();
  }
});

Deno.test("concurrent requests never overshoot a user key's rpm limit", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const apiKey = await gw.createUserKey({ rpm: 10 });
    const results = await Promise.all(
      Array.from(
        { length: 30 },
        () => post(`${gw.url}/v1/chat/completions`, { apiKey, body: BODY }),
      ),
    );
    const ok = results.filter((r) => r.status === 200).length;
    assert.equal(ok, 10);
    assert.equal(results.filter((r) => r.status === 429).length, 20);
  } finally {
    await gw.close();
  }
});

Deno.test("the admin API requires the admin password", async () => {
  const gw = await startGateway({});
  try {
    for (const auth of [undefined, "Bearer wrong-password", "Basic abc"]) {
      const res = await fetch(`${gw.url}/admin/api/keys`, {
        headers: auth ? { authorization: auth } : {},
      });
      assert.equal(res.status, 401);
      const body = await res.json();
      assert.match(body.error.message, /Admin authentication required/);
    }
    assert.equal((await gw.admin("GET", "/admin/api/keys")).status, 200);
  } finally {
    await gw.close();
  }
});

Deno.test("an admin password with spaces works as a bearer token", async () => {
  const password = "correct horse battery staple";
  const gw = await startGateway({ env: { ADMIN_PASSWORD: password } });
  try {
    const res = await fetch(`${gw.url}/admin/api/keys`, {
      headers: { authorization: `Bearer ${password}` },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const wrong = await fetch(`${gw.url}/admin/api/keys`, {
      headers: { authorization: "Bearer correct horse" },
    });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
  } finally {
    await gw.close();
  }
});

Deno.test("on Deno Deploy without ADMIN_PASSWORD the admin API is locked and says how to unlock it", async () => {
  const gw = await startGateway({ env: { DENO_DEPLOY: "true", ADMIN_PASSWORD: "" } });
  try {
    assert.equal(gw.report.generatedAdminPassword, null);
    const res = await gw.admin<{ error: { message: string } }>("GET", "/admin/api/keys");
    assert.equal(res.status, 503);
    assert.match(res.json.error.message, /ADMIN_PASSWORD is not set/);
  } finally {
    await gw.close();
  }
});

Deno.test("a generated local admin password works and is stored only as a hash", async () => {
  const gw = await startGateway({ env: { ADMIN_PASSWORD: "" } });
  try {
    const password = gw.report.generatedAdminPassword;
    assert.ok(password && password.length >= 20);
    const res = await fetch(`${gw.url}/admin/api/settings`, {
      headers: { authorization: `Bearer ${password}` },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.ok(!(await kvText(gw.kv)).includes(password));
  } finally {
    await gw.close();
  }
});
