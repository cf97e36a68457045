/**
 * Health checks and cleanup: recovery of an invalid key by a free models call, confirmation of an
 * invalid one, the N-day rule moving keys to a recoverable removed area (and off when disabled),
 * the request log, usage roll-up, and the jobs' admin API.
 */
import assert from "node:assert/strict";
import { type FileRecord, getFile, putFile } from "../../lib/store/files.ts";
import { ADMIN_PASSWORD, startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const DAY = 86_400_000;

interface KeyView {
  id: string;
  masked: string;
  status: string;
  status_reason: string | null;
  health: {
    checked_at: string | null;
    result: string | null;
    message?: string | null;
    days: Record<string, string>;
  };
}

async function keys(gw: TestGateway): Promise<Map<string, KeyView>> {
  const res = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
  return new Map(res.json.data.map((k) => [k.masked, k]));
}

async function runJob(gw: TestGateway, name: string): Promise<Record<string, number>> {
  const res = await gw.admin<{ ok: boolean; report: Record<string, number> }>(
    "POST",
    `/admin/api/jobs/${name}`,
  );
  assert.equal(res.status, 200, JSON.stringify(res.json));
  assert.equal(res.json.ok, true);
  return res.json.report;
}

async function chat(gw: TestGateway, apiKey: string) {
  return await gw.openai(apiKey).chat.completions.create({
    model: "gemini-2.5-flash",
    messages: [{ role: "user", content: "x" }],
  });
}

Deno.test("the health check restores a recovered key with a free models call and confirms a still-invalid one", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaRecover-key-01": { kind: "invalid" },
      "AIzaStillBad-key-2": { kind: "invalid" },
      "AIzaGood-key-00003": OK,
    },
  });
  try {
    const apiKey = await gw.createUserKey();
    for (let i = 0; i < 3; i++) await chat(gw, apiKey);
    let state = await keys(gw);
    assert.equal(state.get("AIza…y-01")!.status, "invalid");
    assert.equal(state.get("AIza…ey-2")!.status, "invalid");
    gw.fake.setKey("AIzaRecover-key-01", OK);
    gw.fake.reset();
    const report = await runJob(gw, "health-check");
    assert.equal(report.restored, 1);
    assert.equal(report.invalid, 1);
    // Probes were models calls only: no generation quota spent.
    assert.ok(gw.fake.requests.length >= 2);
    assert.ok(gw.fake.requests.every((r) => r.method === "GET" && r.path === "/v1beta/models"));
    state = await keys(gw);
    const recovered = state.get("AIza…y-01")!;
    assert.equal(recovered.status, "active");
    assert.equal(recovered.health.result, "ok");
    const bad = state.get("AIza…ey-2")!;
    assert.equal(bad.status, "invalid");
    assert.equal(bad.health.result, "invalid");
    assert.ok(Object.values(bad.health.days).includes("fail"));
    // The restored key serves again.
    gw.fake.reset();
    for (let i = 0; i < 4; i++) await chat(gw, apiKey);
    assert.ok(gw.fake.callsFor("AIzaRecover-key-01") > 0);
    assert.equal(gw.fake.callsFor("AIzaStillBad-key-2"), 0);
    // One key can also be probed on demand.
    const ids = new Map([...state.values()].map((k) => [k.masked, k.id]));
    const one = await gw.admin<{ result: string }>(
      "POST",
      `/admin/api/keys/${ids.get("AIza…ey-2")}/check`,
    );
    assert.equal(one.json.result, "invalid");
  } finally {
    await gw.close();
  }
});

