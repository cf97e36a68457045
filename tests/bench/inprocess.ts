/**
 * The gateway's own CPU cost per chat request, with no network: the app's `fetch` is called
 * in-process and the upstream is a canned answer (captured once from the fake upstream). Prints µs
 * per request for non-stream and stream chat, and with `--profile` the functions that take the most
 * self time (a V8 CPU profile through `node:inspector`).
 *
 * Run: `deno run -A tests/bench/inprocess.ts [--stream] [--requests 20000] [--profile] [--top 40]`.
 *
 * @module
 */
import { Session } from "node:inspector/promises";
import { FakeClock, startGateway } from "../integration/harness.ts";

const args = new Set(Deno.args);
const argValue = (name: string, fallback: number) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
};
const REQUESTS = argValue("--requests", 20000);
const TOP = argValue("--top", 40);
const ROUNDS = argValue("--rounds", 5);
const CONCURRENCY = argValue("--concurrency", 16);
const MODEL = "gemini-2.5-flash";
const OK = { kind: "ok" } as const;

const encoder = new TextEncoder();
const canned = new Map<string, { body: string; type: string }>();
let capturing = true;
const upstreamFetch: typeof fetch = async (input, init) => {
  const url = String(input instanceof Request ? input.url : input);
  const kind = url.includes("streamGenerateContent")
    ? "stream"
    : url.includes(":generate")
    ? "json"
    : "";
  if (!capturing && kind) {
    // A byte stream, as the body of a real `fetch` response is.
    const c = canned.get(kind)!;
    const body = new ReadableStream({
      type: "bytes",
      start(controller) {
        controller.enqueue(encoder.encode(c.body));
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": c.type } });
  }
  const res = await fetch(input, init);
  if (!kind) return res;
  const body = await res.text();
  canned.set(kind, { body, type: res.headers.get("content-type") ?? "" });
  return new Response(body, { status: res.status, headers: res.headers });
};

/** The real time: with the harness's frozen clock the pool would keep every usage reservation. */
class RealClock extends FakeClock {
  override now = (): number => Date.now();
}

const gw = await startGateway({
  keys: { "bench-key-1": OK, "bench-key-2": OK, "bench-key-3": OK },
  upstreamFetch,
  clock: new RealClock(),
});
const apiKey = await gw.createUserKey({ name: "bench" });
if (args.has("--no-log")) {
  const res = await gw.admin("PATCH", "/admin/api/settings", { requestLogSize: 0 });
  if (res.status !== 200) throw new Error(`settings: ${res.status} ${JSON.stringify(res.json)}`);
}
const chat = (stream: boolean) =>
  JSON.stringify({
    model: MODEL,
    stream,
    messages: [
      { role: "system", content: "You are a terse assistant." },
      { role: "user", content: "Say hello to the benchmark in five words." },
    ],
    ...(stream ? { stream_options: { include_usage: true } } : {}),
  });

async function one(body: string): Promise<void> {
  const res = await gw.app.fetch(
    new Request(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      // With its length declared, as a client's request arrives at `Deno.serve`.
      headers: {
        "content-type": "application/json",
        "content-length": String(encoder.encode(body).length),
        authorization: `Bearer ${apiKey}`,
      },
      body,
    }),
  );
  const text = await res.text();
  if (res.status !== 200) throw new Error(`status ${res.status}: ${text}`);
}

/** CPU time (all threads) of this process in ms, from /proc (Linux). */
function cpuMs(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

let lastCpuUs = 0;
async function run(body: string, n: number): Promise<number> {
  let left = n;
  const c0 = cpuMs();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (left-- > 0) await one(body);
  }));
  lastCpuUs = ((cpuMs() - c0) * 1000) / n;
  return ((performance.now() - t0) * 1000) / n;
}

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

