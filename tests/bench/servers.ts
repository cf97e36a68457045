/**
 * Subprocess servers of the benchmark: each runs as its own `deno run -A …` child, with its output
 * collected (bounded) so that it can be shown when something goes wrong, and stopped with SIGTERM
 * (SIGKILL after a grace period) and awaited.
 *
 * @module
 */

/** The repository root (where `deno.json` and `main.ts` are). */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/** How many output lines of a child are kept. */
const MAX_LINES = 400;

/** A running child process. */
export interface ServerProcess {
  /** Name used in messages. */
  name: string;
  /** Base URL, e.g. "http://127.0.0.1:43123". */
  url: string;
  /** The child. */
  child: Deno.ChildProcess;
  /** Its output so far. */
  output: ChildOutput;
}

/** What a child printed: its latest lines (stdout and stderr as read) and its stderr line count. */
export interface ChildOutput {
  lines: string[];
  stderr: number;
}

/** Options of {@linkcode spawnDeno}. */
export interface SpawnOptions {
  name: string;
  /** Arguments after `deno run -A`. */
  args: string[];
  /** Extra environment variables (merged over the bench's own). */
  env?: Record<string, string>;
  /** Working directory. */
  cwd: string;
}

interface Spawned {
  child: Deno.ChildProcess;
  output: ChildOutput;
  firstStdoutLine: Promise<string | null>;
  drained: Promise<void>;
}

const drains = new WeakMap<Deno.ChildProcess, Promise<void>>();

/** Reads a byte stream line by line, calling `onLine` for each. */
async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      onLine(rest.slice(0, nl).replace(/\r$/, ""));
      rest = rest.slice(nl + 1);
    }
  }
  rest += decoder.decode();
  if (rest !== "") onLine(rest);
}

/** Starts `deno run -A <args>` with piped output that is read continuously. */
function spawn(options: SpawnOptions): Spawned {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...options.args],
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output: ChildOutput = { lines: [], stderr: 0 };
  const keep = (line: string) => {
    output.lines.push(line);
    if (output.lines.length > MAX_LINES) output.lines.splice(0, output.lines.length - MAX_LINES);
  };
  let resolveFirst: (line: string | null) => void = () => {};
  const firstStdoutLine = new Promise<string | null>((resolve) => (resolveFirst = resolve));
  const stdout = readLines(child.stdout, (line) => {
    keep(line);
    resolveFirst(line);
  }).finally(() => resolveFirst(null));
  const stderr = readLines(child.stderr, (line) => {
    output.stderr++;
    keep(`[stderr] ${line}`);
  });
  const drained = Promise.all([stdout, stderr]).then(() => {}, () => {});
  drains.set(child, drained);
  return { child, output, firstStdoutLine, drained };
}

/** Wraps a spawned child as a `ServerProcess`. */
function serverOf(name: string, url: string, spawned: Spawned): ServerProcess {
  return { name, url, child: spawned.child, output: spawned.output };
}

/** Resolves after `ms`, or with the child's exit status if it exits first. */
function exitWithin(child: Deno.ChildProcess, ms: number): Promise<Deno.CommandStatus | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    child.status,
    new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms))),
  ]).finally(() => clearTimeout(timer));
}

/** Kills a child that failed to start and returns an error carrying its output. */
async function startFailure(name: string, spawned: Spawned, why: string): Promise<Error> {
  try {
    spawned.child.kill("SIGKILL");
  } catch {
    // already exited
  }
  await spawned.child.status;
  await spawned.drained;
  return new Error(`${name} ${why}. Its output:\n${spawned.output.lines.join("\n")}`);
}

/** Starts a server that prints its URL as its first stdout line (the fake, the forwarder). */
export async function spawnPrintingServer(
  options: SpawnOptions,
  timeoutMs = 30_000,
): Promise<ServerProcess> {
  const spawned = spawn(options);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const first = await Promise.race([
    spawned.firstStdoutLine,
    new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs))),
  ]).finally(() => clearTimeout(timer));
  if (first === "timeout") throw await startFailure(options.name, spawned, "did not start in time");
  if (first === null || !/^https?:\/\//.test(first.trim())) {
    throw await startFailure(options.name, spawned, "did not print its URL");
  }
  return serverOf(options.name, first.trim(), spawned);
}

