/**
 * Events between islands of one page: an island that changes what another one shows says so, and
 * the other reloads its part (each island hydrates on its own, with no shared state).
 */

const LIMITS_CHANGED = "gateway:limits-changed";

/** Says that the pool's effective limits may have changed (a model's limits, a project's). */
export function announceLimitsChanged(): void {
  globalThis.dispatchEvent(new Event(LIMITS_CHANGED));
}

/** Calls `listener` after each `announceLimitsChanged`; returns the function that stops it. */
export function onLimitsChanged(listener: () => void): () => void {
  globalThis.addEventListener(LIMITS_CHANGED, listener);
  return () => globalThis.removeEventListener(LIMITS_CHANGED, listener);
}
