/**
 * What happens when a client request is complete (its last byte sent, or the client gone): usage
 * counters per key, model and time bucket (which are also the per-key RPM/TPM/RPD windows), the
 * user key's budgets (tokens and requests per day and month), and a redacted request-log entry. Then the pool's usage
 * reservations are settled with the real token counts. Every route that calls the upstream ends
 * here, so per-request bookkeeping has one home.
 *
 * Requests are not written one by one: each isolate sums them in memory (`UsageBatch`; the
 * counters are KV `sum`s, so the totals are exact) and writes the batch at most about once a
 * second, in as few atomic operations as KV's limits allow, and at once when the batch grows
 * large. `drain()` (shutdown on SIGINT/SIGTERM, and the tests) writes what is pending, and admin
 * reads of usage call `flush()` first, so an isolate always sees its own traffic.
 *
 * Loss window: an instance killed without SIGINT/SIGTERM (a crash, SIGKILL, an eviction that
 * skips the signal) loses what it completed in its last `FLUSH_INTERVAL_MS` (about one second),
 * plus a write in flight: those requests' counters, request-log entries and user-key tokens. The
 * same requests are then missing from what other isolates read from KV for limits (per-key
 * RPM/TPM/RPD windows, user-key budgets), so limits can be exceeded by that much; user-key RPM and
 * concurrency leases are not affected (they live in KV). While it runs, an isolate counts its own
 * unwritten requests in both (pool reservations, `budgetSince`).
 */
import { apiOf } from "./api_of.ts";
import { urlPath } from "./url_path.ts";
import type { Gateway } from "./gateway.ts";
import type { UsageMetadata } from "./gemini/types.ts";
import type { Settings } from "./store/settings.ts";
import { type NewRequestLogEntry, requestLogMutations } from "./store/request_log.ts";
import { type Attempt, type BatchChunk, commitChunks, UsageBatch } from "./store/usage.ts";
import { budgetIdsOf } from "./store/user_budgets.ts";
import { MAX_MODEL_NAME } from "./translate/models.ts";
import { isModelName } from "./openai/model_name.ts";

/** How long completed requests are held in memory before they are written to KV. */
export const FLUSH_INTERVAL_MS = 1_000;
/** A batch with this many distinct event shapes is written without waiting. */
const FLUSH_SOON_SIZE = 500;
/** A batch with this many request-log entries (a few KV pages) is written without waiting. */
const FLUSH_SOON_LOG = 2_000;
/** How long a written batch's user-key budget counts are remembered (see `budgetSince`). */
export const LEDGER_KEEP_MS = 60_000;
/** Mutations kept for a retry after KV refused a write, at most (beyond this they are dropped). */
const MAX_RETRY_MUTATIONS = 100_000;

/** One completed client request. */
export interface RequestOutcome {
  /** The upstream model the request was served with. */
  model: string;
  userId: string | null;
  attempts: Attempt[];
  /** True when a key served the request. */
  ok: boolean;
  /**
   * True when the client got (part of) an answer: a stream that broke after content came is not
   * `ok`, but its tokens count and the user key's budgets are charged. Defaults to `ok`.
   */
  served?: boolean;
  /** HTTP status the client got (200 for a stream that started). */
  status: number;
  /** When the request started, from `gw.now()`. */
  startedAt: number;
  /** Failure class when not ok (`client`, `no_key`, `upstream`, `stream_error`, ...). */
  errorClass?: string;
  usage?: UsageMetadata;
  /** The request's `X-Request-Id`, for the request log. */
  requestId?: string | null;
  /** The API the request used (`apiOf`), for the request log. */
  api?: string | null;
}

/** Settling of the pool's reservations, done once the request's usage is in KV. */
interface Settlement {
  attempts: Attempt[];
  ok: boolean;
  promptTokens: number;
}

/** What one atomic operation wrote (or is writing) to user-key budget counters, by counter id. */
interface LedgerEntry {
  counts: Map<string, number>;
  /** The commit's versionstamp; null while the write is pending. */
  versionstamp: string | null;
  /** When it was written (performance.now()). */
  writtenAt: number;
}

/** What the recorder needs of the gateway. */
export interface UsageRecorderOptions {
  kv: Deno.Kv;
  /** Current settings (the request log's size). */
  settings: () => Settings | undefined;
  /** The pool's settling of reservations, called once their usage is in KV. */
  settle: (attempts: readonly Attempt[], options: { ok: boolean; promptTokens: number }) => void;
  /** Masked form of a pool key, for the request log. */
  maskedOf: (keyId: string) => string | null;
  /**
   * Whether the upstream lists `model` (false while the list is not loaded yet): requests the
   * upstream refused as the client's, no key having served them, for a model it does not list
   * are counted under `OTHER_MODEL`.
   */
  knownModel?: (model: string) => boolean;
}

