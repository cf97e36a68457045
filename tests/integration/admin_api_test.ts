/**
 * The admin API for Gemini keys, stats and settings: batch add with duplicates and rejections,
 * masking, patch validation, delete, usage statistics.
 */
import assert from "node:assert/strict";
import { ADMIN_PASSWORD, post, startGateway } from "./harness.ts";
import { loginHttp } from "../e2e/http.ts";
import { translator } from "../../lib/ui/i18n.ts";

async function loginCookie(url: string): Promise<string> {
  return (await loginHttp(fetch, url)).cookie;
}

interface KeyView {
  id: string;
  masked: string;
  label: string;
  weight: number;
  enabled: boolean;
  status: string;
}

Deno.test("keys are added in a batch with duplicates counted and bad tokens rejected, and shown masked", async () => {
  const gw = await startGateway({});
  try {
    const secret = "AIzaSyBatch-key-0000000000000000000001";
    const res = await gw.admin<
      { added: number; duplicates: number; rejected: { reason: string }[]; data: KeyView[] }
    >(
      "POST",
      "/admin/api/keys",
      {
        keys: [secret, "AQ.Ab8RNBatch-auth-key-2\nAIzaSyBatch-key-0000000000000000000001", "short"],
        weight: 2,
      },
    );
    assert.equal(res.status, 201);
    assert.equal(res.json.added, 2);
    assert.equal(res.json.duplicates, 1);
    assert.equal(res.json.rejected.length, 1);
    assert.match(res.json.rejected[0].reason, /too short/);
    assert.equal(res.json.data[0].masked, "AIza…0001");
    assert.equal(res.json.data[0].weight, 2);
    assert.ok(!JSON.stringify(res.json).includes(secret));

    const again = await gw.admin<{ added: number; duplicates: number }>("POST", "/admin/api/keys", {
      keys: [secret],
    });
    assert.equal(again.status, 200);
    assert.deepEqual([again.json.added, again.json.duplicates], [0, 1]);

    const list = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
    assert.equal(list.json.data.length, 2);
    assert.ok(!JSON.stringify(list.json).includes(secret));
    assert.ok(list.json.data.every((k) => k.status === "active" && k.enabled));
  } finally {
    await gw.close();
  }
});

Deno.test("a batch larger than one KV read finds every key stored already, and adds the others once", async () => {
  const gw = await startGateway({});
  try {
    const key = (i: number) => `AIzaSyMany-key-${String(i).padStart(22, "0")}`;
    // Keys 0..11 first (more than one getMany holds), then 0..24 with key 24 twice.
    const first = await gw.admin<{ added: number; duplicates: number }>("POST", "/admin/api/keys", {
      keys: Array.from({ length: 12 }, (_, i) => key(i)),
    });
    assert.deepEqual([first.json.added, first.json.duplicates], [12, 0]);
    const all = [...Array.from({ length: 25 }, (_, i) => key(i)), key(24)];
    const second = await gw.admin<{ added: number; duplicates: number }>(
      "POST",
      "/admin/api/keys",
      {
        keys: all,
      },
    );
    assert.deepEqual([second.json.added, second.json.duplicates], [13, 13]);
    const list = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
    const masked = list.json.data.map((k) => k.masked).sort();
    assert.deepEqual(
      masked,
      Array.from({ length: 25 }, (_, i) => `AIza…${String(i).padStart(4, "0")}`).sort(),
    );
  } finally {
    await gw.close();
  }
});

Deno.test("patching validates fields, and deleting removes the key and allows adding it again", async () => {
  const gw = await startGateway({});
  try {
    const secret = "AIzaSyPatch-key-00000000000000000000001";
    const added = await gw.admin<{ data: KeyView[] }>("POST", "/admin/api/keys", {
      keys: [secret],
    });
    const id = added.json.data[0].id;
    const patched = await gw.admin<KeyView>("PATCH", `/admin/api/keys/${id}`, {
      label: "main",
      weight: 5,
      enabled: false,
    });
    assert.equal(patched.status, 200);
    assert.deepEqual([patched.json.label, patched.json.weight, patched.json.enabled], [
      "main",
      5,
      false,
    ]);
    const badWeight = await gw.admin<{ error: { param: string } }>(
      "PATCH",
      `/admin/api/keys/${id}`,
      { weight: 0 },
    );
    assert.equal(badWeight.status, 400);
    assert.equal(badWeight.json.error.param, "weight");
    const unknown = await gw.admin("PATCH", `/admin/api/keys/${id}`, { colour: "red" });
    assert.equal(unknown.status, 400);
    assert.equal((await gw.admin("PATCH", "/admin/api/keys/k_missing", { weight: 2 })).status, 404);
    assert.equal((await gw.admin("DELETE", `/admin/api/keys/${id}`)).status, 204);
    assert.equal((await gw.admin("DELETE", `/admin/api/keys/${id}`)).status, 404);
    const readded = await gw.admin<{ added: number }>("POST", "/admin/api/keys", {
      keys: [secret],
    });
    assert.equal(readded.json.added, 1);
  } finally {
    await gw.close();
  }
});

