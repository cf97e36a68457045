/**
 * The admin UI's security over plain HTTP (no browser): login, session cookie attributes, stored
 * deadlines, CSRF on the admin API and logout, lockout with a fake clock, the page headers, safe
 * redirects, language choice, and the static files' caching.
 */
import assert from "node:assert/strict";
import {
  FAILURE_WINDOW_MS,
  LOCKOUT_MS,
  MAX_CHECKS_IN_FLIGHT,
  MAX_LOGIN_FAILURES,
  SESSION_TTL_MS,
} from "../../lib/auth/sessions.ts";
import { ADMIN_PASSWORD, kvText, startGateway } from "../integration/harness.ts";
import { ensureBuilt } from "./browser.ts";
import { cookiesOf, loginForm, loginHttp, postLogin } from "./http.ts";

interface ErrorBody {
  error: { message: string; code: string | null };
}

Deno.test("pages need a session: visitors are sent to the login page, which sets no session", async () => {
  const gw = await startGateway({});
  try {
    for (
      const path of [
        "/admin",
        "/admin/keys",
        "/admin/user-keys",
        "/admin/models",
        "/admin/settings",
        "/admin/logs",
      ]
    ) {
      const res = await fetch(`${gw.url}${path}`, { redirect: "manual" });
      await res.body?.cancel();
      assert.equal(res.status, 303, path);
      assert.equal(res.headers.get("location"), `/admin/login?next=${encodeURIComponent(path)}`);
    }
    const form = await loginForm(fetch, gw.url);
    assert.equal(form.status, 200);
    assert.match(form.html, /type="password"/);
    assert.ok(form.token.length > 10);
  } finally {
    await gw.close();
  }
});

