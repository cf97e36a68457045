/**
 * Per-user-key limits shared by every isolate through KV, in one small window record
 * `["ul", userId]` per key: the requests-per-minute permits handed out for the current minute, and
 * the concurrency slots each isolate holds. Isolates lease permits and slots in blocks and use them
 * up in memory (see `lib/auth/user_limiter.ts`); the record only changes when a block is taken or
 * given back, with an optimistic check, so the leases of all isolates never add up to more than
 * the limit. Tokens per Pacific day come from the counter usage accounting sums (`userTokensKey`).
 */
import * as z from "zod";
import { backoff, MAX_OCC_ATTEMPTS } from "./kv_util.ts";

const WINDOW_MS = 60_000;
/** How long a hold of concurrency slots lives unless renewed (its isolate died, or lost KV). */
export const LEASE_MS = 30 * 60_000;
/** OCC attempts before a lease gives up (and refuses rather than risk overshooting). */
const MAX_LEASE_ATTEMPTS = MAX_OCC_ATTEMPTS * 4;

const HoldSchema = z.object({ n: z.number().int().min(0), until: z.number() });

const WindowSchema = z.object({
  minute: z.number(),
  /** Permits handed out in `minute`. */
  count: z.number(),
  /** Per-request concurrency leases of older versions: lease id -> when it lapses (epoch ms). */
  leases: z.record(z.string(), z.number()).default({}),
  /** Concurrency slots held per isolate: holder id -> slots and when the hold lapses. */
  holds: z.record(z.string(), HoldSchema).default({}),
});

/** The window record of one user key. */
export type UserWindow = z.infer<typeof WindowSchema>;

/** A window as last read or written, with its versionstamp (null: the record did not exist). */
export interface KnownWindow {
  window: UserWindow | null;
  versionstamp: string | null;
}

/** What one isolate asks of a user key's window. */
export interface QuotaRequest {
  /** The isolate's holder id. */
  holder: string;
  rpm: number | null;
  maxConcurrency: number | null;
  /** Permits needed now in the current minute, and how many more may be taken ahead. */
  permits: { need: number; ahead: number };
  /** Unused permits of a minute given back. */
  giveBack?: { minute: number; permits: number };
  /** Slots the holder needs in total, and how many more it may hold ahead; null keeps its hold. */
  slots: { need: number; ahead: number } | null;
  /** Extend the hold's lifetime even if nothing else changes. */
  renew?: boolean;
}

/** What a lease gave the isolate. */
export interface QuotaGrant {
  minute: number;
  /** Permits granted for `minute`. */
  permits: number;
  /** Permits left for anyone in `minute` after the grant (null: no RPM limit). */
  permitsLeft: number | null;
  /** Slots the holder now holds. */
  slots: number;
  /** Slots free for anyone after the grant (null: no concurrency limit). */
  slotsFree: number | null;
  /** When the holder's hold lapses (0: it holds none). */
  holdUntil: number;
}

function windowKey(userId: string): Deno.KvKey {
  return ["ul", userId];
}

function parseWindow(value: unknown): UserWindow | null {
  if (value === null) return null;
  const parsed = WindowSchema.safeParse(value);
  return parsed.success ? parsed.data : null;
}

