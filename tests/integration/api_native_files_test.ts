/**
 * The Gemini-native API's files and what guards them: references found in what Google will parse
 * (not in the raw text), deletions that keep the owner until Google has let go, bounded and
 * well-formed upload starts, chunk failures in Google's shape, paths and queries that carry no
 * surprise upstream.
 */
import assert from "node:assert/strict";
import { startGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;

/** Headers of a resumable upload start, with `extra` on top. */
function startHeaders(userKey: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    "x-goog-api-key": userKey,
    "content-type": "application/json",
    "x-goog-upload-protocol": "resumable",
    "x-goog-upload-command": "start",
    "x-goog-upload-header-content-type": "text/plain",
    ...extra,
  };
}

Deno.test("a native upload start names a MIME type, or is refused in Google's shape before any key", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  try {
    const user = await gw.createUserKey();
    const res = await fetch(`${gw.url}/upload/v1beta/files`, {
      method: "POST",
      headers: startHeaders(user, { "x-goog-upload-header-content-type": "text/pl ain" }),
      body: "{}",
    });
    const json = await res.json();
    assert.equal(res.status, 400);
    assert.equal(json.error.status, "INVALID_ARGUMENT");
    assert.match(json.error.message, /X-Goog-Upload-Header-Content-Type "text\/pl ain" is not/);
    assert.equal(gw.fake.requests.length, 0);
  } finally {
    await gw.close();
  }
});
