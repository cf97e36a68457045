/**
 * The audit log: admin API changes (whatever their outcome) and refused admin passwords are
 * recorded with the credential, address, method, path, status and request id; reads are not;
 * no secret ever reaches it; it pages with a cursor.
 */
import assert from "node:assert/strict";
import { ADMIN_PASSWORD, kvText, startGateway } from "./harness.ts";

interface Entry {
  time: string;
  action: string;
  actor: string;
  ip: string;
  method: string;
  path: string;
  status: number;
  request_id: string | null;
}

interface AuditPage {
  data: Entry[];
  next_cursor: string | null;
}

Deno.test("admin changes and refused passwords are audited with who, where and the outcome; reads are not", async () => {
  const gw = await startGateway({});
  try {
    const secret = "AIzaSyAuditSecret-0000000000000000000001";
    const added = await fetch(`${gw.url}/admin/api/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_PASSWORD}`, "content-type": "application/json" },
      body: JSON.stringify({ keys: [secret] }),
    });
    assert.equal(added.status, 201);
    const requestId = added.headers.get("x-request-id");
    await added.body?.cancel();
    assert.equal((await gw.admin("GET", "/admin/api/keys")).status, 200);
    const missing = await gw.admin("PATCH", "/admin/api/user-keys/uk_nope", { name: "x" });
    assert.equal(missing.status, 404);
    const wrong = await fetch(`${gw.url}/admin/api/stats`, {
      headers: { authorization: "Bearer not-the-password" },
    });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    // No credential at all is a visitor, not an attempt: not recorded.
    await (await fetch(`${gw.url}/admin/api/stats`)).body?.cancel();

    const log = await gw.admin<AuditPage>("GET", "/admin/api/audit-log");
    assert.equal(log.status, 200);
    const rows = log.json.data.map((e) => [e.action, e.actor, e.method, e.path, e.status]);
    assert.deepEqual(rows, [
      ["api", "none", "GET", "/admin/api/stats", 401],
      ["api", "password", "PATCH", "/admin/api/user-keys/uk_nope", 404],
      ["api", "password", "POST", "/admin/api/keys", 201],
    ]);
    const post = log.json.data[2];
    assert.equal(post.request_id, requestId);
    assert.match(post.ip, /^127\.0\.0\.1$|^::1$/);
    assert.ok(Date.parse(post.time) > 0);
    // The key that was added is in no entry, nor in any audit row in KV.
    assert.ok(!JSON.stringify(log.json).includes(secret.slice(4, 20)));
    const auditRows = (await kvText(gw.kv)).split("\n").filter((l) => l.startsWith('["audit"'));
    assert.equal(auditRows.length, 3);
    assert.ok(!auditRows.join("\n").includes(secret.slice(4, 20)));
  } finally {
    await gw.close();
  }
});

Deno.test("the audit log pages newest first with a cursor, and refuses a cursor it did not give", async () => {
  const gw = await startGateway({});
  try {
    for (let i = 0; i < 5; i++) {
      await gw.admin("PATCH", "/admin/api/settings", { maxAttempts: i + 1 });
      gw.clock.advance(1000);
    }
    const seen: number[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 5; page++) {
      const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      const res = await gw.admin<AuditPage>("GET", `/admin/api/audit-log?limit=2${query}`);
      assert.equal(res.status, 200);
      seen.push(...res.json.data.map((e) => Date.parse(e.time)));
      cursor = res.json.next_cursor;
      if (!cursor) break;
    }
    assert.equal(seen.length, 5);
    assert.deepEqual(seen, seen.toSorted((a, b) => b - a), "newest first");
    // A last page that is exactly full says so: no cursor to an empty page.
    const exact = await gw.admin<AuditPage>("GET", "/admin/api/audit-log?limit=5");
    assert.equal(exact.json.data.length, 5);
    assert.equal(exact.json.next_cursor, null);
    const bad = await gw.admin<{ error: { param: string } }>(
      "GET",
      "/admin/api/audit-log?cursor=garbage",
    );
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "cursor");
    const badLimit = await gw.admin("GET", "/admin/api/audit-log?limit=0");
    assert.equal(badLimit.status, 400);
  } finally {
    await gw.close();
  }
});

Deno.test("nobody can flood the audit log: visitors are not recorded, cookie refusals are throttled, paths are cut", async () => {
  const gw = await startGateway({});
  try {
    const send = (method: string, path: string, headers: Record<string, string> = {}) =>
      fetch(`${gw.url}${path}`, { method, headers }).then((r) => r.body?.cancel());
    for (let i = 0; i < 20; i++) await send("POST", `/admin/api/keys/${"x".repeat(2000)}${i}`);
    for (let i = 0; i < 20; i++) {
      await send("DELETE", "/admin/api/user-keys/uk_1", { cookie: "gw_session=made-up" });
    }
    type Page = { data: { actor: string; path: string; status: number }[] };
    const first = await gw.admin<Page>("GET", "/admin/api/audit-log");
    assert.deepEqual(first.json.data.map((e) => [e.actor, e.path, e.status]), [
      ["none", "/admin/api/user-keys/uk_1", 401],
    ]);
    // A minute later the same address is recorded once more; a real change always is.
    gw.clock.advance(61_000);
    await send("DELETE", "/admin/api/user-keys/uk_1", { cookie: "gw_session=made-up" });
    await gw.admin("PATCH", `/admin/api/user-keys/${"y/".repeat(250)}`, { name: "x" });
    const later = await gw.admin<Page>("GET", "/admin/api/audit-log");
    assert.equal(later.json.data.length, 3);
    assert.equal(later.json.data[0].path.length, 200, "a long path is cut");
    assert.equal(later.json.data[0].actor, "password");
    // A secret passed by mistake where an id goes is neither kept nor echoed back.
    const secret = "sk-" + "S".repeat(43);
    const wrong = await gw.admin<{ error: { message: string } }>(
      "DELETE",
      `/admin/api/user-keys/${secret}`,
    );
    assert.equal(wrong.status, 404);
    assert.ok(!wrong.json.error.message.includes(secret), wrong.json.error.message);
    const last = await gw.admin<Page>("GET", "/admin/api/audit-log");
    assert.equal(last.json.data[0].path, "/admin/api/user-keys/sk-S…SSSS");
  } finally {
    await gw.close();
  }
});