Deno.test("a login sets an HttpOnly SameSite session cookie, stored only as a hash, Secure with __Host- on https", async () => {
  const gw = await startGateway({});
  try {
    const res = await postLogin(fetch, gw.url, { next: "/admin/keys" });
    await res.body?.cancel();
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/admin/keys");
    const session = cookiesOf(res).get("gw_session");
    assert.ok(session, "plain-http login sets gw_session");
    assert.match(session.raw, /; HttpOnly/);
    assert.match(session.raw, /; SameSite=Lax/);
    assert.match(session.raw, /; Path=\//);
    assert.doesNotMatch(session.raw, /Secure/);
    assert.ok(
      !(await kvText(gw.kv)).includes(session.value),
      "the cookie value is not stored in KV",
    );

    const https = await postLogin(gw.app.fetch, "https://gateway.example");
    const secure = cookiesOf(https).get("__Host-gw_session");
    assert.ok(secure, "https login uses the __Host- prefix");
    assert.match(secure.raw, /; Secure/);
    assert.match(secure.raw, /; HttpOnly/);
  } finally {
    await gw.close();
  }
});

Deno.test("x-forwarded-proto makes the cookie Secure only on Deno Deploy", async () => {
  const local = await startGateway({});
  const deploy = await startGateway({ env: { DENO_DEPLOY: "true" } });
  try {
    const headers = { "x-forwarded-proto": "https" };
    const spoofed = await postLogin(local.app.fetch, "http://gw.local", { headers });
    assert.ok(cookiesOf(spoofed).has("gw_session"), "not trusted outside Deploy");
    const proxied = await postLogin(deploy.app.fetch, "http://gw.deno.net", { headers });
    assert.ok(cookiesOf(proxied).has("__Host-gw_session"), "trusted behind Deploy's proxy");
  } finally {
    await local.close();
    await deploy.close();
  }
});

Deno.test("a session ends at its stored deadline even while KV still holds it, and page loads renew it", async () => {
  const gw = await startGateway({});
  try {
    const s = await loginHttp(fetch, gw.url);
    gw.clock.advance(SESSION_TTL_MS / 2 + 60_000);
    const renewed = await fetch(`${gw.url}/admin`, { headers: { cookie: s.cookie } });
    await renewed.body?.cancel();
    assert.equal(renewed.status, 200);
    assert.ok(
      cookiesOf(renewed).has("gw_session"),
      "past half-life, a page load renews the cookie",
    );
    gw.clock.advance(SESSION_TTL_MS - 60_000);
    const still = await fetch(`${gw.url}/admin/api/keys`, { headers: { cookie: s.cookie } });
    await still.body?.cancel();
    assert.equal(still.status, 200, "the renewed deadline holds");
    gw.clock.advance(SESSION_TTL_MS);
    const api = await fetch(`${gw.url}/admin/api/keys`, { headers: { cookie: s.cookie } });
    await api.body?.cancel();
    assert.equal(api.status, 401);
    const page = await fetch(`${gw.url}/admin`, {
      headers: { cookie: s.cookie },
      redirect: "manual",
    });
    await page.body?.cancel();
    assert.equal(page.status, 303);
  } finally {
    await gw.close();
  }
});

Deno.test("with a session cookie, admin API changes need the CSRF token; Bearer needs none", async () => {
  const gw = await startGateway({});
  try {
    const s = await loginHttp(fetch, gw.url);
    const list = await fetch(`${gw.url}/admin/api/user-keys`, { headers: { cookie: s.cookie } });
    assert.equal(list.status, 200, "reads need no token");
    await list.body?.cancel();

    const post = (headers: Record<string, string>) =>
      fetch(`${gw.url}/admin/api/user-keys`, {
        method: "POST",
        headers: { cookie: s.cookie, "content-type": "application/json", ...headers },
        body: JSON.stringify({ name: "forged" }),
      });
    const forgeries: Record<string, string>[] = [
      {},
      { "x-csrf-token": "wrong" },
      { "x-csrf-token": s.csrf, "sec-fetch-site": "cross-site" },
    ];
    for (const headers of forgeries) {
      const res = await post(headers);
      assert.equal(res.status, 403, JSON.stringify(headers));
      const body = await res.json() as ErrorBody;
      assert.equal(body.error.code, "csrf_failed");
    }
    const users = await gw.admin<{ data: unknown[] }>("GET", "/admin/api/user-keys");
    assert.equal(users.json.data.length, 0, "no forged change went through");

    const ok = await post({ "x-csrf-token": s.csrf, "sec-fetch-site": "same-origin" });
    assert.equal(ok.status, 201);
    await ok.body?.cancel();
    const bearer = await gw.admin("POST", "/admin/api/user-keys", { name: "script" });
    assert.equal(bearer.status, 201, "Bearer <ADMIN_PASSWORD> works without a CSRF token");
  } finally {
    await gw.close();
  }
});

Deno.test("sign-ins, failed sign-ins, UI changes and sign-outs are in the audit log and on the log page", async () => {
  const gw = await startGateway({});
  try {
    const failed = await postLogin(fetch, gw.url, { password: "wrong-password" });
    await failed.body?.cancel();
    assert.equal(failed.status, 401);
    const s = await loginHttp(fetch, gw.url);
    const change = await fetch(`${gw.url}/admin/api/settings`, {
      method: "PATCH",
      headers: {
        cookie: s.cookie,
        "x-csrf-token": s.csrf,
        "content-type": "application/json",
      },
      body: JSON.stringify({ maxAttempts: 4 }),
    });
    await change.body?.cancel();
    assert.equal(change.status, 200);
    const out = await fetch(`${gw.url}/admin/logout`, {
      method: "POST",
      redirect: "manual",
      headers: { cookie: s.cookie, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ _csrf: s.csrf }),
    });
    await out.body?.cancel();
    const log = await gw.admin<{ data: { action: string; actor: string; status: number }[] }>(
      "GET",
      "/admin/api/audit-log",
    );
    const rows = log.json.data.map((
      e,
    ) => [e.action, e.actor.replace(/ [0-9a-f]{8}$/, " #"), e.status]);
    assert.deepEqual(rows, [
      ["logout", "session #", 303],
      ["api", "session #", 200],
      ["login", "session #", 303],
      ["login_failed", "none", 401],
    ]);
    const tags = new Set(log.json.data.filter((e) => e.actor !== "none").map((e) => e.actor));
    assert.equal(tags.size, 1, "one session did all three");
    // The request log page shows the activity (server-rendered, no script needed).
    const s2 = await loginHttp(fetch, gw.url);
    const page = await fetch(`${gw.url}/admin/logs`, { headers: { cookie: s2.cookie } });
    const html = await page.text();
    assert.match(html, /Admin activity/);
    assert.match(html, /Wrong password at sign-in/);
    assert.match(html, /PATCH \/admin\/api\/settings/);
    // The page's CSV download link works with the session alone.
    assert.match(html, /href="\/admin\/api\/request-log\?limit=1000&amp;format=csv"/);
    const csv = await fetch(`${gw.url}/admin/api/request-log?limit=1000&format=csv`, {
      headers: { cookie: s2.cookie },
    });
    assert.equal(csv.status, 200);
    assert.match(await csv.text(), /^time,request_id,/);
  } finally {
    await gw.close();
  }
});

