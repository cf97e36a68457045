/**
 * The key pool of one isolate. It holds a cached view of KV (keys with decrypted secrets,
 * projects, model configuration, settings) and of recent usage, both refreshed in the background,
 * so that picking a key costs no KV round trip in steady state. It picks with the configured
 * strategy among keys that are usable for the model and under their limits, reserves the request
 * in the usage windows, and records what failures teach: invalid keys, cooldowns by cause (per
 * project when the key names one), learned limits, error streaks. Those writes go to KV, where the
 * other isolates pick them up.
 */
import { AlertRecorder } from "../store/alerts.ts";
import { CachedValue } from "../cache.ts";
import type { Sealer } from "../secrets.ts";
import {
  type Cooldown,
  type GeminiKeyRecord,
  getGeminiKey,
  listGeminiKeys,
  openGeminiKey,
  openProxy,
  updateGeminiKey,
} from "../store/gemini_keys.ts";
import { type Limits, listModelConfigs, type ModelConfig, noLimits } from "../store/models.ts";
import { leasePositions } from "../store/pool_cursor.ts";
import { listProjects, type ProjectRecord, updateProject } from "../store/projects.ts";
import { readSettings, type Settings } from "../store/settings.ts";
import { readRecentUsage } from "../store/usage.ts";
import type { Attempt } from "../store/usage.ts";
import { nextPacificMidnight, pacificDayNumber } from "./calendar.ts";
import { noteHealthDay } from "./health.ts";
import {
  addUsage,
  effectiveLimits,
  fitsAgainAt,
  hasLimits,
  type ModelWindow,
  noUsage,
  type Reservation,
  UsageTracker,
  type WindowUsage,
  wouldExceed,
} from "./limits.ts";
import { readQuotaFailure } from "./quota.ts";
import {
  adaptiveScore,
  buildCandidates,
  type Candidates,
  cooldownEnd,
  isUsable,
  type KeyStats,
  pickAdaptive,
  pickLeastUsed,
  pickRoundRobin,
  updateStats,
} from "./selection.ts";

/** How long a view is served before a background refresh; other isolates' changes show up within this. */
export const SNAPSHOT_TTL_MS = 2_000;
/** How often recent usage is re-read from KV (other isolates' traffic shows up within this). */
export const USAGE_TTL_MS = 2_000;
/** Consecutive upstream errors after which a key rests briefly. */
export const ERROR_STREAK_LIMIT = 3;
/** How long a key rests after its first error streak; doubles with each further error, up to the max. */
export const ERROR_STREAK_COOLDOWN_MS = 30_000;
/** The longest rest after upstream errors. */
export const MAX_ERROR_COOLDOWN_MS = 10 * 60_000;
/** Round-robin positions leased from KV at once, at first and when traffic is light. */
export const RR_BLOCK = 32;
/** The largest lease: a busy isolate doubles its block while each one lasts under a second. */
export const RR_MAX_BLOCK = 1024;
/** How long a key rests for a model Google will not serve it from where it calls. */
export const UNSERVED_REST_MS = 3_600_000;
/** How long an expired 429 cooldown is remembered (a second per-day hint in a row parks the key). */
export const RECENT_429_MS = 60 * 60_000;
/** Longest upstream error text kept in a key's state. */
const MAX_REASON = 300;

/** A key chosen for one upstream attempt. */
export interface PoolKey {
  id: string;
  secret: string;
  masked: string;
  project: string;
  /** The usage this attempt reserved; carried on the attempt so accounting can settle it. */
  reservation: Reservation;
}

/** Why no key could be picked. */
export interface NoKey {
  /** Keys configured at all. */
  total: number;
  /** Epoch ms when a resting or over-limit key can serve again; null when none will by itself. */
  retryAt: number | null;
  /** True when some otherwise usable key was skipped only because of its limits. */
  limited: boolean;
}

/** What the pool knows from KV, as one immutable snapshot. */
export interface PoolView {
  keys: GeminiKeyRecord[];
  byId: Map<string, GeminiKeyRecord>;
  projects: Map<string, ProjectRecord>;
  /** Project label -> ids of its keys. */
  projectKeys: Map<string, string[]>;
  models: Map<string, ModelConfig>;
  settings: Settings;
  version: number;
}

