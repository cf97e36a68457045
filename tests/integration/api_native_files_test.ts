/**
 * The Gemini-native API's files and what guards them: references found in what Google will parse
 * (not in the raw text), deletions that keep the owner until Google has let go, bounded and
 * well-formed upload starts, chunk failures in Google's shape, paths and queries that carry no
 * surprise upstream.
 */
import assert from "node:assert/strict";
import { getFileByName, putFile } from "../../lib/store/files.ts";
import { startGateway, type TestGateway } from "./harness.ts";

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

/** Sends a native request with `userKey`; its status and JSON answer. */
async function call(
  gw: TestGateway,
  userKey: string,
  request: { method: string; path: string; body?: string; headers?: Record<string, string> },
): Promise<
  { status: number; json: { error?: { code: number; message: string; status: string } } }
> {
  const res = await fetch(`${gw.url}${request.path}`, {
    method: request.method,
    headers: { "x-goog-api-key": userKey, "content-type": "application/json", ...request.headers },
    body: request.body,
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : {} };
}

/** Uploads `text` natively with `userKey`; the Gemini file (asserted 200). */
async function nativeUpload(
  gw: TestGateway,
  userKey: string,
  text = "hello",
): Promise<{ name: string; uri: string }> {
  const res = await fetch(`${gw.url}/upload/v1beta/files`, {
    method: "POST",
    headers: startHeaders(userKey, { "x-goog-upload-header-content-length": String(text.length) }),
    body: JSON.stringify({ file: { displayName: "notes" } }),
  });
  await res.body?.cancel();
  assert.equal(res.status, 200);
  const done = await fetch(res.headers.get("x-goog-upload-url")!, {
    method: "POST",
    headers: { "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0" },
    body: text,
  });
  const json = await done.json();
  assert.equal(done.status, 200, JSON.stringify(json));
  return json.file;
}

/** A generateContent body that reads the file at `uri`. */
function readingFile(uri: string): string {
  return JSON.stringify({
    contents: [{
      role: "user",
      parts: [{ text: "hi" }, { fileData: { fileUri: uri, mimeType: "text/plain" } }],
    }],
  });
}

const GENERATE = "/v1beta/models/gemini-2.5-flash:generateContent";

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

Deno.test("a file named through JSON escapes is still the owner's alone, and pins its key", async () => {
  const gw = await startGateway({
    keys: { "AIzaNative-1@projA": OK, "AIzaNative-2@projA": OK, "AIzaNative-3@projB": OK },
  });
  try {
    const owner = await gw.createUserKey({ name: "owner" });
    const other = await gw.createUserKey({ name: "other" });
    const file = await nativeUpload(gw, owner);
    // Whichever key the pool picked for the upload holds the file.
    const uploader = gw.fake.requests.find((r) => r.path.startsWith("/upload/"))?.key;
    assert.ok(uploader);
    const plain = readingFile(file.uri);
    const spellings = [
      plain,
      plain.replaceAll("files/", "files\\/"),
      plain.replaceAll("/", "\\/"),
      plain.replace('"fileUri"', '"file\\u0055ri"'),
      plain.replace("files/", "\\u0066iles/"),
      readingFile(file.name),
    ];
    for (const body of spellings) {
      JSON.parse(body);
      const denied = await call(gw, other, { method: "POST", path: GENERATE, body });
      assert.equal(denied.status, 403, body);
      assert.equal(denied.json.error?.status, "PERMISSION_DENIED");
    }
    // A duplicate key: what the gateway read (the last) is all that goes upstream.
    const duplicate = plain.slice(0, -1) + ',"contents":[{"role":"user","parts":[{"text":"x"}]}]}';
    gw.fake.reset();
    const dup = await call(gw, other, { method: "POST", path: GENERATE, body: duplicate });
    assert.equal(dup.status, 200);
    assert.ok(!JSON.stringify(gw.fake.requests[0].body).includes(file.name.slice(6)));
    assert.equal(gw.fake.requests[0].bytes, JSON.stringify(JSON.parse(duplicate)).length);
    // The owner, however it spells the file, always goes through the key that holds it.
    gw.fake.reset();
    for (let i = 0; i < 6; i++) {
      const body = spellings[i % spellings.length];
      const res = await call(gw, owner, { method: "POST", path: GENERATE, body });
      assert.equal(res.status, 200, JSON.stringify(res.json));
    }
    assert.deepEqual([...new Set(gw.fake.requests.map((r) => r.key))], [uploader]);
  } finally {
    await gw.close();
  }
});

Deno.test("a file URI that only looks like a file is refused; other URIs and plain bodies pass as sent", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  try {
    const user = await gw.createUserKey();
    for (const uri of ["files/ABC", "FILES/abc", "files/abc/", `${gw.fake.url}/v1beta/files/a:b`]) {
      const res = await call(gw, user, { method: "POST", path: GENERATE, body: readingFile(uri) });
      assert.equal(res.status, 400, uri);
      assert.equal(res.json.error?.status, "INVALID_ARGUMENT");
      assert.match(res.json.error?.message ?? "", /Invalid file uri/);
    }
    assert.equal(gw.fake.requests.length, 0);
    // A body that names no file goes upstream byte for byte (no walk, no new serialization).
    const spaced = '{ "contents" : [ { "parts" : [ { "text" : "hi\\n\\u4e2d" } ] } ] }';
    const res = await call(gw, user, { method: "POST", path: GENERATE, body: spaced });
    assert.equal(res.status, 200);
    assert.equal(gw.fake.requests[0].bytes, spaced.length);
    // A Cloud Storage URL in a bucket folder named `files`, and a tool result that merely holds
    // an `inputConfig`, are the client's business: they go upstream.
    const others = [
      readingFile("https://storage.googleapis.com/my-bucket/files/clip.mp4?X-Goog-Signature=ab"),
      JSON.stringify({
        contents: [{
          role: "user",
          parts: [{
            functionResponse: {
              name: "f",
              response: { inputConfig: { fileName: "files/input.jsonl" } },
            },
          }],
        }],
      }),
    ];
    for (const body of others) {
      gw.fake.reset();
      const passed = await call(gw, user, { method: "POST", path: GENERATE, body });
      assert.doesNotMatch(passed.json.error?.message ?? "", /Invalid file uri/, body);
      assert.ok(gw.fake.requests.length >= 1, body);
    }
  } finally {
    await gw.close();
  }
});

