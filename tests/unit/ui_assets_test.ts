/**
 * The static file route: caching by content hash, encodings, refused paths.
 */
import assert from "node:assert/strict";
import { isHashedName, pickEncoding, staticRoutes } from "../../lib/ui/assets.ts";

Deno.test("only hashed build outputs are cached forever; encodings follow Accept-Encoding", () => {
  assert.ok(isHashedName("client.3f2a9c0d1e4b.js"));
  assert.ok(!isHashedName("app.css"));
  assert.ok(!isHashedName("favicon.svg"));
  assert.deepEqual(pickEncoding("gzip, deflate, br"), ["br", "gzip"]);
  assert.deepEqual(pickEncoding("gzip;q=1.0, br;q=0"), ["gzip"]);
  assert.deepEqual(pickEncoding(null), []);
});

Deno.test("the static route serves files of static/ and refuses everything else", async () => {
  const app = staticRoutes();
  const css = await app.request("/static/app.css");
  assert.equal(css.status, 200);
  assert.match(css.headers.get("content-type") ?? "", /text\/css/);
  assert.equal(css.headers.get("cache-control"), "public, max-age=300");
  assert.match(await css.text(), /prefers-color-scheme: dark/);
  for (
    const bad of [
      "/static/",
      "/static/../deno.json",
      "/static/.hidden",
      "/static/build/x.js.gz",
      "/static/none.css",
      "/static/a/b/c/d.css",
    ]
  ) {
    const res = await app.request(bad);
    await res.body?.cancel();
    assert.equal(res.status, 404, bad);
  }
});
