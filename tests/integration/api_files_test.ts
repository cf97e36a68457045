/**
 * `/v1/files` through the gateway with the real `openai` client against the fake upstream:
 * streamed multipart upload into Gemini's resumable protocol, metadata per owner, both reference
 * forms in chat, every use pinned to the uploading key (keys of two projects, where the other key
 * cannot see the file), waiting for ACTIVE, a clear 4xx once that key is gone, and a 100 MB upload
 * with bounded memory.
 */
import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";
import { startFakeGemini } from "../fakes/fake_gemini.ts";
import { ADMIN_PASSWORD, startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const TWO_PROJECTS = { "AIzaFile-1@projA": OK, "AIzaFile-2@projB": OK };

function generateRequests(gw: TestGateway) {
  return gw.fake.requests.filter((r) => r.path.includes("enerateContent"));
}

Deno.test("files upload through the resumable protocol and are listed, read and deleted per owner", async () => {
  const gw = await startGateway({ keys: TWO_PROJECTS });
  try {
    const client = gw.openai(await gw.createUserKey({ name: "owner" }));
    const stranger = gw.openai(await gw.createUserKey({ name: "stranger" }));
    const text = "hello file world, ".repeat(1000);
    const file = await client.files.create({
      file: await toFile(new TextEncoder().encode(text), "notes.txt", { type: "text/plain" }),
      purpose: "user_data",
    });
    assert.match(file.id, /^file-/);
    assert.equal(file.object, "file");
    assert.equal(file.bytes, text.length);
    assert.equal(file.filename, "notes.txt");
    assert.equal(file.purpose, "user_data");
    assert.equal(file.status, "processed");
    assert.ok(file.expires_at! > file.created_at);
    const [start, ...chunks] = gw.fake.requests.filter((r) => r.path === "/upload/v1beta/files");
    assert.equal(start.headers["x-goog-upload-command"], "start");
    assert.equal(start.headers["x-goog-upload-header-content-type"], "text/plain");
    assert.equal(chunks.at(-1)!.headers["x-goog-upload-command"], "upload, finalize");
    assert.equal(chunks.reduce((n, r) => n + r.bytes, 0), text.length);

    gw.clock.advance(1000); // ids sort by creation time
    const second = await client.files.create({
      file: await toFile(new Uint8Array([37, 80, 68, 70]), "报告.pdf"),
      purpose: "assistants",
    });
    assert.equal(second.filename, "报告.pdf");
    const listed: string[] = [];
    for await (const f of client.files.list({ limit: 1 })) listed.push(f.id);
    assert.deepEqual(listed, [second.id, file.id], "newest first, paged one by one");
    assert.equal((await client.files.retrieve(file.id)).filename, "notes.txt");

    // Another user key sees nothing of them.
    const theirs: string[] = [];
    for await (const f of stranger.files.list()) theirs.push(f.id);
    assert.deepEqual(theirs, []);
    await assert.rejects(stranger.files.retrieve(file.id), OpenAI.NotFoundError);
    await assert.rejects(stranger.files.delete(file.id), OpenAI.NotFoundError);
    const asStranger = await stranger.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: [{ type: "file", file: { file_id: file.id } }] }],
    }).catch((e) => e);
    assert.equal(asStranger.status, 404);
    assert.equal(asStranger.param, "messages[0].content[0].file.file_id");

    const deleted = await client.files.delete(file.id);
    assert.deepEqual(deleted, { id: file.id, object: "file", deleted: true });
    assert.equal(gw.fake.requests.at(-1)!.method, "DELETE");
    await assert.rejects(client.files.retrieve(file.id), OpenAI.NotFoundError);
    await assert.rejects(client.files.content(second.id), OpenAI.BadRequestError);
  } finally {
    await gw.close();
  }
});

