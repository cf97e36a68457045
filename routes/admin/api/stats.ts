/**
 * `GET /admin/api/stats`: usage totals per key, model and user key, the last hour by minute, the
 * last day by hour and the last 30 days by day, and failed upstream attempts by cause.
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { listGeminiKeys } from "../../../lib/store/gemini_keys.ts";
import { type Counts, readUsageStats } from "../../../lib/store/usage.ts";
import { deletedUserKeyNames, listUserKeys } from "../../../lib/store/user_keys.ts";

function view(c: Counts) {
  return {
    requests: c.req,
    failed_requests: c.fail,
    attempts: c.att,
    errors: c.err,
    input_tokens: c.in,
    output_tokens: c.out,
    thinking_tokens: c.think,
  };
}

/** Builds the stats route. */
export function statsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => {
    // This isolate's batched usage first, so the answer includes its own requests.
    await gw.usage.flush();
    const [stats, keys, users, deleted] = await Promise.all([
      readUsageStats(gw.kv, gw.now()),
      listGeminiKeys(gw.kv),
      listUserKeys(gw.kv),
      deletedUserKeyNames(gw.kv),
    ]);
    const masked = new Map(keys.map((k) => [k.id, k.masked]));
    const names = new Map(users.map((u) => [u.id, u.name]));
    return c.json({
      totals: view(stats.totals),
      keys: Object.entries(stats.keys)
        .filter(([id]) => id !== "-")
        .map(([id, counts]) => ({ id, masked: masked.get(id) ?? null, ...view(counts) })),
      models: Object.entries(stats.models).map(([model, counts]) => ({ model, ...view(counts) })),
      users: Object.entries(stats.users).map(([id, counts]) => ({
        id,
        name: names.get(id) ?? deleted.get(id) ?? null,
        deleted: !names.has(id),
        ...view(counts),
      })),
      minutes: stats.minutes.map((b) => ({ t: new Date(b.t).toISOString(), ...view(b.counts) })),
      hours: stats.hours.map((b) => ({ t: new Date(b.t).toISOString(), ...view(b.counts) })),
      days: stats.days.map((b) => ({ t: new Date(b.t).toISOString(), ...view(b.counts) })),
      errors_by_cause: { last_24h: stats.causes.day, total: stats.causes.total },
    });
  });
  return app;
}