/** Options of `KeyPool`. */
export interface KeyPoolOptions {
  kv: Deno.Kv;
  sealer: Sealer;
  now: () => number;
  /** Random numbers in [0, 1); tests pass a seeded generator. */
  random?: () => number;
  /**
   * Round-robin positions leased before the pool was built (`leasePositions(kv, RR_BLOCK)` at
   * start-up, while other reads were waited for, whatever the strategy: one commit, so that a
   * round-robin pick need not wait for the view first): the first of `RR_BLOCK` positions.
   */
  firstLease?: Promise<number>;
}

interface ModelCandidates {
  version: number;
  c: Candidates;
  /** Effective limits per candidate, null when it has none. */
  limits: (Limits | null)[];
  /** Candidate index by key id. */
  index: Map<string, number>;
  /** Requests per candidate in the current and previous minute, for least-used picks. */
  counts: { minute: number; usage: number; cur: Float64Array; prev: Float64Array } | null;
}

let versions = 0;

function buildView(
  parts: {
    keys: GeminiKeyRecord[];
    projects: Map<string, ProjectRecord>;
    models: Map<string, ModelConfig>;
    settings: Settings;
  },
): PoolView {
  const byId = new Map<string, GeminiKeyRecord>();
  const projectKeys = new Map<string, string[]>();
  for (const k of parts.keys) {
    byId.set(k.id, k);
    if (k.project) {
      const list = projectKeys.get(k.project);
      if (list) list.push(k.id);
      else projectKeys.set(k.project, [k.id]);
    }
  }
  return { ...parts, byId, projectKeys, version: ++versions };
}

function clip(text: string): string {
  return text.length > MAX_REASON ? text.slice(0, MAX_REASON) + "…" : text;
}

function recentCooldowns(cooldowns: Record<string, Cooldown>, now: number) {
  return Object.fromEntries(
    Object.entries(cooldowns).filter(([, c]) => c.until > now - RECENT_429_MS),
  );
}

function mergeLearned(
  learned: Record<string, Limits>,
  model: string,
  found: Partial<Limits>,
): Record<string, Limits> | null {
  const entries = Object.entries(found) as [keyof Limits, number][];
  const current = learned[model] ?? noLimits();
  if (entries.every(([d, v]) => current[d] === v)) return null;
  return { ...learned, [model]: { ...current, ...found } };
}

/** The effective limits of `key` for `model` in `view` (project override, learned, model default). */
export function keyLimits(view: PoolView, key: GeminiKeyRecord, model: string): Limits {
  const project = key.project ? view.projects.get(key.project) : undefined;
  return effectiveLimits({
    override: project?.limits[model],
    learned: key.project ? project?.learned[model] : key.learned[model],
    defaults: view.models.get(model)?.limits,
  });
}

/**
 * A shared round-robin rotation: positions leased from KV in blocks, used up locally. A block is
 * `RR_BLOCK` positions; an isolate that uses its blocks up within a second leases twice as many
 * next time (up to `RR_MAX_BLOCK`), so under load the lease costs one KV commit per ~1,000
 * requests instead of per 32. Any block size keeps the rotation fair: a block is consecutive
 * positions, so each isolate cycles through the keys in order.
 */
class SharedCursor {
  #kv: Deno.Kv;
  #blocks: [number, number][] = [];
  #filling: Promise<void> | null = null;
  #fallback = Math.floor(Math.random() * 1e6);
  #size = RR_BLOCK;
  #leasedAt = -Infinity;

  constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  #available(): number {
    return this.#blocks.reduce((n, [a, b]) => n + b - a, 0);
  }

  /** Takes `RR_BLOCK` positions leased elsewhere (at start-up) as this cursor's first block. */
  seed(lease: Promise<number>): void {
    this.#leasedAt = performance.now();
    this.#filling = this.#receive(lease, RR_BLOCK);
  }

  #receive(lease: Promise<number>, size: number): Promise<void> {
    return lease
      .then((start) => void this.#blocks.push([start, start + size]))
      .catch((err) => console.error("Leasing round-robin positions failed:", err?.message ?? err))
      .finally(() => (this.#filling = null));
  }

  #fill(): Promise<void> {
    if (this.#filling) return this.#filling;
    const now = performance.now();
    const size = this.#size = now - this.#leasedAt < 1000
      ? Math.min(RR_MAX_BLOCK, this.#size * 2)
      : RR_BLOCK;
    this.#leasedAt = now;
    this.#filling = this.#receive(leasePositions(this.#kv, size), size);
    return this.#filling;
  }

  /**
   * Makes sure `n` positions can be taken without waiting (a promise to await when they cannot
   * yet, else null); prefetches the next block early.
   */
  ensure(n: number): Promise<void> | null {
    const available = this.#available();
    if (available < n) return this.#fill();
    if (available < this.#size / 2) void this.#fill();
    return null;
  }

  /** The next position (a local one if KV could not be reached). */
  take(): number {
    const block = this.#blocks[0];
    if (!block) return this.#fallback++;
    const p = block[0]++;
    if (block[0] >= block[1]) this.#blocks.shift();
    return p;
  }

  settle(): Promise<void> {
    return this.#filling ?? Promise.resolve();
  }
}

/** Selects keys and records what happened to them. */
export class KeyPool {
  #kv: Deno.Kv;
  #sealer: Sealer;
  #now: () => number;
  #random: () => number;
  #view: CachedValue<PoolView>;
  #usage: CachedValue<true>;
  #tracker = new UsageTracker();
  #secrets = new Map<
    string,
    { sealed: string; secret: string; proxySealed: string | null; proxy: string | null }
  >();
  /** Each key secret's outbound proxy (keys with one only). */
  #proxies = new Map<string, string>();
  #candidates = new Map<string, ModelCandidates>();
  #stats = new Map<string, KeyStats>();
  #cursor: SharedCursor;

  /** Deployment problems seen on the request path (see `lib/store/alerts.ts`). */
  readonly alerts: AlertRecorder;

  constructor(options: KeyPoolOptions) {
    this.#kv = options.kv;
    this.#sealer = options.sealer;
    this.#now = options.now;
    this.alerts = new AlertRecorder({ kv: options.kv, now: options.now });
    this.#random = options.random ?? Math.random;
    this.#cursor = new SharedCursor(options.kv);
    if (options.firstLease) this.#cursor.seed(options.firstLease);
    this.#view = new CachedValue({
      load: () => this.#load(),
      ttlMs: SNAPSHOT_TTL_MS,
      now: options.now,
    });
    this.#usage = new CachedValue({
      load: () => this.#loadUsage(),
      ttlMs: USAGE_TTL_MS,
      now: options.now,
    });
  }

  async #load(): Promise<PoolView> {
    const [keys, projects, models, settings] = await Promise.all([
      listGeminiKeys(this.#kv),
      listProjects(this.#kv),
      listModelConfigs(this.#kv),
      readSettings(this.#kv),
    ]);
    const ids = new Set(keys.map((r) => r.id));
    for (const r of keys) {
      const known = this.#secrets.get(r.id);
      const proxySealed = r.proxy?.sealed ?? null;
      if (known?.sealed !== r.sealed || known.proxySealed !== proxySealed) {
        this.#secrets.set(r.id, {
          sealed: r.sealed,
          secret: await openGeminiKey(this.#sealer, r),
          proxySealed,
          proxy: await openProxy(this.#sealer, r),
        });
      }
    }
    for (const id of this.#secrets.keys()) if (!ids.has(id)) this.#secrets.delete(id);
    const proxies = new Map<string, string>();
    for (const s of this.#secrets.values()) if (s.proxy) proxies.set(s.secret, s.proxy);
    this.#proxies = proxies;
    for (const id of this.#stats.keys()) if (!ids.has(id)) this.#stats.delete(id);
    return buildView({
      keys,
      projects: new Map(projects.map((p) => [p.name, p])),
      models,
      settings,
    });
  }

  async #loadUsage(): Promise<true> {
    const now = this.#now();
    const mark = this.#tracker.mark();
    const minute = Math.floor(now / 60_000);
    const snapshot = await readRecentUsage(this.#kv, {
      minutes: [minute - 1, minute],
      day: pacificDayNumber(now),
    });
    this.#tracker.applySnapshot(snapshot, { mark, now: this.#now() });
    return true;
  }

  /** The current view, from cache when fresh enough; a stale one is served while it refreshes. */
  view(): Promise<PoolView> {
    return this.#view.get();
  }

  /** The key records, from the cached view. */
  async records(): Promise<GeminiKeyRecord[]> {
    return (await this.view()).keys;
  }

  /** Forces the next access to read KV (after an admin change on this isolate). */
  invalidate(): void {
    this.#view.invalidate();
    this.#candidates.clear();
  }

  /** Forces the next pick to re-read recent usage from KV. */
  invalidateUsage(): void {
    this.#usage.invalidate();
  }

  /**
   * Starts loading what a first pick needs, both at once and without waiting: the view and recent
   * usage (the round-robin positions come with `firstLease`). Called at start-up, so that an
   * isolate's first request finds them loaded or on their way instead of reading KV one step
   * after another.
   */
  warm(): void {
    const failed = (err: unknown) =>
      console.error("Warming the key pool failed:", err instanceof Error ? err.message : err);
    this.#view.get().catch(failed);
    this.#usage.get().catch(failed);
  }

  /**
   * The outbound proxy of the key with `secret`, or undefined (direct), as of the last load of the
   * pool (a change reaches every isolate with the pool's refresh).
   */
  proxyOf(secret: string): string | undefined {
    return this.#proxies.get(secret);
  }

  /** Waits for refreshes in flight, so that tests and shutdown leave nothing pending. */
  async settle(): Promise<void> {
    await Promise.all([
      this.#view.settle(),
      this.#usage.settle(),
      this.#cursor.settle(),
      this.alerts.settle(),
    ]);
  }

  /** Whether `model` is enabled in the model configuration (unconfigured models are). */
  async modelEnabled(model: string): Promise<boolean> {
    const view = this.#view.current() ?? await this.view();
    return view.models.get(model)?.enabled ?? true;
  }

  #candidatesFor(view: PoolView, model: string, now: number): ModelCandidates {
    const cached = this.#candidates.get(model);
    if (cached && cached.version === view.version && now < cached.c.validUntil) return cached;
    const c = buildCandidates(view.keys, model, {
      now,
      projectCooldowns: (p) => view.projects.get(p)?.cooldowns,
    });
    const limits = c.keys.map((k) => {
      const l = keyLimits(view, k, model);
      return hasLimits(l) ? l : null;
    });
    const index = new Map(c.keys.map((k, i) => [k.id, i]));
    const built: ModelCandidates = { version: view.version, c, limits, index, counts: null };
    if (this.#candidates.size > 200) this.#candidates.clear();
    this.#candidates.set(model, built);
    return built;
  }

  /** Requests per candidate in this and the previous minute (cached until the counts change). */
  #requestCounts(
    mc: ModelCandidates,
    options: { model: string; now: number; win: () => ModelWindow },
  ): { cur: Float64Array; prev: Float64Array } {
    const minute = Math.floor(options.now / 60_000);
    const usage = this.#tracker.version(options.model);
    if (mc.counts && mc.counts.minute === minute && mc.counts.usage === usage) return mc.counts;
    const n = mc.c.keys.length;
    const cur = new Float64Array(n);
    const prev = new Float64Array(n);
    const win = options.win();
    for (let i = 0; i < n; i++) {
      const u = win.usage(mc.c.keys[i].id);
      cur[i] = u.cur.att;
      prev[i] = u.prev.att;
    }
    mc.counts = { minute, usage, cur, prev };
    return mc.counts;
  }

  #scopeUsage(view: PoolView, key: GeminiKeyRecord, win: ModelWindow): WindowUsage {
    if (!key.project) return win.usage(key.id);
    const total = noUsage();
    for (const id of view.projectKeys.get(key.project) ?? [key.id]) addUsage(total, win.usage(id));
    return total;
  }

  /** Usage of `key`'s quota scope (its project, or itself) for `model` now, as limits see it. */
  async usageOf(key: GeminiKeyRecord, model: string): Promise<WindowUsage> {
    const view = await this.view();
    await this.#usage.get();
    return this.#scopeUsage(view, key, this.#tracker.window(model, this.#now()));
  }

  /**
   * Picks a key for `model`, skipping `exclude`, keys that rest and keys that could not take one
   * more request of `estimatedTokens` input tokens within their limits; reserves the request in
   * the key's usage windows. With `pinnedKeyId` only that key may serve (a request using a file
   * uploaded with it). Returns why not when no key can serve.
   */
  async pick(
    model: string,
    exclude: ReadonlySet<string>,
    options: { estimatedTokens?: number; pinnedKeyId?: string } = {},
  ): Promise<PoolKey | NoKey> {
    // Cached views are read without an await (each costs on every pick).
    let view = this.#view.current();
    if (view === undefined || this.#usage.current() === undefined) {
      // Not loaded yet (a cold isolate): the view and recent usage are read together.
      [view] = await Promise.all([view ?? this.view(), this.#usage.get()]);
    }
    const strategy = view.settings.strategy;
    const pinned = options.pinnedKeyId;
    if (strategy === "round_robin" && pinned === undefined) {
      const filling = this.#cursor.ensure(8);
      if (filling) await filling;
    }
    const now = this.#now();
    const tokens = options.estimatedTokens ?? 0;
    // Usage windows are built only when a limit or the strategy needs them.
    let window: ModelWindow | undefined;
    const win = () => (window ??= this.#tracker.window(model, now));
    const noKey = () =>
      this.#noKey(view, model, {
        now,
        tokens,
        exclude,
        win: win(),
        only: pinned === undefined ? undefined : view.byId.get(pinned),
      });

    let key: GeminiKeyRecord;
    if (pinned !== undefined) {
      const only = view.byId.get(pinned);
      if (!only || exclude.has(only.id)) return noKey();
      const project = only.project ? view.projects.get(only.project) : undefined;
      if (!isUsable(only, model, { now, projectCooldowns: project?.cooldowns })) return noKey();
      const lim = keyLimits(view, only, model);
      if (hasLimits(lim) && wouldExceed(this.#scopeUsage(view, only, win()), lim, tokens)) {
        return noKey();
      }
      key = only;
    } else {
      const mc = this.#candidatesFor(view, model, now);
      const { c, limits } = mc;
      const accept = (i: number) => {
        const k = c.keys[i];
        if (exclude.has(k.id)) return false;
        const lim = limits[i];
        return !lim || !wouldExceed(this.#scopeUsage(view, k, win()), lim, tokens);
      };
      let i: number;
      if (strategy === "least_used") {
        const { cur, prev } = this.#requestCounts(mc, { model, now, win });
        const prevWeight = 1 - (now % 60_000) / 60_000;
        i = pickLeastUsed(c, { accept, random: this.#random, cur, prev, prevWeight });
      } else if (strategy === "adaptive") {
        i = pickAdaptive(c, {
          accept,
          random: this.#random,
          score: (j) => this.#score(view, c.keys[j], { limits: limits[j], win: win() }),
        });
      } else {
        i = pickRoundRobin(c, {
          accept,
          random: this.#random,
          position: () => this.#cursor.take(),
        });
      }
      if (i < 0) return noKey();
      key = c.keys[i];
    }
    const secret = this.#secrets.get(key.id)?.secret;
    if (secret === undefined) {
      this.invalidate();
      return { total: view.keys.length, retryAt: now + 1000, limited: false };
    }
    const before = this.#tracker.version(model);
    const reservation = this.#tracker.reserve(key.id, model, { now, tokens });
    // Keep the least-used counts current without recomputing them for every pick.
    const counts = this.#candidates.get(model)?.counts;
    const j = this.#candidates.get(model)?.index.get(key.id);
    if (counts && counts.usage === before && j !== undefined) {
      counts.cur[j]++;
      counts.usage = this.#tracker.version(model);
    }
    return { id: key.id, secret, masked: key.masked, project: key.project, reservation };
  }

  #score(
    view: PoolView,
    key: GeminiKeyRecord,
    options: { limits: Limits | null; win: ModelWindow },
  ): number {
    const lim = options.limits;
    let headroom = 1;
    if (lim) {
      const u = this.#scopeUsage(view, key, options.win);
      if (lim.rpm !== null) headroom = Math.min(headroom, 1 - u.rpm / lim.rpm);
      if (lim.tpm !== null) headroom = Math.min(headroom, 1 - u.tpm / lim.tpm);
      if (lim.rpd !== null) headroom = Math.min(headroom, 1 - u.rpd / lim.rpd);
    }
    return adaptiveScore(this.#stats.get(key.id), Math.max(0, headroom));
  }

  #noKey(
    view: PoolView,
    model: string,
    options: {
      now: number;
      tokens: number;
      exclude: ReadonlySet<string>;
      win: ModelWindow;
      /** Consider only this key (a pinned request); `undefined` for all. */
      only?: GeminiKeyRecord;
    },
  ): NoKey {
    const { now } = options;
    let retryAt: number | null = null;
    let limited = false;
    const consider = (t: number) => {
      if (retryAt === null || t < retryAt) retryAt = t;
    };
    for (const key of options.only ? [options.only] : view.keys) {
      if (!key.enabled || key.invalid) continue;
      const projectCooldowns = key.project ? view.projects.get(key.project)?.cooldowns : undefined;
      const end = cooldownEnd(key, model, { now, projectCooldowns });
      if (end) {
        consider(end);
        continue;
      }
      const lim = keyLimits(view, key, model);
      const usage = this.#scopeUsage(view, key, options.win);
      if (hasLimits(lim) && wouldExceed(usage, lim, options.tokens)) {
        limited = true;
        consider(fitsAgainAt(usage, lim, { tokens: options.tokens, now }));
      } else if (options.exclude.has(key.id)) {
        consider(now + 1000);
      }
    }
    return { total: view.keys.length, retryAt, limited };
  }

  #patchKey(updated: GeminiKeyRecord | null): void {
    const view = this.#view.peek();
    if (!updated || !view) return;
    const keys = view.keys.map((r) => r.id === updated.id ? updated : r);
    this.#view.set(buildView({ ...view, keys }));
  }

  #patchProject(updated: ProjectRecord): void {
    const view = this.#view.peek();
    if (!view) return;
    const projects = new Map(view.projects);
    projects.set(updated.name, updated);
    this.#view.set(buildView({ ...view, projects }));
  }

  async #key(id: string): Promise<GeminiKeyRecord | null> {
    return this.#view.peek()?.byId.get(id) ?? await getGeminiKey(this.#kv, id);
  }

  /**
   * Marks a key invalid: it is not used again until a health check or an admin restores it. (The
   * failed attempt itself is fed to the adaptive statistics by `noteOutcome`.)
   */
  async markInvalid(id: string, reason: string): Promise<void> {
    const now = this.#now();
    this.#patchKey(
      await updateGeminiKey(this.#kv, id, (r) => ({
        ...r,
        invalid: { reason: clip(reason), at: now },
        health: noteHealthDay(r.health, { now, ok: false }),
        updatedAt: now,
      })),
    );
  }

  /**
   * Records a 429 of key `id` for `model`: the key's project (or the key itself when it names
   * none) rests by cause — per-minute: until `retryAfterMs` (or the default); per-day quota (or a
   * second 429 in a row that names one): until midnight Pacific; quota "0": until midnight Pacific
   * too — and limits named by the 429 are remembered.
   */
  async noteRateLimited(
    id: string,
    options: {
      model: string;
      retryAfterMs: number | null;
      defaultCooldownMs: number;
      body: string;
      reason: string;
    },
  ): Promise<void> {
    const now = this.#now();
    const key = await this.#key(id);
    if (!key) return;
    const report = readQuotaFailure(options.body);
    const scope = key.project ? `project '${key.project}'` : "key";
    const message = clip(options.reason);
    const decide = (prev: Cooldown | undefined): Cooldown => {
      if (report.noQuota) {
        return {
          until: nextPacificMidnight(now),
          cause: "no_quota",
          reason:
            `No quota for ${options.model} on this ${scope} (Google's limit is 0): ${message}`,
        };
      }
      const secondDayHint = report.mentionsPerDay && prev?.perDayHint === true &&
        prev.until > now - RECENT_429_MS;
      if (report.perDayOnly || secondDayHint) {
        return {
          until: nextPacificMidnight(now),
          cause: "daily_quota",
          reason: `Daily quota of ${options.model} used up on this ${scope}: ${message}`,
        };
      }
      return {
        until: now + (options.retryAfterMs ?? options.defaultCooldownMs),
        cause: "rate_limit",
        reason: `Rate limited on ${options.model}: ${message}`,
        ...(report.mentionsPerDay ? { perDayHint: true } : {}),
      };
    };
    const apply = <
      T extends { cooldowns: Record<string, Cooldown>; learned: Record<string, Limits> },
    >(
      r: T,
    ): T | undefined => {
      const cooldowns = recentCooldowns(r.cooldowns, now);
      const next = decide(r.cooldowns[options.model]);
      const existing = cooldowns[options.model];
      const learned = mergeLearned(r.learned, options.model, report.learned);
      const extend = !(existing && existing.until >= next.until);
      if (!extend && !learned) return undefined;
      if (extend) cooldowns[options.model] = next;
      return { ...r, cooldowns, learned: learned ?? r.learned, updatedAt: now };
    };
    if (key.project) {
      this.#patchProject(await updateProject(this.#kv, key.project, apply));
    } else {
      this.#patchKey(await updateGeminiKey(this.#kv, id, apply));
    }
  }

  /**
   * Counts an upstream error of a call to `options.model`; after a streak (or at once with `rest`,
   * e.g. after a timeout) the key rests for that model, longer with each further error. Other
   * models stay usable: Google's overloads and outages are per model, and a key resting for all of
   * them left a healthy model with no key while another was overloaded.
   */
  async noteError(
    id: string,
    reason: string,
    options: { model: string; rest?: boolean },
  ): Promise<void> {
    const now = this.#now();
    this.#patchKey(
      await updateGeminiKey(this.#kv, id, (r) => {
        const streak = r.consecutiveErrors + 1;
        const cooldowns = recentCooldowns(r.cooldowns, now);
        if (streak >= ERROR_STREAK_LIMIT || options.rest) {
          const ms = Math.min(
            MAX_ERROR_COOLDOWN_MS,
            ERROR_STREAK_COOLDOWN_MS * 2 ** Math.max(0, streak - ERROR_STREAK_LIMIT),
          );
          cooldowns[options.model] = {
            until: now + ms,
            cause: "errors",
            reason: streak >= ERROR_STREAK_LIMIT
              ? `${streak} upstream errors in a row: ${clip(reason)}`
              : `Resting after a timeout: ${clip(reason)}`,
          };
        }
        return { ...r, consecutiveErrors: streak, cooldowns, updatedAt: now };
      }),
    );
  }

  /**
   * Rests a key for `model` after Google refused to serve it from where it calls (its location):
   * for an hour, without counting an error (another key may be served from elsewhere).
   */
  async noteUnserved(id: string, reason: string, options: { model: string }): Promise<void> {
    const now = this.#now();
    this.#patchKey(
      await updateGeminiKey(this.#kv, id, (r) => {
        const cooldowns = recentCooldowns(r.cooldowns, now);
        cooldowns[options.model] = { until: now + UNSERVED_REST_MS, cause: "location", reason };
        return { ...r, cooldowns, updatedAt: now };
      }),
    );
  }

  /** Clears an error streak after a success (writes only when there was one). */
  async noteSuccess(id: string): Promise<void> {
    const cached = this.#view.peek()?.byId.get(id);
    if (cached && cached.consecutiveErrors === 0) return;
    this.#patchKey(
      await updateGeminiKey(
        this.#kv,
        id,
        (r) => r.consecutiveErrors === 0 ? undefined : { ...r, consecutiveErrors: 0 },
      ),
    );
  }

  /** Feeds the adaptive strategy: one attempt's outcome and, for a success, its latency. */
  noteOutcome(id: string, outcome: { ok: boolean; latencyMs?: number }): void {
    this.#stats.set(
      id,
      updateStats(this.#stats.get(id) ?? { success: 1, latencyMs: null }, outcome),
    );
  }

  /** Takes back the reservation of a pick whose request was never sent. */
  cancelPick(picked: PoolKey): void {
    this.#tracker.cancel(picked.reservation);
  }

  /**
   * Settles the reservations of a request's attempts once its usage is in KV: the served attempt
   * (the last, when `ok`) used `promptTokens` input tokens, the others none.
   */
  settleUsage(attempts: readonly Attempt[], options: { ok: boolean; promptTokens: number }): void {
    const entries: { reservation: Reservation; tokens: number }[] = [];
    attempts.forEach((a, i) => {
      if (!a.reservation) return;
      const served = options.ok && i === attempts.length - 1;
      entries.push({
        reservation: a.reservation as Reservation,
        tokens: served ? options.promptTokens : 0,
      });
    });
    if (entries.length) this.#tracker.commit(entries);
  }

  /** The masked form of a key, from the cached view (null when unknown). */
  maskedOf(id: string): string | null {
    return this.#view.peek()?.byId.get(id)?.masked ?? null;
  }
}