Deno.test("chat messages use files in both reference forms, always through the uploading key", async () => {
  const gw = await startGateway({ keys: TWO_PROJECTS, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const file = await client.files.create({
      file: await toFile(new Uint8Array([37, 80, 68, 70, 45]), "doc.pdf", {
        type: "application/pdf",
      }),
      purpose: "user_data",
    });
    const uploader = gw.fake.requests.find((r) => r.path === "/upload/v1beta/files")!.key;
    gw.fake.reset();
    for (let i = 0; i < 6; i++) {
      const res = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{
          role: "user",
          content: [
            { type: "text", text: `summary ${i}` },
            i % 2 ? { type: "file", file: { file_id: file.id } } : {
              type: "document",
              file_data: { file_id: file.id, mime_type: "application/pdf" },
            } as unknown as OpenAI.Chat.ChatCompletionContentPart,
          ],
        }],
      });
      assert.equal(res.choices[0].message.content, `Echo: summary ${i}`);
    }
    const used = generateRequests(gw);
    assert.equal(used.length, 6, "no request needed a retry");
    assert.ok(
      used.every((r) => r.key === uploader),
      "every request went through the uploading key",
    );
    const part = (used[0].body as { contents: { parts: { fileData?: unknown }[] }[] }).contents[0]
      .parts[1];
    assert.deepEqual(part, {
      fileData: {
        fileUri: `${gw.fake.url}/v1beta/files/${(await fileName(gw, file.id))}`,
        mimeType: "application/pdf",
      },
    });
    // Unpinned requests still rotate over both keys.
    for (let i = 0; i < 4; i++) {
      await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "plain" }],
      });
    }
    assert.equal(new Set(generateRequests(gw).slice(6).map((r) => r.key)).size, 2);
  } finally {
    await gw.close();
  }
});

/** Uploads a small text file through the gateway; returns it and the Gemini key that took it. */
async function uploadText(gw: TestGateway, client: OpenAI) {
  const file = await client.files.create({
    file: await toFile(new TextEncoder().encode("data"), "a.txt", { type: "text/plain" }),
    purpose: "user_data",
  });
  const uploader = gw.fake.requests.findLast((r) => r.path === "/upload/v1beta/files")!.key!;
  return { file, uploader };
}

async function fileName(gw: TestGateway, id: string): Promise<string> {
  const entry = await gw.kv.get<{ name: string }>(["file", id]);
  return entry.value!.name.slice("files/".length);
}

Deno.test("a video still processing is waited for until ACTIVE before the chat request", async () => {
  const gw = await startGateway({
    keys: { "AIzaFile-1@projA": OK },
    fakeOptions: { strict: true },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    const video = await client.files.create({
      file: await toFile(new Uint8Array(64), "clip.mp4", { type: "video/mp4" }),
      purpose: "user_data",
    });
    assert.equal(video.status, "uploaded", "PROCESSING maps to uploaded");
    const res = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{
        role: "user",
        content: [{ type: "text", text: "watch" }, { type: "file", file: { file_id: video.id } }],
      }],
    });
    assert.equal(res.choices[0].message.content, "Echo: watch");
    const polls = gw.fake.requests.filter((r) => r.method === "GET" && r.path.includes("/files/"));
    assert.ok(polls.length >= 2, "the file was polled until ACTIVE");
    assert.equal((await client.files.retrieve(video.id)).status, "processed");
  } finally {
    await gw.close();
  }
});

Deno.test("a file whose key became invalid gives a clear 4xx, and still lists with its problem", async () => {
  const gw = await startGateway({
    keys: { "AIzaFileKey-1@projectA": OK, "AIzaFileKey-2@projectB": OK },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    const { file, uploader } = await uploadText(gw, client);
    const keys = await gw.admin<{ data: { id: string; masked: string }[] }>(
      "GET",
      "/admin/api/keys",
    );
    const id = keys.json.data.find((k) => uploader.endsWith(k.masked.slice(-4)))!.id;
    assert.equal(
      (await gw.admin("PATCH", `/admin/api/keys/${id}`, { enabled: false })).status,
      200,
    );
    const err = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: [{ type: "file", file: { file_id: file.id } }] }],
    }).catch((e) => e);
    assert.equal(err.status, 400);
    assert.equal(err.code, "file_key_unavailable");
    assert.match(err.message, /upload the file again/);
    const shown = await client.files.retrieve(file.id);
    assert.equal(shown.status, "error");
    assert.match(String(shown.status_details), /disabled/);
    // Gemini cannot delete it now: it is kept, its owner's, until the key serves again.
    const refused = await client.files.delete(file.id).catch((e) => e);
    assert.equal(refused.status, 409);
    assert.equal(refused.code, "file_key_unavailable");
    assert.match(refused.message, /is disabled\. It is kept, still yours/);
    assert.equal((await client.files.retrieve(file.id)).id, file.id);
    assert.equal(
      (await gw.admin("PATCH", `/admin/api/keys/${id}`, { enabled: true })).status,
      200,
    );
    assert.equal((await client.files.delete(file.id)).deleted, true);
    // A key removed from the pool holds nothing anyone can reach: the record just goes.
    const other = await uploadText(gw, client);
    const otherKey = keys.json.data.find((k) => other.uploader.endsWith(k.masked.slice(-4)))!.id;
    assert.equal((await gw.admin("DELETE", `/admin/api/keys/${otherKey}`)).status, 204);
    assert.equal((await client.files.delete(other.file.id)).deleted, true);
  } finally {
    await gw.close();
  }
});