const modes = args.has("--stream") ? [true] : args.has("--both") ? [false, true] : [false];
for (const stream of modes) {
  const body = chat(stream);
  capturing = true;
  await one(body);
  capturing = false;
  await run(body, 2000);
  let session: Session | null = null;
  if (args.has("--profile")) {
    session = new Session();
    session.connect();
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 50 });
    await session.post("Profiler.start");
  }
  if (args.has("--alloc")) {
    // Where the bytes are allocated: V8's sampling heap profiler, by allocating function.
    const s = new Session();
    s.connect();
    await s.post("HeapProfiler.enable");
    await s.post("HeapProfiler.startSampling", {
      samplingInterval: 512,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    await run(body, REQUESTS);
    const { profile } = await s.post("HeapProfiler.stopSampling");
    const bytes = new Map<string, number>();
    interface AllocNode {
      callFrame: { functionName: string; url: string; lineNumber: number };
      selfSize: number;
      children: AllocNode[];
    }
    const walk = (n: AllocNode, path: string[]) => {
      const f = n.callFrame;
      const name = `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*\/(main|npm)\//, "")}:${
        f.lineNumber + 1
      }`;
      const ours = path.find((p) => /(lib|routes)\//.test(p)) ?? "-";
      const k = `${name}  <=  ${ours}`;
      bytes.set(k, (bytes.get(k) ?? 0) + n.selfSize);
      for (const c of n.children) walk(c, /(lib|routes)\//.test(name) ? [name, ...path] : path);
    };
    walk(profile.head as AllocNode, []);
    const total = [...bytes.values()].reduce((a, b) => a + b, 0);
    console.log(`allocated ${(total / REQUESTS / 1024).toFixed(1)} KiB per request; top sites:`);
    for (const [k, v] of [...bytes].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`${(v / REQUESTS).toFixed(0).padStart(8)} B  ${k}`);
    }
    continue;
  }
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let round = 0; round < (session ? 1 : ROUNDS); round++) {
    walls.push(await run(body, REQUESTS));
    cpus.push(lastCpuUs);
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(
    `${stream ? "stream" : "non-stream"}: ${median(walls).toFixed(1)} µs wall, ${
      median(cpus).toFixed(1)
    } µs CPU (all threads) per request, median of ${walls.length} rounds of ${REQUESTS}`,
  );
  if (session) {
    const stopped = await session.post("Profiler.stop");
    const profile = {
      nodes: stopped.profile.nodes,
      samples: stopped.profile.samples ?? [],
      timeDeltas: stopped.profile.timeDeltas ?? [],
    };
    const self = new Map<string, number>();
    const byId = new Map<number, Node>(profile.nodes.map((n: Node) => [n.id, n]));
    for (let i = 0; i < profile.samples.length; i++) {
      const n = byId.get(profile.samples[i])!;
      const f = n.callFrame;
      const name = `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*\/(main|npm)\//, "")}:${
        f.lineNumber + 1
      }`;
      self.set(name, (self.get(name) ?? 0) + profile.timeDeltas[i]);
    }
    const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP);
    console.log("Self time (µs per request):");
    for (const [name, t] of rows) console.log(`${(t / REQUESTS).toFixed(2).padStart(8)}  ${name}`);
    // Inclusive time of the gateway's own functions (lib/, routes/, hono, zod).
    const parent = new Map<number, number>();
    for (const n of profile.nodes as (Node & { children?: number[] })[]) {
      for (const c of n.children ?? []) parent.set(c, n.id);
    }
    const label = (n: Node) =>
      `${n.callFrame.functionName || "(anonymous)"} ${
        n.callFrame.url.replace(/^.*\/(main|npm)\//, "")
      }:${n.callFrame.lineNumber + 1}`;
    const inclusive = new Map<string, number>();
    for (let i = 0; i < profile.samples.length; i++) {
      const seen = new Set<string>();
      for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parent.get(id)) {
        const n = byId.get(id)!;
        if (!/\/(lib|routes)\/|hono|zod/.test(n.callFrame.url)) continue;
        const name = label(n);
        if (seen.has(name)) continue;
        seen.add(name);
        inclusive.set(name, (inclusive.get(name) ?? 0) + profile.timeDeltas[i]);
      }
    }
    console.log("Inclusive time of gateway, hono and zod functions (µs per request):");
    for (const [name, t] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`${(t / REQUESTS).toFixed(2).padStart(8)}  ${name}`);
    }
  }
}
await gw.close();