Deno.test("a native delete Gemini did not carry out keeps the file its owner's; a file gone there is let go", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1@projA": OK } });
  try {
    const owner = await gw.createUserKey({ name: "owner" });
    const other = await gw.createUserKey({ name: "other" });
    const file = await nativeUpload(gw, owner);
    gw.fake.setKey("AIzaNative-1@projA", { kind: "unavailable" });
    const failed = await call(gw, owner, { method: "DELETE", path: `/v1beta/${file.name}` });
    assert.equal(failed.status, 503, JSON.stringify(failed.json));
    assert.equal(failed.json.error?.status, "UNAVAILABLE");
    gw.fake.setKey("AIzaNative-1@projA", OK);
    gw.clock.advance(120_000);
    // Still the owner's: listed, readable, and closed to other user keys.
    assert.equal(
      (await call(gw, owner, { method: "GET", path: `/v1beta/${file.name}` })).status,
      200,
    );
    const theirs = await call(gw, other, {
      method: "POST",
      path: GENERATE,
      body: readingFile(file.uri),
    });
    assert.equal(theirs.status, 403);
    // The retry deletes it.
    const retried = await call(gw, owner, { method: "DELETE", path: `/v1beta/${file.name}` });
    assert.equal(retried.status, 200, JSON.stringify(retried.json));
    assert.equal(
      (await call(gw, owner, { method: "GET", path: `/v1beta/${file.name}` })).status,
      403,
    );

    // Deleted at Gemini behind the gateway's back: Google's 403 is passed on, and the record goes.
    const second = await nativeUpload(gw, owner);
    const direct = await fetch(`${gw.fake.url}/v1beta/${second.name}`, {
      method: "DELETE",
      headers: { "x-goog-api-key": "AIzaNative-1@projA" },
    });
    await direct.body?.cancel();
    const gone = await call(gw, owner, { method: "DELETE", path: `/v1beta/${second.name}` });
    assert.equal(gone.status, 403);
    const calls = gw.fake.requests.length;
    assert.equal(
      (await call(gw, owner, { method: "GET", path: `/v1beta/${second.name}` })).status,
      403,
    );
    assert.equal(gw.fake.requests.length, calls, "no record left: refused without asking Google");

    // The file's key disabled by the admin: the delete waits for it, and says so.
    const third = await nativeUpload(gw, owner);
    const keys = await gw.admin<{ data: { id: string }[] }>("GET", "/admin/api/keys");
    await gw.admin("PATCH", `/admin/api/keys/${keys.json.data[0].id}`, { enabled: false });
    const waiting = await call(gw, owner, { method: "DELETE", path: `/v1beta/${third.name}` });
    assert.equal(waiting.status, 400, JSON.stringify(waiting.json));
    assert.match(waiting.json.error?.message ?? "", /can be deleted once that key works again/);
    // The key removed from the pool: nobody can reach the file any more, and its record goes.
    await gw.admin("DELETE", `/admin/api/keys/${keys.json.data[0].id}`);
    const unreachable = await call(gw, owner, {
      method: "DELETE",
      path: `/v1beta/${third.name}`,
    });
    assert.equal(unreachable.status, 200, JSON.stringify(unreachable.json));
    const listed = await fetch(`${gw.url}/v1beta/files`, { headers: { "x-goog-api-key": owner } });
    assert.deepEqual(await listed.json(), {});
  } finally {
    await gw.close();
  }
});

