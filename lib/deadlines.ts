/**
 * Timeouts of many calls on one timer. A `setTimeout` and its `clearTimeout` per upstream call cost
 * about 2 µs and 0.5 KiB each (Deno's timers are Node-style `Timeout` objects); here a call adds a
 * small entry to a set, and one timer (a `Sweep`, armed while calls are pending and until its next
 * tick) fires those whose time is up. A deadline fires late by at most one tick (a tenth of the
 * timeout, 100 ms to 1 s), well within what a timeout of seconds to minutes means.
 */
import { Sweep } from "./sweep.ts";

/** A pending deadline; give it back to `Deadlines.clear` once the call is answered. */
export interface Deadline {
  /** When it fires (`performance.now()` time); moved by `Deadlines.restart`. */
  at: number;
  readonly fire: () => void;
}

/** Deadlines of one length (`timeoutMs`), checked on a shared timer. */
export class Deadlines {
  #pending = new Set<Deadline>();
  #timeoutMs: number;
  #sweep: Sweep;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
    const tickMs = Math.min(1000, Math.max(100, Math.round(timeoutMs / 10)));
    this.#sweep = new Sweep(tickMs, () => this.#tick());
  }

  /** Calls `fire` once `timeoutMs` have passed, unless the deadline is cleared first. */
  start(fire: () => void): Deadline {
    const deadline = { at: performance.now() + this.#timeoutMs, fire };
    this.#pending.add(deadline);
    this.#sweep.ensure();
    return deadline;
  }

  /** Counts the full timeout again from now (re-arming a deadline that fired already). */
  restart(deadline: Deadline): void {
    deadline.at = performance.now() + this.#timeoutMs;
    if (this.#pending.has(deadline)) return;
    this.#pending.add(deadline);
    this.#sweep.ensure();
  }

  /** How long a deadline runs. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** The call was answered (or failed) in time: its deadline no longer fires. */
  clear(deadline: Deadline): void {
    // The timer is left to run out: with nothing pending its tick does not re-arm it. Stopping it
    // here would cost a clearTimeout and a setTimeout per call whenever calls do not overlap.
    this.#pending.delete(deadline);
  }

  /** Stops the timer if no deadline is pending (shutdown, tests); a later `start` re-arms it. */
  stop(): void {
    if (this.#pending.size === 0) this.#sweep.stop();
  }

  /** Deadlines not yet fired or cleared. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Fires the deadlines whose time is up; says whether any is still pending. */
  #tick(): boolean {
    const now = performance.now();
    for (const deadline of this.#pending) {
      if (deadline.at > now) continue;
      this.#pending.delete(deadline);
      try {
        deadline.fire();
      } catch (err) {
        console.error("A timeout handler failed:", err);
      }
    }
    return this.#pending.size > 0;
  }
}
