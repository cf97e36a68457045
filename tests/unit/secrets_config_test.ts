import assert from "node:assert/strict";
import { ConfigError, parseConfig, splitKeyList } from "../../lib/config.ts";
import { resolveEncryptionKey } from "../../lib/local_secret.ts";
import {
  fromBase64,
  maskSecret,
  randomId,
  Sealer,
  timingSafeEqual,
  toBase64Url,
} from "../../lib/secrets.ts";

Deno.test("sealed values open only with the same passphrase and context, and fingerprints are stable", async () => {
  const salt = new Uint8Array(16).fill(7);
  const sealer = await Sealer.fromPassphrase("passphrase-one-123", salt);
  const sealed = await sealer.seal("AIzaSecret", "gk:1");
  assert.ok(!sealed.includes("AIzaSecret"));
  assert.notEqual(sealed, await sealer.seal("AIzaSecret", "gk:1"), "a fresh IV every time");
  assert.equal(await sealer.open(sealed, "gk:1"), "AIzaSecret");
  await assert.rejects(sealer.open(sealed, "gk:2"));
  const other = await Sealer.fromPassphrase("passphrase-two-123", salt);
  await assert.rejects(other.open(sealed, "gk:1"));
  assert.equal(await sealer.fingerprint("k"), await sealer.fingerprint("k"));
  assert.notEqual(await sealer.fingerprint("k"), await other.fingerprint("k"));
});

Deno.test("masking shows only the ends of a key of any format", () => {
  assert.equal(maskSecret("AIzaSyA1234567890abcdefghijklmnopqrXy12"), "AIza…Xy12");
  assert.equal(maskSecret("AQ.Ab8RN6LongAuthorizationKey"), "AQ.A…nKey");
  assert.equal(maskSecret("short123456"), "sh…56");
  assert.equal(maskSecret("tiny"), "…ny");
});

Deno.test("base64url round-trips and the constant-time comparison compares", () => {
  const bytes = new Uint8Array([0, 255, 62, 63, 128, 1]);
  assert.deepEqual(fromBase64(toBase64Url(bytes)), bytes);
  assert.equal(timingSafeEqual("abc", "abc"), true);
  assert.equal(timingSafeEqual("abc", "abd"), false);
  assert.equal(timingSafeEqual("abc", "abcd"), false);
});

Deno.test("config parses defaults and names the variable of a bad value", () => {
  const c = parseConfig({ HOME: "/home/u" });
  assert.equal(c.port, 8000);
  assert.equal(c.geminiBaseUrl, "https://generativelanguage.googleapis.com");
  assert.equal(c.kvPath, "./data/gateway.kv");
  assert.equal(c.encryptionKeyFile, "/home/u/.config/gemini-gateway/encryption.key");
  assert.equal(c.trustProxy, 0);
  assert.equal(parseConfig({ TRUST_PROXY: "1" }).trustProxy, 1);
  assert.throws(() => parseConfig({ TRUST_PROXY: "7" }), /TRUST_PROXY: must be 0 to 5/);
  assert.equal(parseConfig({ DENO_DEPLOY: "true" }).kvPath, undefined);
  assert.deepEqual(parseConfig({ GEMINI_KEYS: "a1, b2\nc3  a1" }).geminiKeys, ["a1", "b2", "c3"]);
  assert.equal(
    parseConfig({ GEMINI_BASE_URL: "http://127.0.0.1:9/" }).geminiBaseUrl,
    "http://127.0.0.1:9",
  );
  for (
    const [name, value] of [
      ["PORT", "eighty"],
      ["GEMINI_BASE_URL", "ftp://x"],
      [
        "ADMIN_PASSWORD",
        "short",
      ],
      ["ADMIN_PASSWORD", " spaced out "],
      ["ENCRYPTION_KEY", "tooshort"],
    ]
  ) {
    assert.throws(
      () => parseConfig({ [name]: value }),
      (e: unknown) => e instanceof ConfigError && e.message.includes(name),
    );
  }
  assert.deepEqual(splitKeyList(""), []);
});

Deno.test("config: the upstream client is the direct one unless told otherwise or a proxy is set", () => {
  assert.equal(parseConfig({}).upstreamHttp, "direct");
  assert.equal(parseConfig({ UPSTREAM_HTTP: "fetch" }).upstreamHttp, "fetch");
  // Only fetch honours an HTTP proxy.
  for (const name of ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"]) {
    assert.equal(parseConfig({ [name]: "http://proxy:3128" }).upstreamHttp, "fetch", name);
  }
  assert.throws(
    () => parseConfig({ UPSTREAM_HTTP: "curl" }),
    (e: unknown) => e instanceof ConfigError && e.message.includes("UPSTREAM_HTTP"),
  );
});

Deno.test("ids drawn from the shared random pool are distinct and well formed across refills", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    // 18 bytes do not divide the 4 KiB pool: ids straddle refills.
    const id = randomId("chatcmpl-", 18);
    assert.match(id, /^chatcmpl-[A-Za-z0-9_-]{24}$/);
    seen.add(id);
  }
  assert.equal(seen.size, 5000);
  assert.match(randomId("", 5000), /^[A-Za-z0-9_-]{6667}$/, "longer than the pool");
});

Deno.test("the local encryption key is made once, kept, and a damaged file stops start-up", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = parseConfig({ ENCRYPTION_KEY_FILE: `${dir}/keys/encryption.key` });
    const made = await resolveEncryptionKey(config);
    assert.equal(made.createdFile, `${dir}/keys/encryption.key`);
    const again = await resolveEncryptionKey(config);
    assert.equal(again.key, made.key);
    assert.equal(again.createdFile, null);
    await Deno.writeTextFile(`${dir}/keys/encryption.key`, "short\n");
    await assert.rejects(
      () => resolveEncryptionKey(config),
      (e: unknown) => e instanceof ConfigError && /damaged/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
