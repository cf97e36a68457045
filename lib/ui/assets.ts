/**
 * The UI's static files: the manifest that `deno task build` writes (which hashed bundle and
 * stylesheet the pages link), and the `/static/*` route that serves `static/` with immutable caching
 * for hashed files and precompressed variants (`.br`, `.gz`) when the browser accepts them.
 */
import { Hono } from "hono";
import * as z from "zod";

/** Where `static/` is, wherever the app is started from. */
export const STATIC_DIR = new URL("../../static/", import.meta.url);
/** Where the build writes bundles and the manifest. */
export const BUILD_DIR = new URL("build/", STATIC_DIR);
/** The URL path `static/` is served under. */
export const STATIC_PREFIX = "/static";

/** What `deno task build` made: file names inside `static/build/`. */
export const ManifestSchema = z.object({
  js: z.string(),
  css: z.string(),
  /** Sizes in bytes, for the record. */
  sizes: z.record(z.string(), z.number()).optional(),
});

/** The build manifest. */
export type Manifest = z.infer<typeof ManifestSchema>;

/** The files a page links. `js` is null when no bundle was built: the page then works without islands. */
export interface PageAssets {
  css: string;
  js: string | null;
}

let cached: { mtime: number; assets: PageAssets } | null = null;

/** The page assets from the manifest, re-read when the manifest changes (so `dev` rebuilds show up). */
export async function pageAssets(): Promise<PageAssets> {
  const file = new URL("manifest.json", BUILD_DIR);
  let mtime: number;
  try {
    mtime = (await Deno.stat(file)).mtime?.getTime() ?? 0;
  } catch {
    cached = null;
    return { css: `${STATIC_PREFIX}/app.css`, js: null };
  }
  if (cached?.mtime === mtime) return cached.assets;
  try {
    const manifest = ManifestSchema.parse(JSON.parse(await Deno.readTextFile(file)));
    const assets = {
      css: `${STATIC_PREFIX}/build/${manifest.css}`,
      js: `${STATIC_PREFIX}/build/${manifest.js}`,
    };
    cached = { mtime, assets };
    return assets;
  } catch (err) {
    console.error("The UI build manifest is unreadable; run `deno task build`:", String(err));
    return { css: `${STATIC_PREFIX}/app.css`, js: null };
  }
}

const TYPES: Record<string, string> = {
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  ico: "image/x-icon",
  json: "application/json",
  txt: "text/plain; charset=utf-8",
  woff2: "font/woff2",
};

/** A hashed build output such as `client.3f2a9c0d1e.js`: safe to cache forever. */
export function isHashedName(name: string): boolean {
  return /\.[0-9a-f]{10,}\.[a-z0-9]+$/.test(name);
}

/** Picks the stored encoding to send for an `Accept-Encoding` header. */
export function pickEncoding(acceptEncoding: string | null): ("br" | "gzip")[] {
  const accepted = (acceptEncoding ?? "").toLowerCase().split(",").map((s) => s.trim().split(";"));
  const ok = (name: string) =>
    accepted.some(([n, ...p]) => n.trim() === name && !p.some((x) => /^\s*q=0(\.0*)?\s*$/.test(x)));
  const out: ("br" | "gzip")[] = [];
  if (ok("br")) out.push("br");
  if (ok("gzip")) out.push("gzip");
  return out;
}

async function readIfExists(url: URL): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(url);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.IsADirectory) return null;
    throw err;
  }
}

/** Builds the `/static/*` route: plain file names only, no directory listings, no dot files. */
export function staticRoutes(): Hono {
  const app = new Hono();
  // Hono answers HEAD through GET routes, without the body.
  app.get("/*", async (c) => {
    const rel = c.req.path.slice(STATIC_PREFIX.length + 1);
    const parts = rel.split("/");
    if (!rel || parts.some((p) => !/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(p)) || parts.length > 3) {
      return c.text("Not found", 404);
    }
    const name = parts.at(-1)!;
    const ext = name.slice(name.lastIndexOf(".") + 1);
    const type = TYPES[ext];
    if (!type || ext === "gz" || ext === "br") return c.text("Not found", 404);
    const file = new URL(rel, STATIC_DIR);
    const headers: Record<string, string> = {
      "content-type": type,
      "x-content-type-options": "nosniff",
      "cache-control": isHashedName(name)
        ? "public, max-age=31536000, immutable"
        : "public, max-age=300",
      vary: "accept-encoding",
    };
    for (const encoding of pickEncoding(c.req.header("accept-encoding") ?? null)) {
      const body = await readIfExists(
        new URL(`${rel}.${encoding === "br" ? "br" : "gz"}`, STATIC_DIR),
      );
      if (body) {
        return new Response(body as Uint8Array<ArrayBuffer>, {
          headers: { ...headers, "content-encoding": encoding },
        });
      }
    }
    const body = await readIfExists(file);
    if (!body) return c.text("Not found", 404);
    return new Response(body as Uint8Array<ArrayBuffer>, { headers });
  });
  return app;
}