Deno.test("stats count requests, tokens and errors per key, model, user and minute", async () => {
  const gw = await startGateway({
    keys: { "AIzaGood-key-0001": { kind: "ok" }, "AIzaBad-key-00002": { kind: "invalid" } },
  });
  try {
    const client = gw.openai(await gw.createUserKey({ name: "stats-user" }));
    for (let i = 0; i < 4; i++) {
      await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "one two" }],
      });
    }
    const s = await client.chat.completions.create({
      model: "gemini-2.5-pro",
      messages: [{ role: "user", content: "streamed words here" }],
      stream: true,
    });
    for await (const _ of s) { /* drain */ }
    await gw.app.drain();
    type Row = {
      requests: number;
      errors: number;
      attempts: number;
      input_tokens: number;
      output_tokens: number;
    };
    const stats = await gw.admin<{
      totals: Row;
      keys: (Row & { masked: string })[];
      models: (Row & { model: string })[];
      users: (Row & { name: string; deleted: boolean })[];
      minutes: (Row & { t: string })[];
      hours: Row[];
    }>("GET", "/admin/api/stats");
    assert.equal(stats.status, 200);
    assert.equal(stats.json.totals.requests, 5);
    const good = stats.json.keys.find((k) => k.masked === "AIza…0001")!;
    const bad = stats.json.keys.find((k) => k.masked === "AIza…0002")!;
    assert.equal(good.requests, 5);
    assert.equal(bad.errors, 1);
    assert.equal(bad.requests, 0);
    const flash = stats.json.models.find((m) => m.model === "gemini-2.5-flash")!;
    assert.equal(flash.requests, 4);
    assert.equal(flash.input_tokens, 8);
    assert.equal(stats.json.models.find((m) => m.model === "gemini-2.5-pro")!.requests, 1);
    assert.equal(stats.json.users[0].name, "stats-user");
    assert.equal(stats.json.users[0].deleted, false);
    assert.equal(stats.json.users[0].requests, 5);
    assert.equal(stats.json.minutes.length, 60);
    assert.equal(stats.json.minutes.at(-1)!.requests, 5);
    assert.equal(stats.json.hours.length, 24);
    assert.equal(stats.json.hours.at(-1)!.requests, 5);
    // Attempts and errors are in every counter set: the invalid key's one failed attempt too.
    assert.equal(stats.json.totals.attempts, 6);
    assert.equal(stats.json.totals.errors, 1);
    assert.equal(stats.json.users[0].attempts, 6);
    assert.equal(stats.json.models.reduce((n, m) => n + m.errors, 0), 1);

    // An edited key or user key answers with its usage, as the list shows it (the admin UI puts
    // the answer in place of the row).
    const keys = await gw.admin<{ data: (KeyView & { usage: unknown })[] }>(
      "GET",
      "/admin/api/keys",
    );
    const listed = keys.json.data.find((k) => k.masked === "AIza…0001")!;
    const patched = await gw.admin<{ usage: unknown }>("PATCH", `/admin/api/keys/${listed.id}`, {
      label: "renamed",
    });
    assert.deepEqual(patched.json.usage, listed.usage);
    assert.equal((listed.usage as { requests: number }).requests, 5);
    const users = await gw.admin<{ data: { id: string; usage: unknown; tokens_today: number }[] }>(
      "GET",
      "/admin/api/user-keys",
    );
    const user = users.json.data[0];
    const edited = await gw.admin<{ usage: unknown; tokens_today: number }>(
      "PATCH",
      `/admin/api/user-keys/${user.id}`,
      { name: "renamed" },
    );
    assert.deepEqual(edited.json.usage, user.usage);
    assert.ok(user.tokens_today > 0);
    assert.equal(edited.json.tokens_today, user.tokens_today);

    // A deleted user key's usage stays in the stats, under the name it had, marked deleted.
    assert.equal((await gw.admin("DELETE", `/admin/api/user-keys/${user.id}`)).status, 204);
    const after = await gw.admin<{
      totals: Row;
      users: (Row & { id: string; name: string | null; deleted: boolean })[];
    }>("GET", "/admin/api/stats");
    assert.deepEqual(
      after.json.users.map((u) => [u.id, u.name, u.deleted, u.requests]),
      [[user.id, "renamed", true, 5]],
    );
    assert.equal(after.json.totals.requests, 5);
  } finally {
    await gw.close();
  }
});

