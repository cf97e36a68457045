/**
 * Browser helpers for the end-to-end tests: builds the UI bundle once per test process, starts
 * Debian's headless Chromium through playwright-core with a fresh profile, collects console errors
 * (CSP violations and failed hydration show up there), logs in, and saves screenshots under
 * `test-artifacts/screenshots/`.
 */
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { build, type BuildResult } from "../../scripts/build.ts";
import { ADMIN_PASSWORD } from "../integration/harness.ts";

/** Where Debian's chromium package installs the browser. */
export const CHROMIUM = "/usr/bin/chromium";
/** Where screenshots go (git-ignored, kept by CI as artifacts). */
export const SCREENSHOT_DIR = new URL("../../test-artifacts/screenshots/", import.meta.url);
/** Phone and desktop viewports of the screenshots. */
export const PHONE = { width: 390, height: 844 };
/** Desktop viewport. */
export const DESKTOP = { width: 1440, height: 900 };

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let built: Promise<BuildResult> | null = null;

/** Builds the client bundle (once per process) so the pages under test hydrate with current code. */
export function ensureBuilt(): Promise<BuildResult> {
  built ??= build({ quiet: true });
  return built;
}

/** A browser with one page, and what its console reported. */
export interface BrowserSession {
  context: BrowserContext;
  page: Page;
  /** Console errors (CSP violations included) and uncaught exceptions; not HTTP error statuses. */
  errors: string[];
  close(): Promise<void>;
}

/** Options of `openBrowser`. */
export interface OpenBrowserOptions {
  viewport?: { width: number; height: number };
  /** Sets `Accept-Language` and the browser locale. */
  locale?: string;
  colorScheme?: "light" | "dark";
  /** False runs the pages without JavaScript (as before hydration). */
  javaScript?: boolean;
}

/** Starts Chromium with a fresh profile directory and opens a page. */
export async function openBrowser(options: OpenBrowserOptions = {}): Promise<BrowserSession> {
  await ensureBuilt();
  const profile = await Deno.makeTempDir({ prefix: "gw-chromium-" });
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: options.viewport ?? DESKTOP,
      locale: options.locale ?? "en-US",
      colorScheme: options.colorScheme ?? "light",
      javaScriptEnabled: options.javaScript ?? true,
      timeout: 30_000,
    });
  } catch (err) {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
    throw err;
  }
  context.setDefaultTimeout(15_000);
  const page = context.pages()[0] ?? await context.newPage();
  const errors: string[] = [];
  page.on("console", (msg) => {
    // Error answers the test provokes on purpose (401, 403, 429) are logged too; they are not faults.
    if (
      msg.type() === "error" && !/^Failed to load resource: the server responded/.test(msg.text())
    ) {
      errors.push(msg.text());
    }
  });
  page.on("pageerror", (err) => errors.push(`Uncaught: ${err.message}`));
  return {
    context,
    page,
    errors,
    async close() {
      await context.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

/** Waits until the islands of the current page are hydrated. */
export async function hydrated(page: Page): Promise<void> {
  await page.waitForSelector("html[data-hydrated]", { state: "attached" });
}

/** Logs in through the form and waits for the target page to hydrate. */
export async function login(page: Page, url: string, password = ADMIN_PASSWORD): Promise<void> {
  await page.goto(`${url}/admin/login`);
  await page.fill("#password", password);
  await Promise.all([
    page.waitForURL((u) => !u.pathname.startsWith("/admin/login")),
    page.click("button[type=submit]"),
  ]);
  await hydrated(page);
}

/** Saves a full-page screenshot as `test-artifacts/screenshots/<name>.png`. */
export async function screenshot(page: Page, name: string): Promise<void> {
  await Deno.mkdir(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: new URL(`${name}.png`, SCREENSHOT_DIR).pathname, fullPage: true });
}
