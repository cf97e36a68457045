/**
 * Deployment alerts: problems no key can fix, which the admin must hear about. Today, Google
 * refusing the server's location: "User location is not supported for the API use" (every key
 * fails), or "free tier is not available in your country" (every free-tier key fails). One KV row
 * per kind, `["alert", kind]`, updated at most once a minute per isolate and expiring a day after
 * the last occurrence, so an alert clears itself once the app runs somewhere Google serves.
 */
import * as z from "zod";

/** The kinds of deployment alerts. */
export const AlertKindSchema = z.enum(["location", "free_tier_location"]);
/** One kind of deployment alert. */
export type AlertKind = z.infer<typeof AlertKindSchema>;

/** A deployment alert as stored. */
export const AlertSchema = z.object({
  kind: AlertKindSchema,
  /** Google's message, the last time. */
  message: z.string(),
  firstAt: z.number(),
  lastAt: z.number(),
  /** Occurrences recorded (at most one a minute per isolate is written). */
  count: z.number(),
});

/** A deployment alert. */
export type Alert = z.infer<typeof AlertSchema>;

/** How long an alert stays after its last occurrence. */
export const ALERT_TTL_MS = 86_400_000;
/** Occurrences of one kind closer together than this on one isolate are written once. */
const WRITE_EVERY_MS = 60_000;

const keyOf = (kind: AlertKind): Deno.KvKey => ["alert", kind];

/** Records one occurrence of an alert (read, update, write; retried on a conflict). */
export async function noteAlert(
  kv: Deno.Kv,
  options: { kind: AlertKind; message: string; now: number },
): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const entry = await kv.get(keyOf(options.kind));
    const old = AlertSchema.safeParse(entry.value);
    const alert: Alert = {
      kind: options.kind,
      message: options.message.slice(0, 500),
      firstAt: old.success ? old.data.firstAt : options.now,
      lastAt: options.now,
      count: (old.success ? old.data.count : 0) + 1,
    };
    const res = await kv.atomic().check(entry).set(keyOf(options.kind), alert, {
      expireIn: ALERT_TTL_MS,
    }).commit();
    if (res.ok) return;
  }
}

/** The current alerts (those whose last occurrence is less than `ALERT_TTL_MS` old). */
export async function listAlerts(kv: Deno.Kv, now: number): Promise<Alert[]> {
  const out: Alert[] = [];
  for await (const e of kv.list({ prefix: ["alert"] })) {
    const parsed = AlertSchema.safeParse(e.value);
    // Expiry in KV is lazy: an alert past its time is not shown.
    if (parsed.success && now - parsed.data.lastAt < ALERT_TTL_MS) out.push(parsed.data);
  }
  return out;
}

/** Dismisses an alert; false when there was none. */
export async function clearAlert(kv: Deno.Kv, kind: AlertKind): Promise<boolean> {
  const entry = await kv.get(keyOf(kind));
  if (entry.value === null) return false;
  await kv.delete(keyOf(kind));
  return true;
}

/** Records alerts from the request path: throttled per kind, written in the background. */
export class AlertRecorder {
  #kv: Deno.Kv;
  #now: () => number;
  #written = new Map<AlertKind, number>();
  #pending = new Set<Promise<void>>();

  constructor(options: { kv: Deno.Kv; now: () => number }) {
    this.#kv = options.kv;
    this.#now = options.now;
  }

  /** Notes an occurrence; writes it unless this isolate wrote this kind in the last minute. */
  note(kind: AlertKind, message: string): void {
    const now = this.#now();
    const last = this.#written.get(kind);
    if (last !== undefined && now - last < WRITE_EVERY_MS) return;
    this.#written.set(kind, now);
    const write = noteAlert(this.#kv, { kind, message, now })
      .catch((err) => console.error("Recording an alert failed:", err?.message ?? err))
      .finally(() => this.#pending.delete(write));
    this.#pending.add(write);
  }

  /** Forgets the throttle (after an admin dismissed the alert, the next occurrence is written). */
  reset(kind: AlertKind): void {
    this.#written.delete(kind);
  }

  /** Waits for writes in flight. */
  async settle(): Promise<void> {
    while (this.#pending.size) await Promise.all([...this.#pending]);
  }
}
