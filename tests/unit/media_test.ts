/**
 * Media helpers: address classification for SSRF protection, the fetcher's checks (DNS answers,
 * size cap, time limit), and the streaming multipart parser at every possible chunk split.
 */
import assert from "node:assert/strict";
import { isBlockedAddress, parseIpv6 } from "../../lib/ip.ts";
import { MediaFetcher, MediaFetchError } from "../../lib/media/fetch_media.ts";
import {
  boundaryOf,
  MultipartError,
  parseMultipart,
  readPartText,
} from "../../lib/media/multipart.ts";

Deno.test("non-public addresses are recognised in every spelling", () => {
  for (
    const address of [
      "127.0.0.1",
      "127.255.0.9",
      "10.0.0.1",
      "172.16.5.4",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "224.0.0.1",
      "255.255.255.255",
      "::1",
      "::",
      "[::1]",
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "::ffff:a9fe:a9fe",
      "::ffff:0:7f00:1",
      "::ffff:0:10.0.0.1",
      "64:ff9b::a00:1",
      "2002:c0a8:0101::1",
      "fc00::1",
      "fd12:3456::1",
      "fe80::1%eth0",
      "fec0::1",
      "ff02::1",
      "not-an-address",
    ]
  ) assert.equal(isBlockedAddress(address), true, address);
  for (
    const address of [
      "8.8.8.8",
      "172.32.0.1",
      "100.128.0.1",
      "2606:4700::1111",
      "[2001:4860::8888]",
    ]
  ) {
    assert.equal(isBlockedAddress(address), false, address);
  }
  assert.deepEqual(parseIpv6("::ffff:1.2.3.4")!.slice(10), [0xff, 0xff, 1, 2, 3, 4]);
  assert.equal(parseIpv6("1::2::3"), null);
});

function fetcherWith(
  answers: Record<string, string[]>,
  handler: (url: string, init: RequestInit) => Response | Promise<Response>,
  options: { maxBytes?: number; timeoutMs?: number } = {},
) {
  const calls: string[] = [];
  const fetcher = new MediaFetcher({
    resolve: (host) => Promise.resolve(answers[host] ?? []),
    fetch: ((input: RequestInfo | URL, init?: RequestInit) => {
      calls.push(String(input));
      return Promise.resolve(handler(String(input), init ?? {}));
    }) as typeof fetch,
    ...options,
  });
  return { fetcher, calls };
}

const images = (mime: string) => mime.startsWith("image/");

Deno.test("the fetcher refuses hosts that resolve to internal addresses, before connecting", async () => {
  const { fetcher, calls } = fetcherWith(
    { "evil.test": ["93.184.216.34", "10.0.0.5"], "nowhere.test": [] },
    () => new Response("x"),
  );
  // An internal name and a name that does not exist get the same message (no probing of which
  // names exist inside).
  const messages: string[] = [];
  for (const host of ["evil.test", "nowhere.test"]) {
    await assert.rejects(fetcher.fetch(`https://${host}/cat.png`, { accept: images }), (e) => {
      assert.ok(e instanceof MediaFetchError);
      messages.push(e.message.replace(host, "HOST"));
      return true;
    });
  }
  assert.match(messages[0], /does not resolve to a public address/);
  assert.equal(messages[1], messages[0]);
  await assert.rejects(
    fetcher.fetch("https://user:pw@good.test/x", { accept: images }),
    /credentials/,
  );
  await assert.rejects(fetcher.fetch("file:///etc/passwd", { accept: images }), /Only http/);
  assert.deepEqual(calls, [], "nothing was fetched");
});

Deno.test("plain http connects to the checked address; redirects are checked again", async () => {
  const { fetcher, calls } = fetcherWith(
    { "img.test": ["93.184.216.34"], "inner.test": ["192.168.0.10"] },
    (url, init) => {
      if (url.includes("/hop")) {
        return new Response(null, {
          status: 302,
          headers: { location: "http://inner.test/x.png" },
        });
      }
      const host = new Headers(init.headers).get("host");
      assert.equal(host, "img.test", "the Host header names the site");
      return new Response(new Uint8Array([0xff, 0xd8, 0xff, 0xe0]), {
        headers: { "content-type": "application/octet-stream" },
      });
    },
  );
  const got = await fetcher.fetch("http://img.test/a.jpg", { accept: images });
  assert.equal(got.mimeType, "image/jpeg", "sniffed");
  assert.equal(got.data, btoa("\xff\xd8\xff\xe0"));
  assert.equal(calls[0], "http://93.184.216.34/a.jpg");
  await assert.rejects(
    fetcher.fetch("http://img.test/hop", { accept: images }),
    /does not resolve to a public address/,
  );
});

