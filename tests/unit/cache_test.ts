/**
 * The in-memory cache in front of KV: a load that was running when the value was invalidated or
 * set (an admin change made on this isolate) must not put what it read before the change back.
 */
import assert from "node:assert/strict";
import { CachedValue } from "../../lib/cache.ts";

/** A cache whose loads resolve only when the test says, with the values it gives. */
function held() {
  const pending: ((value: string) => void)[] = [];
  let loads = 0;
  const cache = new CachedValue<string>({
    load: () => {
      loads++;
      return new Promise((resolve) => pending.push(resolve));
    },
    ttlMs: 60_000,
    now: () => 0,
  });
  return {
    cache,
    get loads() {
      return loads;
    },
    /** Resolves the load started `index`-th (0-based). */
    answer: (index: number, value: string) => pending[index](value),
  };
}

Deno.test("cache: a load running when the value is invalidated is not cached; the next get loads anew", async () => {
  const h = held();
  const early = h.cache.get();
  h.cache.invalidate();
  const late = h.cache.get();
  assert.equal(h.loads, 2, "the get after the change does not join the load from before it");
  h.answer(0, "before the change");
  h.answer(1, "after the change");
  assert.equal(await early, "before the change");
  assert.equal(await late, "after the change");
  assert.equal(h.cache.peek(), "after the change");
  await h.cache.settle();
});

Deno.test("cache: a value set while an older load runs is kept when that load ends", async () => {
  const h = held();
  const early = h.cache.get();
  h.cache.set("written here");
  h.answer(0, "read before");
  assert.equal(await early, "read before");
  assert.equal(h.cache.peek(), "written here");
  assert.equal(await h.cache.get(), "written here");
  assert.equal(h.loads, 1);
});

Deno.test("cache: settle waits for a load that will not be cached as well", async () => {
  const h = held();
  h.cache.get();
  h.cache.invalidate();
  let settled = false;
  const settling = h.cache.settle().then(() => (settled = true));
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(settled, false);
  h.answer(0, "late");
  await settling;
  assert.equal(h.cache.peek(), undefined);
});
