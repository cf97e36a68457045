/**
 * State on a real KV file: restarts keep keys, user keys and stats; the file holds no plaintext
 * secret; a different ENCRYPTION_KEY is refused at start-up.
 */
import assert from "node:assert/strict";
import { startFakeGemini } from "../fakes/fake_gemini.ts";
import { WrongEncryptionKeyError } from "../../lib/store/meta.ts";
import { startGateway } from "./harness.ts";

const GEMINI_KEYS = ["AIzaSyPersist-key-000000000000000001", "AQ.Ab8RN6Persist-auth-key-0000002"];

async function readAllBytes(dir: string): Promise<string> {
  let out = "";
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile) {
      out += new TextDecoder("latin1").decode(await Deno.readFile(`${dir}/${entry.name}`));
    }
  }
  return out;
}

Deno.test("a restart on the same KV file keeps keys, user keys and stats, and the file holds no secret", async () => {
  const dir = await Deno.makeTempDir();
  const fake = await startFakeGemini({
    keys: Object.fromEntries(GEMINI_KEYS.map((k) => [k, { kind: "ok" as const }])),
    quiet: true,
  });
  const kvPath = `${dir}/gateway.kv`;
  let userKey = "";
  try {
    const first = await startGateway({ fake, kvPath, keys: { [GEMINI_KEYS[0]]: { kind: "ok" } } });
    try {
      await first.admin("POST", "/admin/api/keys", { keys: [GEMINI_KEYS[1]] });
      userKey = await first.createUserKey({ name: "persisted" });
      const client = first.openai(userKey);
      for (let i = 0; i < 3; i++) {
        await client.chat.completions.create({
          model: "gemini-2.5-flash",
          messages: [{ role: "user", content: "a b c" }],
        });
      }
    } finally {
      await first.close();
    }

    const raw = await readAllBytes(dir);
    assert.ok(raw.length > 1000, "the KV file was written");
    for (const k of GEMINI_KEYS) {
      assert.ok(!raw.includes(k), "no plaintext Gemini key in the KV file");
      assert.ok(!raw.includes(k.slice(6, 26)), "no fragment of a Gemini key either");
    }
    assert.ok(!raw.includes(userKey), "no plaintext user key in the KV file");
    assert.ok(!raw.includes(userKey.slice(3, 30)));

    // Restart: GEMINI_KEYS imported again is idempotent.
    const second = await startGateway({ fake, kvPath, keys: { [GEMINI_KEYS[0]]: { kind: "ok" } } });
    try {
      assert.equal(second.report.importedKeys, 0);
      assert.equal(second.report.duplicateKeys, 1);
      const keys = await second.admin<{ data: { masked: string }[] }>("GET", "/admin/api/keys");
      assert.equal(keys.json.data.length, 2);
      const users = await second.admin<{ data: { name: string }[] }>("GET", "/admin/api/user-keys");
      assert.deepEqual(users.json.data.map((u) => u.name), ["persisted"]);
      const stats = await second.admin<{ totals: { requests: number; input_tokens: number } }>(
        "GET",
        "/admin/api/stats",
      );
      assert.equal(stats.json.totals.requests, 3);
      assert.ok(stats.json.totals.input_tokens > 0);
      const r = await second.openai(userKey).chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "still here" }],
      });
      assert.equal(r.choices[0].message.content, "Echo: still here");
    } finally {
      await second.close();
    }

    await assert.rejects(
      startGateway({ fake, kvPath, encryptionKey: "a-different-encryption-key-000" }),
      WrongEncryptionKeyError,
    );
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a GEMINI_KEYS key the admin deleted stays deleted at the next start, until the admin adds it again", async () => {
  const kv = await Deno.openKv(":memory:");
  const keys = {
    "AIzaSyDeleted-key-000000000000000000001": { kind: "ok" },
    "AIzaSyKept-key-00000000000000000000002": { kind: "ok" },
  } as const;
  const [deletedSecret] = Object.keys(keys);
  const a = await startGateway({ kv, keys });
  const started: Awaited<ReturnType<typeof startGateway>>[] = [a];
  try {
    const list = async (gw: typeof a) =>
      (await gw.admin<{ data: { id: string; masked: string }[] }>("GET", "/admin/api/keys")).json
        .data;
    const gone = (await list(a)).find((k) => k.masked === "AIza…0001")!;
    assert.equal((await a.admin("DELETE", `/admin/api/keys/${gone.id}`)).status, 204);

    const b = await startGateway({ kv, keys, fake: a.fake });
    started.push(b);
    assert.deepEqual([b.report.importedKeys, b.report.duplicateKeys, b.report.deletedKeys], [
      0,
      1,
      1,
    ]);
    assert.deepEqual((await list(b)).map((k) => k.masked), ["AIza…0002"]);

    // Adding it through the admin API is on purpose: it comes back, and stays at the next start.
    const readded = await b.admin<{ added: number }>("POST", "/admin/api/keys", {
      keys: [deletedSecret],
    });
    assert.equal(readded.json.added, 1);
    const c = await startGateway({ kv, keys, fake: a.fake });
    started.push(c);
    assert.deepEqual([c.report.importedKeys, c.report.deletedKeys], [0, 0]);
    assert.equal((await list(c)).length, 2);
  } finally {
    for (const gw of started.reverse()) await gw.close();
    kv.close();
  }
});