Deno.test("a file whose key the upstream stops accepting gives a clear 4xx, not another key", async () => {
  const gw = await startGateway({ keys: TWO_PROJECTS });
  try {
    const client = gw.openai(await gw.createUserKey());
    const { file, uploader } = await uploadText(gw, client);
    gw.fake.setKey(uploader, { kind: "invalid" });
    gw.fake.reset();
    const err = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: [{ type: "file", file: { file_id: file.id } }] }],
    }).catch((e) => e);
    assert.equal(err.status, 400);
    assert.equal(err.code, "file_key_unavailable");
    assert.match(err.message, /no longer valid/);
    assert.ok(gw.fake.requests.every((r) => r.key === uploader), "no other key was tried");
    const keys = await gw.admin<{ data: { status: string }[] }>("GET", "/admin/api/keys");
    assert.deepEqual(keys.json.data.map((k) => k.status).sort(), ["active", "invalid"]);
  } finally {
    await gw.close();
  }
});

Deno.test("a file past Gemini's 48-hour expiry is gone for its owner too", async () => {
  const gw = await startGateway({ keys: { "AIzaFile-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const { file } = await uploadText(gw, client);
    gw.clock.t = (file.expires_at! + 1) * 1000;
    await assert.rejects(client.files.retrieve(file.id), OpenAI.NotFoundError);
    const listed: string[] = [];
    for await (const f of client.files.list()) listed.push(f.id);
    assert.deepEqual(listed, []);
    const err = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: [{ type: "file", file: { file_id: file.id } }] }],
    }).catch((e) => e);
    assert.equal(err.status, 404);
    assert.equal(err.code, "file_expired");
  } finally {
    await gw.close();
  }
});

Deno.test("a file deleted at Gemini behind the gateway's back is a 404 that says so, not a server error", async () => {
  const gw = await startGateway({ keys: { "AIzaFile-1": OK, "AIzaFile-2": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const { file, uploader } = await uploadText(gw, client);
    const gone = await fetch(`${gw.fake.url}/v1beta/files/${await fileName(gw, file.id)}`, {
      method: "DELETE",
      headers: { "x-goog-api-key": uploader },
    });
    assert.equal(gone.status, 200);
    await gone.body?.cancel();
    gw.fake.reset();
    const err = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: [{ type: "file", file: { file_id: file.id } }] }],
    }, { maxRetries: 0 }).catch((e) => e);
    assert.ok(err instanceof OpenAI.NotFoundError, String(err));
    assert.equal(err.code, "file_not_found");
    assert.match(err.message, /no longer available at Gemini/);
    // Asked of its own key only, once.
    assert.deepEqual(generateRequests(gw).map((r) => r.key), [uploader]);
  } finally {
    await gw.close();
  }
});

Deno.test("a delete Gemini did not carry out is a 503 to retry, and the file stays its owner's", async () => {
  const gw = await startGateway({ keys: { "AIzaFile-1@projA": OK } });
  try {
    const client = gw.openai(await gw.createUserKey({ name: "owner" }));
    const { file } = await uploadText(gw, client);
    const name = `files/${await fileName(gw, file.id)}`;
    gw.fake.setKey("AIzaFile-1@projA", { kind: "unavailable" });
    const failed = await client.files.delete(file.id).catch((e) => e);
    assert.ok(failed instanceof OpenAI.APIError);
    assert.equal(failed.status, 503);
    assert.equal(failed.code, "file_not_deleted");
    assert.match(failed.message, /could not be deleted at Gemini.*retry the deletion later/);
    assert.ok(Number(failed.headers?.get("retry-after")) > 0);
    gw.fake.setKey("AIzaFile-1@projA", OK);
    gw.clock.advance(120_000);
    assert.equal((await client.files.retrieve(file.id)).id, file.id, "still listed, still owned");
    const upstream = await fetch(`${gw.fake.url}/v1beta/files`, {
      headers: { "x-goog-api-key": "AIzaFile-1@projA" },
    });
    const held = await upstream.json();
    assert.deepEqual(held.files.map((f: { name: string }) => f.name), [name]);
    assert.deepEqual(await client.files.delete(file.id), {
      id: file.id,
      object: "file",
      deleted: true,
    });
    await assert.rejects(client.files.retrieve(file.id), OpenAI.NotFoundError);
  } finally {
    await gw.close();
  }
});

