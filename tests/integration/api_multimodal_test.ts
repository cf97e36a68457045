/**
 * Multimodal chat input through the gateway with the real `openai` client: data-URL images, http(s)
 * images fetched server-side (with SSRF protection: loopback, private and link-local targets are
 * refused, also behind DNS and redirects), audio, inline files, and media too large to send inline
 * moved to the Files API on one pinned key.
 */
import assert from "node:assert/strict";
import type OpenAI from "openai";
import type { GenerateContentRequest } from "../../lib/gemini/types.ts";
import { MediaFetcher } from "../../lib/media/fetch_media.ts";
import { getUpstreamFile } from "../../lib/gemini/files.ts";
import { offloadLargeInline } from "../../lib/openai/chat_inputs.ts";
import { post, startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);

type Part = {
  text?: string;
  inlineData?: { mimeType: string; data: string };
  fileData?: { mimeType: string; fileUri: string };
};

function lastParts(gw: TestGateway): Part[] {
  const req = gw.fake.requests.findLast((r) => /:(stream)?[gG]enerateContent$/.test(r.path));
  return (req?.body as { contents: { parts: Part[] }[] }).contents.at(-1)!.parts;
}

/** A tiny image host on loopback: a PNG, an HTML page, a redirect to a private address. */
function imageHost() {
  const ac = new AbortController();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} },
    (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/cat.png") {
        return new Response(PNG, {
          headers: { "content-type": "image/png" },
        });
      }
      if (path === "/blob") return new Response(PNG); // no type: sniffed
      if (path === "/doc.pdf") {
        return new Response(PDF, { headers: { "content-type": "application/pdf" } });
      }
      // Object storage often types nothing: the name tells.
      if (path === "/notes.md") {
        return new Response("# notes", { headers: { "content-type": "application/octet-stream" } });
      }
      if (path === "/page.html") {
        return new Response("<html></html>", { headers: { "content-type": "text/html" } });
      }
      if (path === "/hop") return Response.redirect("http://10.0.0.7/internal.png", 302);
      if (path === "/loop") return Response.redirect(`${new URL(req.url).origin}/loop`, 302);
      return new Response("missing", { status: 404 });
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    close: async () => {
      ac.abort();
      await server.finished;
    },
  };
}

/** The start of a PDF file. */
const PDF = new TextEncoder().encode("%PDF-1.4\n%fake\n");

function imageMessage(url: string): OpenAI.Chat.ChatCompletionMessageParam[] {
  return [{
    role: "user",
    content: [{ type: "text", text: "what is this" }, { type: "image_url", image_url: { url } }],
  }];
}

Deno.test("data-URL images, audio and inline files become inline data", async () => {
  const gw = await startGateway({ keys: { "AIzaMedia-1": OK }, fakeOptions: { strict: true } });
  try {
    const client = gw.openai(await gw.createUserKey());
    await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "look" },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
          { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } },
          {
            type: "file",
            file: { file_data: "data:application/pdf;base64,JVBERi0=", filename: "a.pdf" },
          },
          { type: "file", file: { file_data: "JVBERi0=", filename: "b.pdf" } },
        ],
      }],
    });
    assert.deepEqual(lastParts(gw), [
      { text: "look" },
      { inlineData: { mimeType: "image/png", data: "iVBORw0KGgo=" } },
      { inlineData: { mimeType: "audio/wav", data: "UklGRg==" } },
      { inlineData: { mimeType: "application/pdf", data: "JVBERi0=" } },
      { inlineData: { mimeType: "application/pdf", data: "JVBERi0=" } },
    ]);
    const unknown = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{
        role: "user",
        content: [{ type: "file", file: { file_data: "AAAA", filename: "x.bin" } }],
      }],
    }).catch((e) => e);
    assert.equal(unknown.status, 400);
    assert.equal(unknown.param, "messages[0].content[0].file.file_data");
  } finally {
    await gw.close();
  }
});