Deno.test("failed attempts are counted by cause: per-minute and per-day 429s, refused keys, 5xx, empty answers", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaRate-key-00001": { kind: "rate_limited" },
      "AIzaDaily-key-0002": { kind: "rate_limited", perDay: true },
      "AIzaBad-key-000003": { kind: "invalid" },
      "AIza503-key-000004": { kind: "unavailable" },
      "AIzaEmpty-key-0005": { kind: "empty" },
      "AIzaGood-key-00006": { kind: "ok" },
    },
  });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { maxAttempts: 10 });
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 6; i++) {
      await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: `hello ${i}` }],
      });
    }
    await gw.app.drain();
    type Stats = {
      totals: { errors: number };
      errors_by_cause: { last_24h: Record<string, number>; total: Record<string, number> };
    };
    const stats = (await gw.admin<Stats>("GET", "/admin/api/stats")).json;
    const day = stats.errors_by_cause.last_24h;
    for (
      const cause of ["rate_limited", "daily_quota", "invalid_key", "server_error", "empty_answer"]
    ) {
      assert.ok(day[cause] >= 1, `${cause}: ${JSON.stringify(day)}`);
    }
    assert.equal(day.timeout + day.network + day.refused, 0);
    const sum = Object.values(day).reduce((a, b) => a + b, 0);
    assert.equal(sum, stats.totals.errors, "every failed attempt has its cause");
    assert.deepEqual(stats.errors_by_cause.total, day);
    // A day later the 24-hour view is empty; the totals stay.
    gw.clock.advance(86_400_000);
    const later = (await gw.admin<Stats>("GET", "/admin/api/stats")).json;
    assert.equal(Object.values(later.errors_by_cause.last_24h).reduce((a, b) => a + b, 0), 0);
    assert.deepEqual(later.errors_by_cause.total, day);
    // Two days later the roll-up job deletes the hour buckets.
    gw.clock.advance(2 * 86_400_000);
    const run = await gw.admin<{ report: { causeBucketsDeleted: number } }>(
      "POST",
      "/admin/api/jobs/usage-rollup",
    );
    assert.ok(run.json.report.causeBucketsDeleted >= 5, JSON.stringify(run.json));
    const after = (await gw.admin<Stats>("GET", "/admin/api/stats")).json;
    assert.deepEqual(after.errors_by_cause.total, day);
  } finally {
    await gw.close();
  }
});

Deno.test("Google refusing the gateway's location raises a dashboard alert and blames no key", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaHere-key-00001": { kind: "location" },
      "AIzaHere-key-00002": { kind: "location" },
    },
  });
  try {
    const apiKey = await gw.createUserKey();
    for (let i = 0; i < 3; i++) {
      const res = await post(`${gw.url}/v1/chat/completions`, {
        apiKey,
        body: { model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }] },
      });
      assert.equal(res.status, 400);
      assert.match(res.json.error.message, /User location is not supported/);
      assert.match(res.json.error.message, /region this gateway runs in/);
    }
    const generate = gw.fake.requests.filter((r) => r.path.includes("generateContent"));
    assert.equal(generate.length, 3, "one attempt per request: no key is burned on it");
    const keys = await gw.admin<{ data: { status: string }[] }>("GET", "/admin/api/keys");
    assert.deepEqual(keys.json.data.map((k) => k.status), ["active", "active"]);
    type Alerts = { data: { kind: string; message: string; count: number }[] };
    const alerts = await gw.admin<Alerts>("GET", "/admin/api/alerts");
    assert.deepEqual(alerts.json.data.map((a) => [a.kind, a.count]), [["location", 1]]);
    assert.match(alerts.json.data[0].message, /User location is not supported/);
    // The dashboard says what happened and what to do.
    const page = await fetch(`${gw.url}/admin`, {
      headers: { cookie: await loginCookie(gw.url) },
    });
    const html = await page.text();
    assert.match(html, /Google refuses this gateway.s location/);
    assert.match(html, /data-alert="location"/);
    // Dismissed, it is gone; it comes back with the next refusal.
    assert.equal((await gw.admin("DELETE", "/admin/api/alerts/location")).status, 204);
    assert.deepEqual((await gw.admin<Alerts>("GET", "/admin/api/alerts")).json.data, []);
    assert.equal((await gw.admin("DELETE", "/admin/api/alerts/location")).status, 404);
    assert.equal((await gw.admin("DELETE", "/admin/api/alerts/nope")).status, 404);
    await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { model: "gemini-2.5-flash", messages: [{ role: "user", content: "again" }] },
    });
    assert.equal((await gw.admin<Alerts>("GET", "/admin/api/alerts")).json.data.length, 1);
    // A day after the last refusal the alert has cleared itself.
    gw.clock.advance(86_400_000);
    assert.deepEqual((await gw.admin<Alerts>("GET", "/admin/api/alerts")).json.data, []);
  } finally {
    await gw.close();
  }
});

