/**
 * Where the gateway spends its time under load: starts the fake upstream and the gateway (with
 * `--inspect` on loopback), drives chat completions at it, and reports CPU per request by thread
 * (from /proc, Linux) and a V8 CPU profile of the main thread (self and inclusive time per
 * function, µs per request). The raw profile is written to `test-artifacts/gateway.cpuprofile`
 * (open it in Chrome DevTools, Performance tab).
 *
 * With `--alloc`, a third pass samples the main thread's allocations instead (V8's sampling heap
 * profiler, garbage included): bytes allocated per request by the function that allocated them.
 * With `--survivors`, that pass counts only objects that outlived a young-generation collection
 * (scavenge): per-request objects should not, and those that do make every scavenge copy them
 * (an unread `ReadableStream` once made each stream request's whole object graph survive).
 *
 * Run: `deno run -A tests/bench/profile_gateway.ts [--stream] [--clients 64] [--duration 4]
 * [--rpm 1000000] [--kv file|memory] [--top 25] [--alloc | --survivors]`.
 *
 * @module
 */
import { runCell, type Target } from "./load_gen.ts";
import {
  childEnv,
  createUserKey,
  freePort,
  ROOT,
  startFakeUpstream,
  startGateway,
  stopServer,
} from "./servers.ts";

/** One node of a V8 CPU profile. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** A V8 CPU profile (`Profiler.stop` result). */
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A minimal Chrome DevTools Protocol client over a WebSocket. */
class Cdp {
  #ws: WebSocket;
  #next = 0;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (event) => {
      const msg: unknown = JSON.parse(String(event.data));
      if (!msg || typeof msg !== "object" || !("id" in msg) || typeof msg.id !== "number") return;
      const waiter = this.#pending.get(msg.id);
      if (!waiter) return;
      this.#pending.delete(msg.id);
      if ("error" in msg) waiter.reject(new Error(`CDP error: ${JSON.stringify(msg.error)}`));
      else waiter.resolve("result" in msg ? msg.result : undefined);
    };
  }

  /** Connects to the first inspector target listening on `127.0.0.1:port`. */
  static async connect(port: number): Promise<Cdp> {
    const list: unknown = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const first = Array.isArray(list) ? list[0] : undefined;
    const url = first && typeof first === "object" && "webSocketDebuggerUrl" in first
      ? String(first.webSocketDebuggerUrl)
      : null;
    if (!url) throw new Error("No inspector target found");
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("Inspector connection failed"));
    });
    return new Cdp(ws);
  }

  /** Sends a command and waits for its result. */
  send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Closes the connection and waits until it is closed. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.#ws.onclose = () => resolve()));
    this.#ws.close();
    await closed;
  }
}

/** CPU ms per thread name of a process (summed over threads of the same name); {} off Linux. */
function threadCpuMs(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const entry of Deno.readDirSync(`/proc/${pid}/task`)) {
      const stat = Deno.readTextFileSync(`/proc/${pid}/task/${entry.name}/stat`);
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out[name] = (out[name] ?? 0) + ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
    }
  } catch {
    // not Linux, or the process is gone
  }
  return out;
}

/** A readable name for a profile node: function, file (relative to the repo) and line. */
function frameName(node: ProfileNode): string {
  const url = node.callFrame.url
    .replace(`file://${ROOT}`, "")
    .replace(/^.*registry\.npmjs\.org\//, "npm:");
  const where = url ? ` ${url}:${node.callFrame.lineNumber + 1}` : "";
  return `${node.callFrame.functionName || "(anonymous)"}${where}`;
}

/** Self and inclusive time per function name, in µs. */
function summarize(
  profile: CpuProfile,
): { self: Map<string, number>; inclusive: Map<string, number> } {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const time = new Map<number, number>();
  profile.samples.forEach((id, i) =>
    time.set(id, (time.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  );
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of time) {
    const node = byId.get(id);
    if (!node) continue;
    const name = frameName(node);
    self.set(name, (self.get(name) ?? 0) + us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      if (!n) break;
      const nm = frameName(n);
      if (seen.has(nm)) continue;
      seen.add(nm);
      inclusive.set(nm, (inclusive.get(nm) ?? 0) + us);
    }
  }
  return { self, inclusive };
}

/** One node of a sampling heap profile (`HeapProfiler.stopSampling` result). */
interface HeapNode {
  callFrame: ProfileNode["callFrame"];
  selfSize: number;
  children: HeapNode[];
}

/** Bytes allocated per function name (self), from a sampling heap profile. */
function allocations(head: HeapNode): Map<string, number> {
  const out = new Map<string, number>();
  const visit = (node: HeapNode) => {
    const name = frameName({ id: 0, callFrame: node.callFrame });
    if (node.selfSize > 0) out.set(name, (out.get(name) ?? 0) + node.selfSize);
    for (const child of node.children) visit(child);
  };
  visit(head);
  return out;
}

/** Reads `--name value` / `--flag` arguments. */
function parseFlags(args: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) throw new Error(`Unexpected argument: ${arg}`);
    if (i + 1 < args.length && !args[i + 1].startsWith("--")) flags.set(arg.slice(2), args[++i]);
    else flags.set(arg.slice(2), "true");
  }
  return flags;
}

/** Prints the top `n` entries of a map, in µs per request. */
function printTop(title: string, values: Map<string, number>, requests: number, n: number): void {
  console.log(`\n${title}`);
  const rows = [...values].sort((a, b) => b[1] - a[1]).slice(0, n);
  for (const [name, us] of rows) console.log(`${(us / requests).toFixed(1).padStart(8)}  ${name}`);
}

