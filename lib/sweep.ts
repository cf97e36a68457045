/**
 * One timer for many pending things: while there is work, it calls `tick` every `intervalMs`
 * (`tick` says whether to go on). It is unref'd, so pending work never keeps the process alive.
 * The client watch and the upstream deadlines use it instead of a timer per request.
 */
export class Sweep {
  #timer: ReturnType<typeof setTimeout> | null = null;
  #intervalMs: number;
  #tick: () => boolean;

  constructor(intervalMs: number, tick: () => boolean) {
    this.#intervalMs = intervalMs;
    this.#tick = tick;
  }

  /** Makes sure the timer runs (nothing to do when it does already). */
  ensure(): void {
    if (this.#timer === null) this.#arm();
  }

  /** Stops the timer now (shutdown, tests); a later `ensure` starts it again. */
  stop(): void {
    if (this.#timer === null) return;
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  #arm(): void {
    const timer = setTimeout(this.#run, this.#intervalMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #run = () => {
    this.#timer = null;
    if (this.#tick()) this.#arm();
  };
}