Deno.test("logout needs the CSRF token and kills the session on the server", async () => {
  const gw = await startGateway({});
  try {
    const s = await loginHttp(fetch, gw.url);
    const logout = (token: string) =>
      fetch(`${gw.url}/admin/logout`, {
        method: "POST",
        redirect: "manual",
        headers: { cookie: s.cookie, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ _csrf: token }),
      });
    const forged = await logout("forged");
    await forged.body?.cancel();
    assert.equal(forged.status, 403);
    const real = await logout(s.csrf);
    await real.body?.cancel();
    assert.equal(real.status, 303);
    assert.match(cookiesOf(real).get("gw_session")!.raw, /Max-Age=0/);
    const after = await fetch(`${gw.url}/admin/api/keys`, { headers: { cookie: s.cookie } });
    await after.body?.cancel();
    assert.equal(after.status, 401, "the old cookie no longer works");
  } finally {
    await gw.close();
  }
});

Deno.test("a login form without its paired token, or started by another site, is refused", async () => {
  const gw = await startGateway({});
  try {
    const form = await loginForm(fetch, gw.url);
    const noCookie = await fetch(`${gw.url}/admin/login`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ _csrf: form.token, password: ADMIN_PASSWORD }),
    });
    await noCookie.body?.cancel();
    assert.equal(noCookie.status, 403);
    assert.ok(!cookiesOf(noCookie).has("gw_session"));
    const crossSite = await postLogin(fetch, gw.url, {
      headers: { "sec-fetch-site": "cross-site" },
    });
    await crossSite.body?.cancel();
    assert.equal(crossSite.status, 403);
    assert.ok(!cookiesOf(crossSite).has("gw_session"));
  } finally {
    await gw.close();
  }
});

Deno.test("repeated wrong passwords lock the client out of the form and the API until the deadline", async () => {
  const gw = await startGateway({});
  try {
    for (let i = 1; i < MAX_LOGIN_FAILURES; i++) {
      const res = await postLogin(fetch, gw.url, { password: "wrong-password" });
      const html = await res.text();
      assert.equal(res.status, 401);
      assert.match(html, new RegExp(`${MAX_LOGIN_FAILURES - i} attempts left`));
    }
    const last = await postLogin(fetch, gw.url, { password: "wrong-password" });
    assert.equal(last.status, 429);
    assert.match(await last.text(), /Too many failed attempts/);
    const right = await postLogin(fetch, gw.url);
    await right.body?.cancel();
    assert.equal(right.status, 429, "even the right password is refused while locked");
    assert.ok(!cookiesOf(right).has("gw_session"));
    const api = await gw.admin<ErrorBody>("GET", "/admin/api/keys");
    assert.equal(api.status, 429, "the Bearer API shares the lockout");
    assert.equal(api.json.error.code, "admin_locked_out");

    gw.clock.advance(LOCKOUT_MS + 1000);
    const after = await postLogin(fetch, gw.url);
    await after.body?.cancel();
    assert.equal(after.status, 303, "the lockout ends at its stored deadline");
    assert.equal((await gw.admin("GET", "/admin/api/keys")).status, 200);
  } finally {
    await gw.close();
  }
});

Deno.test("wrong Bearer passwords on the admin API count toward the lockout; old failures expire", async () => {
  const gw = await startGateway({});
  try {
    const bad = () =>
      fetch(`${gw.url}/admin/api/keys`, { headers: { authorization: "Bearer not-the-password" } });
    for (let i = 0; i < MAX_LOGIN_FAILURES - 1; i++) {
      const res = await bad();
      await res.body?.cancel();
      assert.equal(res.status, 401);
    }
    gw.clock.advance(FAILURE_WINDOW_MS + 1000);
    const res = await bad();
    await res.body?.cancel();
    assert.equal(res.status, 401, "failures outside the window start a new count");
    assert.equal((await gw.admin("GET", "/admin/api/keys")).status, 200);
    for (let i = 0; i < MAX_LOGIN_FAILURES; i++) await (await bad()).body?.cancel();
    assert.equal((await gw.admin("GET", "/admin/api/keys")).status, 429);
  } finally {
    await gw.close();
  }
});

