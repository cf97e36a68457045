/**
 * Projects and cooldowns by cause: a project's 429 rests every key of the project for that model;
 * a per-day quota parks the key (or project) until midnight America/Los_Angeles, across DST; each
 * state shows its cause, reason and end; many keys in one project are warned about.
 */
import assert from "node:assert/strict";
import { nextPacificMidnight } from "../../lib/pool/calendar.ts";
import { post, startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const MODEL = "gemini-2.5-flash";

interface KeyView {
  id: string;
  masked: string;
  project: string | null;
  status: string;
  status_cause: string | null;
  status_reason: string | null;
  status_until: string | null;
  cooldowns: { model: string; until: string; reason: string; cause: string; scope: string }[];
}

async function keys(gw: TestGateway): Promise<Map<string, KeyView>> {
  const res = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
  return new Map(res.json.data.map((k) => [k.masked, k]));
}

function ask(gw: TestGateway, apiKey: string, model = MODEL) {
  return post(`${gw.url}/v1/chat/completions`, {
    apiKey,
    body: { model, messages: [{ role: "user", content: "x" }] },
  });
}

function calls(gw: TestGateway, key: string, model = MODEL): number {
  return gw.fake.requests.filter((r) => r.key === key && r.path.includes(`/${model}:`)).length;
}

Deno.test("a project's 429 rests all its keys for that model, and only that model, until retryDelay", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaAlpha-one-0001": { kind: "rate_limited", retryDelaySeconds: 30 },
      "AIzaAlpha-two-0002": { kind: "rate_limited", retryDelaySeconds: 30 },
      "AIzaBeta-key-00003": OK,
    },
  });
  try {
    const before = await keys(gw);
    for (const m of ["AIza…0001", "AIza…0002"]) {
      const res = await gw.admin("PATCH", `/admin/api/keys/${before.get(m)!.id}`, {
        project: "alpha",
      });
      assert.equal(res.status, 200);
    }
    const apiKey = await gw.createUserKey();
    for (let i = 0; i < 10; i++) assert.equal((await ask(gw, apiKey)).status, 200);
    assert.equal(
      calls(gw, "AIzaAlpha-one-0001") + calls(gw, "AIzaAlpha-two-0002"),
      1,
      "after the first 429 no other key of the project is tried",
    );
    const after = await keys(gw);
    for (const m of ["AIza…0001", "AIza…0002"]) {
      const k = after.get(m)!;
      assert.equal(k.status, "cooldown");
      assert.equal(k.status_cause, "rate_limit");
      assert.equal(k.cooldowns[0].scope, "project");
      assert.equal(k.cooldowns[0].model, MODEL);
      assert.equal(Date.parse(k.status_until!), gw.clock.now() + 30_000);
    }
    assert.equal(after.get("AIza…0003")!.status, "active");
    // Another model is not affected: the project's keys still serve it.
    gw.fake.setKey("AIzaAlpha-one-0001", OK);
    gw.fake.setKey("AIzaAlpha-two-0002", OK);
    for (let i = 0; i < 6; i++) assert.equal((await ask(gw, apiKey, "gemini-2.5-pro")).status, 200);
    assert.ok(calls(gw, "AIzaAlpha-one-0001", "gemini-2.5-pro") > 0);
    // After retryDelay the project serves the model again.
    gw.clock.advance(30_000);
    for (let i = 0; i < 6; i++) assert.equal((await ask(gw, apiKey)).status, 200);
    assert.ok(calls(gw, "AIzaAlpha-one-0001") + calls(gw, "AIzaAlpha-two-0002") > 1);
    const projects = await gw.admin<{ data: { name: string; key_count: number }[] }>(
      "GET",
      "/admin/api/projects",
    );
    assert.deepEqual(projects.json.data.map((p) => [p.name, p.key_count]), [["alpha", 2]]);
  } finally {
    await gw.close();
  }
});

