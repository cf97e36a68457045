/**
 * The key pool under failure: invalid, rate-limited, overloaded and broken keys; balance across
 * good keys under concurrency; 503 with Retry-After when nothing can serve.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { post, startGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;

interface KeyView {
  id: string;
  masked: string;
  status: string;
  status_reason: string | null;
  status_until: string | null;
  cooldowns: { model: string; until: string; reason: string }[];
}

/**
 * A KV whose atomic commits that write a key or project record throw (as a conflict storm's
 * `ConflictError` or KV's "Value too large" would) while `failing` is set.
 */
function failingRecordWrites(kv: Deno.Kv): { kv: Deno.Kv; failing: { on: boolean; seen: number } } {
  const failing = { on: false, seen: 0 };
  const wrapped = new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const written: Deno.KvKey[] = [];
          const proxy: Deno.AtomicOperation = new Proxy(op, {
            get(o, p) {
              const v = Reflect.get(o, p);
              if (typeof v !== "function") return v;
              return (...args: unknown[]) => {
                if (p === "set" || p === "delete") written.push(args[0] as Deno.KvKey);
                if (
                  p === "commit" && failing.on &&
                  written.some((k) => k[0] === "gk" || k[0] === "gp")
                ) {
                  failing.seen++;
                  return Promise.reject(new TypeError("Value too large (max 65536 bytes)"));
                }
                const r = v.apply(o, args);
                return r === o ? proxy : r;
              };
            },
          });
          return proxy;
        };
      }
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { kv: wrapped, failing };
}

async function keysByMask(gw: Awaited<ReturnType<typeof startGateway>>) {
  const res = await gw.admin<{ data: KeyView[] }>("GET", "/admin/api/keys");
  return new Map(res.json.data.map((k) => [k.masked, k]));
}

Deno.test("every request succeeds across good, invalid and rate-limited keys; each bad key is used once", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaGood-key-0001": OK,
      "AIzaInvalid-key-002": { kind: "invalid" },
      "AIzaLimited-key-003": { kind: "rate_limited", retryDelaySeconds: 30 },
      "AIzaLeaked-key-0004": { kind: "leaked" },
      "AIzaGood-key-0005": OK,
    },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 20; i++) {
      const stream = i % 2 === 1;
      if (stream) {
        const s = await client.chat.completions.create({
          model: "gemini-2.5-flash",
          messages: [{ role: "user", content: `stream ${i}` }],
          stream: true,
        });
        let text = "";
        for await (const c of s) text += c.choices[0]?.delta.content ?? "";
        assert.equal(text, `Echo: stream ${i}`);
      } else {
        const r = await client.chat.completions.create({
          model: "gemini-2.5-flash",
          messages: [{ role: "user", content: `plain ${i}` }],
        });
        assert.equal(r.choices[0].message.content, `Echo: plain ${i}`);
      }
    }
    assert.equal(gw.fake.callsFor("AIzaInvalid-key-002"), 1);
    assert.equal(gw.fake.callsFor("AIzaLimited-key-003"), 1);
    assert.equal(gw.fake.callsFor("AIzaLeaked-key-0004"), 1);
    assert.equal(gw.fake.callsFor("AIzaGood-key-0001") + gw.fake.callsFor("AIzaGood-key-0005"), 20);

    const keys = await keysByMask(gw);
    assert.equal(keys.get("AIza…-002")?.status, "invalid");
    assert.match(keys.get("AIza…-002")?.status_reason ?? "", /API key not valid/);
    assert.equal(keys.get("AIza…0004")?.status, "invalid");
    assert.match(keys.get("AIza…0004")?.status_reason ?? "", /leaked/);
    const limited = keys.get("AIza…-003")!;
    assert.equal(limited.status, "cooldown");
    assert.equal(limited.cooldowns[0].model, "gemini-2.5-flash");
    const until = Date.parse(limited.status_until!);
    assert.ok(Math.abs(until - (gw.clock.now() + 30_000)) < 1000, "cooldown lasts retryDelay");
    assert.equal(keys.get("AIza…0001")?.status, "active");
  } finally {
    await gw.close();
  }
});

