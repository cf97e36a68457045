import { csvField } from "../../routes/admin/api/request_log.ts";
import { requestIds } from "../../lib/request_ids.ts";
import assert from "node:assert/strict";
import * as z from "zod";
import {
  type NewRequestLogEntry,
  readRequestLog,
  requestLogMutations,
  trimRequestLog,
} from "../../lib/store/request_log.ts";

function entry(t: number, extra: Partial<NewRequestLogEntry> = {}): NewRequestLogEntry {
  return {
    t,
    userId: "uk_1",
    model: "gemini-2.5-flash",
    keyId: "k1",
    key: "AIza…0001",
    status: 200,
    latencyMs: 12,
    inputTokens: 7,
    outputTokens: 5,
    attempts: 1,
    errorClass: null,
    requestId: `rq-${t}`,
    api: "chat",
    ...extra,
  };
}

async function write(kv: Deno.Kv, entries: NewRequestLogEntry[]): Promise<number> {
  const mutations = requestLogMutations(entries);
  const res = await kv.atomic().mutate(...mutations).commit();
  assert.ok(res.ok);
  return mutations.length;
}

Deno.test("request-log pages are read back newest first across overlapping pages, with paging", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    // Page A holds a long request that started early (t=100) and finished late, beside t=900.
    await write(kv, [entry(900), entry(100, { errorClass: "client_closed", status: 200 })]);
    // Page B's newest entry (500) is older than page A's, but it holds 400 and 300.
    await write(kv, [entry(500), entry(300), entry(400)]);
    // An entry written one row each by an older version.
    const { requestId: _, ...oldEntry } = entry(200, { model: "old" });
    await kv.set(["rlog", 200, "rOld"], { id: "rOld", ...oldEntry });
    // A page of a version that logged no request ids (rows of 11 values).
    await kv.set(
      ["rlog", 250, "rOldPage"],
      JSON.stringify({ rows: [[250, "uk_1", "m", "k1", "AIza…0001", 200, 12, 7, 5, 1, null]] }),
    );

    const all = await readRequestLog(kv, { limit: 100 });
    assert.deepEqual(all.map((e) => e.t), [900, 500, 400, 300, 250, 200, 100]);
    assert.equal(new Set(all.map((e) => e.id)).size, 7, "ids are unique");
    assert.equal(all.find((e) => e.t === 200)?.model, "old");
    assert.deepEqual(all.map((e) => e.requestId), [
      "rq-900",
      "rq-500",
      "rq-400",
      "rq-300",
      null,
      null,
      "rq-100",
    ]);
    assert.deepEqual(all[6], { ...entry(100, { errorClass: "client_closed" }), id: all[6].id });

    const top = await readRequestLog(kv, { limit: 2 });
    assert.deepEqual(top.map((e) => e.t), [900, 500]);
    const next = await readRequestLog(kv, { limit: 3, before: 500 });
    assert.deepEqual(next.map((e) => e.t), [400, 300, 250]);
    const last = await readRequestLog(kv, { limit: 3, before: 200 });
    assert.deepEqual(last.map((e) => e.t), [100]);
  } finally {
    kv.close();
  }
});

Deno.test("a large flush is split into pages that fit in a KV value", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const entries = Array.from(
      { length: 1500 },
      (_, i) => entry(1000 + i, { model: `model-${"m".repeat(60)}`, userId: `uk_${i}` }),
    );
    const pages = requestLogMutations(entries);
    assert.ok(pages.length > 1, "several pages");
    for (const p of pages) {
      assert.equal(typeof p.type === "string" && p.type, "set");
      const value = (p as { value: unknown }).value;
      assert.ok(typeof value === "string" && value.length <= 30_000, "fits in a KV value");
    }
    // Fewer mutations than entries, written in chunks KV accepts.
    for (let i = 0; i < pages.length; i += 5) {
      assert.ok((await kv.atomic().mutate(...pages.slice(i, i + 5)).commit()).ok);
    }
    const read = await readRequestLog(kv, { limit: 1000 });
    assert.equal(read.length, 1000);
    assert.equal(read[0].t, 2499);
    assert.equal(read[999].t, 1500);
  } finally {
    kv.close();
  }
});

Deno.test("trimming keeps exactly the newest N entries, cutting the page on the boundary", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    await write(kv, [entry(10), entry(11), entry(12)]);
    await write(kv, [entry(20), entry(21), entry(22)]);
    await kv.set(["rlog", 5, "rOld"], { id: "rOld", ...entry(5) });
    assert.equal(await trimRequestLog(kv, 4), 3);
    const left = await readRequestLog(kv, { limit: 100 });
    assert.deepEqual(left.map((e) => e.t), [22, 21, 20, 12]);
    assert.equal(await trimRequestLog(kv, 4), 0, "nothing more to trim");
    assert.equal(await trimRequestLog(kv, 0), 4);
    assert.deepEqual(await readRequestLog(kv, { limit: 100 }), []);
    let rows = 0;
    for await (const _ of kv.list({ prefix: ["rlog"] })) rows++;
    assert.equal(rows, 0, "emptied pages are deleted");
  } finally {
    kv.close();
  }
});