for (
  const [label, start] of [
    ["the evening before spring-forward (PST)", Date.UTC(2026, 2, 8, 6, 0)],
    ["the morning after fall-back (PST, a 25-hour day)", Date.UTC(2026, 10, 1, 12, 0)],
    ["a summer afternoon (PDT)", Date.UTC(2026, 6, 15, 22, 30)],
  ] as const
) {
  Deno.test(`a per-day quota parks the key until midnight Pacific: ${label}`, async () => {
    const gw = await startGateway({
      keys: {
        "AIzaDaily-key-0001": { kind: "rate_limited", perDay: true, retryDelaySeconds: 20 },
        "AIzaGood-key-00002": OK,
      },
    });
    try {
      gw.clock.t = start;
      const midnight = nextPacificMidnight(start);
      const apiKey = await gw.createUserKey();
      for (let i = 0; i < 4; i++) assert.equal((await ask(gw, apiKey)).status, 200);
      assert.equal(calls(gw, "AIzaDaily-key-0001"), 1);
      const parked = (await keys(gw)).get("AIza…0001")!;
      assert.equal(parked.status, "cooldown");
      assert.equal(parked.status_cause, "daily_quota");
      assert.match(parked.status_reason!, /Daily quota/);
      assert.equal(parked.status_until, new Date(midnight).toISOString());
      // Long after retryDelay, still parked; at midnight Pacific it serves again.
      gw.fake.setKey("AIzaDaily-key-0001", OK);
      gw.clock.t = midnight - 1000;
      for (let i = 0; i < 4; i++) await ask(gw, apiKey);
      assert.equal(calls(gw, "AIzaDaily-key-0001"), 1);
      gw.clock.t = midnight;
      for (let i = 0; i < 4; i++) await ask(gw, apiKey);
      assert.ok(calls(gw, "AIzaDaily-key-0001") > 1);
    } finally {
      await gw.close();
    }
  });
}

Deno.test("a 429 with quota 0 parks the key for the model until midnight Pacific with a clear reason", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaNoQuota-key-01": { kind: "rate_limited", quotaValue: "0" },
      "AIzaGood-key-00002": OK,
    },
  });
  try {
    const apiKey = await gw.createUserKey();
    for (let i = 0; i < 3; i++) assert.equal((await ask(gw, apiKey)).status, 200);
    const k = (await keys(gw)).get("AIza…y-01")!;
    assert.equal(k.status_cause, "no_quota");
    assert.match(k.status_reason!, /limit is 0/);
    assert.equal(Date.parse(k.status_until!), nextPacificMidnight(gw.clock.now()));
  } finally {
    await gw.close();
  }
});

Deno.test("many keys in one project are warned about when added and listed", async () => {
  const gw = await startGateway({});
  try {
    await gw.admin("PATCH", "/admin/api/settings", { projectKeyWarning: 2 });
    const first = await gw.admin<{ warnings: string[] }>("POST", "/admin/api/keys", {
      keys: ["AIzaShared-key-0001"],
      project: "shared",
    });
    assert.deepEqual(first.json.warnings, []);
    const second = await gw.admin<{ warnings: string[]; data: { project: string }[] }>(
      "POST",
      "/admin/api/keys",
      { keys: ["AIzaShared-key-0002"], project: "shared" },
    );
    assert.equal(second.json.data[0].project, "shared");
    assert.match(second.json.warnings[0], /2 keys share project 'shared'/);
    const listed = await gw.admin<{ warnings: string[] }>("GET", "/admin/api/keys");
    assert.equal(listed.json.warnings.length, 1);
    const projects = await gw.admin<{ data: { warning: string | null }[]; warnings: string[] }>(
      "GET",
      "/admin/api/projects",
    );
    assert.match(projects.json.data[0].warning!, /quota of one key/);
    // An admin override of the project's limits, and clearing its cooldowns.
    const patched = await gw.admin<{ limits: Record<string, { rpm: number | null }> }>(
      "PATCH",
      "/admin/api/projects/shared",
      { limits: { [MODEL]: { rpm: 1000 } }, clear_cooldowns: true },
    );
    assert.equal(patched.json.limits[MODEL].rpm, 1000);
    const bad = await gw.admin("PATCH", "/admin/api/projects/shared", { limits: { [MODEL]: 5 } });
    assert.equal(bad.status, 400);
  } finally {
    await gw.close();
  }
});