Deno.test("a cooled-down key is used again after its retryDelay, and an invalid key only after restore", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaLimited-key-003": { kind: "rate_limited", retryDelaySeconds: 10 },
      "AIzaInvalid-key-002": { kind: "invalid" },
      "AIzaGood-key-0001": OK,
    },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    const ask = () =>
      client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
      });
    await ask();
    await ask();
    // Which keys two asks reach depends on the rotation order of the (random) key ids: when the
    // invalid key's failover lands on the good key again, one more ask reaches the limited key.
    if (gw.fake.callsFor("AIzaLimited-key-003") === 0) await ask();
    assert.equal(gw.fake.callsFor("AIzaLimited-key-003"), 1);
    gw.fake.setKey("AIzaLimited-key-003", OK);
    gw.fake.setKey("AIzaInvalid-key-002", OK);
    gw.clock.advance(11_000);
    for (let i = 0; i < 4; i++) await ask();
    assert.ok(gw.fake.callsFor("AIzaLimited-key-003") >= 2, "the key is back after its cooldown");
    assert.equal(gw.fake.callsFor("AIzaInvalid-key-002"), 1, "an invalid key stays out");

    const invalid = (await keysByMask(gw)).get("AIza…-002")!;
    const restored = await gw.admin<KeyView>("PATCH", `/admin/api/keys/${invalid.id}`, {
      status: "active",
    });
    assert.equal(restored.status, 200);
    assert.equal(restored.json.status, "active");
    for (let i = 0; i < 4; i++) await ask();
    assert.ok(gw.fake.callsFor("AIzaInvalid-key-002") >= 2, "a restored key serves again");
  } finally {
    await gw.close();
  }
});

Deno.test("5xx and network failures move to the next key within bounded attempts", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaOverloaded-0001": { kind: "unavailable" },
      "AIzaInternal-00002": { kind: "internal" },
      "AIzaGood-key-0003": OK,
    },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 3; i++) {
      const r = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
      });
      assert.equal(r.choices[0].message.content, "Echo: x");
    }
    const keys = await keysByMask(gw);
    // Upstream trouble is not the key's fault: counted, but the key stays usable until a streak.
    assert.notEqual(keys.get("AIza…0001")?.status, "invalid");
    assert.notEqual(keys.get("AIza…0002")?.status, "invalid");
  } finally {
    await gw.close();
  }
});

Deno.test("a key's state that cannot be written does not turn failover into a 500", async () => {
  const base = await Deno.openKv(":memory:");
  const { kv, failing } = failingRecordWrites(base);
  const gw = await startGateway({
    kv,
    keys: {
      "AIzaInternal-00001": { kind: "internal" },
      "AIzaInvalid-key-002": { kind: "invalid" },
      "AIzaLimited-key-003": { kind: "rate_limited", retryDelaySeconds: 30 },
      "AIzaGood-key-0004": OK,
    },
  });
  try {
    const secret = await gw.createUserKey();
    failing.on = true;
    for (let i = 0; i < 8; i++) {
      const res = await post(`${gw.url}/v1/chat/completions`, {
        apiKey: secret,
        body: { model: "gemini-2.5-flash", messages: [{ role: "user", content: `x${i}` }] },
      });
      assert.equal(res.status, 200, JSON.stringify(res.json));
    }
    assert.ok(failing.seen >= 3, `the bookkeeping writes were tried (${failing.seen})`);
  } finally {
    await gw.close();
    base.close();
  }
});

Deno.test("a stream fails over before its first byte when the first key breaks", async () => {
  const gw = await startGateway({
    keys: { "AIzaNetwork-00001": { kind: "network" }, "AIzaGood-key-0002": OK },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 2; i++) {
      const s = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "stream me" }],
        stream: true,
      });
      let text = "";
      for await (const c of s) text += c.choices[0]?.delta.content ?? "";
      assert.equal(text, "Echo: stream me");
    }
    assert.ok(gw.fake.callsFor("AIzaNetwork-00001") >= 1);
  } finally {
    await gw.close();
  }
});

Deno.test("when every key is rate limited the client gets 503 with Retry-After from the soonest recovery", async () => {
  const gw = await startGateway({
    keys: {
      "AIzaLimited-key-001": { kind: "rate_limited", retryDelaySeconds: 20 },
      "AIzaLimited-key-002": { kind: "rate_limited", retryDelaySeconds: 7 },
    },
  });
  try {
    const apiKey = await gw.createUserKey();
    const body = { model: "gemini-2.5-flash", messages: [{ role: "user", content: "x" }] };
    // A stream (its response is made while the upstream works) still fails with the status.
    const first = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { ...body, stream: true },
    });
    assert.equal(first.status, 503);
    assert.match(first.headers.get("content-type") ?? "", /application\/json/);
    assert.equal(first.json.error.code, "no_available_key");
    assert.equal(first.headers.get("retry-after"), "7");
    assert.ok(first.headers.get("x-request-id"));
    const again = await post(`${gw.url}/v1/chat/completions`, { apiKey, body });
    assert.equal(again.status, 503);
    assert.equal(
      gw.fake.callsFor("AIzaLimited-key-001") + gw.fake.callsFor("AIzaLimited-key-002"),
      2,
    );
  } finally {
    await gw.close();
  }
});