Deno.test("an upload start's metadata is bounded: a large one is refused before it is read", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  try {
    const user = await gw.createUserKey();
    const megabyte = new Uint8Array(1024 * 1024).fill(0x20);
    // Declared (refused on its Content-Length), then chunked (refused once 64 KiB are counted).
    let pulled = 0;
    const bodies: (BodyInit | ReadableStream<Uint8Array>)[] = [
      megabyte,
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (pulled++ >= 16) return controller.close();
          controller.enqueue(megabyte.subarray(0, 64 * 1024));
        },
      }),
    ];
    for (const body of bodies) {
      const res = await fetch(`${gw.url}/upload/v1beta/files`, {
        method: "POST",
        headers: startHeaders(user, { "x-goog-upload-header-content-length": "5" }),
        body,
        ...(body instanceof ReadableStream ? { duplex: "half" } : {}),
      } as RequestInit);
      const json = await res.json();
      assert.equal(res.status, 413);
      assert.equal(json.error.status, "INVALID_ARGUMENT");
      assert.match(json.error.message, /Upload metadata is larger than 65536 bytes/);
    }
    assert.equal(gw.fake.requests.length, 0);
  } finally {
    await gw.close();
  }
});

Deno.test("an upload start without a declared size declares none upstream; a bad size is a 400", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  try {
    const user = await gw.createUserKey();
    const starts: Record<string, string>[] = [{}, { "x-goog-upload-header-content-length": " " }];
    for (const extra of starts) {
      gw.fake.reset();
      const res = await fetch(`${gw.url}/upload/v1beta/files`, {
        method: "POST",
        headers: startHeaders(user, extra),
        body: "{}",
      });
      await res.body?.cancel();
      assert.equal(res.status, 200);
      const [start] = gw.fake.requests;
      assert.equal(start.headers["x-goog-upload-header-content-length"], undefined);
      const done = await fetch(res.headers.get("x-goog-upload-url")!, {
        method: "POST",
        headers: { "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0" },
        body: "hello",
      });
      const json = await done.json();
      assert.equal(done.status, 200, JSON.stringify(json));
      assert.equal(json.file.sizeBytes, "5");
    }
    const bad = await fetch(`${gw.url}/upload/v1beta/files`, {
      method: "POST",
      headers: startHeaders(user, { "x-goog-upload-header-content-length": "5 bytes" }),
      body: "{}",
    });
    const json = await bad.json();
    assert.equal(bad.status, 400);
    assert.match(json.error.message, /"5 bytes" is not a byte count/);
  } finally {
    await gw.close();
  }
});

Deno.test("an upload chunk whose upstream call fails answers Google's 503, not a 500", async () => {
  let failChunks = false;
  const upstreamFetch: typeof fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (failChunks && url.includes("upload_id=")) {
      const body = init?.body;
      if (body instanceof ReadableStream) await body.cancel();
      throw new TypeError(`error sending request for url (${url}): connection reset`);
    }
    return await fetch(input, init);
  };
  const gw = await startGateway({ keys: { "AIzaNative-1": OK }, upstreamFetch });
  try {
    const user = await gw.createUserKey();
    const res = await fetch(`${gw.url}/upload/v1beta/files`, {
      method: "POST",
      headers: startHeaders(user, { "x-goog-upload-header-content-length": "5" }),
      body: "{}",
    });
    await res.body?.cancel();
    const session = res.headers.get("x-goog-upload-url")!;
    failChunks = true;
    const chunk = await fetch(session, {
      method: "POST",
      headers: { "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0" },
      body: "hello",
    });
    const json = await chunk.json();
    assert.equal(chunk.status, 503, JSON.stringify(json));
    assert.equal(json.error.status, "UNAVAILABLE");
    assert.match(json.error.message, /connection reset|resting/);
  } finally {
    await gw.close();
  }
});