Deno.test("a key failing for 3 days in a row moves to the removed area, from where it can be restored", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaDead-key-00001": { kind: "invalid" },
      "AIzaFlaky-key-0002": { kind: "invalid" },
      "AIzaGood-key-00003": OK,
    },
  });
  try {
    const apiKey = await gw.createUserKey();
    for (let i = 0; i < 3; i++) await chat(gw, apiKey);
    const removedAfter: number[] = [];
    for (let day = 0; day < 4; day++) {
      // The flaky key works on day 1 only (its run of failing days restarts).
      gw.fake.setKey("AIzaFlaky-key-0002", day === 1 ? OK : { kind: "invalid" });
      await runJob(gw, "health-check");
      if (day === 1) await chat(gw, apiKey).then(() => chat(gw, apiKey));
      const cleanup = await runJob(gw, "cleanup");
      removedAfter.push(cleanup.removedKeys);
      gw.clock.advance(DAY);
    }
    // Day 0 (the day it was marked), day 1, day 2: removed on the third failing day.
    assert.deepEqual(removedAfter, [0, 0, 1, 0]);
    const state = await keys(gw);
    assert.ok(!state.has("AIza…0001"), "the dead key left the pool");
    assert.ok(state.has("AIza…0002"), "the flaky key stays: it worked within the last 3 days");
    const removed = await gw.admin<{ data: { id: string; masked: string; reason: string }[] }>(
      "GET",
      "/admin/api/removed-keys",
    );
    assert.equal(removed.json.data.length, 1);
    assert.equal(removed.json.data[0].masked, "AIza…0001");
    assert.match(removed.json.data[0].reason, /3 days in a row/);
    // The same secret cannot sneak back in through an import while it is in the removed area.
    const again = await gw.admin<{ added: number; duplicates: number }>("POST", "/admin/api/keys", {
      keys: ["AIzaDead-key-00001"],
    });
    assert.deepEqual([again.json.added, again.json.duplicates], [0, 1]);
    // Restored, it is back and active.
    const restored = await gw.admin<{ status: string }>(
      "POST",
      `/admin/api/removed-keys/${removed.json.data[0].id}/restore`,
    );
    assert.equal(restored.json.status, "active");
    assert.ok((await keys(gw)).has("AIza…0001"));
    assert.equal(
      (await gw.admin<{ data: unknown[] }>("GET", "/admin/api/removed-keys")).json.data.length,
      0,
    );
  } finally {
    await gw.close();
  }
});

Deno.test("with the N-day rule off no key is removed, and with N=1 the first failing day suffices", async () => {
  const gw = await startGateway({ keys: { "AIzaDead-key-00001": { kind: "invalid" } } });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { removeFailingKeysAfterDays: null });
    for (let day = 0; day < 5; day++) {
      await runJob(gw, "health-check");
      assert.equal((await runJob(gw, "cleanup")).removedKeys, 0);
      gw.clock.advance(DAY);
    }
    await gw.admin("PATCH", "/admin/api/settings", { removeFailingKeysAfterDays: 1 });
    await runJob(gw, "health-check");
    assert.equal((await runJob(gw, "cleanup")).removedKeys, 1);
    const purged = await gw.admin<{ data: { id: string }[] }>("GET", "/admin/api/removed-keys");
    assert.equal(
      (await gw.admin("DELETE", `/admin/api/removed-keys/${purged.json.data[0].id}`)).status,
      204,
    );
    // Deleted for good: the secret may be added again.
    const again = await gw.admin<{ added: number }>("POST", "/admin/api/keys", {
      keys: ["AIzaDead-key-00001"],
    });
    assert.equal(again.json.added, 1);
  } finally {
    await gw.close();
  }
});

Deno.test("the request log keeps the last requests, redacted, newest first, trimmed to its size", async () => {
  const gw = await startGateway({
    keys: { "AIzaGood-key-00001": OK, "AIzaInvalid-key-002": { kind: "invalid" } },
  });
  try {
    await gw.admin("PATCH", "/admin/api/settings", { requestLogSize: 3 });
    const apiKey = await gw.createUserKey({ name: "alice" });
    for (let i = 0; i < 5; i++) {
      await chat(gw, apiKey);
      gw.clock.advance(1000);
    }
    await gw.app.drain();
    const log = await gw.admin<{
      data: {
        time: string;
        user_key_name: string;
        model: string;
        key: string;
        status: number;
        input_tokens: number;
        error_class: string | null;
      }[];
      has_more: boolean;
    }>("GET", "/admin/api/request-log?limit=10");
    assert.equal(log.json.data.length, 5);
    const newest = log.json.data[0];
    assert.equal(newest.user_key_name, "alice");
    assert.equal(newest.model, "gemini-2.5-flash");
    assert.equal(newest.key, "AIza…0001");
    assert.equal(newest.status, 200);
    assert.ok(newest.input_tokens > 0);
    assert.ok(Date.parse(log.json.data[0].time) > Date.parse(log.json.data[4].time));
    const raw = JSON.stringify(log.json);
    assert.ok(!raw.includes("AIzaGood-key-00001") && !raw.includes(apiKey), "no secret");
    assert.equal((await runJob(gw, "cleanup")).logEntriesDeleted, 2);
    const trimmed = await gw.admin<{ data: unknown[] }>("GET", "/admin/api/request-log");
    assert.equal(trimmed.json.data.length, 3);
    const page = await gw.admin<{ data: unknown[]; has_more: boolean }>(
      "GET",
      "/admin/api/request-log?limit=2",
    );
    assert.deepEqual([page.json.data.length, page.json.has_more], [2, true]);
    assert.equal((await gw.admin("GET", "/admin/api/request-log?limit=0")).status, 400);
  } finally {
    await gw.close();
  }
});