Deno.test("the fetcher caps the body size and the time a fetch may take", async () => {
  const big = fetcherWith({ "img.test": ["93.184.216.34"] }, () =>
    new Response(
      new ReadableStream({
        pull(c) {
          c.enqueue(new Uint8Array(1024));
        },
      }),
      { headers: { "content-type": "image/png" } },
    ), { maxBytes: 10_000 });
  await assert.rejects(
    big.fetcher.fetch("https://img.test/huge.png", { accept: images }),
    (e: unknown) => e instanceof MediaFetchError && e.code === "image_too_large",
  );
  const declared = fetcherWith(
    { "img.test": ["93.184.216.34"] },
    () =>
      new Response("x", { headers: { "content-length": "999999", "content-type": "image/png" } }),
    {
      maxBytes: 10,
    },
  );
  await assert.rejects(
    declared.fetcher.fetch("https://img.test/a.png", { accept: images }),
    /more than/,
  );
  const slow = new MediaFetcher({
    resolve: () => Promise.resolve(["93.184.216.34"]),
    timeoutMs: 50,
    fetch: ((_input: RequestInfo | URL, init?: RequestInit) =>
      new Promise<Response>((_, reject) => {
        init?.signal?.addEventListener("abort", () =>
          reject(new Error("aborted")));
      })) as typeof fetch,
  });
  await assert.rejects(
    slow.fetch("https://img.test/slow.png", { accept: images }),
    /longer than 50 ms/,
  );
  // The limit covers the name's lookup too: a slow DNS server does not hold the request.
  let lookupSignal: AbortSignal | undefined;
  let answer!: () => void;
  const slowDns = new MediaFetcher({
    resolve: (_host, signal) => {
      lookupSignal = signal;
      return new Promise((resolve) => (answer = () => resolve(["93.184.216.34"])));
    },
    timeoutMs: 50,
    fetch: (() => Promise.resolve(new Response("x"))) as typeof fetch,
  });
  // The lookup answers only after the fetch gave up: it did not wait for it.
  await assert.rejects(
    slowDns.fetch("https://dns.test/a.png", { accept: images }),
    /longer than 50 ms/,
  );
  answer();
  assert.equal(lookupSignal?.aborted, true, "the lookup itself is told to stop");
});

/** Splits `bytes` at `cut` into a two-chunk stream (a byte stream, as request bodies are, if asked). */
function split(bytes: Uint8Array, cut: number, byteStream = false): ReadableStream<Uint8Array> {
  if (byteStream) {
    const chunks = [bytes.slice(0, cut), bytes.slice(cut)].filter((c) => c.length);
    return new ReadableStream({
      type: "bytes",
      pull(c) {
        const next = chunks.shift();
        if (next) c.enqueue(next);
        else {
          c.close();
          c.byobRequest?.respond(0);
        }
      },
    });
  }
  return new ReadableStream({
    start(c) {
      if (cut > 0) c.enqueue(bytes.slice(0, cut));
      if (cut < bytes.length) c.enqueue(bytes.slice(cut));
      c.close();
    },
  });
}

async function collect(body: ReadableStream<Uint8Array>, boundary: string) {
  const out: { name: string; filename: string | null; type: string | null; data: string }[] = [];
  for await (const part of parseMultipart(body, boundary)) {
    out.push({
      name: part.name,
      filename: part.filename,
      type: part.contentType,
      data: await readPartText(part, 1 << 20),
    });
  }
  return out;
}

Deno.test("the multipart parser finds every part wherever the network splits the bytes", async () => {
  const boundary = "----b0undary";
  const file = "line one\r\n--not-a-boundary\r\n----b0undar almost\r\nend";
  const body = new TextEncoder().encode(
    `preamble\r\n--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n` +
      `user_data\r\n--${boundary}\r\n` +
      `Content-Disposition: form-data; name="file"; filename="a \\"q\\".txt"; filename*=UTF-8''%E6%8A%A5%E5%91%8A.txt\r\n` +
      `Content-Type: text/plain\r\n\r\n${file}\r\n--${boundary}--\r\nepilogue`,
  );
  const expected = [
    { name: "purpose", filename: null, type: null, data: "user_data" },
    { name: "file", filename: "报告.txt", type: "text/plain", data: file },
  ];
  for (let cut = 0; cut <= body.length; cut++) {
    assert.deepEqual(await collect(split(body, cut), boundary), expected, `split at ${cut}`);
    assert.deepEqual(await collect(split(body, cut, true), boundary), expected, `bytes at ${cut}`);
  }
  assert.equal(boundaryOf('multipart/form-data; boundary="x y"'), "x y");
  assert.equal(boundaryOf("multipart/form-data; charset=utf-8; boundary=abc"), "abc");
  assert.equal(boundaryOf("application/json"), null);
});

Deno.test("unread parts are skipped and malformed bodies are refused", async () => {
  const boundary = "b";
  const enc = new TextEncoder();
  const body = enc.encode(
    `--b\r\nContent-Disposition: form-data; name="skip"\r\n\r\n${"x".repeat(5000)}\r\n` +
      `--b\r\nContent-Disposition: form-data; name="keep"\r\n\r\nkept\r\n--b--\r\n`,
  );
  const names: string[] = [];
  let kept = "";
  for await (const part of parseMultipart(split(body, 1234), boundary)) {
    names.push(part.name);
    if (part.name === "keep") kept = await readPartText(part);
  }
  assert.deepEqual(names, ["skip", "keep"]);
  assert.equal(kept, "kept");
  const cut = enc.encode(`--b\r\nContent-Disposition: form-data; name="f"\r\n\r\nhalf a file`);
  await assert.rejects(collect(split(cut, 10), boundary), MultipartError);
  await assert.rejects(collect(split(enc.encode("no boundary here"), 3), boundary), MultipartError);
  const noName = enc.encode(`--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--`);
  await assert.rejects(collect(split(noName, 5), boundary), /no field name/);
});