Deno.test("a data URL or audio format that names no MIME type is a 400 naming the part", async () => {
  const gw = await startGateway({ keys: { "AIzaMedia-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const ask = (part: OpenAI.Chat.ChatCompletionContentPart) =>
      client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: [{ type: "text", text: "look" }, part] }],
      }).catch((e) => e);
    const cases: [OpenAI.Chat.ChatCompletionContentPart, string][] = [
      [
        { type: "image_url", image_url: { url: "data:image/p\u20acng;base64,iVBORw0KGgo=" } },
        "messages[0].content[1].image_url.url",
      ],
      [
        { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav\r\nx" as "wav" } },
        "messages[0].content[1].input_audio.format",
      ],
      [
        {
          type: "input_audio",
          input_audio: { data: "data:audio/w av;base64,UklGRg==", format: "wav" },
        },
        "messages[0].content[1].input_audio.data",
      ],
      [
        { type: "file", file: { file_data: "data:text/pl ain;base64,aGk=", filename: "a.txt" } },
        "messages[0].content[1].file.file_data",
      ],
    ];
    for (const [part, param] of cases) {
      const err = await ask(part);
      assert.equal(err.status, 400, String(err));
      assert.equal(err.code, "invalid_mime_type");
      assert.equal(err.param, param);
      assert.match(err.message, /is not a valid MIME type/);
    }
    assert.equal(gw.fake.requests.length, 0, "nothing reached the upstream");
  } finally {
    await gw.close();
  }
});

Deno.test("http image URLs are fetched server-side and sent inline", async () => {
  const host = imageHost();
  const gw = await startGateway({ keys: { "AIzaMedia-1": OK }, fakeOptions: { strict: true } });
  try {
    // The test host is on loopback, which the real fetcher refuses: trust it explicitly here.
    gw.app.gateway.media = new MediaFetcher({ allowHosts: ["127.0.0.1"] });
    const client = gw.openai(await gw.createUserKey());
    const res = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: imageMessage(`${host.url}/cat.png`),
    });
    assert.equal(res.choices[0].message.content, "Echo: what is this");
    const b64 = btoa(String.fromCharCode(...PNG));
    assert.deepEqual(lastParts(gw)[1], { inlineData: { mimeType: "image/png", data: b64 } });
    await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: imageMessage(`${host.url}/blob`),
    });
    assert.equal(lastParts(gw)[1].inlineData?.mimeType, "image/png", "type sniffed from bytes");

    for (
      const [path, pattern] of [
        ["/page.html", /did not return a usable file/],
        ["/missing", /HTTP 404/],
        ["/hop", /not public/],
        ["/loop", /Too many redirects/],
      ] as const
    ) {
      const err = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: imageMessage(`${host.url}${path}`),
      }).catch((e) => e);
      assert.equal(err.status, 400, path);
      assert.equal(err.param, "messages[0].content[1].image_url.url");
      assert.match(err.message, pattern);
    }
  } finally {
    await gw.close();
    await host.close();
  }
});

Deno.test("image URLs pointing at loopback, private or link-local addresses are refused", async () => {
  const host = imageHost();
  const gw = await startGateway({ keys: { "AIzaMedia-1": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const port = new URL(host.url).port;
    for (
      const url of [
        `${host.url}/cat.png`,
        `http://localhost:${port}/cat.png`,
        `http://[::ffff:127.0.0.1]:${port}/cat.png`,
        `http://2130706433:${port}/cat.png`,
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/x.png",
        "http://[fd00::1]/x.png",
        "ftp://example.com/x.png",
      ]
    ) {
      const err = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: imageMessage(url),
      }).catch((e) => e);
      assert.equal(err.status, 400, url);
      assert.match(err.message, /not public|public address|Only http|must be a base64/, url);
    }
    assert.equal(gw.fake.requests.filter((r) => r.path.includes("generate")).length, 0);
  } finally {
    await gw.close();
    await host.close();
  }
});

Deno.test("inline media over Gemini's request limit goes through the Files API on one key", async () => {
  // Two keys in two projects: a file uploaded with one is invisible to the other.
  const gw = await startGateway({
    keys: { "AIzaBig-1@projA": OK, "AIzaBig-2@projB": OK },
    fakeOptions: { strict: true },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    const big = new Uint8Array(15 * 1024 * 1024);
    big.set(PNG);
    let binary = "";
    for (let i = 0; i < big.length; i += 0x8000) {
      binary += String.fromCharCode(...big.subarray(i, i + 0x8000));
    }
    const url = `data:image/png;base64,${btoa(binary)}`;
    binary = "";
    for (let round = 0; round < 3; round++) {
      gw.fake.reset();
      const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{
        role: "user",
        content: [{ type: "text", text: "big" }, { type: "image_url", image_url: { url } }],
      }];
      if (round < 2) {
        const res = await client.chat.completions.create({ model: "gemini-2.5-flash", messages });
        assert.equal(res.choices[0].message.content, "Echo: big");
      } else {
        let text = "";
        const stream = await client.chat.completions.create({
          model: "gemini-2.5-flash",
          messages,
          stream: true,
        });
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
        assert.equal(text, "Echo: big");
      }
      const uploads = gw.fake.requests.filter((r) => r.path === "/upload/v1beta/files");
      assert.ok(uploads.length >= 2, "a resumable upload: start and chunks");
      assert.equal(uploads.slice(1).reduce((n, r) => n + r.bytes, 0), big.length);
      const generate = gw.fake.requests.find((r) => /:(stream)?[gG]enerateContent$/.test(r.path))!;
      assert.equal(generate.key, uploads[0].key, "the request used the key that uploaded");
      assert.ok(generate.bytes < 1024 * 1024, "the media no longer travels inline");
      const part = lastParts(gw)[1];
      assert.equal(part.inlineData, undefined);
      assert.equal(part.fileData?.mimeType, "image/png");
      // Once answered, the file made for the request is deleted, through the key that holds it.
      await assertMovedMediaDeleted(gw, uploads[0].key!);
    }
  } finally {
    await gw.close();
  }
});

