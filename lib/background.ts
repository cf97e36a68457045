/**
 * Work that runs after a response has been sent (usage accounting), tracked so that it is never
 * lost silently and so that shutdown and tests can wait for it.
 */

/** A set of pending background promises. */
export class Background {
  #pending = new Set<Promise<unknown>>();

  /** Runs `task` without awaiting it; a failure is logged, not thrown. */
  run(label: string, task: () => Promise<unknown>): void {
    const p = task().catch((err) => console.error(`${label} failed:`, err?.message ?? err));
    this.#pending.add(p);
    p.finally(() => this.#pending.delete(p));
  }

  /** Resolves when every task started so far (and any they started) has finished. */
  async drain(): Promise<void> {
    while (this.#pending.size) await Promise.all([...this.#pending]);
  }
}