Deno.test("CSV fields are quoted as RFC 4180 says, and formulas are defused in every spelling", () => {
  assert.equal(csvField(null), "");
  assert.equal(csvField(42), "42");
  assert.equal(csvField("plain"), "plain");
  assert.equal(csvField('a "b", c'), '"a ""b"", c"');
  for (
    const formula of [
      "=1+1",
      "+1",
      "-1",
      "@SUM(A1)",
      "  =HYPERLINK(1)",
      "\u3000=1",
      "＝1",
      "＠x",
      "\nline",
    ]
  ) {
    assert.ok(csvField(formula).replace(/^"/, "").startsWith("'"), JSON.stringify(formula));
  }
  assert.equal(csvField(-5), "-5", "numbers are numbers");
});

Deno.test("request-log pages stay readable across versions: rows keep 12 values, later fields go beside", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    await write(kv, [entry(900, { api: "responses" })]);
    const [stored] = await Array.fromAsync(kv.list<string>({ prefix: ["rlog"] }));
    // The previous version read each row as exactly 12 values, and dropped a page it could not.
    const s = z.string().nullable();
    const n = z.number();
    const previousRow = z.tuple([n, s, z.string(), s, s, n, n, n, n, n, s, s.optional()]);
    const page = z.object({ rows: z.array(previousRow) }).safeParse(JSON.parse(stored.value));
    assert.ok(page.success, "the previous version reads this page");
    assert.equal((await readRequestLog(kv, { limit: 5 }))[0].api, "responses");
    // A later version's longer rows are read here.
    await kv.set(
      ["rlog", 950, "rLater"],
      JSON.stringify({
        rows: [[950, "uk_1", "m", "k1", "AIza…0001", 200, 12, 7, 5, 1, null, "rq", "more"]],
      }),
    );
    const later = await readRequestLog(kv, { limit: 5 });
    assert.deepEqual(later.map((e) => [e.t, e.requestId]), [[950, "rq"], [900, "rq-900"]]);
  } finally {
    kv.close();
  }
});

Deno.test("request-log pages fit a KV value whatever the names hold (escapes, non-Latin-1)", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    for (const model of ["\u0001".repeat(128), "模".repeat(128), '"\\'.repeat(64)]) {
      const entries = Array.from({ length: 400 }, (_, i) => entry(i, { model }));
      // Each page goes in its own write: one that is too large throws here.
      for (const m of requestLogMutations(entries)) await kv.atomic().mutate(m).commit();
      const read = await readRequestLog(kv, { limit: 5000 });
      assert.equal(read.filter((e) => e.model === model).length, 400);
    }
  } finally {
    kv.close();
  }
});

Deno.test("paging by (time, id) shows every entry once, also those sharing a millisecond", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    // Ten requests, two in each millisecond, written in two pages.
    const entries = Array.from({ length: 10 }, (_, i) => entry(1000 + Math.floor(i / 2)));
    await write(kv, entries.slice(0, 5));
    await write(kv, entries.slice(5));
    const seen: string[] = [];
    let cursor: { before?: number; beforeId?: string } = {};
    for (let page = 0; page < 10; page++) {
      const got = await readRequestLog(kv, { limit: 3, ...cursor });
      if (!got.length) break;
      seen.push(...got.map((e) => e.id));
      const last = got.at(-1)!;
      cursor = { before: last.t, beforeId: last.id };
    }
    assert.equal(seen.length, 10, JSON.stringify(seen));
    assert.equal(new Set(seen).size, 10);
  } finally {
    kv.close();
  }
});

Deno.test("the gateway's request ids are written in the CSV export as they are (found as quoted)", () => {
  // Each isolate draws one random prefix: many generators, so a prefix that a spreadsheet would
  // take for a formula (a base64url `-` start, one in 64) shows up.
  for (let i = 0; i < 300; i++) {
    const ids = new WeakMap<Request, string>();
    const next = requestIds(ids);
    const req = new Request("http://localhost/");
    const id = next(req);
    assert.equal(ids.get(req), id);
    assert.match(id, /^[\w-]+$/);
    assert.equal(csvField(id), id);
  }
  // A client's own sane id is kept, anything else is replaced.
  const next = requestIds(new WeakMap());
  const own = (value: string) =>
    next(new Request("http://localhost/", { headers: { "x-request-id": value } }));
  assert.equal(own("trace-1"), "trace-1");
  assert.notEqual(own("a b"), "a b");
  assert.notEqual(own("x".repeat(256)), "x".repeat(256));
});
