/**
 * The crons for real: `main.ts` in a subprocess with `DENO_CRON_TEST_SCHEDULE_OFFSET` (every cron
 * fires every few hundred ms whatever its schedule), against the fake upstream. The health-check
 * cron finds an invalid key by itself, then restores it once the upstream accepts it again.
 */
import assert from "node:assert/strict";
import { startFakeGemini } from "../fakes/fake_gemini.ts";
import { ADMIN_PASSWORD, ENCRYPTION_KEY } from "./harness.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
/** Generous bound for a subprocess start and a few cron runs on a loaded machine. */
const DEADLINE_MS = 60_000;

async function until<T>(what: string, probe: () => Promise<T | null>): Promise<T> {
  const end = Date.now() + DEADLINE_MS;
  while (Date.now() < end) {
    const value = await probe();
    if (value !== null) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

Deno.test("the health-check cron marks a dead key invalid and restores it when it works again", async () => {
  const fake = await startFakeGemini({
    keys: { "AIzaCron-key-000001": { kind: "invalid" } },
    quiet: true,
  });
  const dir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: ROOT,
    env: {
      PORT: "0",
      KV_PATH: `${dir}/gateway.kv`,
      GEMINI_BASE_URL: fake.url,
      GEMINI_KEYS: "AIzaCron-key-000001",
      ADMIN_PASSWORD,
      ENCRYPTION_KEY,
      DENO_CRON_TEST_SCHEDULE_OFFSET: "300",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  const reading = Promise.all([drain(child.stdout), drain(child.stderr)]);
  try {
    const base = await until("the gateway to listen", () => {
      const m = /listening on (http:\/\/[^\s]+)/.exec(output);
      return Promise.resolve(m ? m[1] : null);
    });
    const status = async () => {
      const res = await fetch(`${base}/admin/api/keys`, {
        headers: { authorization: `Bearer ${ADMIN_PASSWORD}` },
      });
      const body = await res.json() as { data: { status: string }[] };
      return body.data[0]?.status ?? null;
    };
    // No client request was made: only the cron's probe can have found the key invalid.
    await until(
      "the cron to mark the key invalid",
      async () => (await status()) === "invalid" ? true : null,
    );
    assert.ok(fake.requests.some((r) => r.path === "/v1beta/models"));
    assert.ok(!fake.requests.some((r) => r.path.includes("generateContent")));
    fake.setKey("AIzaCron-key-000001", { kind: "ok" });
    await until(
      "the cron to restore the key",
      async () => (await status()) === "active" ? true : null,
    );
  } catch (err) {
    console.error(output);
    throw err;
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await reading;
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});