Deno.test("free-tier keys refused for the deployment's country fail over to a billed key, with an alert", async () => {
  // More refused keys than the upstream-error limit (3) of one request: they are not errors.
  const gw = await startGateway({
    keys: {
      "AIzaFree-key-00001": { kind: "free_tier_country" },
      "AIzaFree-key-00002": { kind: "free_tier_country" },
      "AIzaFree-key-00003": { kind: "free_tier_country" },
      "AIzaFree-key-00004": { kind: "free_tier_country" },
      "AIzaPaid-key-00005": { kind: "ok" },
    },
  });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { maxAttempts: 10 });
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 6; i++) {
      const reply = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: `hi ${i}` }],
      });
      assert.match(reply.choices[0].message.content ?? "", /Echo/);
    }
    const keys = await gw.admin<{ data: { masked: string; status: string }[] }>(
      "GET",
      "/admin/api/keys",
    );
    assert.ok(keys.json.data.every((k) => k.status !== "invalid"), "the free key is not condemned");
    // Each free key rests an hour for the model, for its location (not as an error streak).
    const free = keys.json.data.filter((k) => !k.masked.endsWith("0005")) as unknown as {
      status: string;
      status_cause: string;
    }[];
    assert.equal(free.length, 4);
    for (const k of free) assert.deepEqual([k.status, k.status_cause], ["cooldown", "location"]);
    const alerts = await gw.admin<{ data: { kind: string }[] }>("GET", "/admin/api/alerts");
    assert.deepEqual(alerts.json.data.map((a) => a.kind), ["free_tier_location"]);
  } finally {
    await gw.close();
  }
});

Deno.test("an admin body over 1 MiB is a 413 in the API's error shape", async () => {
  const gw = await startGateway({});
  try {
    const res = await fetch(`${gw.url}/admin/api/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_PASSWORD}`, "content-type": "application/json" },
      body: JSON.stringify({ keys: ["x".repeat(1024 * 1024)] }),
    });
    assert.equal(res.status, 413);
    const body = await res.json();
    assert.equal(body.error.code, "request_too_large");
    assert.match(body.error.message, /larger than 1048576 bytes/);
  } finally {
    await gw.close();
  }
});

Deno.test("settings are read with defaults and patched with validation", async () => {
  const gw = await startGateway({});
  try {
    const initial = await gw.admin<{ strategy: string; maxAttempts: number }>(
      "GET",
      "/admin/api/settings",
    );
    assert.equal(initial.json.strategy, "round_robin");
    assert.equal(initial.json.maxAttempts, 5);
    const patched = await gw.admin<{ maxAttempts: number }>("PATCH", "/admin/api/settings", {
      maxAttempts: 2,
    });
    assert.equal(patched.json.maxAttempts, 2);
    assert.equal((await gw.admin("PATCH", "/admin/api/settings", { maxAttempts: 0 })).status, 400);
    assert.equal(
      (await gw.admin("PATCH", "/admin/api/settings", { strategy: "random" })).status,
      400,
    );
    const health = await fetch(`${gw.url}/health`);
    const body = await health.json();
    assert.equal(body.status, "ok");
    assert.equal(body.kv, "ok");
  } finally {
    await gw.close();
  }
});