Deno.test("with no keys, or only invalid ones, the answer is 503 and says retrying will not help", async () => {
  const empty = await startGateway({});
  try {
    const apiKey = await empty.createUserKey();
    const res = await post(`${empty.url}/v1/chat/completions`, {
      apiKey,
      body: { model: "gemini-2.5-flash", messages: [{ role: "user", content: "x" }] },
    });
    assert.equal(res.status, 503);
    assert.match(res.json.error.message, /No Gemini keys are configured/);
    assert.equal(res.headers.get("x-should-retry"), "false");
  } finally {
    await empty.close();
  }
  const bad = await startGateway({ keys: { "AIzaInvalid-key-001": { kind: "invalid" } } });
  try {
    const client = bad.openai(await bad.createUserKey());
    await assert.rejects(
      client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
      }),
      (e: unknown) =>
        e instanceof OpenAI.APIError && e.status === 503 && /disabled or invalid/.test(e.message),
    );
  } finally {
    await bad.close();
  }
});

Deno.test("a slow key past the upstream timeout is abandoned for the next key", async () => {
  const gw = await startGateway({
    keys: { "AIzaSlow-key-00001": { kind: "slow", delayMs: 5_000 }, "AIzaGood-key-0002": OK },
    env: { UPSTREAM_TIMEOUT_MS: "1000" },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 2; i++) {
      const r = await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
      });
      assert.equal(r.choices[0].message.content, "Echo: x");
    }
    assert.equal(gw.fake.callsFor("AIzaSlow-key-00001"), 1);
    // Abandoned at the timeout (not answered late): the slow key rests, and says why.
    const slow = (await keysByMask(gw)).get("AIza…0001");
    assert.match(slow?.status_reason ?? "", /did not answer within 1000 ms/);
  } finally {
    await gw.close();
  }
});

Deno.test("50 concurrent requests are spread evenly across the good keys", async () => {
  const gw = await startGateway({
    keys: { "AIzaGood-key-0001": OK, "AIzaGood-key-0002": OK, "AIzaGood-key-0003": OK },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        client.chat.completions.create({
          model: "gemini-2.5-flash",
          messages: [{ role: "user", content: `n${i}` }],
        })),
    );
    results.forEach((r, i) => assert.equal(r.choices[0].message.content, `Echo: n${i}`));
    const counts = ["AIzaGood-key-0001", "AIzaGood-key-0002", "AIzaGood-key-0003"].map((k) =>
      gw.fake.callsFor(k)
    );
    assert.equal(counts.reduce((a, b) => a + b), 50);
    for (const n of counts) assert.ok(n >= 16 && n <= 17, `balanced: ${counts.join(", ")}`);
  } finally {
    await gw.close();
  }
});

Deno.test("weights shift the share of traffic a key gets", async () => {
  const gw = await startGateway({ keys: { "AIzaHeavy-key-001": OK, "AIzaLight-key-002": OK } });
  try {
    const keys = await keysByMask(gw);
    const heavy = keys.get("AIza…-001")!;
    assert.equal(
      (await gw.admin("PATCH", `/admin/api/keys/${heavy.id}`, { weight: 3 })).status,
      200,
    );
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 40; i++) {
      await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
      });
    }
    assert.equal(gw.fake.callsFor("AIzaHeavy-key-001"), 30);
    assert.equal(gw.fake.callsFor("AIzaLight-key-002"), 10);
  } finally {
    await gw.close();
  }
});

Deno.test("a disabled key is skipped until enabled again", async () => {
  const gw = await startGateway({ keys: { "AIzaFirst-key-001": OK, "AIzaSecond-key-02": OK } });
  try {
    const first = (await keysByMask(gw)).get("AIza…-001")!;
    await gw.admin("PATCH", `/admin/api/keys/${first.id}`, { enabled: false });
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 6; i++) {
      await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
      });
    }
    assert.equal(gw.fake.callsFor("AIzaFirst-key-001"), 0);
    await gw.admin("PATCH", `/admin/api/keys/${first.id}`, { enabled: true });
    for (let i = 0; i < 6; i++) {
      await client.chat.completions.create({
        model: "gemini-2.5-flash",
        messages: [{ role: "user", content: "x" }],
      });
    }
    assert.equal(gw.fake.callsFor("AIzaFirst-key-001"), 3);
  } finally {
    await gw.close();
  }
});