Deno.test("parallel wrong passwords are checked at most MAX_CHECKS_IN_FLIGHT times, on the API and the form", async () => {
  const gw = await startGateway({});
  try {
    const statuses = (list: number[]) => {
      const counts: Record<number, number> = {};
      for (const s of list) counts[s] = (counts[s] ?? 0) + 1;
      return counts;
    };
    const api = await Promise.all(Array.from({ length: 60 }, async (_, i) => {
      const res = await fetch(`${gw.url}/admin/api/keys`, {
        method: "DELETE",
        headers: { authorization: `Bearer wrong-${i}` },
      });
      await res.body?.cancel();
      return res.status;
    }));
    const counts = statuses(api);
    // Checks run at once up to the limit; failures that settle first lock the rest out sooner.
    const checked = counts[401];
    assert.ok(
      checked >= MAX_LOGIN_FAILURES && checked <= MAX_CHECKS_IN_FLIGHT,
      JSON.stringify(counts),
    );
    assert.equal(counts[429], 60 - checked, JSON.stringify(counts));
    const right = await gw.admin<ErrorBody>("GET", "/admin/api/keys");
    assert.equal(right.status, 429, "the client is locked out now");
    assert.equal(right.json.error.code, "admin_locked_out");
    // The audit log holds the checked guesses and at most one throttled refusal, not 60 rows.
    gw.clock.advance(LOCKOUT_MS + 1000);
    const log = await gw.admin<{ data: { status: number }[] }>("GET", "/admin/api/audit-log");
    assert.equal(log.status, 200);
    assert.ok(log.json.data.length <= MAX_CHECKS_IN_FLIGHT + 2, `${log.json.data.length} rows`);

    // The login form shares the same reservation (a new window, after the lockout).
    const form = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const res = await postLogin(fetch, gw.url, { password: `wrong-${i}` });
      await res.body?.cancel();
      return res.status;
    }));
    const formCounts = statuses(form);
    assert.equal(formCounts[401] ?? 0, MAX_LOGIN_FAILURES - 1, JSON.stringify(formCounts));
    assert.equal(formCounts[429], 20 - (MAX_LOGIN_FAILURES - 1), JSON.stringify(formCounts));
  } finally {
    await gw.close();
  }
});

Deno.test("a right Bearer password takes back its reserved attempt: many in parallel lock nobody out", async () => {
  const gw = await startGateway({});
  try {
    const bad = await fetch(`${gw.url}/admin/api/keys`, {
      headers: { authorization: "Bearer not-the-password" },
    });
    await bad.body?.cancel();
    assert.equal(bad.status, 401);
    for (let round = 0; round < 5; round++) {
      const res = await Promise.all(
        Array.from({ length: 3 }, () => gw.admin("GET", "/admin/api/settings")),
      );
      assert.deepEqual(res.map((r) => r.status), [200, 200, 200]);
    }
    // The failure before is still counted (only a form login forgets failures): 4 more lock.
    for (let i = 0; i < MAX_LOGIN_FAILURES - 2; i++) {
      const res = await fetch(`${gw.url}/admin/api/keys`, {
        headers: { authorization: "Bearer not-the-password" },
      });
      await res.body?.cancel();
      assert.equal(res.status, 401);
    }
    assert.equal((await gw.admin("GET", "/admin/api/keys")).status, 200);
    const last = await fetch(`${gw.url}/admin/api/keys`, {
      headers: { authorization: "Bearer not-the-password" },
    });
    await last.body?.cancel();
    assert.equal(last.status, 401);
    assert.equal((await gw.admin("GET", "/admin/api/keys")).status, 429);
  } finally {
    await gw.close();
  }
});

