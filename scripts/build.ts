/**
 * Builds the admin UI's browser files into `static/build/`: the client entry (`lib/ui/client.tsx`,
 * which imports every island) bundled with `deno bundle --platform browser --minify`, and the
 * stylesheet; each gets a content hash in its name plus `.br`/`.gz` variants, and `manifest.json`
 * tells the server which files are current.
 *
 *   deno run -A scripts/build.ts               build once (`deno task build`)
 *   deno run -A scripts/build.ts --if-missing  build only when there is no manifest (`deno task start`)
 *   deno run -A scripts/build.ts --watch       build, rebuild on change, and run the server in
 *                                              watch mode (`deno task dev`)
 *
 * @module
 */
import { brotliCompress, constants } from "node:zlib";
import { type Manifest, ManifestSchema } from "../lib/ui/assets.ts";

const ROOT = new URL("../", import.meta.url);
const STATIC = new URL("static/", ROOT);
const ENTRY = new URL("lib/ui/client.tsx", ROOT);
const STYLESHEETS = [new URL("app.css", STATIC), new URL("vendor/uplot.css", STATIC)];
const WATCHED = ["islands", "lib/ui", "static"];

/** Options of `build`. */
export interface BuildOptions {
  /** Output folder; default `static/build/`. */
  outDir?: URL;
  /** Remove hashed files that the new manifest no longer names. */
  prune?: boolean;
  quiet?: boolean;
}

/** The outcome of a build. */
export interface BuildResult {
  manifest: Manifest;
  /** Bytes of the bundle as served: raw, gzip and brotli. */
  jsBytes: { raw: number; gzip: number; brotli: number };
  cssBytes: { raw: number; gzip: number; brotli: number };
}

async function sha256Prefix(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return [...digest.slice(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Writes a file atomically (temporary file, then rename) so readers never see half a file. */
async function writeAtomic(file: URL, data: Uint8Array | string): Promise<void> {
  const tmp = new URL(`${file.href}.${crypto.randomUUID()}.tmp`);
  if (typeof data === "string") await Deno.writeTextFile(tmp, data);
  else await Deno.writeFile(tmp, data);
  await Deno.rename(tmp, file);
}

/** Compresses with a web `CompressionStream`. */
async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const out = new Response(
    new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
      new CompressionStream("gzip"),
    ),
  );
  return new Uint8Array(await out.arrayBuffer());
}

/**
 * Compresses with brotli at its highest quality (files are compressed once, at build time), with
 * `node:zlib`: `CompressionStream("brotli")` is missing from the Deno that Deno Deploy builds with
 * (2.5), so its builds had no `.br` files.
 */
function brotli(bytes: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) =>
    brotliCompress(bytes, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
        [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
      },
    }, (err, out) => err ? reject(err) : resolve(new Uint8Array(out)))
  );
}

async function emit(
  outDir: URL,
  stem: string,
  ext: string,
  bytes: Uint8Array,
): Promise<{ name: string; raw: number; gzip: number; brotli: number }> {
  const name = `${stem}.${await sha256Prefix(bytes)}.${ext}`;
  const [gz, br] = await Promise.all([gzip(bytes), brotli(bytes)]);
  await writeAtomic(new URL(name, outDir), bytes);
  await writeAtomic(new URL(`${name}.gz`, outDir), gz);
  await writeAtomic(new URL(`${name}.br`, outDir), br);
  return { name, raw: bytes.length, gzip: gz.length, brotli: br.length };
}

async function bundle(): Promise<Uint8Array> {
  const tmpDir = await Deno.makeTempDir({ prefix: "gw-bundle-" });
  try {
    const out = `${tmpDir}/client.js`;
    const cmd = new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--platform",
        "browser",
        "--format",
        "esm",
        "--minify",
        "--quiet",
        "-o",
        out,
        ENTRY.pathname,
      ],
      cwd: ROOT.pathname,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    });
    const result = await cmd.output();
    if (!result.success) {
      const err = new TextDecoder().decode(result.stderr).trim();
      throw new Error(`deno bundle failed (exit code ${result.code}):\n${err}`);
    }
    return await Deno.readFile(out);
  } finally {
    await Deno.remove(tmpDir, { recursive: true });
  }
}

