/**
 * The admin UI driven in headless Chromium: login (wrong, then right, then a lockout), keys added
 * in a batch, a key toggled and weighted, the strategy switched, a user key created and read once,
 * the dashboard updating after traffic through `/v1`, and the language switch.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { LOCKOUT_MS, MAX_LOGIN_FAILURES } from "../../lib/auth/sessions.ts";
import { ADMIN_PASSWORD, startGateway } from "../integration/harness.ts";
import { hydrated, login, openBrowser } from "./browser.ts";

interface KeyView {
  id: string;
  masked: string;
  enabled: boolean;
  weight: number;
}

async function submitPassword(page: Page, password: string): Promise<void> {
  await page.fill("#password", password);
  await Promise.all([page.waitForLoadState("load"), page.press("#password", "Enter")]);
  await page.waitForSelector("main h1");
}

async function statValue(page: Page, id: string): Promise<string> {
  return (await page.textContent(`[data-stat="${id}"] .stat-value`))?.trim() ?? "";
}

Deno.test("login: a wrong password is refused, the right one opens the dashboard, and repeated failures lock out", async () => {
  const gw = await startGateway({});
  const b = await openBrowser();
  try {
    const { page } = b;
    await page.goto(`${gw.url}/admin/keys`);
    assert.match(page.url(), /\/admin\/login\?next=%2Fadmin%2Fkeys$/);
    await submitPassword(page, "not-the-password");
    assert.match(await page.textContent("[role=alert]") ?? "", /Wrong password/);
    assert.match(page.url(), /\/admin\/login/);

    // Keyboard only: the password field has focus on load; Enter submits.
    await page.keyboard.type(ADMIN_PASSWORD);
    await Promise.all([page.waitForURL(`${gw.url}/admin/keys`), page.keyboard.press("Enter")]);
    await hydrated(page);
    assert.equal(await page.textContent("main h1"), "Gemini keys");

    await b.context.clearCookies();
    await page.goto(`${gw.url}/admin/login`);
    for (let i = 0; i < MAX_LOGIN_FAILURES; i++) await submitPassword(page, `wrong-${i}`);
    assert.match(await page.textContent("[data-testid=locked]") ?? "", /Too many failed attempts/);
    await submitPassword(page, ADMIN_PASSWORD);
    assert.ok(await page.$("[data-testid=locked]"), "the right password is refused while locked");
    assert.match(page.url(), /\/admin\/login/);

    gw.clock.advance(LOCKOUT_MS + 1000);
    await login(page, gw.url);
    assert.equal(await page.textContent("main h1"), "Dashboard");
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
    await gw.close();
  }
});

Deno.test("keys: a batch is added with a report, a key is toggled and weighted, the strategy is switched", async () => {
  const gw = await startGateway({});
  const b = await openBrowser();
  try {
    const existing = "AIzaSyE2E-existing-000000000000000000003";
    await gw.admin("POST", "/admin/api/keys", { keys: [existing] });
    const { page } = b;
    await login(page, gw.url);
    await page.goto(`${gw.url}/admin/keys`);
    await hydrated(page);
    await page.fill(
      "#keys-input",
      `AIzaSyE2E-batch-key-0000000000000000001\nAIzaSyE2E-batch-key-0000000000000000002, ${existing} short`,
    );
    await page.click("main button[type=submit]");
    const report = await page.waitForSelector("[data-testid=add-report]");
    assert.match(await report.textContent() ?? "", /2 added · 1 duplicates · 1 rejected/);
    assert.match(await report.textContent() ?? "", /too short/);
    await page.waitForSelector("tr[data-masked='AIza…0002']");
    assert.equal(await page.locator("tbody tr").count(), 3);
    const html = await page.content();
    assert.ok(!html.includes("AIzaSyE2E-batch-key-0000000000000000001"), "keys are shown masked");

    const row = page.locator("tr[data-masked='AIza…0001']");
    const toggle = row.locator("input.switch");
    await toggle.focus();
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === "PATCH" && r.ok()),
      page.keyboard.press("Space"),
    ]);
    const weight = row.locator("input[type=number]");
    await weight.fill("7");
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === "PATCH" && r.ok()),
      weight.press("Tab"),
    ]);
    const keys = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
    const key = keys.json.data.find((k) => k.masked === "AIza…0001");
    assert.deepEqual([key?.enabled, key?.weight], [false, 7]);
    await page.reload();
    await hydrated(page);
    assert.equal(
      await page.locator("tr[data-masked='AIza…0001'] [data-status]").textContent(),
      "Disabled",
    );

    // A configured model is listed whatever the upstream lists (this one has no working key).
    await gw.admin("PATCH", "/admin/api/models/gemini-2.5-flash", { enabled: true });
    // One usable key (the others were found invalid), for the effective limits below.
    gw.fake.setKey("AIzaSyE2E-batch-key-0000000000000000001", { kind: "ok" });
    await gw.admin("PATCH", `/admin/api/keys/${key?.id}`, { enabled: true });
    await page.goto(`${gw.url}/admin/models`);
    await hydrated(page);
    await page.selectOption("#set-strategy", "least_used");
    const rotation = page.locator("[data-section=rotation]");
    await rotation.locator("button[type=submit]").click();
    await rotation.locator("[role=status]", { hasText: "Saved" }).waitFor();
    const settings = await gw.admin<{ strategy: string }>("GET", "/admin/api/settings");
    assert.equal(settings.json.strategy, "least_used");
    await page.reload();
    assert.equal(await page.inputValue("#set-strategy"), "least_used");
    // A per-key limit: a value that is no whole number above 0 is said to be wrong, not dropped.
    await hydrated(page);
    const rpm = page.getByLabel("RPM per key gemini-2.5-flash", { exact: true });
    const model = "gemini-2.5-flash";
    const rpmCell = `[data-testid=effective-limits] tr[data-model='${model}'] td[data-label=RPM]`;
    const rpmBefore = await page.locator(rpmCell).textContent();
    await rpm.fill("0");
    await rpm.press("Tab");
    await page.locator("[role=alert]", { hasText: "whole number above 0" }).waitFor();
    await rpm.fill("12");
    await rpm.press("Tab");
    await page.waitForFunction(async (id) => {
      const res = await fetch("/admin/api/models", { credentials: "same-origin" });
      const json = await res.json() as { data: { id: string; limits: { rpm: number | null } }[] };
      return json.data.find((m) => m.id === id)?.limits.rpm === 12;
    }, model);
    // The effective limits below follow without a reload.
    type Limit = { model: string; pool: { rpm: number | null } };
    const effective = await gw.admin<{ data: Limit[] }>("GET", "/admin/api/limits?scopes=0");
    const pool = effective.json.data.find((l) => l.model === model)?.pool.rpm;
    assert.ok(typeof pool === "number" && String(pool) !== rpmBefore, `${rpmBefore} → ${pool}`);
    await page.waitForFunction(
      ([selector, text]) => document.querySelector(selector)?.textContent === text,
      [rpmCell, String(pool)],
    );
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
    await gw.close();
  }
});

Deno.test("user key: shown once and working on /v1; the dashboard updates after the traffic", async () => {
  const gw = await startGateway({
    keys: { "AIzaSyE2E-upstream-0000000000000000001": { kind: "ok" } },
  });
  const b = await openBrowser();
  try {
    const { page } = b;
    await login(page, gw.url);
    assert.equal(await statValue(page, "requests"), "0");

    await page.goto(`${gw.url}/admin/user-keys`);
    await hydrated(page);
    await page.fill("#uk-name", "e2e-client");
    await page.fill("#uk-new-rpm", "60");
    await page.fill("#uk-new-rpmo", "100");
    await page.click("main button[type=submit]");
    const secret = (await page.locator("[data-testid=new-secret] code").textContent())?.trim() ??
      "";
    assert.match(secret, /^sk-[A-Za-z0-9_-]{40,}$/);
    await page.waitForSelector("tr[data-user-key]");

    const client = gw.openai(secret);
    const requestIds: string[] = [];
    for (let i = 0; i < 2; i++) {
      const { data: reply, response } = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: `hello ${i}` }],
      }).withResponse();
      assert.match(reply.choices[0].message.content ?? "", /Echo/);
      requestIds.push(response.headers.get("x-request-id") ?? "");
      gw.clock.advance(1000);
    }
    await gw.app.drain();
    await page.reload();
    await hydrated(page);
    assert.ok(!(await page.content()).includes(secret), "the secret is not shown again");
    assert.ok(await page.$("text=e2e-client"));
    // The monthly request budget set at creation, with what the two requests used of it.
    assert.ok(await page.$("text=2 of 100 requests this month"));

    await page.goto(`${gw.url}/admin`);
    await hydrated(page);
    assert.equal(await statValue(page, "requests"), "2", "a fresh dashboard shows the traffic");
    await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "once more" }],
    });
    await gw.app.drain();
    await page.getByRole("button", { name: "Refresh", exact: true }).click();
    await page.waitForFunction(
      () => document.querySelector('[data-stat="requests"] .stat-value')?.textContent === "3",
    );
    assert.equal(await statValue(page, "success"), "100.0%");

    // The request log finds a request by the id its client was given.
    await page.goto(`${gw.url}/admin/logs`);
    await hydrated(page);
    assert.equal(await page.locator("[data-testid=request-log] tbody tr").count(), 3);
    await page.fill("#log-request-id", requestIds[0]);
    await page.press("#log-request-id", "Enter");
    await page.waitForFunction(
      () => document.querySelectorAll("[data-testid=request-log] tbody tr").length === 1,
    );
    assert.match(
      await page.textContent("[data-testid=request-log] tbody tr") ?? "",
      new RegExp(requestIds[0]),
    );
    // Rotating the secret with a day's grace: a new secret is shown once; both work for now.
    await page.goto(`${gw.url}/admin/user-keys`);
    await hydrated(page);
    await page.getByRole("button", { name: "Edit the limits of e2e-client" }).click();
    await page.selectOption("select[id$=-grace]", "86400");
    await page.getByRole("button", { name: "Rotate the secret of e2e-client" }).click();
    await page.getByRole("button", { name: "Really rotate?" }).click();
    await page.waitForFunction(
      (old) => {
        const code = document.querySelector("[data-testid=new-secret] code");
        return !!code && code.textContent !== old;
      },
      secret,
    );
    const rotated = (await page.locator("[data-testid=new-secret] code").textContent())?.trim() ??
      "";
    assert.match(rotated, /^sk-[A-Za-z0-9_-]{40,}$/);
    assert.notEqual(rotated, secret);
    assert.ok(await page.$("text=The previous secret works until"));
    for (const apiKey of [secret, rotated]) {
      const reply = await gw.openai(apiKey).chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "after rotation" }],
      });
      assert.match(reply.choices[0].message.content ?? "", /Echo/);
    }
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
    await gw.close();
  }
});

Deno.test("language: Accept-Language picks Chinese, the switch turns the UI to English and sticks", async () => {
  const gw = await startGateway({});
  const b = await openBrowser({ locale: "zh-CN" });
  try {
    const { page } = b;
    await page.goto(`${gw.url}/admin/login`);
    assert.equal(await page.textContent("main h1"), "管理员登录");
    await login(page, gw.url);
    assert.equal(await page.getAttribute("html", "lang"), "zh-CN");
    assert.equal(await page.textContent("nav [aria-current=page]"), "仪表盘");
    assert.equal(
      await page.textContent(".dashboard button.btn-small"),
      "刷新",
      "islands speak it too",
    );

    await Promise.all([page.waitForURL(`${gw.url}/admin`), page.click(".lang-switch")]);
    await hydrated(page);
    assert.equal(await page.getAttribute("html", "lang"), "en");
    assert.equal(await page.textContent("nav [aria-current=page]"), "Dashboard");
    await page.goto(`${gw.url}/admin/keys`);
    await hydrated(page);
    assert.equal(await page.textContent("main h1"), "Gemini keys", "the choice sticks");
    assert.equal(await page.textContent("main button[type=submit]"), "Add keys");
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
    await gw.close();
  }
});
