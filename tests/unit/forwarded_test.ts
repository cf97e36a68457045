/** The client behind trusted reverse proxies, from X-Forwarded-For and X-Forwarded-Proto. */
import assert from "node:assert/strict";
import { forwardedClient, forwardedHttps, publicOrigin } from "../../lib/forwarded.ts";

Deno.test("the forwarded client is counted from the right, one entry per trusted proxy", () => {
  const h = (value: string) => new Headers({ "x-forwarded-for": value });
  assert.equal(forwardedClient(h("203.0.113.7"), 1), "203.0.113.7");
  assert.equal(forwardedClient(h("1.1.1.1, 203.0.113.7"), 1), "203.0.113.7");
  assert.equal(forwardedClient(h("1.1.1.1, 203.0.113.7, 10.0.0.2"), 2), "203.0.113.7");
  assert.equal(forwardedClient(h("203.0.113.7:5555"), 1), "203.0.113.7");
  assert.equal(forwardedClient(h("[2001:db8::1]:443"), 1), "2001:db8::1");
  assert.equal(forwardedClient(h("2001:db8::1"), 1), "2001:db8::1");
  assert.equal(forwardedClient(h("203.0.113.7"), 2), null, "fewer entries than proxies");
  assert.equal(forwardedClient(h("not-an-address"), 1), null);
  assert.equal(forwardedClient(h("unknown, 203.0.113.7"), 0), null, "0 trusts none");
  assert.equal(forwardedClient(new Headers(), 1), null);
  assert.equal(forwardedHttps(new Headers({ "x-forwarded-proto": "https" })), true);
  assert.equal(forwardedHttps(new Headers({ "x-forwarded-proto": "HTTPS, http" })), true);
  assert.equal(forwardedHttps(new Headers({ "x-forwarded-proto": "http, https" })), false);
  assert.equal(forwardedHttps(new Headers()), false);
});

Deno.test("the public origin believes forwarded scheme and host only from trusted proxies", () => {
  const req = (headers: Record<string, string>) =>
    new Request("http://127.0.0.1:8000/upload/v1beta/files", { headers });
  const forged = { "x-forwarded-proto": "https", "x-forwarded-host": "attacker.example" };
  assert.equal(publicOrigin(req(forged), { onDeploy: false }), "http://127.0.0.1:8000");
  // Deploy's own proxy sets the scheme; the host is the request's.
  assert.equal(publicOrigin(req(forged), { onDeploy: true }), "https://127.0.0.1:8000");
  assert.equal(
    publicOrigin(req({ ...forged, "x-forwarded-host": "gw.example.com" }), {
      onDeploy: false,
      trustProxy: 1,
    }),
    "https://gw.example.com",
  );
  assert.equal(
    publicOrigin(req({ "x-forwarded-host": "evil.example/steal?x=" }), {
      onDeploy: false,
      trustProxy: 1,
    }),
    "http://127.0.0.1:8000",
    "a forwarded host that is not a host is ignored",
  );
});
