/**
 * `/admin/api/user-keys`: create (the secret is shown once), list, patch, rotate (a new secret,
 * shown once, for the same key), revoke user keys, with their limits: requests per minute,
 * concurrent requests, budgets of tokens and requests per day and month, allowed models, expiry.
 */
import { deleteUserResponses } from "../../../lib/store/responses.ts";
import { deleteUserLimiterState } from "../../../lib/store/rate_limits.ts";
import { shownId } from "../../../lib/secrets.ts";
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { parseIpRange } from "../../../lib/auth/ip_ranges.ts";
import { readBody } from "../../../lib/openai/request.ts";
import {
  type Counts,
  emptyCounts,
  readUsageTotal,
  readUsageTotals,
} from "../../../lib/store/usage.ts";
import {
  type BudgetUsage,
  budgetUsageOf,
  emptyBudgetUsage,
  listBudgetUsage,
} from "../../../lib/store/user_budgets.ts";
import {
  createUserKey,
  deleteUserKey,
  listUserKeys,
  MAX_ROTATION_GRACE_MS,
  rotateUserKey,
  updateUserKey,
  type UserKeyRecord,
} from "../../../lib/store/user_keys.ts";

/** The shape of a user key's id (`uk_` and 20 hex digits). */
const USER_KEY_ID = /^uk_[0-9a-f]{20}$/;

/** A user key id from a path; anything else names no key (a 404, and no KV read). */
function userKeyId(id: string): string {
  if (!USER_KEY_ID.test(id)) throw userKeyNotFound(id);
  return id;
}

function userKeyNotFound(id: string): OpenAiError {
  return new OpenAiError(404, `No user key with id '${shownId(id)}'`, {
    code: "user_key_not_found",
  });
}

/** Deletes what a deleted user key leaves: its stored responses and its limiter state. */
async function deleteUserKeyData(kv: Deno.Kv, id: string): Promise<void> {
  await deleteUserResponses(kv, id);
  await deleteUserLimiterState(kv, id);
}

const limit = (max: number) => z.number().int().positive().max(max).nullable();
const ModelsSchema = z.array(
  z.string().trim().min(1).max(200).regex(/^[^*]*\*?$/, "only a trailing '*' is allowed"),
).min(1, "use null to allow every model").max(100).nullable();
const ExpirySchema = z.iso.datetime({ offset: true }).nullable();
const AllowedIpsSchema = z.array(
  z.string().trim().min(1).max(64).refine((s) => parseIpRange(s) !== null, {
    message: "not an IP address or CIDR range (203.0.113.7, 203.0.113.0/24, 2001:db8::/32)",
  }),
).min(1, "use null to allow every address").max(100).nullable();

/** The limits a user key can have, as the API names them. */
const LimitsShape = {
  rpm: limit(1_000_000).optional(),
  tokens_per_day: limit(1_000_000_000_000).optional(),
  requests_per_day: limit(1_000_000_000).optional(),
  tokens_per_month: limit(1_000_000_000_000).optional(),
  requests_per_month: limit(1_000_000_000).optional(),
  max_concurrency: limit(10_000).optional(),
  models: ModelsSchema.optional(),
  allowed_ips: AllowedIpsSchema.optional(),
  expires_at: ExpirySchema.optional(),
};

const CreateSchema = z.strictObject({
  name: z.string().trim().min(1).max(100),
  ...LimitsShape,
});

const PatchSchema = z.strictObject({
  name: z.string().trim().min(1).max(100).optional(),
  enabled: z.boolean().optional(),
  ...LimitsShape,
});

const RotateSchema = z.strictObject({
  /** How long the previous secret keeps working, in seconds (0: it stops now). */
  grace_seconds: z.number().int().min(0).max(MAX_ROTATION_GRACE_MS / 1000).optional(),
});

type Limits = Pick<
  UserKeyRecord,
  | "rpm"
  | "tokensPerDay"
  | "requestsPerDay"
  | "tokensPerMonth"
  | "requestsPerMonth"
  | "maxConcurrency"
  | "models"
  | "allowedIps"
  | "expiresAt"
>;