/** Applies `req` to the window `w` at `now` (pure): the next record (null: no change) and grant. */
export function applyQuota(
  w: UserWindow | null,
  options: { req: QuotaRequest; now: number },
): { next: UserWindow | null; grant: QuotaGrant } {
  const { req, now } = options;
  const minute = Math.floor(now / WINDOW_MS);
  let changed = false;
  let count = w && w.minute === minute ? w.count : 0;
  if (w && w.minute !== minute) changed = true;
  if (req.giveBack && req.giveBack.minute === minute && req.giveBack.permits > 0 && count > 0) {
    count = Math.max(0, count - req.giveBack.permits);
    changed = true;
  }
  const leases: Record<string, number> = {};
  for (const [id, until] of Object.entries(w?.leases ?? {})) {
    if (until > now) leases[id] = until;
    else changed = true;
  }
  const holds: Record<string, { n: number; until: number }> = {};
  let others = Object.keys(leases).length;
  for (const [id, hold] of Object.entries(w?.holds ?? {})) {
    if (hold.until <= now || hold.n <= 0) {
      changed = true;
      continue;
    }
    holds[id] = hold;
    if (id !== req.holder) others += hold.n;
  }
  const own = holds[req.holder];
  let permits = 0;
  let permitsLeft: number | null = null;
  if (req.rpm !== null) {
    const available = Math.max(0, req.rpm - count);
    const need = Math.min(available, Math.max(0, req.permits.need));
    permits = need + Math.min(Math.max(0, req.permits.ahead), (available - need) >> 3);
    if (permits > 0) {
      count += permits;
      changed = true;
    }
    permitsLeft = req.rpm - count;
  }
  let slots = own?.n ?? 0;
  let slotsFree: number | null = null;
  if (req.maxConcurrency !== null && req.slots !== null) {
    const room = Math.max(0, req.maxConcurrency - others);
    const need = Math.min(room, Math.max(0, req.slots.need));
    const want = need + Math.min(Math.max(0, req.slots.ahead), (room - need) >> 3);
    if (want !== slots) {
      slots = want;
      changed = true;
    }
    slotsFree = Math.max(0, room - slots);
  } else if (req.maxConcurrency === null && slots > 0) {
    // The key lost its concurrency limit: the hold is no longer needed.
    slots = 0;
    changed = true;
  }
  let holdUntil = own?.until ?? 0;
  if (slots > 0 && (changed || req.renew || !own)) {
    holdUntil = now + LEASE_MS;
    holds[req.holder] = { n: slots, until: holdUntil };
    changed = true;
  } else if (slots === 0) {
    if (own) changed = true;
    delete holds[req.holder];
    holdUntil = 0;
  }
  const grant = { minute, permits, permitsLeft, slots, slotsFree, holdUntil };
  return { next: changed ? { minute, count, leases, holds } : null, grant };
}

/**
 * Applies `req` to the window of `userId` atomically. With `known` (this isolate's last view) it
 * tries a single commit checked against that view first; only when another isolate changed the
 * record since does it read it again. Null when contention outlasted the retries.
 */
export async function leaseQuota(
  kv: Deno.Kv,
  userId: string,
  options: { req: QuotaRequest; now: () => number; known: KnownWindow | null },
): Promise<{ grant: QuotaGrant; known: KnownWindow } | null> {
  const key = windowKey(userId);
  let current = options.known;
  let verified = false;
  for (let attempt = 0; attempt < MAX_LEASE_ATTEMPTS; attempt++) {
    if (!current) {
      const entry = await kv.get(key);
      current = { window: parseWindow(entry.value), versionstamp: entry.versionstamp };
      verified = true;
    }
    const now = options.now();
    const { next, grant } = applyQuota(current.window, { req: options.req, now });
    if (next === null) {
      // Nothing to write; a refusal must not rest on a view that may be out of date.
      const short = (options.req.permits.need > 0 && grant.permits < options.req.permits.need) ||
        (options.req.slots !== null && grant.slots < options.req.slots.need);
      if (!short || verified) return { grant, known: current };
      current = null;
      continue;
    }
    const res = await kv.atomic()
      .check({ key, versionstamp: current.versionstamp })
      .set(key, next, { expireIn: LEASE_MS + WINDOW_MS })
      .commit();
    if (res.ok) return { grant, known: { window: next, versionstamp: res.versionstamp } };
    // Another isolate wrote first: read again (at once when the view was this isolate's own,
    // with backoff when it was fresh from KV, i.e. under real contention).
    if (verified) await backoff(attempt);
    current = null;
  }
  return null;
}

/** Deletes the limiter state of a user key that was deleted (its holds would lapse anyway). */
export async function deleteUserLimiterState(kv: Deno.Kv, userId: string): Promise<void> {
  await kv.delete(windowKey(userId));
}
