/**
 * Every admin page in headless Chromium at phone (390×844) and desktop (1440×900) size, saved as
 * screenshots under `test-artifacts/screenshots/` (plus dark-mode and Chinese variants), with no
 * console error or CSP violation and no sideways scrolling down to 360 px. Also measures the served
 * bundle size and the time to interactive into `test-artifacts/ui-metrics.json`.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { removeGeminiKey } from "../../lib/store/gemini_keys.ts";
import { ADMIN_PASSWORD, startGateway, type TestGateway } from "../integration/harness.ts";
import {
  DESKTOP,
  ensureBuilt,
  hydrated,
  login,
  openBrowser,
  PHONE,
  screenshot,
} from "./browser.ts";

const PAGES = [
  ["dashboard", "/admin"],
  ["keys", "/admin/keys"],
  ["user-keys", "/admin/user-keys"],
  ["models", "/admin/models"],
  ["settings", "/admin/settings"],
  ["logs", "/admin/logs"],
] as const;

async function seed(gw: TestGateway): Promise<void> {
  await gw.admin("POST", "/admin/api/keys", {
    keys: [
      "AIzaSyShot-paid-key-000000000000000000007",
      "AIzaSyShot-spare-key-00000000000000000008",
    ],
    label: "team",
    weight: 2,
  });
  await gw.admin("PUT", "/admin/api/aliases", { aliases: { "gpt-4o": "gemini-2.5-flash" } });
  const keys = await gw.admin<{ data: { id: string; masked: string }[] }>("GET", "/admin/api/keys");
  for (const k of keys.json.data.filter((k) => /000[78]$/.test(k.masked))) {
    await gw.admin("PATCH", `/admin/api/keys/${k.id}`, { project: "team-project" });
  }
  const spare = keys.json.data.find((k) => k.masked.endsWith("0008"));
  if (spare) {
    await removeGeminiKey(gw.kv, spare.id, {
      reason: "Failed for 3 days in a row",
      now: gw.clock.now(),
    });
  }
  for (const name of ["alice", "build-bot"]) await gw.createUserKey({ name, rpm: 60 });
  const client = gw.openai(await gw.createUserKey({ name: "phone app" }));
  for (let i = 0; i < 4; i++) {
    await client.chat.completions.create({
      model: i % 2 ? "gemini-2.5-flash" : "gemini-2.5-pro",
      messages: [{ role: "user", content: `question ${i}` }],
    }).catch(() => {});
  }
  await gw.app.drain();
}

/** Form controls without an accessible name (label, aria-label or aria-labelledby). */
async function unlabelledControls(page: Page): Promise<string[]> {
  return await page.evaluate(() =>
    [...document.querySelectorAll<HTMLInputElement>("input, select, textarea")]
      .filter((el) => el.type !== "hidden")
      .filter((el) =>
        !(el.labels?.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby"))
      )
      .map((el) => el.outerHTML.slice(0, 120))
  );
}

async function noSidewaysScroll(page: Page, what: string): Promise<void> {
  const [scroll, inner] = await page.evaluate(() => [
    document.documentElement.scrollWidth,
    globalThis.innerWidth,
  ]);
  assert.ok(scroll <= inner, `${what} scrolls sideways: ${scroll} px content in ${inner} px`);
}

Deno.test("every page renders at 390x844 and 1440x900 without errors or sideways scrolling", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaSyShot-good-key-000000000000000000001": { kind: "ok" },
      "AIzaSyShot-dead-key-000000000000000000002": { kind: "invalid" },
      "AIzaSyShot-busy-key-000000000000000000003": { kind: "rate_limited", retryDelaySeconds: 600 },
    },
  });
  try {
    await seed(gw);
    const variants = [
      { name: "desktop", viewport: DESKTOP, locale: "en-US", scheme: "light" as const, all: true },
      { name: "phone", viewport: PHONE, locale: "en-US", scheme: "light" as const, all: true },
      {
        name: "phone-dark-zh",
        viewport: PHONE,
        locale: "zh-CN",
        scheme: "dark" as const,
        all: false,
      },
      {
        name: "desktop-dark",
        viewport: DESKTOP,
        locale: "en-US",
        scheme: "dark" as const,
        all: false,
      },
      {
        name: "narrow-360",
        viewport: { width: 360, height: 740 },
        locale: "zh-CN",
        scheme: "light" as const,
        all: true,
      },
    ];
    for (const v of variants) {
      const b = await openBrowser({
        viewport: v.viewport,
        locale: v.locale,
        colorScheme: v.scheme,
      });
      try {
        await b.page.goto(`${gw.url}/admin/login`);
        if (v.name !== "narrow-360") await screenshot(b.page, `${v.name}-login`);
        await noSidewaysScroll(b.page, `${v.name} login`);
        await login(b.page, gw.url);
        for (const [name, path] of PAGES) {
          if (!v.all && name !== "dashboard" && name !== "keys") continue;
          await b.page.goto(`${gw.url}${path}`);
          await hydrated(b.page);
          // Charts draw after hydration; wait for them rather than for a fixed time.
          if (name === "dashboard") await b.page.waitForSelector(".uplot");
          await noSidewaysScroll(b.page, `${v.name} ${name}`);
          assert.deepEqual(await unlabelledControls(b.page), [], `${v.name} ${name}: unlabelled`);
          if (v.name !== "narrow-360") await screenshot(b.page, `${v.name}-${name}`);
        }
        assert.deepEqual(b.errors, [], `${v.name}: console errors`);
      } finally {
        await b.close();
      }
    }
  } finally {
    await gw.close();
  }
});

