/**
 * The Gemini keys page in headless Chromium beyond the basics: testing many keys at once with a
 * progress bar and a report, and restoring a key from the removed area.
 */
import assert from "node:assert/strict";
import { removeGeminiKey } from "../../lib/store/gemini_keys.ts";
import { startGateway } from "../integration/harness.ts";
import { hydrated, login, openBrowser } from "./browser.ts";

interface KeyView {
  id: string;
  masked: string;
  status: string;
}

Deno.test("keys: many keys are tested with progress and a report; a removed key is restored", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaSyE2E-good-key-00000000000000000001": { kind: "ok" },
      "AIzaSyE2E-good-key-00000000000000000002": { kind: "ok" },
      "AIzaSyE2E-dead-key-00000000000000000003": { kind: "invalid" },
      // Slow enough that the progress bar is certainly on screen while it is probed.
      "AIzaSyE2E-slow-key-00000000000000000004": { kind: "slow", delayMs: 1500 },
      "AIzaSyE2E-gone-key-00000000000000000005": { kind: "ok" },
    },
  });
  const b = await openBrowser();
  try {
    const keys = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
    const gone = keys.json.data.find((k) => k.masked === "AIza…0005")!;
    await removeGeminiKey(gw.kv, gone.id, {
      reason: "Failed for 3 days in a row",
      now: gw.clock.now(),
    });

    const { page } = b;
    await login(page, gw.url);
    await page.goto(`${gw.url}/admin/keys`);
    await hydrated(page);
    assert.equal(await page.locator("tbody tr[data-key-id]").count(), 4);
    const removedRow = page.locator(`[data-testid=removed-keys] tr[data-removed-id="${gone.id}"]`);
    assert.match(await removedRow.textContent() ?? "", /Failed for 3 days in a row/);

    await page.check(".select-all input");
    await page.getByRole("button", { name: "Test selected" }).click();
    const progress = page.locator("[data-testid=bulk-progress]");
    await progress.waitFor();
    assert.match(await progress.textContent() ?? "", /Testing: [0-3] of 4 done/);
    const report = page.locator("[data-testid=list-notice]");
    await report.waitFor();
    assert.equal(await report.textContent(), "Tested 4: 3 working, 1 failing");
    await progress.waitFor({ state: "detached" });
    const dead = page.locator("tr[data-masked='AIza…0003']");
    assert.equal(
      await dead.locator("[data-test-result]").getAttribute("data-test-result"),
      "failed",
    );
    assert.equal(await dead.locator("[data-status]").textContent(), "Invalid");

    await removedRow.getByRole("button", { name: "Restore" }).click();
    await removedRow.waitFor({ state: "detached" });
    await page.locator("tr[data-masked='AIza…0005']").waitFor();
    const after = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
    assert.ok(after.json.data.some((k) => k.id === gone.id), "the key is back in the pool");
    const removed = await gw.admin<{ data: unknown[] }>("GET", "/admin/api/removed-keys");
    assert.equal(removed.json.data.length, 0);

    // A proxy is typed in for one key (its login never shows again), then removed.
    const first = page.locator("tr[data-masked='AIza…0001']");
    const proxyInput = first.getByRole("textbox", { name: "Proxy AIza…0001" });
    await proxyInput.fill("http://me:pw@10.1.2.3:3128");
    await proxyInput.press("Enter");
    await page.waitForFunction(() =>
      document.querySelector<HTMLInputElement>("tr[data-masked='AIza…0001'] .proxy-line input")
        ?.placeholder === "http://10.1.2.3:3128 (with login)"
    );
    const withProxy = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
    const proxied = withProxy.json.data.find((k) => k.masked === "AIza…0001")!;
    assert.equal(
      (proxied as KeyView & { proxy: string }).proxy,
      "http://10.1.2.3:3128 (with login)",
    );
    await first.getByRole("button", { name: "Remove the proxy of AIza…0001" }).click();
    await first.getByRole("button", { name: "Remove the proxy of AIza…0001" }).waitFor({
      state: "detached",
    });
    const cleared = await gw.admin<{ data: (KeyView & { proxy: string | null })[] }>(
      "GET",
      "/admin/api/keys",
    );
    assert.equal(cleared.json.data.find((k) => k.masked === "AIza…0001")!.proxy, null);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
    await gw.close();
  }
});

interface ModelView {
  id: string;
  enabled: boolean;
  limits: { rpm: number | null; tpm: number | null; rpd: number | null };
}

Deno.test("models: a model is disabled and given a per-key limit, an alias is saved", async () => {
  const gw = await startGateway({
    keys: { "AIzaSyE2E-good-key-00000000000000000001": { kind: "ok" } },
  });
  const b = await openBrowser();
  try {
    const { page } = b;
    await login(page, gw.url);
    await page.goto(`${gw.url}/admin/models`);
    await hydrated(page);
    const row = page.locator("tr[data-model='gemini-2.5-pro']");
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === "PATCH" && r.ok()),
      row.getByRole("switch").click(),
    ]);
    const rpm = row.getByLabel("RPM per key gemini-2.5-pro");
    await rpm.fill("12");
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === "PATCH" && r.ok()),
      rpm.press("Tab"),
    ]);
    const models = await gw.admin<{ data: ModelView[] }>("GET", "/admin/api/models");
    const pro = models.json.data.find((m) => m.id === "gemini-2.5-pro");
    assert.deepEqual([pro?.enabled, pro?.limits.rpm], [false, 12]);

    const aliases = page.locator("[data-testid=aliases-form]");
    await aliases.getByRole("button", { name: "Add alias" }).click();
    await page.fill("#alias-0", "gpt-4o");
    await page.fill("#alias-model-0", "gemini-2.5-flash");
    await aliases.getByRole("button", { name: "Save" }).click();
    await aliases.locator("[role=status]", { hasText: "Saved" }).waitFor();
    const saved = await gw.admin<{ aliases: Record<string, string> }>("GET", "/admin/api/aliases");
    assert.deepEqual(saved.json.aliases, { "gpt-4o": "gemini-2.5-flash" });
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
    await gw.close();
  }
});
