/**
 * The admin API's answers as the UI reads them, as zod schemas (loose: fields added to the API later
 * pass through). Islands import only the types, so zod stays out of the browser bundle; the server
 * pages parse with the schemas.
 */
import * as z from "zod";

/** Usage counters of a Gemini key. */
export const KeyUsageSchema = z.looseObject({
  requests: z.number(),
  attempts: z.number().optional(),
  errors: z.number(),
  input_tokens: z.number(),
  output_tokens: z.number(),
});

/** A Gemini key as `GET /admin/api/keys` lists it (masked, never the secret). */
export const KeyViewSchema = z.looseObject({
  id: z.string(),
  label: z.string(),
  masked: z.string(),
  enabled: z.boolean(),
  weight: z.number(),
  status: z.string(),
  status_reason: z.string().nullable().optional(),
  status_until: z.string().nullable().optional(),
  cooldowns: z.array(z.looseObject({
    model: z.string(),
    until: z.string().nullable(),
    reason: z.string(),
  })).optional(),
  status_cause: z.string().nullable().optional(),
  consecutive_errors: z.number().optional(),
  project: z.string().nullable().optional(),
  /** The outbound proxy, shown without its login; null: direct. */
  proxy: z.string().nullable().optional(),
  health: z.looseObject({
    checked_at: z.string().nullable(),
    result: z.string().nullable(),
    message: z.string().nullable(),
    /** UTC day -> "ok" or "fail". */
    days: z.record(z.string(), z.string()),
  }).optional(),
  usage: KeyUsageSchema.optional(),
  created_at: z.string().nullable().optional(),
});

/** A Gemini key in the UI. */
export type KeyView = z.infer<typeof KeyViewSchema>;

/** `GET /admin/api/keys`, with warnings about projects many keys share. */
export const KeyListSchema = z.looseObject({
  data: z.array(KeyViewSchema),
  warnings: z.array(z.string()).optional(),
});

/** `POST /admin/api/keys/{id}/check`: the probe's outcome and the key after it. */
export const KeyCheckSchema = z.looseObject({
  result: z.string(),
  message: z.string().nullable(),
  key: KeyViewSchema,
});

/** The outcome of testing a key. */
export type KeyCheck = z.infer<typeof KeyCheckSchema>;

/** A key the cleanup (or an admin) moved out of the pool. */
export const RemovedKeySchema = z.looseObject({
  id: z.string(),
  label: z.string(),
  masked: z.string(),
  project: z.string().nullable().optional(),
  removed_at: z.string(),
  reason: z.string(),
  invalid_reason: z.string().nullable().optional(),
});

/** A removed key. */
export type RemovedKey = z.infer<typeof RemovedKeySchema>;

/** `GET /admin/api/removed-keys`. */
export const RemovedKeyListSchema = z.looseObject({ data: z.array(RemovedKeySchema) });

/** `POST /admin/api/keys`: what happened to each pasted key. */
export const AddKeysResultSchema = z.looseObject({
  added: z.number(),
  duplicates: z.number(),
  rejected: z.array(z.looseObject({ key: z.string(), reason: z.string() })).optional(),
  data: z.array(KeyViewSchema),
  warnings: z.array(z.string()).optional(),
});

/** The answer to a batch add. */
export type AddKeysResult = z.infer<typeof AddKeysResultSchema>;

/** A user key as `GET /admin/api/user-keys` lists it (never the secret). */
export const UserKeyViewSchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  prefix: z.string(),
  enabled: z.boolean(),
  rpm: z.number().nullable(),
  tokens_per_day: z.number().nullable().optional(),
  requests_per_day: z.number().nullable().optional(),
  tokens_per_month: z.number().nullable().optional(),
  requests_per_month: z.number().nullable().optional(),
  max_concurrency: z.number().nullable().optional(),
  /** Allowed models (a trailing `*` matches a prefix); null or empty: all. */
  models: z.array(z.string()).nullable().optional(),
  /** Client addresses and CIDR ranges the key may be used from; null: any. */
  allowed_ips: z.array(z.string()).nullable().optional(),
  expires_at: z.string().nullable().optional(),
  expired: z.boolean().optional(),
  tokens_today: z.number().optional(),
  requests_today: z.number().optional(),
  tokens_this_month: z.number().optional(),
  requests_this_month: z.number().optional(),
  rotated_at: z.string().nullable().optional(),
  /** While a rotation's grace period runs: until when the previous secret works. */
  previous_valid_until: z.string().nullable().optional(),
  usage: z.looseObject({
    requests: z.number(),
    failed: z.number().optional(),
    input_tokens: z.number(),
    output_tokens: z.number(),
  }).optional(),
  created_at: z.string().optional(),
});