interface LoadSample {
  tti: number;
  dcl: number;
  /** Bytes over the wire, headers included; 0 when served from the cache. */
  wire: number;
  transfer: number;
  decoded: number;
  encoding: string;
}

async function loadDashboard(page: Page, url: string): Promise<LoadSample> {
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url().includes("/static/build/client.")),
    page.goto(`${url}/admin`),
  ]);
  await hydrated(page);
  const m = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
    const js = performance.getEntriesByType("resource")
      .find((e) => e.name.includes("/static/build/client.")) as PerformanceResourceTiming;
    return {
      tti: Number(document.documentElement.dataset.hydrated),
      dcl: nav.domContentLoadedEventEnd,
      wire: js.transferSize,
      transfer: js.encodedBodySize,
      decoded: js.decodedBodySize,
    };
  });
  return { ...m, encoding: (await res.allHeaders())["content-encoding"] ?? "identity" };
}

function median(xs: number[]): number {
  return [...xs].sort((a, c) => a - c)[Math.floor(xs.length / 2)];
}

Deno.test("the served bundle is compressed and measured; time to interactive is reported", async () => {
  const result = await ensureBuilt();
  const gw = await startGateway({
    keys: { "AIzaSyShot-good-key-000000000000000000001": { kind: "ok" } },
  });
  const b = await openBrowser();
  try {
    await seed(gw);
    await login(b.page, gw.url);
    const cdp = await b.context.newCDPSession(b.page);
    await cdp.send("Network.enable");
    const warm: LoadSample[] = [];
    for (let i = 0; i < 5; i++) warm.push(await loadDashboard(b.page, gw.url));
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    const cold: LoadSample[] = [];
    for (let i = 0; i < 5; i++) cold.push(await loadDashboard(b.page, gw.url));
    // Chrome DevTools' "Fast 3G" preset: 562.5 ms round trip, 1.44 Mbit/s down, 675 kbit/s up.
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: 562.5,
      downloadThroughput: (1.44 * 1024 * 1024) / 8,
      uploadThroughput: (675 * 1024) / 8,
    });
    const slow = await loadDashboard(b.page, gw.url);
    await cdp.detach();

    const served = cold[0];
    const metrics = {
      command: "deno test -A tests/e2e/screenshots_test.ts",
      bundle: {
        file: result.manifest.js,
        rawBytes: result.jsBytes.raw,
        gzipBytes: result.jsBytes.gzip,
        brotliBytes: result.jsBytes.brotli,
        servedToChromium: { encoding: served.encoding, bytes: served.transfer },
      },
      stylesheet: { rawBytes: result.cssBytes.raw, gzipBytes: result.cssBytes.gzip },
      dashboardTimeToInteractiveMs: {
        definition: "navigation start to the end of island hydration (html[data-hydrated])",
        coldCacheMedian: median(cold.map((s) => s.tti)),
        coldCache: cold.map((s) => s.tti),
        warmCacheMedian: median(warm.map((s) => s.tti)),
        warmCache: warm.map((s) => s.tti),
        fast3gColdCache: slow.tti,
      },
    };
    await Deno.mkdir(new URL("../../test-artifacts/", import.meta.url), { recursive: true });
    await Deno.writeTextFile(
      new URL("../../test-artifacts/ui-metrics.json", import.meta.url),
      JSON.stringify(metrics, null, 2) + "\n",
    );
    // Facts, not timings: what Chromium downloads is the compressed file the build made.
    const expected: Record<string, number | null> = {
      br: result.jsBytes.brotli,
      gzip: result.jsBytes.gzip,
    };
    assert.ok(served.encoding in expected, `served as ${served.encoding}`);
    assert.equal(served.transfer, expected[served.encoding]);
    assert.equal(served.decoded, result.jsBytes.raw);
    assert.ok([...cold, ...warm, slow].every((s) => Number.isFinite(s.tti) && s.tti > 0));
    assert.ok(cold.every((s) => s.wire > s.transfer), "cold loads download the bundle");
    assert.ok(warm.slice(1).every((s) => s.wire === 0), "warm loads use the cache");
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
    await gw.close();
  }
});

Deno.test("pages are readable before hydration: with JavaScript off, login works and data shows", async () => {
  const gw = await startGateway({
    keys: { "AIzaSyShot-good-key-000000000000000000001": { kind: "ok" } },
  });
  const b = await openBrowser({ javaScript: false });
  try {
    await seed(gw);
    const { page } = b;
    await page.goto(`${gw.url}/admin/login`);
    await page.fill("#password", ADMIN_PASSWORD);
    await Promise.all([page.waitForURL(`${gw.url}/admin`), page.click("main button[type=submit]")]);
    assert.equal(await page.getAttribute("html", "data-hydrated"), null, "nothing hydrated");
    assert.equal(await page.textContent('[data-stat="requests"] .stat-value'), "4");
    assert.match(await page.textContent("[data-testid=quick-start]") ?? "", /\/v1/);
    await page.goto(`${gw.url}/admin/keys`);
    assert.equal(await page.locator("tbody tr[data-key-id]").count(), 2);
    await page.goto(`${gw.url}/admin/user-keys`);
    assert.match(await page.textContent("main") ?? "", /build-bot/);
    await page.goto(`${gw.url}/admin/settings`);
    assert.equal(await page.inputValue("#set-thinkingBudget"), "8192");
  } finally {
    await b.close();
    await gw.close();
  }
});
