/**
 * `/admin/api/user-keys`: create (the secret is shown once), list, patch, revoke user keys.
 */
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { readBody } from "../../../lib/openai/request.ts";
import { type Counts, emptyCounts, readUsageStats } from "../../../lib/store/usage.ts";
import {
  createUserKey,
  deleteUserKey,
  listUserKeys,
  updateUserKey,
  type UserKeyRecord,
} from "../../../lib/store/user_keys.ts";

const CreateSchema = z.strictObject({
  name: z.string().trim().min(1).max(100),
  rpm: z.number().int().positive().max(1_000_000).nullish(),
});

const PatchSchema = z.strictObject({
  name: z.string().trim().min(1).max(100).optional(),
  enabled: z.boolean().optional(),
  rpm: z.number().int().positive().max(1_000_000).nullable().optional(),
});

/** The admin view of a user key (never the secret or its hash). */
export function userKeyView(r: UserKeyRecord, usage: Counts = emptyCounts()) {
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    enabled: r.enabled,
    rpm: r.rpm,
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

/** Builds the user-key admin routes. */
export function userKeysRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const [records, stats] = await Promise.all([
      listUserKeys(gw.kv),
      readUsageStats(gw.kv, gw.now()),
    ]);
    return c.json({ data: records.map((r) => userKeyView(r, stats.users[r.id])) });
  });

  app.post("/", async (c) => {
    const body = await readBody(c.req.raw, CreateSchema);
    const { record, secret } = await createUserKey(gw.kv, {
      name: body.name,
      rpm: body.rpm,
      now: gw.now(),
    });
    return c.json({ ...userKeyView(record), key: secret }, 201);
  });

  app.patch("/:id", async (c) => {
    const patch = await readBody(c.req.raw, PatchSchema);
    const updated = await updateUserKey(gw.kv, c.req.param("id"), (r) => ({
      ...r,
      name: patch.name ?? r.name,
      enabled: patch.enabled ?? r.enabled,
      rpm: patch.rpm === undefined ? r.rpm : patch.rpm,
      updatedAt: gw.now(),
    }));
    if (!updated) throw new OpenAiError(404, `No user key with id '${c.req.param("id")}'`);
    gw.users.invalidate();
    return c.json(userKeyView(updated));
  });

  app.delete("/:id", async (c) => {
    if (!(await deleteUserKey(gw.kv, c.req.param("id")))) {
      throw new OpenAiError(404, `No user key with id '${c.req.param("id")}'`);
    }
    gw.users.invalidate();
    return c.body(null, 204);
  });

  return app;
}