/** A user key in the UI. */
export type UserKeyView = z.infer<typeof UserKeyViewSchema>;

/** `GET /admin/api/user-keys`. */
export const UserKeyListSchema = z.looseObject({ data: z.array(UserKeyViewSchema) });

/** `POST /admin/api/user-keys`: the new key with its secret, shown once. */
export const CreatedUserKeySchema = UserKeyViewSchema.extend({ key: z.string() });

/** A freshly created user key. */
export type CreatedUserKey = z.infer<typeof CreatedUserKeySchema>;

/** Usage counters as `/admin/api/stats` reports them. */
export const CountsSchema = z.looseObject({
  requests: z.number(),
  failed_requests: z.number(),
  attempts: z.number(),
  errors: z.number(),
  input_tokens: z.number(),
  output_tokens: z.number(),
  thinking_tokens: z.number().optional(),
});

/** A set of usage counters. */
export type CountsView = z.infer<typeof CountsSchema>;

/** `GET /admin/api/stats`. */
export const StatsSchema = z.looseObject({
  totals: CountsSchema,
  keys: z.array(CountsSchema.extend({ id: z.string(), masked: z.string().nullable() })),
  models: z.array(CountsSchema.extend({ model: z.string() })),
  users: z.array(
    CountsSchema.extend({ id: z.string(), name: z.string().nullable(), deleted: z.boolean() }),
  ),
  minutes: z.array(CountsSchema.extend({ t: z.string() })),
  hours: z.array(CountsSchema.extend({ t: z.string() })),
  days: z.array(CountsSchema.extend({ t: z.string() })).optional(),
  /** Failed upstream attempts by cause (`rate_limited`, `daily_quota`, `invalid_key`, ...). */
  errors_by_cause: z.looseObject({
    last_24h: z.record(z.string(), z.number()),
    total: z.record(z.string(), z.number()),
  }).optional(),
});

/** Usage statistics. */
export type StatsView = z.infer<typeof StatsSchema>;

/** `GET /admin/api/settings`: the whole settings object (its fields grow with the gateway). */
export const SettingsViewSchema = z.record(z.string(), z.unknown());

/** The settings object. */
export type SettingsView = z.infer<typeof SettingsViewSchema>;

/** Requests per minute, tokens per minute, requests per day; null: no limit. */
export const LimitsSchema = z.looseObject({
  rpm: z.number().nullable(),
  tpm: z.number().nullable(),
  rpd: z.number().nullable(),
});

/** A set of limits. */
export type LimitsView = z.infer<typeof LimitsSchema>;

/** A model as `GET /admin/api/models` shows it: upstream listing merged with its configuration. */
export const ModelViewSchema = z.looseObject({
  id: z.string(),
  display_name: z.string().nullable().optional(),
  listed_upstream: z.boolean().optional(),
  configured: z.boolean().optional(),
  enabled: z.boolean(),
  limits: LimitsSchema,
});

/** A model. */
export type ModelView = z.infer<typeof ModelViewSchema>;

/** `GET /admin/api/models`. */
export const ModelListSchema = z.looseObject({
  data: z.array(ModelViewSchema),
  upstream_error: z.string().nullable().optional(),
});

/** The pool's effective limits for one model: the sum over usable quota scopes. */
export const EffectiveLimitSchema = z.looseObject({
  model: z.string(),
  defaults: LimitsSchema.optional(),
  pool: LimitsSchema,
  usable_keys: z.number(),
  usable_scopes: z.number().optional(),
  multiplier: z.number(),
});

/** Effective limits of a model. */
export type EffectiveLimit = z.infer<typeof EffectiveLimitSchema>;