/**
 * The model usage counts a request under when its own name cannot be kept: one no request may
 * give (longer than `MAX_MODEL_NAME`, which usage keys could not carry, or with control
 * characters), or one the upstream does not list that no key served (made-up names would each add
 * counters forever).
 */
const OTHER_MODEL = "(other)";

/** Per-isolate buffer of completed requests, written to KV in batches. */
export class UsageRecorder {
  #options: UsageRecorderOptions;
  #batch = new UsageBatch();
  /** Request-log entries of the batch, written as pages with it. */
  #log: NewRequestLogEntry[] = [];
  #settlements: Settlement[] = [];
  /** Chunks KV refused, with what depends on them, retried first by the next flush. */
  #retry: { chunks: BatchChunk[]; settlements: Settlement[]; ledger: LedgerEntry[] } | null = null;
  /** Budget counts recorded and not in a write yet, by counter id. */
  #pendingBudgets = new Map<string, number>();
  #ledger: LedgerEntry[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** Whether `#timer` is a write due at once (a large batch), not the periodic one. */
  #timerSoon = false;
  #flushing: Promise<void> | null = null;
  #again = false;

  constructor(options: UsageRecorderOptions) {
    this.#options = options;
  }

  /** Adds a completed request to the batch (synchronous; the write happens later). */
  record(outcome: RequestOutcome, now: number): void {
    const served = outcome.served ?? outcome.ok;
    const model = this.#counted(outcome, served);
    const u = outcome.usage;
    const promptTokens = (u?.promptTokenCount ?? 0) + (u?.toolUsePromptTokenCount ?? 0);
    const completionTokens = (u?.candidatesTokenCount ?? 0) + (u?.thoughtsTokenCount ?? 0);
    const settings = this.#options.settings();
    const lastKey = outcome.attempts.at(-1)?.keyId ?? null;
    if ((settings?.requestLogSize ?? 1) > 0) {
      this.#log.push({
        t: outcome.startedAt,
        userId: outcome.userId,
        model: outcome.model.slice(0, MAX_MODEL_NAME),
        keyId: lastKey,
        key: lastKey ? this.#options.maskedOf(lastKey) : null,
        status: outcome.status,
        latencyMs: Math.max(0, now - outcome.startedAt),
        inputTokens: promptTokens,
        outputTokens: completionTokens,
        attempts: outcome.attempts.length,
        errorClass: outcome.errorClass ?? null,
        requestId: outcome.requestId ?? null,
        api: outcome.api ?? null,
      });
    }
    this.#batch.add({
      now,
      model,
      userId: outcome.userId,
      attempts: outcome.attempts,
      ok: outcome.ok,
      served,
      promptTokens,
      completionTokens,
      thinkingTokens: u?.thoughtsTokenCount ?? 0,
    });
    if (outcome.attempts.length) {
      this.#settlements.push({ attempts: outcome.attempts, ok: served, promptTokens });
    }
    if (outcome.userId && served) {
      const ids = budgetIdsOf(outcome.userId, now);
      const pending = this.#pendingBudgets;
      const tokens = promptTokens + completionTokens;
      if (tokens > 0) {
        for (const id of ids.tokens) pending.set(id, (pending.get(id) ?? 0) + tokens);
      }
      for (const id of ids.requests) pending.set(id, (pending.get(id) ?? 0) + 1);
    }
    if (this.#batch.groups >= FLUSH_SOON_SIZE || this.#log.length >= FLUSH_SOON_LOG) {
      this.#schedule(0);
    } else this.#schedule(FLUSH_INTERVAL_MS);
  }

  /**
   * The model name usage counts a request under (see `OTHER_MODEL`): a request the upstream
   * refused as the client's error (a made-up model's 404 among them), no key having served it,
   * keeps its model's name only when the upstream lists that model.
   */
  #counted(outcome: RequestOutcome, served: boolean): string {
    const model = outcome.model;
    if (!isModelName(model)) return OTHER_MODEL;
    if (served || outcome.errorClass !== "client") return model;
    return this.#options.knownModel?.(model) ?? true ? model : OTHER_MODEL;
  }

  #schedule(ms: number): void {
    if (this.#timer !== null) {
      // A write already due at once is not scheduled again by every request until it runs.
      if (ms > 0 || this.#timerSoon) return;
      clearTimeout(this.#timer);
    }
    this.#timerSoon = ms === 0;
    const timer = setTimeout(() => {
      this.#timer = null;
      this.flush().catch((err) => console.error("Usage accounting failed:", err?.message ?? err));
    }, ms);
    // A pending write must not keep the process alive; shutdown drains it explicitly.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /**
   * What this isolate recorded on the budget counter `id` (`budgetCounterId`) that a read of it
   * at `versionstamp` does not include yet (null: the counter did not exist).
   */
  budgetSince(id: string, versionstamp: string | null): number {
    let n = this.#pendingBudgets.get(id) ?? 0;
    for (const e of this.#ledger) {
      const t = e.counts.get(id);
      if (
        t && (e.versionstamp === null || versionstamp === null || e.versionstamp > versionstamp)
      ) {
        n += t;
      }
    }
    return n;
  }

  /**
   * Writes everything recorded so far; resolves once it is in KV. A failed write is logged and
   * kept for the next flush.
   */
  async flush(): Promise<void> {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    while (this.#flushing) await this.#flushing;
    if (!this.#batch.events && !this.#retry) return;
    this.#flushing = this.#write().finally(() => (this.#flushing = null));
    await this.#flushing;
  }

  async #write(): Promise<void> {
    const retry = this.#retry;
    this.#retry = null;
    const batch = this.#batch;
    const settlements = this.#settlements;
    batch.addExtra(requestLogMutations(this.#log));
    this.#batch = new UsageBatch();
    this.#log = [];
    this.#settlements = [];
    this.#pendingBudgets = new Map();
    const fresh = batch.events ? batch.chunks() : [];
    // Each chunk's budget counts stay counted (as pending) in the ledger until written.
    const freshLedger = fresh.map((c): LedgerEntry => ({
      counts: c.budgets,
      versionstamp: null,
      writtenAt: 0,
    }));
    this.#ledger.push(...freshLedger);
    const chunks = [...(retry?.chunks ?? []), ...fresh];
    const ledger = [...(retry?.ledger ?? []), ...freshLedger];
    const waiting = [...(retry?.settlements ?? []), ...settlements];
    const { written, error } = await commitChunks(this.#options.kv, chunks);
    const at = performance.now();
    const dropped = new Set<LedgerEntry>();
    written.forEach((versionstamp, i) => {
      if (versionstamp === null) dropped.add(ledger[i]);
      ledger[i].versionstamp = versionstamp;
      ledger[i].writtenAt = at;
    });
    // What KV could never take is not counted as pending any longer.
    if (dropped.size) this.#ledger = this.#ledger.filter((e) => !dropped.has(e));
    this.#pruneLedger(at);
    if (error === null) {
      this.#settle(waiting);
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    const left = chunks.slice(written.length);
    const unwritten = ledger.slice(written.length);
    const size = left.reduce((n, c) => n + c.mutations.length, 0);
    if (size > MAX_RETRY_MUTATIONS) {
      console.error(`Usage accounting dropped ${size} counter updates KV kept refusing:`, message);
      this.#ledger = this.#ledger.filter((e) => !unwritten.includes(e));
      this.#settle(waiting);
      return;
    }
    console.error("Usage accounting failed; retrying with the next batch:", message);
    this.#retry = { chunks: left, settlements: waiting, ledger: unwritten };
    this.#schedule(FLUSH_INTERVAL_MS);
  }

  #settle(settlements: Settlement[]): void {
    for (const s of settlements) {
      this.#options.settle(s.attempts, { ok: s.ok, promptTokens: s.promptTokens });
    }
  }

  #pruneLedger(now: number): void {
    this.#ledger = this.#ledger.filter((e) =>
      e.versionstamp === null || now - e.writtenAt <= LEDGER_KEEP_MS
    );
  }

  /** Writes what is pending and stops the timer (shutdown, tests); recording may go on after. */
  async drain(): Promise<void> {
    // A write already in flight (started by the timer) is waited for: it holds requests that are
    // no longer in the batch. Requests completed during a write are written too; a write KV
    // refused is tried once more (after that it stays pending and logged).
    for (
      let pass = 0;
      pass < 3 && (this.#flushing || this.#batch.events || this.#retry);
      pass++
    ) await this.flush();
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }
}

/** Records a completed request without delaying the client. */
export function accountRequest(gw: Gateway, outcome: RequestOutcome): void {
  gw.usage.record(outcome, gw.now());
}

/**
 * The accounting of one request of a route: `model`, user key, attempts (read when called: a list
 * the route fills) and start are fixed; each call records the outcome given (a served 200 unless
 * it says otherwise).
 */
export function requestAccount(
  gw: Gateway,
  req: Request,
  fixed: { model: string; userId: string; attempts: readonly Attempt[]; startedAt: number },
): (outcome?: Partial<RequestOutcome>) => void {
  return (outcome = {}) =>
    accountRequest(gw, {
      model: fixed.model,
      userId: fixed.userId,
      attempts: [...fixed.attempts],
      ok: true,
      status: 200,
      startedAt: fixed.startedAt,
      ...requestTags(gw, req),
      ...outcome,
    });
}

/** What the request log says of the request `req`: its `X-Request-Id` and its API. */
export function requestTags(
  gw: Gateway,
  req: Request,
): { requestId: string | null; api: string | null } {
  return { requestId: gw.requestIdOf(req), api: apiOf(urlPath(req.url)) };
}
