/**
 * Outbound proxies per Gemini key: a key with a proxy calls Gemini through it (login included),
 * the others directly; the proxy URL is stored sealed and shown without its login; a dead proxy
 * fails over to another key.
 */
import assert from "node:assert/strict";
import { kvText, post, startGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;

/** A forward HTTP proxy on loopback that records what it forwards. */
function forwardProxy() {
  const seen: { url: string; key: string | null; auth: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push({
      url: req.url,
      key: req.headers.get("x-goog-api-key"),
      auth: req.headers.get("proxy-authorization"),
    });
    const headers = new Headers(req.headers);
    headers.delete("proxy-authorization");
    const res = await fetch(req.url, { method: req.method, headers, body: req.body });
    return new Response(res.body, { status: res.status, headers: res.headers });
  });
  return {
    seen,
    url: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    close: () => server.shutdown(),
  };
}

type KeyRow = { id: string; masked: string; proxy: string | null };

Deno.test("a key with a proxy calls Gemini through it; other keys go direct", async () => {
  const proxy = forwardProxy();
  const gw = await startGateway({
    keys: { "AIzaViaProxy-00001": OK, "AIzaDirect-0000002": OK },
  });
  try {
    const keys = (await gw.admin<{ data: KeyRow[] }>("GET", "/admin/api/keys")).json.data;
    const proxied = keys.find((k) => k.masked.startsWith("AIza") && k.masked.endsWith("0001"))!;
    const withLogin = `http://gw-user:s3cret-pw@127.0.0.1:${proxy.port}`;
    const patched = await gw.admin<KeyRow>("PATCH", `/admin/api/keys/${proxied.id}`, {
      proxy: withLogin,
    });
    assert.equal(patched.status, 200);
    assert.equal(patched.json.proxy, `http://127.0.0.1:${proxy.port} (with login)`);
    // A check right after the change probes through the proxy too (the record's own, not the
    // pool's last load).
    const check = await gw.admin<{ result: string }>("POST", `/admin/api/keys/${proxied.id}/check`);
    assert.equal(check.json.result, "ok");
    assert.deepEqual(
      proxy.seen.filter((s) => s.url.includes("/v1beta/models?")).map((s) => s.key),
      ["AIzaViaProxy-00001"],
    );
    const apiKey = await gw.createUserKey();
    for (let i = 0; i < 4; i++) {
      const res = await post(`${gw.url}/v1/chat/completions`, {
        apiKey,
        body: {
          model: "gemini-2.5-flash",
          stream: i % 2 === 1,
          messages: [{ role: "user", content: `hi ${i}` }],
        },
      });
      assert.equal(res.status, 200);
    }
    // Round robin over two keys: two of the four calls went through the proxy, with its login.
    const generate = proxy.seen.filter((s) => s.url.includes("enerateContent"));
    assert.equal(generate.length, 2, JSON.stringify(proxy.seen));
    for (const s of generate) {
      assert.equal(s.key, "AIzaViaProxy-00001");
      assert.equal(s.auth, `Basic ${btoa("gw-user:s3cret-pw")}`);
      assert.ok(s.url.startsWith(gw.fake.url), s.url);
    }
    const direct = gw.fake.requests.filter((r) => r.path.includes("enerateContent"));
    assert.equal(direct.length, 4, "the fake saw all four (two by way of the proxy)");
    // The login is stored sealed.
    assert.ok(!(await kvText(gw.kv)).includes("s3cret-pw"));
    // Cleared, the key goes direct again.
    await gw.admin("PATCH", `/admin/api/keys/${proxied.id}`, { proxy: null });
    for (let i = 0; i < 2; i++) {
      await post(`${gw.url}/v1/chat/completions`, {
        apiKey,
        body: { model: "gemini-2.5-flash", messages: [{ role: "user", content: "x" }] },
      });
    }
    assert.equal(proxy.seen.filter((s) => s.url.includes("enerateContent")).length, 2);
  } finally {
    await gw.close();
    await proxy.close();
  }
});

Deno.test("proxy URLs are validated; a dead proxy fails over to another key", async () => {
  const gw = await startGateway({ keys: { "AIzaDeadProxy-0001": OK, "AIzaDirect-0000002": OK } });
  try {
    const keys = (await gw.admin<{ data: KeyRow[] }>("GET", "/admin/api/keys")).json.data;
    const id = keys.find((k) => k.masked.endsWith("0001"))!.id;
    for (const bad of ["ftp://proxy:21", "not a url", "http://proxy:8080/path"]) {
      const res = await gw.admin<{ error: { param: string } }>("PATCH", `/admin/api/keys/${id}`, {
        proxy: bad,
      });
      assert.equal(res.status, 400, bad);
      assert.equal(res.json.error.param, "proxy");
    }
    // Nothing listens on this port: the key's calls fail (network), the other key serves.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    await gw.admin("PATCH", `/admin/api/keys/${id}`, { proxy: `http://127.0.0.1:${port}` });
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 2; i++) {
      const reply = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: `hi ${i}` }],
      });
      assert.match(reply.choices[0].message.content ?? "", /Echo/);
    }
    await gw.app.drain();
    const stats = await gw.admin<{ errors_by_cause: { last_24h: Record<string, number> } }>(
      "GET",
      "/admin/api/stats",
    );
    assert.ok(stats.json.errors_by_cause.last_24h.network >= 1);
    // Keys added with a proxy get it.
    const added = await gw.admin<{ data: KeyRow[] }>("POST", "/admin/api/keys", {
      keys: ["AIzaAddedProxy-0003"],
      proxy: "socks5://10.0.0.1:1080",
    });
    assert.equal(added.json.data[0].proxy, "socks5://10.0.0.1:1080");
  } finally {
    await gw.close();
  }
});

Deno.test("a location refusal through a key's proxy rests that key and fails over, with no deployment alert", async () => {
  const proxy = forwardProxy();
  const gw = await startGateway({
    keys: { "AIzaFarAway-000001": { kind: "location" }, "AIzaNearby-000002": OK },
  });
  try {
    const keys = (await gw.admin<{ data: KeyRow[] }>("GET", "/admin/api/keys")).json.data;
    const far = keys.find((k) => k.masked.endsWith("0001"))!;
    await gw.admin("PATCH", `/admin/api/keys/${far.id}`, { proxy: proxy.url });
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 3; i++) {
      const reply = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: `hi ${i}` }],
      });
      assert.match(reply.choices[0].message.content ?? "", /Echo/);
    }
    const after = await gw.admin<{ data: (KeyRow & { status: string; status_cause: string })[] }>(
      "GET",
      "/admin/api/keys",
    );
    const rested = after.json.data.find((k) => k.id === far.id)!;
    assert.deepEqual([rested.status, rested.status_cause], ["cooldown", "location"]);
    const alerts = await gw.admin<{ data: unknown[] }>("GET", "/admin/api/alerts");
    assert.deepEqual(alerts.json.data, [], "the deployment's own location is not at fault");
  } finally {
    await gw.close();
    await proxy.close();
  }
});