Deno.test("admin API answers are never cached: a new user key's secret, and errors", async () => {
  const gw = await startGateway({});
  try {
    const call = (method: string, path: string, body?: unknown) =>
      fetch(`${gw.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_PASSWORD}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const created = await call("POST", "/admin/api/user-keys", { name: "cached?" });
    assert.equal(created.status, 201);
    assert.match((await created.json()).key, /^sk-/);
    assert.equal(created.headers.get("cache-control"), "no-store");
    const missing = await call("GET", "/admin/api/user-keys/nope");
    await missing.body?.cancel();
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("cache-control"), "no-store");
  } finally {
    await gw.close();
  }
});

Deno.test("settings PATCH checks aliases like PUT /admin/api/aliases, and refuses settings KV cannot hold", async () => {
  const gw = await startGateway({});
  type Err = { error: { param: string | null; message: string } };
  try {
    const cjk = (n: number, i: number) => String(i).padStart(3, "0") + "模".repeat(n - 3);
    const big: Record<string, string> = {};
    for (let i = 0; i < 100; i++) big[cjk(128, i)] = cjk(128, i + 500);
    const bypass = await gw.admin<Err>("PATCH", "/admin/api/settings", { aliases: big });
    assert.equal(bypass.status, 400, "names that are not model ids are refused");
    assert.equal(bypass.json.error.param, "aliases");
    for (const aliases of [{ "a b": "c" }, { x: "x" }, { ok: "not valid!" }]) {
      const res = await gw.admin<Err>("PATCH", "/admin/api/settings", { aliases });
      assert.equal(res.status, 400, JSON.stringify(aliases));
      assert.equal(res.json.error.param, "aliases");
    }
    const fine = await gw.admin<{ aliases: Record<string, string> }>(
      "PATCH",
      "/admin/api/settings",
      { aliases: { fast: "gemini-2.5-flash" } },
    );
    assert.equal(fine.status, 200);
    assert.deepEqual(fine.json.aliases, { fast: "gemini-2.5-flash" });

    // A record an older version let through (the same CJK aliases) leaves little room: a change
    // that would not fit is a 400 naming the field, and nothing is written.
    const stored = await gw.kv.get<Record<string, unknown>>(["settings"]);
    await gw.kv.set(["settings"], { ...stored.value, aliases: big });
    const prompt = await gw.admin<Err>("PATCH", "/admin/api/settings", {
      promptInjection: "模".repeat(8000),
    });
    assert.equal(prompt.status, 400);
    assert.equal(prompt.json.error.param, "promptInjection");
    assert.match(prompt.json.error.message, /65536/);
    const after = await gw.admin<{ promptInjection: string; strategy: string }>(
      "PATCH",
      "/admin/api/settings",
      { strategy: "adaptive" },
    );
    assert.equal(after.status, 200);
    assert.deepEqual([after.json.promptInjection, after.json.strategy], ["", "adaptive"]);
  } finally {
    await gw.close();
  }
});

Deno.test("a key batch counts keys after splitting, and a rejected token shows little of itself", async () => {
  const gw = await startGateway({});
  type Err = { error: { param: string | null; message: string } };
  try {
    const key = (i: number) => `AIzaSyBulk-key-${String(i).padStart(22, "0")}`;
    const many = Array.from({ length: 1001 }, (_, i) => key(i)).join(",");
    const one = await gw.admin<Err>("POST", "/admin/api/keys", { keys: [many] });
    assert.equal(one.status, 400);
    assert.equal(one.json.error.param, "keys");
    assert.match(one.json.error.message, /1001/);
    const split = await gw.admin<Err>("POST", "/admin/api/keys", {
      keys: [many.slice(0, many.indexOf(key(600))), many.slice(many.indexOf(key(600)))],
    });
    assert.equal(split.status, 400);
    assert.equal(
      (await gw.admin<{ data: unknown[] }>("GET", "/admin/api/keys")).json.data.length,
      0,
    );

    const secretish = "s3cr3t\u0007pass1";
    const res = await gw.admin<{ rejected: { key: string; reason: string }[] }>(
      "POST",
      "/admin/api/keys",
      { keys: [secretish, "x".repeat(600)] },
    );
    assert.deepEqual(res.json.rejected.map((r) => r.key), [
      "… (12 characters)",
      "xxxx… (600 characters)",
    ]);
    assert.ok(!JSON.stringify(res.json).includes("pass1"));
  } finally {
    await gw.close();
  }
});

Deno.test("user-key and removed-key routes: ids that cannot be ids are 404s, models [] is refused, deletes leave nothing", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": { kind: "ok" } } });
  try {
    const long = "x".repeat(3000);
    for (
      const [method, path] of [
        ["PATCH", `/admin/api/user-keys/${long}`],
        ["POST", `/admin/api/user-keys/${long}/rotate`],
        ["DELETE", `/admin/api/user-keys/${long}`],
        ["POST", `/admin/api/removed-keys/${long}/restore`],
        ["DELETE", `/admin/api/removed-keys/${long}`],
      ]
    ) {
      const res = await gw.admin(method, path, method === "PATCH" ? { name: "x" } : undefined);
      assert.equal(res.status, 404, `${method} ${path.slice(0, 40)}`);
    }
    // An empty model list would refuse every model while looking unrestricted: null allows all.
    const empty = await gw.admin<{ error: { param: string } }>("POST", "/admin/api/user-keys", {
      name: "none",
      models: [],
    });
    assert.equal(empty.status, 400);
    assert.equal(empty.json.error.param, "models");

    // A deleted key takes its limiter state with it.
    const created = await gw.admin<{ id: string; key: string }>("POST", "/admin/api/user-keys", {
      name: "short-lived",
      rpm: 10,
    });
    const res = await post(`${gw.url}/v1/chat/completions`, {
      apiKey: created.json.key,
      body: { model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }] },
    });
    assert.equal(res.status, 200);
    assert.notEqual((await gw.kv.get(["ul", created.json.id])).value, null);
    assert.equal((await gw.admin("DELETE", `/admin/api/user-keys/${created.json.id}`)).status, 204);
    await gw.app.drain();
    assert.equal((await gw.kv.get(["ul", created.json.id])).value, null);
  } finally {
    await gw.close();
  }
});

Deno.test("the request log's CSV starts with a byte-order mark, so spreadsheets read it as UTF-8", async () => {
  const gw = await startGateway({});
  try {
    const res = await fetch(`${gw.url}/admin/api/request-log?format=csv`, {
      headers: { authorization: `Bearer ${ADMIN_PASSWORD}` },
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    assert.deepEqual([...bytes.slice(0, 3)], [0xef, 0xbb, 0xbf]);
    assert.match(new TextDecoder().decode(bytes.slice(3)), /^time,/);
  } finally {
    await gw.close();
  }
});

Deno.test("aliases: a __proto__ name and aliases that lead back to each other are refused, on both routes", async () => {
  const gw = await startGateway({});
  try {
    for (
      const aliases of [
        JSON.parse('{"__proto__":"gemini-2.5-flash","fast":"gemini-2.5-flash"}'),
        { a: "b", b: "a" },
        { a: "b", b: "c", c: "a" },
      ]
    ) {
      for (
        const [method, path, body] of [
          ["PUT", "/admin/api/aliases", { aliases }],
          ["PATCH", "/admin/api/settings", { aliases }],
        ] as const
      ) {
        const res = await fetch(`${gw.url}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${ADMIN_PASSWORD}`,
            "content-type": "application/json",
          },
          // JSON.parse made `__proto__` an own key: JSON.stringify writes it back.
          body: JSON.stringify(body),
        });
        const json = await res.json();
        assert.equal(
          res.status,
          400,
          `${method} ${JSON.stringify(aliases)}: ${JSON.stringify(json)}`,
        );
      }
    }
    assert.deepEqual((await gw.admin("GET", "/admin/api/aliases")).json, { aliases: {} });
  } finally {
    await gw.close();
  }
});

Deno.test("every field of every job's report is named in both languages of the UI", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-1": { kind: "ok" } } });
  try {
    const fields = new Set<string>();
    for (const job of ["health-check", "cleanup", "usage-rollup"]) {
      const run = await gw.admin<{ ok: boolean; report: Record<string, unknown> }>(
        "POST",
        `/admin/api/jobs/${job}`,
      );
      assert.equal(run.status, 200, job);
      for (const k of Object.keys(run.json.report ?? {})) fields.add(k);
    }
    assert.ok(fields.size >= 10, [...fields].join(", "));
    for (const lang of ["en", "zh-CN"] as const) {
      const t = translator(lang);
      for (const f of fields) {
        assert.ok(
          t.maybe(`jobs.report.${f}`),
          `add "jobs.report.${f}" (${lang}) to lib/ui/i18n.ts`,
        );
      }
    }
  } finally {
    await gw.close();
  }
});
