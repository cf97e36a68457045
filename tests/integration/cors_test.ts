/**
 * CORS: browser chat apps may call `/v1` and `/v1beta` from any origin (preflights answered without
 * a key, every answer readable, errors and streams included); the admin area sends no CORS headers.
 */
import assert from "node:assert/strict";
import { startGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const ORIGIN = "https://chat.example";
const CHAT = { model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }] };

Deno.test("preflights on the API surfaces are answered without a key; admin paths get none", async () => {
  const gw = await startGateway({ keys: { "AIzaCors-0001": OK } });
  try {
    for (
      const path of ["/v1/chat/completions", "/v1beta/models/gemini-2.5-flash:generateContent"]
    ) {
      const res = await fetch(`${gw.url}${path}`, {
        method: "OPTIONS",
        headers: {
          origin: ORIGIN,
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization, content-type, x-stainless-os",
        },
      });
      await res.body?.cancel();
      assert.equal(res.status, 204, path);
      assert.equal(res.headers.get("access-control-allow-origin"), "*", path);
      assert.match(res.headers.get("access-control-allow-methods") ?? "", /POST/, path);
      assert.match(res.headers.get("access-control-allow-headers") ?? "", /authorization/, path);
      // Every answer carries a request id (docs/api.md), a preflight's too.
      assert.match(res.headers.get("x-request-id") ?? "", /^[\w-]+$/, path);
    }
    const admin = await fetch(`${gw.url}/admin/api/keys`, {
      method: "OPTIONS",
      headers: { origin: ORIGIN, "access-control-request-method": "GET" },
    });
    await admin.body?.cancel();
    assert.equal(admin.headers.get("access-control-allow-origin"), null);
    assert.equal(gw.fake.requests.length, 0);
  } finally {
    await gw.close();
  }
});

Deno.test("API answers carry CORS headers (chat, stream, errors, native); admin answers do not", async () => {
  const gw = await startGateway({ keys: { "AIzaCors-0002": OK } });
  try {
    const key = await gw.createUserKey();
    const created = await gw.admin<{ key: string }>("POST", "/admin/api/user-keys", {
      name: "limited",
      max_concurrency: 2,
    });
    const limited = created.json.key;
    const call = async (path: string, init: RequestInit) => {
      const res = await fetch(`${gw.url}${path}`, init);
      await res.body?.cancel();
      return res;
    };
    const json = { origin: ORIGIN, "content-type": "application/json" };
    const answers = [
      await call("/v1/chat/completions", {
        method: "POST",
        headers: { ...json, authorization: `Bearer ${key}` },
        body: JSON.stringify(CHAT),
      }),
      await call("/v1/chat/completions", {
        method: "POST",
        headers: { ...json, authorization: `Bearer ${key}` },
        body: JSON.stringify({ ...CHAT, stream: true }),
      }),
      await call("/v1/chat/completions", {
        method: "POST",
        headers: json,
        body: JSON.stringify(CHAT),
      }),
      await call("/v1/models", { headers: { origin: ORIGIN, authorization: `Bearer ${key}` } }),
      await call("/v1beta/models", { headers: { origin: ORIGIN, "x-goog-api-key": key } }),
      // A stream of a key with a concurrency limit: its body is wrapped after it was finished.
      await call("/v1/chat/completions", {
        method: "POST",
        headers: { ...json, authorization: `Bearer ${limited}`, "x-request-id": "cors-stream-1" },
        body: JSON.stringify({ ...CHAT, stream: true }),
      }),
    ];
    assert.deepEqual(answers.map((r) => r.status), [200, 200, 401, 200, 200, 200]);
    for (const res of answers) {
      assert.equal(res.headers.get("access-control-allow-origin"), "*", res.url);
      // Exposed once, whichever way the answer was made.
      assert.equal(
        res.headers.get("access-control-expose-headers"),
        "x-request-id, retry-after",
        res.url,
      );
      assert.ok(res.headers.get("x-request-id"), res.url);
    }
    assert.equal(answers[5].headers.get("x-request-id"), "cors-stream-1");
    const admin = await fetch(`${gw.url}/admin/api/keys`, {
      headers: { origin: ORIGIN, authorization: "Bearer test-admin-password" },
    });
    await admin.body?.cancel();
    assert.equal(admin.status, 200);
    assert.equal(admin.headers.get("access-control-allow-origin"), null);
  } finally {
    await gw.close();
  }
});