/**
 * Asserts that every file uploaded since the fake's last reset was deleted (in the background,
 * waited for here) through `key`, the key that holds it, and that the key's project keeps none.
 */
async function assertMovedMediaDeleted(gw: TestGateway, key: string): Promise<void> {
  await gw.app.gateway.background.drain();
  const finals = gw.fake.requests.filter((r) =>
    r.path === "/upload/v1beta/files" && r.headers["x-goog-upload-command"]?.includes("finalize")
  );
  const deletes = gw.fake.requests.filter((r) => r.method === "DELETE");
  assert.ok(finals.length > 0);
  assert.equal(deletes.length, finals.length, "one delete per file made");
  for (const d of deletes) {
    assert.match(d.path, /^\/v1beta\/files\/[a-z0-9-]+$/);
    assert.equal(d.key, key);
  }
  const listed = await fetch(`${gw.fake.url}/v1beta/files`, { headers: { "x-goog-api-key": key } });
  assert.deepEqual(await listed.json(), {}, "no file left upstream");
}

/** 15 MB of base64 video: over Gemini's inline request limit, so it is offloaded to Files. */
function bigVideoBase64(): string {
  const big = new Uint8Array(15 * 1024 * 1024);
  let binary = "";
  for (let i = 0; i < big.length; i += 0x8000) {
    binary += String.fromCharCode(...big.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

Deno.test("offloaded inline media the upstream fails to process gives a clear 4xx", async () => {
  const gw = await startGateway({
    keys: { "AIzaFail-1": OK },
    fakeOptions: { strict: true, videoProcessing: { state: "FAILED" } },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    const err = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "watch" },
          {
            type: "file",
            file: { file_data: `data:video/mp4;base64,${bigVideoBase64()}`, filename: "a.mp4" },
          },
        ],
      }],
    }).catch((e) => e);
    assert.equal(err.status, 400);
    assert.equal(err.code, "file_failed");
    assert.match(err.message, /Uploaded media failed processing upstream/);
    assert.ok(gw.fake.requests.some((r) => r.method === "GET" && r.path.includes("/files/")));
    assert.equal(
      gw.fake.requests.filter((r) => r.path.includes("generateContent")).length,
      0,
      "no request to Gemini with a failed file",
    );
    await assertMovedMediaDeleted(gw, "AIzaFail-1");
  } finally {
    await gw.close();
  }
});

Deno.test("a client abort stops the wait for offloaded media at once", async () => {
  const gw = await startGateway({
    keys: { "AIzaSlow-1": OK },
    fakeOptions: { videoProcessing: { afterGets: 1_000 } },
  });
  try {
    const body: GenerateContentRequest = {
      contents: [{
        role: "user",
        parts: [{ inlineData: { mimeType: "video/mp4", data: bigVideoBase64() } }],
      }],
    };
    const ac = new AbortController();
    const polls = () =>
      gw.fake.requests.filter((r) => r.method === "GET" && r.path.includes("/files/")).length;
    const offload = Promise.resolve(
      offloadLargeInline(gw.app.gateway, body, { signal: ac.signal }),
    );
    const outcome = offload.then(() => "resolved", (e) => e);
    // Polls come after pauses of 250, 500, 1000 ms: after the third the wait sleeps for a second.
    while (polls() < 3) await new Promise((r) => setTimeout(r, 10));
    const before = polls();
    const abortedAt = performance.now();
    ac.abort();
    const err = await outcome;
    const took = performance.now() - abortedAt;
    assert.ok(err instanceof Error && err.name === "AbortError", String(err));
    assert.ok(took < 300, `the wait ended ${Math.round(took)} ms after the abort`);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(polls(), before, "no polling after the abort");
    await assertMovedMediaDeleted(gw, "AIzaSlow-1");
  } finally {
    await gw.close();
  }
});

