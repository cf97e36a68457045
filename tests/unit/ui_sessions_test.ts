/**
 * The pure parts of admin sessions: cookie reading and writing, when a request counts as https,
 * how client addresses are grouped for the lockout, and which return paths are safe.
 */
import assert from "node:assert/strict";
import {
  addressBucket,
  clientAddress,
  cookieName,
  isCrossSite,
  isUnsafeMethod,
  readCookie,
  serializeCookie,
} from "../../lib/auth/sessions.ts";
import { isSecureRequest } from "../../lib/forwarded.ts";
import { isAdminPath, safeNext } from "../../routes/admin/pages/page.tsx";

Deno.test("cookies are written HttpOnly with SameSite and Path=/, Secure and __Host- only on https", () => {
  assert.equal(
    serializeCookie(cookieName("gw_session", true), "a b", { maxAge: 60, secure: true }),
    "__Host-gw_session=a%20b; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure",
  );
  assert.equal(
    serializeCookie(cookieName("gw_login", false), "x", { secure: false, sameSite: "Strict" }),
    "gw_login=x; Path=/; HttpOnly; SameSite=Strict",
  );
  assert.match(serializeCookie("n", "", { maxAge: -5, secure: false }), /Max-Age=0/);
});

Deno.test("cookies are read by exact name", () => {
  const req = new Request("http://x/", {
    headers: { cookie: "gw_session_old=1; gw_session=abc%3D; other=2; broken" },
  });
  assert.equal(readCookie(req, "gw_session"), "abc=");
  assert.equal(readCookie(req, "other"), "2");
  assert.equal(readCookie(req, "missing"), null);
  assert.equal(readCookie(new Request("http://x/"), "gw_session"), null);
});

Deno.test("https is the request's own scheme, or x-forwarded-proto behind Deno Deploy only", () => {
  const fwd = { "x-forwarded-proto": "https" };
  assert.equal(isSecureRequest(new Request("https://a/"), { onDeploy: false }), true);
  assert.equal(
    isSecureRequest(new Request("http://a/", { headers: fwd }), { onDeploy: false }),
    false,
  );
  assert.equal(
    isSecureRequest(new Request("http://a/", { headers: fwd }), { onDeploy: true }),
    true,
  );
  assert.equal(isSecureRequest(new Request("http://a/"), { onDeploy: true }), false);
});

Deno.test("client addresses: IPv4 as is, IPv6 by /64, mapped IPv4 unwrapped, unknown without info", () => {
  assert.equal(addressBucket("203.0.113.7"), "203.0.113.7");
  assert.equal(addressBucket("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assert.equal(addressBucket("2001:db8:1:2::9"), "2001:db8:1:2::/64");
  assert.equal(addressBucket("2001:DB8::1"), "2001:db8:0:0::/64");
  assert.equal(addressBucket("::1"), "0:0:0:0::/64");
  assert.equal(addressBucket("::ffff:198.51.100.2"), "198.51.100.2");
  assert.equal(clientAddress({ remoteAddr: { hostname: "192.0.2.1", port: 1 } }), "192.0.2.1");
  assert.equal(clientAddress(undefined), "unknown");
  assert.equal(clientAddress({}), "unknown");
});

Deno.test("state-changing methods and cross-site requests are recognised", () => {
  for (const m of ["POST", "put", "PATCH", "DELETE"]) assert.ok(isUnsafeMethod(m), m);
  for (const m of ["GET", "HEAD", "OPTIONS"]) assert.ok(!isUnsafeMethod(m), m);
  const cross = new Request("http://a/", { headers: { "sec-fetch-site": "cross-site" } });
  const same = new Request("http://a/", { headers: { "sec-fetch-site": "same-site" } });
  assert.equal(isCrossSite(cross), true);
  assert.equal(isCrossSite(same), false);
  assert.equal(isCrossSite(new Request("http://a/")), false);
});

Deno.test("return paths stay inside the admin area and never loop back to login", () => {
  assert.equal(safeNext("/admin/keys?x=1"), "/admin/keys?x=1");
  assert.equal(safeNext("/admin"), "/admin");
  for (
    const bad of [
      null,
      "",
      "//evil.example",
      "https://evil.example",
      "/admin//evil",
      "/adminx",
      "/admin\\x",
      "/admin/\nx",
      "/v1/models",
    ]
  ) {
    assert.equal(safeNext(bad), "/admin", String(bad));
  }
  assert.equal(safeNext("/admin/login?next=/admin"), "/admin");
  assert.equal(safeNext("/admin/logout"), "/admin");
  assert.ok(
    isAdminPath("/admin/login?next=%2Fadmin%2Fkeys"),
    "the language switch may return to login",
  );
});
