/**
 * A value loaded from KV (or upstream) and cached in memory: served fresh for `ttlMs`, then served
 * stale while one background reload runs. KV stays the source of truth. A load that was already
 * running when the value was invalidated or set (a local change) is not cached: it may have read
 * KV before the change.
 */

/** Options of `CachedValue`. */
export interface CachedValueOptions<T> {
  load: () => Promise<T>;
  ttlMs: number;
  now: () => number;
}

/** One cached value with stale-while-revalidate refresh. */
export class CachedValue<T> {
  #options: CachedValueOptions<T>;
  #value: { at: number; value: T } | null = null;
  /** The load whose result will be cached, if one runs. */
  #loading: Promise<T> | null = null;
  /** Every load still running, cached or not (for `settle`). */
  #running = new Set<Promise<T>>();
  /** Bumped by `invalidate` and `set`: a load started before then is not cached. */
  #generation = 0;

  constructor(options: CachedValueOptions<T>) {
    this.#options = options;
  }

  #reload(): Promise<T> {
    if (this.#loading) return this.#loading;
    const generation = this.#generation;
    const loading: Promise<T> = this.#options.load()
      .then((value) => {
        if (generation === this.#generation) this.#value = { at: this.#options.now(), value };
        return value;
      })
      .finally(() => {
        if (this.#loading === loading) this.#loading = null;
        this.#running.delete(loading);
      });
    this.#loading = loading;
    this.#running.add(loading);
    return loading;
  }

  /** A change made here: loads running now read KV before it, and the next get loads anew. */
  #changed(): void {
    this.#generation++;
    this.#loading = null;
  }

  /** Serves `cached`, starting one background reload when it is older than the TTL. */
  #serve(cached: { at: number; value: T }): T {
    if (this.#options.now() - cached.at > this.#options.ttlMs && !this.#loading) {
      this.#reload().catch((err) => console.error("Cache refresh failed:", err?.message ?? err));
    }
    return cached.value;
  }

  /** The value: loaded on first use, refreshed in the background once older than the TTL. */
  async get(): Promise<T> {
    const cached = this.#value;
    return cached ? this.#serve(cached) : await this.#reload();
  }

  /**
   * The value without waiting, as `get` would serve it (a stale one starts a background reload),
   * or undefined before the first load; lets hot paths skip an `await` once the value is cached.
   */
  current(): T | undefined {
    const cached = this.#value;
    return cached ? this.#serve(cached) : undefined;
  }

  /** The cached value without loading, or undefined. */
  peek(): T | undefined {
    return this.#value?.value;
  }

  /** Replaces the cached value (after a local change that was also written to KV). */
  set(value: T): void {
    this.#changed();
    this.#value = { at: this.#options.now(), value };
  }

  /** Drops the value, so the next `get` loads it. */
  invalidate(): void {
    this.#changed();
    this.#value = null;
  }

  /** Waits for the loads in flight. */
  async settle(): Promise<void> {
    while (this.#running.size) await Promise.allSettled([...this.#running]);
  }
}
