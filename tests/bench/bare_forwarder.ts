/**
 * The bare forwarder of the benchmark: `Deno.serve` + `fetch` and nothing else. It forwards each
 * request (path, query and body unchanged) to the upstream, adds the `x-goog-api-key` header (keys
 * taken in turn), and returns the upstream body as is. It is the floor any Deno proxy pays for the
 * extra hop.
 *
 * Run standalone: `deno run -A tests/bench/bare_forwarder.ts --port 8788
 * --upstream http://127.0.0.1:8787 --keys "k1,k2"`; it prints its URL once it listens.
 *
 * @module
 */

/** Options of {@linkcode startBareForwarder}. */
export interface BareForwarderOptions {
  /** Port to bind on 127.0.0.1; 0 picks a free one. */
  port: number;
  /** Upstream origin, e.g. "http://127.0.0.1:8787". */
  upstream: string;
  /** API keys sent to the upstream, one per request in turn. */
  keys: string[];
}

/** Starts the forwarder on 127.0.0.1 and returns the server. */
export function startBareForwarder(options: BareForwarderOptions): Deno.HttpServer<Deno.NetAddr> {
  const upstream = options.upstream.replace(/\/+$/, "");
  const keys = options.keys.length > 0 ? options.keys : [""];
  let next = 0;
  return Deno.serve({
    hostname: "127.0.0.1",
    port: options.port,
    onListen() {},
  }, async (req) => {
    const url = new URL(req.url);
    const key = keys[next++ % keys.length];
    const body = req.method === "GET" || req.method === "HEAD" ? null : await req.arrayBuffer();
    const res = await fetch(upstream + url.pathname + url.search, {
      method: req.method,
      headers: {
        "content-type": req.headers.get("content-type") ?? "application/json",
        "x-goog-api-key": key,
      },
      body,
    });
    const contentType = res.headers.get("content-type");
    return new Response(res.body, {
      status: res.status,
      headers: contentType ? { "content-type": contentType } : {},
    });
  });
}

/** Reads `--name value` / `--name=value` flags. */
function parseFlags(args: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) continue;
    const eq = arg.indexOf("=");
    if (eq > 0) flags.set(arg.slice(2, eq), arg.slice(eq + 1));
    else if (i + 1 < args.length && !args[i + 1].startsWith("--")) {
      flags.set(arg.slice(2), args[++i]);
    } else flags.set(arg.slice(2), "true");
  }
  return flags;
}

/** Command-line entry point: serves until killed and prints the URL it listens on. */
function main(args: string[]): void {
  const flags = parseFlags(args);
  const upstream = flags.get("upstream");
  if (!upstream) {
    console.error(
      "usage: bare_forwarder.ts --upstream <url> [--port 8788] [--keys k1,k2]",
    );
    Deno.exit(2);
  }
  const server = startBareForwarder({
    port: Number(flags.get("port") ?? 8788),
    upstream,
    keys: (flags.get("keys") ?? flags.get("key") ?? "").split(",").map((k) => k.trim())
      .filter((k) => k !== ""),
  });
  console.log(`http://127.0.0.1:${server.addr.port}`);
}

if (import.meta.main) main(Deno.args);
