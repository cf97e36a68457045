/**
 * A value loaded from KV (or upstream) and cached in memory: served fresh for `ttlMs`, then served
 * stale while one background reload runs. KV stays the source of truth.
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
  #loading: Promise<T> | null = null;

  constructor(options: CachedValueOptions<T>) {
    this.#options = options;
  }

  #reload(): Promise<T> {
    this.#loading ??= this.#options.load()
      .then((value) => {
        this.#value = { at: this.#options.now(), value };
        return value;
      })
      .finally(() => (this.#loading = null));
    return this.#loading;
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
    this.#value = { at: this.#options.now(), value };
  }

  /** Drops the value, so the next `get` loads it. */
  invalidate(): void {
    this.#value = null;
  }

  /** Waits for a reload in flight. */
  async settle(): Promise<void> {
    await this.#loading?.catch(() => {});
  }
}