Deno.test("a request id a user quotes finds its request in the log: theirs, or the one the gateway gave", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-00001": OK } });
  try {
    const apiKey = await gw.createUserKey({ name: "bob" });
    const ids: string[] = [];
    for (const sent of ["trace-from-the-client-1", undefined, undefined]) {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${apiKey}`,
          "content-type": "application/json",
          ...(sent ? { "x-request-id": sent } : {}),
        },
        body: JSON.stringify({
          model: "gemini-2.5-flash",
          messages: [{ role: "user", content: "x" }],
          stream: ids.length === 2,
        }),
      });
      await res.text();
      ids.push(res.headers.get("x-request-id")!);
      gw.clock.advance(1000);
    }
    // A native call and a refused one are logged with theirs too.
    const native = await fetch(`${gw.url}/v1beta/models/gemini-2.5-flash:generateContent`, {
      method: "POST",
      headers: { "x-goog-api-key": apiKey, "content-type": "application/json" },
      body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "y" }] }] }),
    });
    await native.text();
    ids.push(native.headers.get("x-request-id")!);
    assert.equal(ids[0], "trace-from-the-client-1");
    assert.equal(new Set(ids).size, 4);
    await gw.app.drain();
    type Entry = { request_id: string | null; user_key_name: string; status: number };
    const log = await gw.admin<{ data: Entry[] }>("GET", "/admin/api/request-log");
    assert.deepEqual(log.json.data.map((e) => e.request_id), ids.toReversed());
    for (const id of ids) {
      const found = await gw.admin<{ data: Entry[] }>(
        "GET",
        `/admin/api/request-log?request_id=${encodeURIComponent(id)}`,
      );
      assert.deepEqual(found.json.data.map((e) => [e.request_id, e.user_key_name]), [[id, "bob"]]);
    }
    const none = await gw.admin<{ data: Entry[] }>("GET", "/admin/api/request-log?request_id=nope");
    assert.deepEqual(none.json.data, []);
    // The same entries as a CSV file, newest first, the key name a spreadsheet formula could hide in
    // quoted and defused.
    const users = await gw.admin<{ data: { id: string }[] }>("GET", "/admin/api/user-keys");
    await gw.admin("PATCH", `/admin/api/user-keys/${users.json.data[0].id}`, {
      name: '=HYPERLINK("x"),bob',
    });
    const csv = await fetch(`${gw.url}/admin/api/request-log?format=csv`, {
      headers: { authorization: `Bearer ${ADMIN_PASSWORD}` },
    });
    assert.equal(csv.headers.get("content-type"), "text/csv; charset=utf-8");
    assert.match(
      csv.headers.get("content-disposition") ?? "",
      /attachment; filename="request-log-/,
    );
    const lines = (await csv.text()).trimEnd().split("\r\n");
    assert.equal(
      lines[0],
      "time,request_id,user_key_name,user_key_id,model,key,key_id,status," +
        "latency_ms,input_tokens,output_tokens,attempts,error_class,api",
    );
    assert.equal(lines.length, 1 + ids.length);
    const first = lines[1].split(",");
    assert.equal(first[1], ids.at(-1));
    assert.ok(lines[1].includes(`"'=HYPERLINK(""x""),bob"`), lines[1]);
  } finally {
    await gw.close();
  }
});

Deno.test("usage is rolled up from minute to hour to day buckets; stats stay the same", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-00001": OK } });
  try {
    const apiKey = await gw.createUserKey();
    for (let i = 0; i < 3; i++) await chat(gw, apiKey);
    await gw.app.drain();
    const stats = async () =>
      (await gw.admin<{ totals: { requests: number }; days: { requests: number }[] }>(
        "GET",
        "/admin/api/stats",
      )).json;
    const before = await stats();
    assert.equal(before.days.at(-1)!.requests, 3);
    // Three days later the minute buckets are gone and the hour buckets rolled into a day bucket.
    gw.clock.advance(3 * DAY);
    const report = await runJob(gw, "usage-rollup");
    assert.ok(report.minuteBucketsDeleted > 0);
    assert.ok(report.hourBucketsRolledUp > 0);
    const after = await stats();
    assert.equal(after.totals.requests, 3);
    assert.equal(after.days.at(-4)!.requests, 3, "the day keeps its count");
    // The user key's day budgets (tokens and requests) of three days ago are gone; its month
    // budgets stay until the month after theirs is over too.
    assert.equal(report.budgetCountersDeleted, 2);
    const budgetKeys = async () => {
      const out: string[] = [];
      for (const prefix of ["ul_tok", "ul_req", "ul_tok_m", "ul_req_m"]) {
        for await (const e of gw.kv.list({ prefix: [prefix] })) out.push(String(e.key[0]));
      }
      return out;
    };
    assert.deepEqual(await budgetKeys(), ["ul_tok_m", "ul_req_m"]);
    assert.equal((await runJob(gw, "usage-rollup")).hourBucketsRolledUp, 0, "idempotent");
    gw.clock.advance(62 * DAY);
    assert.equal((await runJob(gw, "usage-rollup")).budgetCountersDeleted, 2);
    assert.deepEqual(await budgetKeys(), []);
    const jobs = await gw.admin<{ data: { name: string; last_run: { ok: boolean } | null }[] }>(
      "GET",
      "/admin/api/jobs",
    );
    assert.equal(jobs.json.data.find((j) => j.name === "usage-rollup")?.last_run?.ok, true);
    assert.equal((await gw.admin("POST", "/admin/api/jobs/nope")).status, 404);
  } finally {
    await gw.close();
  }
});

Deno.test("the cleanup job deletes file records whose upstream file expired", async () => {
  const gw = await startGateway({});
  try {
    const now = gw.clock.now();
    const file = (id: string, expiresAt: number): FileRecord => ({
      id,
      name: `files/${id}`,
      uri: `https://example.invalid/v1beta/files/${id}`,
      mimeType: "text/plain",
      bytes: 1,
      filename: "a.txt",
      purpose: "user_data",
      userId: "uk_x",
      keyId: "k_x",
      state: "ACTIVE",
      source: "openai",
      createdAt: now - 3 * DAY,
      expiresAt,
    });
    await putFile(gw.kv, file("file-old", now - 2 * DAY), now);
    await putFile(gw.kv, file("file-new", now + DAY), now);
    assert.equal((await runJob(gw, "cleanup")).filesDeleted, 1);
    assert.equal(await getFile(gw.kv, "file-old"), null);
    assert.ok(await getFile(gw.kv, "file-new"));
  } finally {
    await gw.close();
  }
});

