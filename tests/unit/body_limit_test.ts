/** Reading a body up to a bound: what is within it comes whole, what is not is never all read. */
import assert from "node:assert/strict";
import { readTextUpTo } from "../../lib/body_limit.ts";

/** An endless body of 1 KiB pieces of "x"; `pulled` counts the pieces read. */
function endless(): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  let pulled = 0;
  const piece = new Uint8Array(1024).fill(0x78);
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(piece);
    },
  });
  return { body, pulled: () => pulled };
}

Deno.test("readTextUpTo: a body within the bound is its text; a longer one stops being read", async () => {
  const small = new Request("http://x/", { method: "POST", body: '{"file":{"displayName":"é"}}' });
  assert.equal(await readTextUpTo(small, 64), '{"file":{"displayName":"é"}}');
  assert.equal(await readTextUpTo(new Request("http://x/"), 64), "");
  const { body, pulled } = endless();
  const chunked = new Request("http://x/", { method: "POST", body, duplex: "half" } as RequestInit);
  assert.equal(await readTextUpTo(chunked, 64 * 1024), null);
  assert.ok(pulled() <= 66, `read no further than the bound (${pulled()} KiB)`);
  // A declared length over the bound: refused before a byte is read.
  const declared = endless();
  const big = new Request("http://x/", {
    method: "POST",
    body: declared.body,
    headers: { "content-length": String(1024 * 1024) },
    duplex: "half",
  } as RequestInit);
  assert.equal(await readTextUpTo(big, 64 * 1024), null);
  assert.ok(declared.pulled() <= 1, `nothing read (${declared.pulled()})`);
});