Deno.test("when every key fails with 5xx the gateway stops after a bounded number of attempts", async () => {
  const keys = Object.fromEntries(
    Array.from({ length: 6 }, (_, i) => [`AIzaDown-key-00${i}`, { kind: "unavailable" } as const]),
  );
  const gw = await startGateway({ keys });
  try {
    const apiKey = await gw.createUserKey();
    const res = await post(`${gw.url}/v1/chat/completions`, {
      apiKey,
      body: { model: "gemini-2.5-flash", messages: [{ role: "user", content: "x" }] },
    });
    assert.equal(res.status, 503);
    assert.equal(res.json.error.code, "upstream_error");
    assert.match(res.json.error.message, /overloaded/);
    assert.ok(res.headers.get("retry-after"));
    const calls = gw.fake.requests.filter((r) => r.path.includes("generateContent")).length;
    assert.equal(calls, 3);
  } finally {
    await gw.close();
  }
});

Deno.test("a request naming a cache its key cannot see is refused once, and takes no key out of the pool", async () => {
  const gw = await startGateway({
    keys: { "AIzaFirst-key-0001": OK, "AIzaSecond-key-002": OK, "AIzaThird-key-0003": OK },
  });
  try {
    const client = gw.openai(await gw.createUserKey());
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        client.chat.completions.create({
          model: "gemini-2.5-flash",
          messages: [{ role: "user", content: "x" }],
          // @ts-expect-error: Gemini's own field, as Google's OpenAI layer takes it
          extra_body: { google: { cached_content: "cachedContents/someone-elses" } },
        }, { maxRetries: 0 }),
        (err: InstanceType<typeof OpenAI.APIError>) => {
          assert.equal(err.status, 403);
          assert.match(err.message, /CachedContent not found/);
          return true;
        },
      );
    }
    // One upstream call per request, and every key still serves.
    assert.equal(gw.fake.requests.filter((r) => r.path.includes(":generateContent")).length, 3);
    for (const key of (await keysByMask(gw)).values()) {
      assert.equal(key.status, "active", key.masked);
    }
    const ok = await client.chat.completions.create({
      model: "gemini-2.5-flash",
      messages: [{ role: "user", content: "x" }],
    });
    assert.equal(ok.choices[0].message.content, "Echo: x");
  } finally {
    await gw.close();
  }
});

Deno.test("an empty answer (no parts, STOP) is asked again of another key, streamed or not, on /v1 and natively", async () => {
  const gw = await startGateway({
    keys: { "AIzaEmpty-key-0001": { kind: "empty" }, "AIzaGood-key-0002": OK },
  });
  try {
    const apiKey = await gw.createUserKey();
    const client = gw.openai(apiKey);
    for (let i = 0; i < 2; i++) {
      const r = await client.chat.completions.create({
        model: "gemini-2.5-pro",
        messages: [{ role: "user", content: "x" }],
      });
      assert.equal(r.choices[0].message.content, "Echo: x");
      const s = await client.chat.completions.create({
        model: "gemini-2.5-pro",
        messages: [{ role: "user", content: "y" }],
        stream: true,
      });
      let text = "";
      for await (const chunk of s) text += chunk.choices[0]?.delta.content ?? "";
      assert.equal(text, "Echo: y");
      for (const method of ["generateContent", "streamGenerateContent?alt=sse"]) {
        const res = await fetch(`${gw.url}/v1beta/models/gemini-2.5-pro:${method}`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-goog-api-key": apiKey },
          body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "z" }] }] }),
        });
        assert.equal(res.status, 200, method);
        const got = await res.text();
        // The good key's answer (the stream's text comes in pieces), not the empty one.
        assert.match(got, /"text":"Ec/, method);
        assert.doesNotMatch(got, /"responseId":"empty"/, method);
      }
    }
    // Every request was answered by the good key; the empty key was asked until three empty
    // answers in a row rested it, for that model only.
    assert.equal(gw.fake.callsFor("AIzaGood-key-0002"), 8);
    assert.equal(gw.fake.callsFor("AIzaEmpty-key-0001"), 3);
    const empty = (await keysByMask(gw)).get("AIza…0001")!;
    assert.deepEqual(empty.cooldowns.map((c) => [c.model, c.reason]), [[
      "gemini-2.5-pro",
      "3 upstream errors in a row: Gemini sent an empty answer",
    ]]);
  } finally {
    await gw.close();
  }
});

Deno.test("when every key answers empty the client gets a 503 that says so, not an empty answer", async () => {
  const gw = await startGateway({ keys: { "AIzaEmpty-key-0001": { kind: "empty" } } });
  try {
    const res = await post(`${gw.url}/v1/chat/completions`, {
      apiKey: await gw.createUserKey(),
      body: { model: "gemini-2.5-pro", messages: [{ role: "user", content: "x" }] },
    });
    assert.equal(res.status, 503);
    assert.match(res.json.error.message, /empty answer/);
  } finally {
    await gw.close();
  }
});