Deno.test("a second file in one upload is refused, and the first one, already at Gemini, is deleted", async () => {
  const gw = await startGateway({ keys: { "AIzaFile-1": OK } });
  try {
    const key = await gw.createUserKey();
    const form = new FormData();
    form.set("purpose", "user_data");
    form.append("file", new Blob(["one"], { type: "text/plain" }), "one.txt");
    form.append("file", new Blob(["two"], { type: "text/plain" }), "two.txt");
    const res = await fetch(`${gw.url}/v1/files`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}` },
      body: form,
    });
    const json = await res.json();
    assert.equal(res.status, 400);
    assert.match(json.error.message, /one file per upload/);
    await gw.app.gateway.background.drain();
    const upstream = await fetch(`${gw.fake.url}/v1beta/files`, {
      headers: { "x-goog-api-key": "AIzaFile-1" },
    });
    assert.deepEqual(await upstream.json(), {}, "no file left at Gemini without an owner");
    assert.equal(gw.fake.requests.filter((r) => r.method === "DELETE").length, 1);
  } finally {
    await gw.close();
  }
});

Deno.test("a listing filtered by purpose fills its pages: none is empty while more follow", async () => {
  const gw = await startGateway({ keys: { "AIzaFile-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const ids: Record<string, string[]> = { user_data: [], assistants: [] };
    for (const purpose of ["user_data", "assistants", "assistants", "assistants"] as const) {
      gw.clock.advance(1000); // ids sort by creation time
      const file = await client.files.create({
        file: await toFile(new TextEncoder().encode(purpose), `${purpose}.txt`),
        purpose,
      });
      ids[purpose].unshift(file.id);
    }
    // The newest two are not user_data: the page reads on to the one that is.
    const page = await client.files.list({ purpose: "user_data", limit: 2 });
    assert.deepEqual(page.data.map((f) => f.id), ids.user_data);
    assert.equal(page.has_more, false);
    const listed: string[] = [];
    for await (const f of client.files.list({ purpose: "assistants", limit: 2 })) {
      listed.push(f.id);
    }
    assert.deepEqual(listed, ids.assistants);
    const first = await client.files.list({ purpose: "assistants", limit: 3 });
    assert.equal(first.has_more, false, "no more after the last match");
  } finally {
    await gw.close();
  }
});

Deno.test("bad uploads get a 400 naming what is missing", async () => {
  const gw = await startGateway({ keys: { "AIzaFile-1": OK } });
  try {
    const key = await gw.createUserKey();
    const json = await fetch(`${gw.url}/v1/files`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(json.status, 400);
    assert.equal((await json.json()).error.param, "file");
    const form = new FormData();
    form.set("purpose", "user_data");
    const noFile = await fetch(`${gw.url}/v1/files`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}` },
      body: form,
    });
    assert.equal(noFile.status, 400);
    assert.equal((await noFile.json()).error.code, "missing_file");
    const anonymous = await fetch(`${gw.url}/v1/files`, { method: "POST", body: form });
    assert.equal(anonymous.status, 401);
    await anonymous.body?.cancel();
  } finally {
    await gw.close();
  }
});