/** Starts a server on a known URL and waits until `GET <url><healthPath>` answers 200. */
export async function spawnServerWithHealth(
  options: SpawnOptions,
  url: string,
  healthPath: string,
  timeoutMs = 60_000,
): Promise<ServerProcess> {
  const spawned = spawn(options);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await exitWithin(spawned.child, 100) !== null) {
      throw await startFailure(options.name, spawned, "exited during start-up");
    }
    try {
      const res = await fetch(url + healthPath);
      await res.body?.cancel();
      if (res.ok) return serverOf(options.name, url, spawned);
    } catch {
      // not listening yet
    }
  }
  throw await startFailure(options.name, spawned, `did not answer ${healthPath} in time`);
}

/** Stops a child: SIGTERM, then SIGKILL after `graceMs`; waits for its exit and its output. */
export async function stopServer(server: ServerProcess, graceMs = 5_000): Promise<void> {
  try {
    server.child.kill("SIGTERM");
  } catch {
    // already exited
  }
  if (await exitWithin(server.child, graceMs) === null) {
    try {
      server.child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
    await server.child.status;
  }
  await drains.get(server.child);
}

/** Whether the child has exited already (without waiting). */
export async function hasExited(server: ServerProcess): Promise<boolean> {
  return await exitWithin(server.child, 0) !== null;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** The Deno cache directory of this process, so children do not fetch packages again. */
export async function denoDir(): Promise<string | null> {
  const fromEnv = Deno.env.get("DENO_DIR");
  if (fromEnv) return fromEnv;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const info: unknown = JSON.parse(new TextDecoder().decode(out.stdout));
    if (info && typeof info === "object" && "denoDir" in info && typeof info.denoDir === "string") {
      return info.denoDir;
    }
  } catch {
    // fall through
  }
  return null;
}

/** Environment additions for children: the same Deno cache, even when HOME is changed. */
export async function childEnv(): Promise<Record<string, string>> {
  const dir = await denoDir();
  return dir ? { DENO_DIR: dir } : {};
}

/** Starts the fake Gemini upstream (latency 0) knowing `keys` as working keys. */
export function startFakeUpstream(
  env: Record<string, string>,
  keys: string[],
): Promise<ServerProcess> {
  return spawnPrintingServer({
    name: "fake upstream",
    args: ["tests/fakes/fake_gemini.ts", "--port", "0", "--latency", "0", "--keys", keys.join(",")],
    cwd: ROOT,
    env,
  });
}

/** Options of {@linkcode startGateway}. */
export interface GatewayOptions {
  env: Record<string, string>;
  upstreamUrl: string;
  /** A private temporary directory: HOME and the KV file live there. */
  tmp: string;
  adminPassword: string;
  /** Gemini keys imported at start-up. */
  keys: string[];
  /** KV_PATH; default `<tmp>/bench.kv`. */
  kvPath?: string;
  /** Extra `deno run` flags, e.g. `--inspect=…`. */
  denoFlags?: string[];
}

/** Starts the real gateway (`main.ts`) on a free port and waits until `/health` answers. */
export function startGateway(options: GatewayOptions): Promise<ServerProcess> {
  const port = freePort();
  return spawnServerWithHealth(
    {
      name: "gateway",
      args: [...(options.denoFlags ?? []), "main.ts"],
      cwd: ROOT,
      env: {
        ...options.env,
        GEMINI_BASE_URL: options.upstreamUrl,
        KV_PATH: options.kvPath ?? `${options.tmp}/bench.kv`,
        ADMIN_PASSWORD: options.adminPassword,
        ENCRYPTION_KEY: crypto.randomUUID().replaceAll("-", ""),
        GEMINI_KEYS: options.keys.join(","),
        PORT: String(port),
        HOME: options.tmp,
      },
    },
    `http://127.0.0.1:${port}`,
    "/health",
  );
}

/** Creates a user key through the gateway's admin API and returns its secret. */
export async function createUserKey(
  baseUrl: string,
  adminPassword: string,
  body: { name: string; rpm?: number },
): Promise<string> {
  const res = await fetch(`${baseUrl}/admin/api/user-keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminPassword}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json: unknown = await res.json();
  if (res.status !== 201 || !json || typeof json !== "object" || !("key" in json)) {
    throw new Error(`Creating a user key failed: ${res.status} ${JSON.stringify(json)}`);
  }
  return String(json.key);
}