Deno.test("pages carry a strict CSP and no-store; redirects never leave the admin area", async () => {
  const gw = await startGateway({});
  try {
    const s = await loginHttp(fetch, gw.url);
    const res = await fetch(`${gw.url}/admin/keys`, { headers: { cookie: s.cookie } });
    const html = await res.text();
    const csp = res.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(res.headers.get("x-frame-options"), "DENY");
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.doesNotMatch(html, /<script(?![^>]*(type="module" src=|type="application\/json"))/);
    assert.doesNotMatch(html, / style="/, "no inline styles (CSP forbids them)");

    for (const next of ["//evil.example/", "https://evil.example/", "/admin/../../x\r\n"]) {
      const login = await postLogin(fetch, gw.url, { next });
      await login.body?.cancel();
      assert.equal(login.headers.get("location"), "/admin", next);
      const lang = await fetch(`${gw.url}/admin/lang?to=en&next=${encodeURIComponent(next)}`, {
        redirect: "manual",
      });
      await lang.body?.cancel();
      assert.equal(lang.headers.get("location"), "/admin", next);
    }
  } finally {
    await gw.close();
  }
});

Deno.test("the language follows Accept-Language until the switch sets a cookie", async () => {
  const gw = await startGateway({});
  try {
    const zh = await fetch(`${gw.url}/admin/login`, {
      headers: { "accept-language": "zh-CN,zh;q=0.9,en;q=0.8" },
    });
    const zhHtml = await zh.text();
    assert.match(zhHtml, /<html lang="zh-CN">/);
    assert.match(zhHtml, /管理员登录/);
    const sw = await fetch(`${gw.url}/admin/lang?to=en&next=%2Fadmin%2Flogin`, {
      redirect: "manual",
    });
    await sw.body?.cancel();
    assert.equal(sw.headers.get("location"), "/admin/login");
    const langCookie = cookiesOf(sw).get("gw_lang");
    assert.equal(langCookie?.value, "en");
    const en = await fetch(`${gw.url}/admin/login`, {
      headers: { "accept-language": "zh-CN", cookie: `gw_lang=${langCookie!.value}` },
    });
    const enHtml = await en.text();
    assert.match(enHtml, /<html lang="en">/);
    assert.match(enHtml, /Admin login/);
  } finally {
    await gw.close();
  }
});

Deno.test("on Deno Deploy without ADMIN_PASSWORD the login page says how to set it and refuses logins", async () => {
  const gw = await startGateway({ env: { DENO_DEPLOY: "true", ADMIN_PASSWORD: "" } });
  try {
    const page = await fetch(`${gw.url}/admin/login`);
    const html = await page.text();
    assert.equal(page.status, 503);
    assert.match(html, /ADMIN_PASSWORD/);
    assert.match(html, /Settings → Environment Variables/);
    assert.doesNotMatch(html, /type="password"/);
    const post = await fetch(`${gw.url}/admin/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "password=anything",
    });
    await post.body?.cancel();
    assert.equal(post.status, 503);
  } finally {
    await gw.close();
  }
});

Deno.test("the built bundle is served with a content hash, immutable caching and compression", async () => {
  const { manifest } = await ensureBuilt();
  const gw = await startGateway({});
  try {
    const s = await loginHttp(fetch, gw.url);
    const page = await (await fetch(`${gw.url}/admin`, { headers: { cookie: s.cookie } })).text();
    assert.ok(page.includes(`/static/build/${manifest.js}`), "the page links the current bundle");
    assert.match(manifest.js, /^client\.[0-9a-f]{12}\.js$/);
    const plain = await fetch(`${gw.url}/static/build/${manifest.js}`, {
      headers: { "accept-encoding": "identity" },
    });
    const body = await plain.arrayBuffer();
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.match(plain.headers.get("content-type") ?? "", /javascript/);
    assert.equal(body.byteLength, manifest.sizes?.js);
    // Deno's fetch decompresses transparently: the header and a smaller body prove the encoding.
    const br = await gw.app.fetch(
      new Request(`${gw.url}/static/build/${manifest.js}`, {
        headers: { "accept-encoding": "br" },
      }),
    );
    assert.equal(br.headers.get("content-encoding"), "br");
    assert.ok((await br.arrayBuffer()).byteLength < body.byteLength / 2);
    for (
      const bad of ["/static/../deno.json", "/static/build/..%2F..%2Fdeno.json", "/static/.env"]
    ) {
      const res = await fetch(`${gw.url}${bad}`);
      await res.body?.cancel();
      assert.equal(res.status, 404, bad);
    }
  } finally {
    await gw.close();
  }
});

Deno.test("unknown admin paths: an HTML page for people, OpenAI's JSON 404 for the admin API", async () => {
  const gw = await startGateway({});
  try {
    const session = await loginHttp(fetch, gw.url);
    const page = await fetch(`${gw.url}/admin/no-such-page`, {
      headers: { cookie: session.cookie },
    });
    assert.equal(page.status, 404);
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);
    assert.match(await page.text(), /href="\/admin"/);
    const api = await gw.admin<{ error: { code: string } }>("GET", "/admin/api/no-such-thing");
    assert.equal(api.status, 404);
    assert.equal(api.json.error.code, "unknown_route");
    const posted = await gw.admin<{ error: { code: string } }>("POST", "/admin/no-such-form", {});
    assert.equal(posted.status, 404);
    assert.equal(posted.json.error.code, "unknown_route");
  } finally {
    await gw.close();
  }
});

Deno.test("a changed admin password ends every session made under the old one", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const before = await startGateway({ kv });
    const old = await loginHttp(fetch, before.url);
    const ok = await fetch(`${before.url}/admin/api/keys`, { headers: { cookie: old.cookie } });
    await ok.body?.cancel();
    assert.equal(ok.status, 200, "the session works while the password is unchanged");
    await before.close();
    // The operator rotates the password (it leaked) and restarts on the same data.
    const after = await startGateway({ kv, env: { ADMIN_PASSWORD: "a-brand-new-password" } });
    try {
      const api = await fetch(`${after.url}/admin/api/keys`, { headers: { cookie: old.cookie } });
      await api.body?.cancel();
      assert.equal(api.status, 401);
      const page = await fetch(`${after.url}/admin`, {
        headers: { cookie: old.cookie },
        redirect: "manual",
      });
      await page.body?.cancel();
      assert.equal(page.status, 303);
      assert.match(page.headers.get("location") ?? "", /\/admin\/login/);
      // A session made under the new password works.
      const fresh = await loginHttp(fetch, after.url, { password: "a-brand-new-password" });
      const res = await fetch(`${after.url}/admin/api/keys`, { headers: { cookie: fresh.cookie } });
      await res.body?.cancel();
      assert.equal(res.status, 200);
    } finally {
      await after.close();
    }
  } finally {
    kv.close();
  }
});

Deno.test("behind a trusted proxy: secure cookies from X-Forwarded-Proto, lockout by the forwarded client", async () => {
  const gw = await startGateway({ env: { TRUST_PROXY: "1" } });
  try {
    const via = (client: string) => ({ "x-forwarded-for": client, "x-forwarded-proto": "https" });
    const ok = await postLogin(fetch, gw.url, { headers: via("198.51.100.1") });
    await ok.body?.cancel();
    assert.equal(ok.status, 303);
    const session = ok.headers.getSetCookie().find((c) => c.includes("gw_session="))!;
    assert.match(session, /^__Host-gw_session=/);
    assert.match(session, /; Secure/);
    // Five wrong passwords lock out the client that sent them, not everyone behind the proxy.
    for (let i = 0; i < 5; i++) {
      const bad = await postLogin(fetch, gw.url, {
        password: "wrong-password",
        headers: via("198.51.100.66"),
      });
      await bad.body?.cancel();
    }
    const locked = await postLogin(fetch, gw.url, { headers: via("198.51.100.66") });
    await locked.body?.cancel();
    assert.equal(locked.status, 429);
    const other = await postLogin(fetch, gw.url, { headers: via("198.51.100.1") });
    await other.body?.cancel();
    assert.equal(other.status, 303, "another client behind the same proxy still logs in");
  } finally {
    await gw.close();
  }
});

Deno.test("without TRUST_PROXY, forwarded headers are not believed", async () => {
  const gw = await startGateway({});
  try {
    const ok = await postLogin(fetch, gw.url, {
      headers: { "x-forwarded-for": "198.51.100.1", "x-forwarded-proto": "https" },
    });
    await ok.body?.cancel();
    const session = ok.headers.getSetCookie().find((c) => c.includes("gw_session="))!;
    assert.match(session, /^gw_session=/);
    assert.doesNotMatch(session, /Secure/);
  } finally {
    await gw.close();
  }
});

Deno.test("the right password is never held up by the guard: parallel calls, and after a few typos", async () => {
  // A generated password: its first check is a slow key derivation, so parallel calls overlap.
  const gw = await startGateway({ env: { ADMIN_PASSWORD: "" } });
  const password = gw.report.generatedAdminPassword!;
  try {
    const get = async (password: string) => {
      const res = await fetch(`${gw.url}/admin/api/keys`, {
        headers: { authorization: `Bearer ${password}` },
      });
      await res.body?.cancel();
      return res.status;
    };
    // A fresh isolate has not checked the password yet: parallel calls are all checked.
    assert.deepEqual(await Promise.all(Array.from({ length: 8 }, () => get(password))), [
      200,
      200,
      200,
      200,
      200,
      200,
      200,
      200,
    ]);
    for (let i = 0; i < MAX_LOGIN_FAILURES - 1; i++) assert.equal(await get(`typo-${i}`), 401);
    assert.deepEqual(await Promise.all([1, 2, 3].map(() => get(password))), [200, 200, 200]);
    // Locked out, the address gets the same answer for every password: a right one included.
    assert.equal(await get("typo-last"), 401);
    assert.equal(await get("one-more-guess"), 429);
    assert.equal(await get(password), 429);
  } finally {
    await gw.close();
  }
});