Deno.test("an upload whose part type is no MIME type falls back to the filename's, blaming no key", async () => {
  const gw = await startGateway({ keys: TWO_PROJECTS });
  try {
    const key = await gw.createUserKey();
    const boundary = "XBOUNDARYX";
    const upload = async (type: string, filename: string) => {
      const body = `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n` +
        `user_data\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; ` +
        `filename="${filename}"\r\nContent-Type: ${type}\r\n\r\nhello\r\n--${boundary}--\r\n`;
      const res = await fetch(`${gw.url}/v1/files`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${key}`,
          "content-type": `multipart/form-data; boundary=${boundary}`,
        },
        body: new TextEncoder().encode(body),
      });
      return { status: res.status, json: await res.json() };
    };
    // Once an upload header, such a type made every key fail ("Bad header") until all rested.
    for (let i = 0; i < 4; i++) {
      const res = await upload("text/plain\u20ac", "a.txt");
      assert.equal(res.status, 200, JSON.stringify(res.json));
    }
    const odd = await upload("image/p ng", "notes.bin");
    assert.equal(odd.status, 200, JSON.stringify(odd.json));
    const starts = gw.fake.requests.filter((r) => r.headers["x-goog-upload-command"] === "start");
    assert.deepEqual(
      starts.map((r) => r.headers["x-goog-upload-header-content-type"]),
      [...Array(4).fill("text/plain"), "application/octet-stream"],
    );
    const keys = await gw.admin<{ data: { status: string }[] }>("GET", "/admin/api/keys");
    assert.deepEqual(keys.json.data.map((k) => k.status), ["active", "active"]);
  } finally {
    await gw.close();
  }
});

/** A multipart body streamed in 1 MiB pieces: a `purpose` field, then `size` bytes of a file. */
function streamedForm(boundary: string, size: number): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  const head = enc.encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n` +
      `Content-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = enc.encode(`\r\n--${boundary}--\r\n`);
  const piece = new Uint8Array(1024 * 1024).fill(0x61);
  let sent = -1;
  return new ReadableStream({
    pull(controller) {
      if (sent < 0) {
        controller.enqueue(head);
        sent = 0;
      } else if (sent < size) {
        const n = Math.min(piece.length, size - sent);
        controller.enqueue(piece.slice(0, n));
        sent += n;
      } else {
        controller.enqueue(tail);
        controller.close();
      }
    },
  }, { highWaterMark: 0 });
}

/** Reads stdout lines of a child process. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, nl);
      pending = pending.slice(nl + 1);
    }
  }
}

Deno.test("a 100 MB upload streams through the gateway with bounded memory growth", async () => {
  // The gateway runs in its own process so that its memory is measured without the client's.
  const fake = await startFakeGemini({ keys: { "AIzaFile-1": OK }, quiet: true });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      new URL("../../deno.json", import.meta.url).pathname,
      new URL("./upload_memory_child.ts", import.meta.url).pathname,
    ],
    env: { GEMINI_BASE_URL: fake.url, ADMIN_PASSWORD, GEMINI_KEYS: "AIzaFile-1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = lines(child.stdout);
  const stdin = child.stdin.getWriter();
  const say = (line: string) => stdin.write(new TextEncoder().encode(`${line}\n`));
  const size = 100 * 1024 * 1024;
  try {
    const ready = (await out.next()).value ?? "";
    assert.match(ready, /^READY /);
    const url = ready.slice(6);
    const created = await fetch(`${url}/admin/api/user-keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_PASSWORD}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "big" }),
    });
    const { key } = await created.json();
    await say("start");
    assert.equal((await out.next()).value, "STARTED");
    const boundary = "----gateway-test-boundary";
    const res = await fetch(`${url}/v1/files`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${key}`,
        "content-type": `multipart/form-data; boundary=${boundary}`,
      },
      body: streamedForm(boundary, size),
      duplex: "half",
    } as RequestInit);
    const file = await res.json();
    await say("stop");
    const peak = (await out.next()).value ?? "";
    assert.equal(res.status, 200, JSON.stringify(file));
    assert.equal(file.bytes, size);
    const chunks = fake.requests.filter((r) =>
      r.path === "/upload/v1beta/files" && r.headers["x-goog-upload-offset"] !== undefined
    );
    assert.equal(chunks.reduce((n, r) => n + r.bytes, 0), size);
    assert.ok(chunks.slice(0, -1).every((r) => r.bytes === 8 * 1024 * 1024), "8 MiB chunks");
    assert.match(peak, /^PEAK \d+$/);
    const growthMb = Number(peak.slice(5)) / (1024 * 1024);
    console.log(
      `100 MB upload: gateway peak RSS growth ${growthMb.toFixed(1)} MB (${chunks.length} chunks)`,
    );
    // Holding the file would grow memory by at least its size; streaming stays near a few chunks.
    assert.ok(growthMb < 64, `gateway peak RSS growth ${growthMb.toFixed(1)} MB`);
  } finally {
    await stdin.close().catch(() => {});
    await out.return(undefined);
    await child.stdout.cancel().catch(() => {});
    const status = await child.status;
    await fake.close();
    assert.equal(status.code, 0);
  }
});