Deno.test("the strategy is switched live through the settings; unknown strategies are refused", async () => {
  const gw = await startGateway({});
  try {
    for (const strategy of ["least_used", "adaptive", "round_robin"]) {
      const res = await gw.admin<{ strategy: string }>("PATCH", "/admin/api/settings", {
        strategy,
      });
      assert.equal(res.status, 200);
      assert.equal(res.json.strategy, strategy);
      assert.equal((await gw.app.gateway.pool.view()).settings.strategy, strategy);
    }
    const bad = await gw.admin<{ error: { param: string } }>("PATCH", "/admin/api/settings", {
      strategy: "random",
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "strategy");
  } finally {
    await gw.close();
  }
});

Deno.test("a probe whose answer stalls mid-body times out: the health check ends and says why", async () => {
  // The models call answers its head at once, then sends nothing until it is aborted.
  const stalledBody: typeof fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!url.includes("/v1beta/models?pageSize=1")) return await fetch(input, init);
    const signal = init?.signal ?? undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"models": ['));
        signal?.addEventListener("abort", () => controller.error(signal.reason), { once: true });
      },
    });
    return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
  };
  const gw = await startGateway({
    keys: { "AIzaStalled-key-0001": OK },
    env: { UPSTREAM_TIMEOUT_MS: "1000" },
    upstreamFetch: stalledBody,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const report = await Promise.race([
      runJob(gw, "health-check"),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("the health check hung")), 5_000);
      }),
    ]);
    assert.equal(report.checked, 1);
    assert.equal(report.errors, 1);
    const [key] = [...(await keys(gw)).values()];
    assert.equal(key.health.result, "error");
    assert.match(key.health.message ?? "", /did not answer within 1000 ms/);
  } finally {
    clearTimeout(timer);
    await gw.close();
  }
});
