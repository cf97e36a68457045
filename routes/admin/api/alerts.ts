/**
 * `/admin/api/alerts`: deployment problems no key can fix (Google refusing the server's location),
 * newest first; `DELETE /admin/api/alerts/{kind}` dismisses one (it comes back if it happens again).
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../../lib/gateway.ts";
import { OpenAiError } from "../../../lib/openai/errors.ts";
import { AlertKindSchema, clearAlert, listAlerts } from "../../../lib/store/alerts.ts";

/** Builds the alerts routes. */
export function alertsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    // Alerts this isolate noted and is still writing first.
    await gw.pool.alerts.settle();
    const alerts = await listAlerts(gw.kv, gw.now());
    return c.json({
      data: alerts.toSorted((a, b) => b.lastAt - a.lastAt).map((a) => ({
        kind: a.kind,
        message: a.message,
        first_at: new Date(a.firstAt).toISOString(),
        last_at: new Date(a.lastAt).toISOString(),
        count: a.count,
      })),
    });
  });

  app.delete("/:kind", async (c) => {
    const kind = AlertKindSchema.safeParse(c.req.param("kind"));
    if (!kind.success || !(await clearAlert(gw.kv, kind.data))) {
      throw new OpenAiError(404, `No alert of kind '${c.req.param("kind")}'`, {
        code: "alert_not_found",
      });
    }
    gw.pool.alerts.reset(kind.data);
    return c.body(null, 204);
  });

  return app;
}