Deno.test("admin paths and queries are decoded once: '%' is a character, '%2520' names 'x%20'", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-00001": OK } });
  try {
    const [key] = [...(await keys(gw)).values()];
    // A literal '%' is no URIError (500): a bad model id is a 400, a project name is just a name.
    const limits = await gw.admin<{ error: { param: string } }>(
      "GET",
      "/admin/api/limits?model=%25",
    );
    assert.equal(limits.status, 400);
    assert.equal(limits.json.error.param, "model");
    assert.equal((await gw.admin("PATCH", "/admin/api/models/%25", { rpm: 5 })).status, 400);
    const percent = await gw.admin<{ name: string }>("PATCH", "/admin/api/projects/100%25", {
      clear_learned: true,
    });
    assert.equal(percent.status, 200);
    assert.equal(percent.json.name, "100%");
    // A label with '%20' in it is addressed as the admin UI sends it (encodeURIComponent, once).
    const label = "team%20a";
    await gw.admin("PATCH", `/admin/api/keys/${key.id}`, { project: label });
    const path = `/admin/api/projects/${encodeURIComponent(label)}`;
    assert.equal(path, "/admin/api/projects/team%2520a");
    const patched = await gw.admin<{ name: string; keys: { id: string }[] }>("PATCH", path, {
      limits: { [MODEL]: { rpm: 1 } },
    });
    assert.equal(patched.status, 200);
    assert.equal(patched.json.name, label);
    assert.deepEqual(patched.json.keys.map((k) => k.id), [key.id]);
    // Model ids in the body are taken as they are: '%' is refused, not decoded.
    const bodyId = await gw.admin<{ error: { param: string } }>("PATCH", path, {
      limits: { "gemini%2D2.5": { rpm: 1 } },
    });
    assert.equal(bodyId.status, 400);
    const model = await gw.admin<{ id: string }>(
      "PATCH",
      `/admin/api/models/${encodeURIComponent("gemini-2.5-flash")}`,
      { rpm: 7 },
    );
    assert.equal(model.json.id, MODEL);
    assert.equal((await gw.admin("DELETE", path)).status, 204);
  } finally {
    await gw.close();
  }
});

Deno.test("project limit overrides are bounded: valid model ids, at most 200, a record far under 64 KiB", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-00001": OK } });
  type Err = { error: { param: string | null; message: string } };
  try {
    const overrides = (n: number, length: number) =>
      Object.fromEntries(
        Array.from({ length: n }, (_, i) => [
          `m${String(i).padStart(4, "0")}${"x".repeat(length - 5)}`,
          { rpm: 1 },
        ]),
      );
    // What used to be a 500 ("Value too large"): 400 long model names in one record.
    const huge = await gw.admin<Err>("PATCH", "/admin/api/projects/p1", {
      limits: overrides(400, 195),
    });
    assert.equal(huge.status, 400);
    assert.equal(huge.json.error.param, "limits");
    // Under the count, over the size a project may take from the admin.
    const long = await gw.admin<Err>("PATCH", "/admin/api/projects/p1", {
      limits: overrides(200, 190),
    });
    assert.equal(long.status, 400);
    assert.equal(long.json.error.param, "limits");
    assert.match(long.json.error.message, /bytes/);
    const bad = await gw.admin<Err>("PATCH", "/admin/api/projects/p1", {
      limits: { "no spaces": { rpm: 1 } },
    });
    assert.equal(bad.status, 400);
    // The count holds across changes too.
    const first = await gw.admin("PATCH", "/admin/api/projects/p1", { limits: overrides(150, 20) });
    assert.equal(first.status, 200);
    const more = await gw.admin<Err>("PATCH", "/admin/api/projects/p1", {
      limits: Object.fromEntries(
        Array.from({ length: 60 }, (_, i) => [`gemini-extra-${i}`, { rpm: 2 }]),
      ),
    });
    assert.equal(more.status, 400);
    assert.match(more.json.error.message, /at most 200/);
    const projects = await gw.admin<{ data: { name: string; limits: object }[] }>(
      "GET",
      "/admin/api/projects",
    );
    assert.equal(Object.keys(projects.json.data.find((p) => p.name === "p1")!.limits).length, 150);
  } finally {
    await gw.close();
  }
});
