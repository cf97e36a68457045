/**
 * Child process of the 100 MB upload test: runs only the gateway (on `:memory:` KV, in front of an
 * upstream given by GEMINI_BASE_URL) so that its memory can be measured apart from the client and
 * the fake upstream. Protocol on stdio: prints `READY <url>`; on the line `start` it records the
 * RSS baseline and samples RSS every 10 ms; on `stop` it prints `PEAK <growth bytes>` and exits.
 */
import { openGateway } from "../../lib/bootstrap.ts";
import { parseConfig } from "../../lib/config.ts";

const config = parseConfig({
  GEMINI_BASE_URL: Deno.env.get("GEMINI_BASE_URL"),
  ADMIN_PASSWORD: Deno.env.get("ADMIN_PASSWORD"),
  GEMINI_KEYS: Deno.env.get("GEMINI_KEYS"),
  KV_PATH: ":memory:",
});
const kv = await Deno.openKv(":memory:");
const { app } = await openGateway(config, { kv, encryptionKey: "test-encryption-key-0123456789" });
const ac = new AbortController();
const server = Deno.serve(
  { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} },
  app.fetch,
);
const encoder = new TextEncoder();
const write = (line: string) => Deno.stdout.write(encoder.encode(`${line}\n`));
await write(`READY http://127.0.0.1:${server.addr.port}`);

let baseline = 0;
let peak = 0;
let timer: ReturnType<typeof setInterval> | undefined;
const decoder = new TextDecoder();
let pending = "";
for await (const chunk of Deno.stdin.readable) {
  pending += decoder.decode(chunk, { stream: true });
  let nl: number;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const command = pending.slice(0, nl).trim();
    pending = pending.slice(nl + 1);
    if (command === "start") {
      baseline = Deno.memoryUsage().rss;
      peak = baseline;
      timer = setInterval(() => {
        const m = Deno.memoryUsage();
        if (m.rss > peak) {
          peak = m.rss;
          if (Deno.env.get("MEMORY_DEBUG")) console.error(JSON.stringify(m));
        }
      }, 10);
      await write("STARTED");
    } else if (command === "stop") {
      clearInterval(timer);
      peak = Math.max(peak, Deno.memoryUsage().rss);
      await write(`PEAK ${peak - baseline}`);
      ac.abort();
      await server.finished;
      await app.drain();
      kv.close();
      Deno.exit(0);
    }
  }
}