/** `GET /admin/api/limits`. */
export const LimitsListSchema = z.looseObject({
  data: z.array(EffectiveLimitSchema),
  scopes: z.array(z.looseObject({ model: z.string(), scope: z.string() })).optional(),
});

/** A Google Cloud project as the keys' labels name it. */
export const ProjectViewSchema = z.looseObject({
  name: z.string(),
  keys: z.array(z.looseObject({ id: z.string(), masked: z.string() })),
  key_count: z.number(),
  warning: z.string().nullable().optional(),
  cooldowns: z.array(z.looseObject({
    model: z.string(),
    until: z.string(),
    reason: z.string(),
  })),
  learned: z.record(z.string(), z.unknown()).optional(),
  limits: z.record(z.string(), LimitsSchema).optional(),
});

/** A project. */
export type ProjectView = z.infer<typeof ProjectViewSchema>;

/** `GET /admin/api/projects`. */
export const ProjectListSchema = z.looseObject({
  data: z.array(ProjectViewSchema),
  keys_without_project: z.number().optional(),
  warnings: z.array(z.string()).optional(),
});

/** `GET /admin/api/aliases`. */
export const AliasesSchema = z.looseObject({ aliases: z.record(z.string(), z.string()) });

/** One request log entry (redacted: no prompt, answer or secret). */
export const RequestLogEntrySchema = z.looseObject({
  id: z.string(),
  time: z.string(),
  user_key_id: z.string().nullable().optional(),
  user_key_name: z.string().nullable().optional(),
  model: z.string(),
  key_id: z.string().nullable().optional(),
  key: z.string().nullable().optional(),
  status: z.number(),
  latency_ms: z.number(),
  input_tokens: z.number(),
  output_tokens: z.number(),
  attempts: z.number().optional(),
  error_class: z.string().nullable().optional(),
  request_id: z.string().nullable().optional(),
  api: z.string().nullable().optional(),
});

/** A request log entry. */
export type RequestLogEntryView = z.infer<typeof RequestLogEntrySchema>;

/** `GET /admin/api/request-log`. */
export const RequestLogSchema = z.looseObject({
  data: z.array(RequestLogEntrySchema),
  has_more: z.boolean().optional(),
});

/** A deployment alert, as `/admin/api/alerts` answers it. */
export const AlertViewSchema = z.looseObject({
  kind: z.string(),
  message: z.string(),
  first_at: z.string(),
  last_at: z.string(),
  count: z.number(),
});

/** A deployment alert. */
export type AlertView = z.infer<typeof AlertViewSchema>;

/** `GET /admin/api/alerts`. */
export const AlertListSchema = z.looseObject({ data: z.array(AlertViewSchema) });

/** One audit-log entry, as `/admin/api/audit-log` answers it. */
export const AuditEntrySchema = z.looseObject({
  time: z.string(),
  action: z.string(),
  actor: z.string(),
  ip: z.string(),
  method: z.string(),
  path: z.string(),
  status: z.number(),
  request_id: z.string().nullable().optional(),
});

/** An audit-log entry. */
export type AuditEntryView = z.infer<typeof AuditEntrySchema>;

/** `GET /admin/api/audit-log`. */
export const AuditLogSchema = z.looseObject({
  data: z.array(AuditEntrySchema),
  next_cursor: z.string().nullable().optional(),
});

/** A background job and its last run. */
export const JobViewSchema = z.looseObject({
  name: z.string(),
  last_run: z.looseObject({
    started_at: z.string(),
    finished_at: z.string(),
    ok: z.boolean(),
    report: z.unknown().optional(),
    error: z.string().nullable().optional(),
  }).nullable(),
});

/** A job. */
export type JobView = z.infer<typeof JobViewSchema>;

/** `GET /admin/api/jobs`. */
export const JobListSchema = z.looseObject({ data: z.array(JobViewSchema) });

/** The part of a JSON Schema the settings form understands (from `z.toJSONSchema`). */
export interface FieldSchema {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  description?: string;
  default?: unknown;
  properties?: Record<string, FieldSchema>;
  additionalProperties?: FieldSchema | boolean;
  items?: FieldSchema;
  anyOf?: FieldSchema[];
  oneOf?: FieldSchema[];
}