Deno.test("a malformed percent-encoding in a native path is Google's 400, not a 500", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  try {
    const user = await gw.createUserKey();
    const cases: [string, string][] = [
      ["POST", "/v1beta/models/%E0%A4%A:generateContent"],
      ["POST", "/v1/models/gemini%:generateContent"],
      ["GET", "/v1beta/models/%ZZ"],
      ["GET", "/v1beta/files/%ZZ"],
    ];
    for (const [method, path] of cases) {
      const res = await call(gw, user, {
        method,
        path,
        body: method === "POST" ? "{}" : undefined,
      });
      assert.ok(res.status === 400 || res.status === 403, `${path}: ${res.status}`);
      assert.ok(res.json.error?.status, path);
      if (path.startsWith("/v1beta/models") || path.startsWith("/v1/models")) {
        assert.equal(res.status, 400, path);
        assert.match(res.json.error?.message ?? "", /Invalid percent-encoding/);
      }
    }
    assert.equal(gw.fake.requests.length, 0);
  } finally {
    await gw.close();
  }
});

Deno.test("credentials and quota steering in a native query or header never reach Google", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  try {
    const user = await gw.createUserKey();
    const query = `key=${user}&access_token=${user}&$oauth_token=t&bearer_token=t&quotaUser=x` +
      `&$userProject=p&userIp=1.2.3.4&QUOTAUSER=y&alt=sse&fields=candidates`;
    const res = await fetch(
      `${gw.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?${query}`,
      {
        method: "POST",
        headers: { "content-type": "application/json", "x-goog-user-project": "someone-else" },
        body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] }),
      },
    );
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const [sent] = gw.fake.requests;
    assert.equal(sent.search, "?alt=sse&fields=candidates");
    assert.equal(sent.headers["x-goog-user-project"], undefined);
    assert.equal(sent.key, "AIzaNative-1");
    assert.ok(!JSON.stringify(sent.headers).includes(user));
  } finally {
    await gw.close();
  }
});

Deno.test("a native file listing skips expired files without short or empty pages", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  try {
    const user = await gw.createUserKey();
    const names: string[] = [];
    for (let i = 0; i < 4; i++) {
      gw.clock.advance(1000); // listed newest first
      names.unshift((await nativeUpload(gw, user, `file ${i}`)).name);
    }
    // The newest two have expired (as if uploaded two days earlier).
    for (const name of names.slice(0, 2)) {
      const record = (await getFileByName(gw.kv, name))!;
      await putFile(gw.kv, { ...record, expiresAt: gw.clock.now() - 1 }, gw.clock.now());
    }
    const listed: string[] = [];
    let token = "";
    for (let page = 0; page < 5; page++) {
      const res = await fetch(
        `${gw.url}/v1beta/files?pageSize=1${token ? `&pageToken=${token}` : ""}`,
        { headers: { "x-goog-api-key": user } },
      );
      const json = await res.json() as { files?: { name: string }[]; nextPageToken?: string };
      assert.equal(json.files?.length, 1, `page ${page} is full: ${JSON.stringify(json)}`);
      listed.push(json.files![0].name);
      if (!json.nextPageToken) break;
      token = json.nextPageToken;
    }
    assert.deepEqual(listed, names.slice(2));
  } finally {
    await gw.close();
  }
});

Deno.test("a native model named like an object's built-in (constructor) is a model name, not an alias", async () => {
  const gw = await startGateway({ keys: { "AIzaNative-1": OK } });
  try {
    const user = await gw.createUserKey();
    for (const model of ["constructor", "toString", "hasOwnProperty"]) {
      const generate = await call(gw, user, {
        method: "POST",
        path: `/v1beta/models/${model}:generateContent`,
        body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] }),
      });
      assert.notEqual(generate.status, 500, `${model}: ${JSON.stringify(generate.json)}`);
      const get = await call(gw, user, { method: "GET", path: `/v1beta/models/${model}` });
      assert.notEqual(get.status, 500, model);
    }
  } finally {
    await gw.close();
  }
});