/** The limits a create or patch body sets (only the fields it names). */
function limitsOf(body: z.infer<typeof PatchSchema>): Partial<Limits> {
  const all: { [K in keyof Limits]: Limits[K] | undefined } = {
    rpm: body.rpm,
    tokensPerDay: body.tokens_per_day,
    requestsPerDay: body.requests_per_day,
    tokensPerMonth: body.tokens_per_month,
    requestsPerMonth: body.requests_per_month,
    maxConcurrency: body.max_concurrency,
    models: body.models,
    allowedIps: body.allowed_ips,
    expiresAt: parseExpiry(body.expires_at),
  };
  return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined));
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** The admin view of a user key (never the secret or its hash). */
export function userKeyView(
  r: UserKeyRecord,
  options: { usage?: Counts; budgets?: BudgetUsage; now?: number } = {},
) {
  const usage = options.usage ?? emptyCounts();
  const budgets = options.budgets ?? emptyBudgetUsage();
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    enabled: r.enabled,
    rpm: r.rpm,
    tokens_per_day: r.tokensPerDay,
    requests_per_day: r.requestsPerDay,
    tokens_per_month: r.tokensPerMonth,
    requests_per_month: r.requestsPerMonth,
    max_concurrency: r.maxConcurrency,
    models: r.models,
    allowed_ips: r.allowedIps,
    expires_at: iso(r.expiresAt),
    expired: r.expiresAt !== null && options.now !== undefined && r.expiresAt <= options.now,
    rotated_at: iso(r.rotatedAt),
    // While a rotation's grace period runs: until when the previous secret still works.
    previous_valid_until:
      r.previous && (options.now === undefined || r.previous.until > options.now)
        ? iso(r.previous.until)
        : null,
    ...budgets,
    usage: {
      requests: usage.req,
      failed: usage.fail,
      input_tokens: usage.in,
      output_tokens: usage.out,
    },
    created_at: new Date(r.createdAt).toISOString(),
    updated_at: new Date(r.updatedAt).toISOString(),
  };
}

function parseExpiry(value: string | null | undefined): number | null | undefined {
  return value === undefined ? undefined : value === null ? null : Date.parse(value);
}

/**
 * The whole view of one key, usage included (this isolate's batch written first): the admin UI
 * shows an edit's answer in place of the old row.
 */
async function viewWithUsage(gw: Gateway, record: UserKeyRecord, now: number) {
  await gw.usage.flush();
  const [usage, budgets] = await Promise.all([
    readUsageTotal(gw.kv, "user", record.id),
    budgetUsageOf(gw.kv, record.id, now),
  ]);
  return userKeyView(record, { usage, budgets, now });
}

/** Builds the user-key admin routes. */
export function userKeysRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    // This isolate's batched usage first, so usage and tokens today include its own requests.
    await gw.usage.flush();
    const now = gw.now();
    const [records, usage, budgets] = await Promise.all([
      listUserKeys(gw.kv),
      readUsageTotals(gw.kv, "user"),
      listBudgetUsage(gw.kv, now),
    ]);
    return c.json({
      data: records.map((r) =>
        userKeyView(r, { usage: usage[r.id], budgets: budgets.get(r.id), now })
      ),
    });
  });

  app.post("/", async (c) => {
    const body = await readBody(c.req.raw, CreateSchema);
    const now = gw.now();
    const { record, secret } = await createUserKey(gw.kv, {
      name: body.name,
      ...limitsOf(body),
      now,
    });
    return c.json({ ...userKeyView(record, { now }), key: secret }, 201);
  });

  app.patch("/:id", async (c) => {
    const id = userKeyId(c.req.param("id"));
    const patch = await readBody(c.req.raw, PatchSchema);
    const now = gw.now();
    const limits = limitsOf(patch);
    const updated = await updateUserKey(gw.kv, id, (r) => ({
      ...r,
      ...limits,
      name: patch.name ?? r.name,
      enabled: patch.enabled ?? r.enabled,
      updatedAt: now,
    }));
    if (!updated) throw userKeyNotFound(id);
    gw.users.invalidate();
    return c.json(await viewWithUsage(gw, updated, now));
  });

  app.post("/:id/rotate", async (c) => {
    const id = userKeyId(c.req.param("id"));
    const body = await readBody(c.req.raw, RotateSchema, { empty: {} });
    const now = gw.now();
    const rotated = await rotateUserKey(gw.kv, id, {
      graceMs: (body.grace_seconds ?? 0) * 1000,
      now,
    });
    if (!rotated) throw userKeyNotFound(id);
    gw.users.invalidate();
    return c.json({ ...(await viewWithUsage(gw, rotated.record, now)), key: rotated.secret });
  });

  app.delete("/:id", async (c) => {
    const id = userKeyId(c.req.param("id"));
    if (!(await deleteUserKey(gw.kv, id))) throw userKeyNotFound(id);
    gw.users.invalidate();
    // Its stored conversations (`/v1/responses`) and its limiter state go with it.
    gw.background.run("Deleting a user key's data", () => deleteUserKeyData(gw.kv, id));
    return c.body(null, 204);
  });

  return app;
}