Deno.test("a file helper whose caller went away rejects with the caller's abort, not an upstream error", async () => {
  const gw = await startGateway({ keys: { "AIzaFiles-1": OK } });
  try {
    const keys = await gw.admin<{ data: { id: string }[] }>("GET", "/admin/api/keys");
    const gone = new AbortController();
    gone.abort();
    await assert.rejects(
      getUpstreamFile(gw.app.gateway, {
        keyId: keys.json.data[0].id,
        name: "files/abc",
        signal: gone.signal,
        what: "A file",
      }),
      (e: unknown) => e instanceof Error && e.name === "AbortError",
    );
  } finally {
    await gw.close();
  }
});

Deno.test("files by http URL (a PDF) are fetched server-side on chat, responses and messages", async () => {
  const host = imageHost();
  const gw = await startGateway({ keys: { "AIzaMedia-1": OK } });
  try {
    gw.app.gateway.media = new MediaFetcher({ allowHosts: ["127.0.0.1"] });
    const key = await gw.createUserKey();
    const url = `${host.url}/doc.pdf`;
    const pdf = {
      inlineData: { mimeType: "application/pdf", data: btoa(String.fromCharCode(...PDF)) },
    };
    const bodies: [string, unknown][] = [
      ["/v1/chat/completions", {
        model: "gemini-2.5-flash",
        messages: [{
          role: "user",
          content: [{ type: "text", text: "sum up" }, { type: "file", file: { file_url: url } }],
        }],
      }],
      ["/v1/responses", {
        model: "gemini-2.5-flash",
        input: [{
          role: "user",
          content: [{ type: "input_text", text: "sum up" }, { type: "input_file", file_url: url }],
        }],
      }],
      ["/v1/messages", {
        model: "gemini-2.5-flash",
        max_tokens: 100,
        messages: [{
          role: "user",
          content: [
            { type: "text", text: "sum up" },
            { type: "document", source: { type: "url", url } },
          ],
        }],
      }],
    ];
    for (const [path, body] of bodies) {
      const res = await post(`${gw.url}${path}`, { apiKey: key, body });
      assert.equal(res.status, 200, `${path} ${JSON.stringify(res.json)}`);
      assert.deepEqual(lastParts(gw)[1], pdf, path);
    }
    // A web page is no image: read where a file is asked for, refused where an image is, also
    // when the same URL is both in one request.
    const pageUrl = `${host.url}/page.html`;
    const both = await post(`${gw.url}/v1/chat/completions`, {
      apiKey: key,
      body: {
        model: "gemini-2.5-flash",
        messages: [{
          role: "user",
          content: [
            { type: "file", file: { file_url: pageUrl } },
            { type: "image_url", image_url: { url: pageUrl } },
          ],
        }],
      },
    });
    assert.equal(both.status, 400, JSON.stringify(both.json));
    assert.equal(both.json.error.param, "messages[0].content[1].image_url.url");
    const chatFile = (content: unknown[]) =>
      post(`${gw.url}/v1/chat/completions`, {
        apiKey: key,
        body: { model: "gemini-2.5-flash", messages: [{ role: "user", content }] },
      });
    // An untyped download takes its type from its name.
    const md = await chatFile([{ type: "file", file: { file_url: `${host.url}/notes.md` } }]);
    assert.equal(md.status, 200, JSON.stringify(md.json));
    assert.equal(lastParts(gw)[0].inlineData?.mimeType, "text/markdown");
    // Inline data wins over a URL beside it (nothing is fetched), as before URLs were read.
    const inline = await chatFile([{
      type: "file",
      file: {
        file_data: `data:application/pdf;base64,${pdf.inlineData.data}`,
        file_url: `${host.url}/missing`,
      },
    }]);
    assert.equal(inline.status, 200, JSON.stringify(inline.json));
    // A file that fails says so in a file's words.
    const missing = await chatFile([{ type: "file", file: { file_url: `${host.url}/missing` } }]);
    assert.equal(missing.status, 400);
    assert.equal(missing.json.error.code, "invalid_file_url");
    // At most 16 URLs are fetched for one request.
    const many = await chatFile(
      Array.from({ length: 17 }, (_, i) => ({ type: "file", file: { file_url: `${url}?${i}` } })),
    );
    assert.equal(many.status, 400);
    assert.equal(many.json.error.code, "too_many_media_urls");
  } finally {
    await gw.close();
    await host.close();
  }
});