async function stylesheet(): Promise<Uint8Array> {
  const parts = await Promise.all(STYLESHEETS.map((f) => Deno.readTextFile(f)));
  return new TextEncoder().encode(parts.join("\n"));
}

/** Builds the bundle and stylesheet and writes the manifest. */
export async function build(options: BuildOptions = {}): Promise<BuildResult> {
  const outDir = options.outDir ?? new URL("build/", STATIC);
  await Deno.mkdir(outDir, { recursive: true });
  const [js, css] = await Promise.all([bundle(), stylesheet()]);
  const jsOut = await emit(outDir, "client", "js", js);
  const cssOut = await emit(outDir, "app", "css", css);
  const manifest: Manifest = {
    js: jsOut.name,
    css: cssOut.name,
    sizes: { js: jsOut.raw, jsGzip: jsOut.gzip, css: cssOut.raw },
  };
  await writeAtomic(new URL("manifest.json", outDir), JSON.stringify(manifest, null, 2) + "\n");
  if (options.prune) {
    const keep = new Set([jsOut.name, cssOut.name, "manifest.json"]);
    for await (const entry of Deno.readDir(outDir)) {
      const base = entry.name.replace(/\.(gz|br)$/, "");
      if (entry.isFile && !keep.has(base) && /\.[0-9a-f]{12}\.(js|css)$/.test(base)) {
        await Deno.remove(new URL(entry.name, outDir)).catch(() => {});
      }
    }
  }
  if (!options.quiet) {
    console.log(
      `Built static/build/${jsOut.name}: ${kb(jsOut.raw)} (gzip ${kb(jsOut.gzip)}, brotli ${
        kb(jsOut.brotli)
      }); ${cssOut.name}: ${kb(cssOut.raw)} (gzip ${kb(cssOut.gzip)}, brotli ${kb(cssOut.brotli)})`,
    );
  }
  return {
    manifest,
    jsBytes: { raw: jsOut.raw, gzip: jsOut.gzip, brotli: jsOut.brotli },
    cssBytes: { raw: cssOut.raw, gzip: cssOut.gzip, brotli: cssOut.brotli },
  };
}

function kb(n: number): string {
  return `${(n / 1024).toFixed(1)} KiB`;
}

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch {
    return false;
  }
}

/** Whether a manifest exists and the files it names are there. */
async function isBuilt(): Promise<boolean> {
  const dir = new URL("build/", STATIC);
  try {
    const manifest = ManifestSchema.parse(
      JSON.parse(await Deno.readTextFile(new URL("manifest.json", dir))),
    );
    return await exists(new URL(manifest.js, dir)) && await exists(new URL(manifest.css, dir));
  } catch {
    return false;
  }
}

async function watch(): Promise<void> {
  await build({ prune: true });
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--watch", "main.ts"],
    cwd: ROOT.pathname,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // Stopping `deno task dev` stops the server too (its --watch supervisor quits on SIGINT only).
  const stop = () => {
    try {
      server.kill("SIGINT");
    } catch {
      // Already gone.
    }
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const watcher = Deno.watchFs(WATCHED.map((d) => new URL(d, ROOT).pathname), { recursive: true });
  console.log(`Watching ${WATCHED.join(", ")} for UI changes`);
  for await (const event of watcher) {
    if (event.paths.every((p) => p.includes("/static/build/") || p.endsWith(".tmp"))) continue;
    clearTimeout(timer);
    timer = setTimeout(() => {
      running = running.then(() =>
        build({ prune: true }).catch((err) => console.error(String(err?.message ?? err)))
      );
    }, 150);
  }
  await server.status;
}

if (import.meta.main) {
  const args = new Set(Deno.args);
  if (args.has("--watch")) {
    await watch();
  } else if (args.has("--if-missing") && await isBuilt()) {
    // Already built: `deno task start` goes straight to the server.
  } else {
    await build({ prune: true });
  }
}