/** Entry point. */
async function main(): Promise<void> {
  const flags = parseFlags(Deno.args);
  const stream = flags.has("stream");
  const clients = Number(flags.get("clients") ?? 64);
  const durationMs = Number(flags.get("duration") ?? 4) * 1000;
  const rpm = flags.has("rpm") ? Number(flags.get("rpm")) : undefined;
  const top = Number(flags.get("top") ?? 25);
  const keys = ["profile-key-1", "profile-key-2", "profile-key-3"];
  const tmp = await Deno.makeTempDir({ prefix: "gateway_profile_" });
  const env = await childEnv();
  const adminPassword = `profile-${crypto.randomUUID()}`;
  const inspectPort = freePort();
  const upstream = await startFakeUpstream(env, keys);
  try {
    const gateway = await startGateway({
      env,
      upstreamUrl: upstream.url,
      tmp,
      adminPassword,
      keys,
      kvPath: flags.get("kv") === "memory" ? ":memory:" : undefined,
      denoFlags: [`--inspect=127.0.0.1:${inspectPort}`],
    });
    try {
      const userKey = await createUserKey(gateway.url, adminPassword, { name: "profile", rpm });
      const chat = {
        model: "gemini-2.5-flash",
        messages: [
          { role: "system", content: "You are a terse assistant." },
          { role: "user", content: "Say hello to the benchmark in five words." },
        ],
        ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
      };
      const target: Target = {
        url: `${gateway.url}/v1/chat/completions`,
        headers: { authorization: `Bearer ${userKey}`, "content-type": "application/json" },
        body: JSON.stringify(chat),
        check: (
          status,
          text,
        ) => (status === 200 ? null : `status ${status}: ${text.slice(0, 200)}`),
      };
      const cell = { concurrency: clients, durationMs, maxRequests: 1_000_000 };
      await runCell(target, { ...cell, durationMs: 1000 });

      // Pass 1: CPU by thread, without the profiler's overhead.
      const before = threadCpuMs(gateway.child.pid);
      const plain = await runCell(target, cell);
      const after = threadCpuMs(gateway.child.pid);
      console.log(
        `${stream ? "stream" : "non-stream"}, ${clients} clients${rpm ? `, rpm ${rpm}` : ""}, ` +
          `KV ${flags.get("kv") ?? "file"}: ${plain.rps.toFixed(0)} req/s, p50 ${
            plain.p50Ms.toFixed(2)
          } ms, p99 ${plain.p99Ms.toFixed(2)} ms, max ${
            plain.maxMs.toFixed(0)
          } ms, errors ${plain.errors}`,
      );
      for (const [message, count] of Object.entries(plain.errorSamples)) {
        console.log(`  ${count} x ${message}`);
      }
      console.log("\nGateway CPU by thread (µs per request):");
      for (const [name, ms] of Object.entries(after).sort((a, b) => b[1] - a[1])) {
        const used = ms - (before[name] ?? 0);
        if (used > 0) console.log(`${((used * 1000) / plain.ok).toFixed(0).padStart(8)}  ${name}`);
      }

      // Pass 2: a sampled CPU profile of the main thread.
      const cdp = await Cdp.connect(inspectPort);
      await cdp.send("Profiler.enable");
      await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
      await cdp.send("Profiler.start");
      const profiled = await runCell(target, cell);
      const result = await cdp.send("Profiler.stop");
      await cdp.close();
      const profile = (result as { profile: CpuProfile }).profile;
      const out = `${ROOT}test-artifacts/gateway.cpuprofile`;
      await Deno.mkdir(`${ROOT}test-artifacts`, { recursive: true });
      await Deno.writeTextFile(out, JSON.stringify(profile));
      const { self, inclusive } = summarize(profile);
      console.log(
        `\nMain-thread profile: ${profiled.ok} requests at ${profiled.rps.toFixed(0)} req/s ` +
          `(profiler on); written to ${out}. With an inspector attached Deno also reports every ` +
          "fetch to it (op_inspector_emit_protocol_event, inspector_network_bridge), which inflates " +
          "the upstream call's rows.",
      );
      printTop("Self time (µs per request):", self, profiled.ok, top);
      const ours = new Map(
        [...inclusive].filter(([name]) => /^\S+ (lib|routes)\/|main\.ts/.test(name)),
      );
      printTop("Inclusive time of gateway functions (µs per request):", ours, profiled.ok, top);

      const survivors = flags.has("survivors");
      if (flags.has("alloc") || survivors) {
        // Pass 3: where the main thread allocates (every object, short-lived ones included), or
        // only what outlived a scavenge.
        const heap = await Cdp.connect(inspectPort);
        await heap.send("HeapProfiler.enable");
        await heap.send("HeapProfiler.startSampling", {
          samplingInterval: 512,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: !survivors,
        });
        const sampled = await runCell(target, cell);
        const sampling = await heap.send("HeapProfiler.stopSampling");
        await heap.close();
        const bytes = allocations((sampling as { profile: { head: HeapNode } }).profile.head);
        const total = [...bytes.values()].reduce((a, b) => a + b, 0);
        console.log(
          `\n${survivors ? "Survivors of a scavenge" : "Allocations"}: ` +
            `${(total / sampled.ok / 1024).toFixed(1)} KiB per request ` +
            `(${sampled.ok} requests, sampled every 512 bytes)`,
        );
        const perRequest = new Map([...bytes].map(([name, b]) => [name, b / 1024]));
        printTop("Allocated by (KiB per request, self):", perRequest, sampled.ok, top);
      }
    } finally {
      await stopServer(gateway);
    }
  } finally {
    await stopServer(upstream);
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(err instanceof Error ? err.stack ?? err.message : err);
    Deno.exitCode = 1;
  }
}
