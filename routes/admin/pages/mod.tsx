/**
 * The admin web UI under `/admin`: login and logout, the language switch, and the pages
 * (dashboard, Gemini keys, user keys, models and rotation, settings, request log). Pages read the
 * admin API in-process as the logged-in session and hand the data to their islands as props.
 */
import { Hono } from "hono";
import type { ComponentChildren } from "preact";
import type { Gateway } from "../../../lib/gateway.ts";
import { type MessageKey, type Translator, translator } from "../../../lib/ui/i18n.ts";
import { formatDateTime } from "../../../lib/ui/format.ts";
import { Island } from "../../../lib/ui/island.tsx";
import { groupFields, settingsSchema } from "../../../lib/ui/settings_layout.ts";
import {
  AlertListSchema,
  type AlertView,
  AliasesSchema,
  type AuditEntryView,
  AuditLogSchema,
  JobListSchema,
  KeyListSchema,
  LimitsListSchema,
  ModelListSchema,
  ProjectListSchema,
  RemovedKeyListSchema,
  RequestLogSchema,
  SettingsViewSchema,
  StatsSchema,
  UserKeyListSchema,
} from "../../../lib/ui/wire.ts";
import { RECENT } from "../../../islands/dashboard.tsx";
import { addSessionRoutes } from "../session.tsx";
import {
  ApiFailure,
  ApiFailureNotice,
  type PageContext,
  pageContext,
  type PageEnv,
  PageHead,
  type PagesOptions,
  renderPage,
  requestLang,
  requireSession,
} from "./page.tsx";
import { baseUrl, QuickStart } from "./quick_start.tsx";

/** How often the dashboard refreshes itself. */
export const DASHBOARD_REFRESH_SECONDS = 10;
/** Request log entries per page. */
export const LOG_PAGE = 100;

/** Treats a resource the admin API does not offer (404) as absent; other failures still throw. */
function optional(err: unknown): null {
  if (err instanceof ApiFailure && err.status === 404) return null;
  throw err;
}

type PageRenderer = (
  ctx: PageContext,
) => Promise<{ title: string; body: preact.ComponentChildren }>;

/** A deployment alert, with what to do about it (server-rendered, above the dashboard). */
function AlertNotice(props: { t: Translator; alert: AlertView }) {
  const { t, alert } = props;
  const what = alert.kind === "location" ? "alert.location" : "alert.freeTierLocation";
  return (
    <div class="notice notice-bad" role="alert" data-alert={alert.kind}>
      <strong>{t(`${what}.title`)}</strong>
      <p>{t(`${what}.body`)}</p>
      <p class="small">
        {t("alert.seen", {
          n: alert.count,
          first: formatDateTime(alert.first_at, t.lang),
          last: formatDateTime(alert.last_at, t.lang),
        })} <span class="key-text">{alert.message}</span>
      </p>
    </div>
  );
}

const dashboard: PageRenderer = async (ctx) => {
  const { t } = ctx;
  const title = t("dash.title");
  const quick = <QuickStart t={t} base={baseUrl(ctx.req, ctx.gw.config)} />;
  try {
    const [stats, keys, limits, log, settings, alerts] = await Promise.all([
      ctx.get("/admin/api/stats", StatsSchema),
      ctx.get("/admin/api/keys", KeyListSchema),
      ctx.get("/admin/api/limits?scopes=0", LimitsListSchema).catch(optional),
      ctx.get(`/admin/api/request-log?limit=${RECENT}`, RequestLogSchema).catch(optional),
      ctx.get("/admin/api/settings", SettingsViewSchema),
      ctx.get("/admin/api/alerts", AlertListSchema).catch(optional),
    ]);
    const removeAfter = settings.removeFailingKeysAfterDays;
    return {
      title,
      body: (
        <>
          <PageHead title={title} />
          {(alerts?.data ?? []).map((a) => <AlertNotice key={a.kind} t={t} alert={a} />)}
          <Island
            name="Dashboard"
            props={{
              stats,
              keys: keys.data,
              limits: limits?.data ?? null,
              recent: log?.data ?? null,
              removeAfterDays: typeof removeAfter === "number" ? removeAfter : null,
              at: ctx.gw.now(),
              refreshSeconds: DASHBOARD_REFRESH_SECONDS,
            }}
          />
          {quick}
        </>
      ),
    };
  } catch (err) {
    return {
      title,
      body: (
        <>
          <PageHead title={title} />
          <ApiFailureNotice t={t} error={err} />
          {quick}
        </>
      ),
    };
  }
};

const geminiKeys: PageRenderer = async (ctx) => {
  const title = ctx.t("keys.title");
  const [keys, removed] = await Promise.all([
    ctx.get("/admin/api/keys", KeyListSchema),
    ctx.get("/admin/api/removed-keys", RemovedKeyListSchema).catch(optional),
  ]);
  return {
    title,
    body: (
      <>
        <PageHead title={title} />
        <Island
          name="GeminiKeys"
          props={{ keys: keys.data, warnings: keys.warnings ?? [], removed: removed?.data ?? null }}
        />
      </>
    ),
  };
};

const userKeys: PageRenderer = async (ctx) => {
  const title = ctx.t("users.title");
  const keys = await ctx.get("/admin/api/user-keys", UserKeyListSchema);
  return {
    title,
    body: (
      <>
        <PageHead title={title} />
        <Island name="UserKeys" props={{ keys: keys.data }} />
      </>
    ),
  };
};

function Card(props: { id: string; title: string; help?: string; children: ComponentChildren }) {
  return (
    <section class="card" aria-labelledby={`${props.id}-title`} data-testid={props.id}>
      <h2 id={`${props.id}-title`}>{props.title}</h2>
      {props.help ? <p class="muted small">{props.help}</p> : null}
      {props.children}
    </section>
  );
}

const models: PageRenderer = async (ctx) => {
  const { t } = ctx;
  const title = t("models.title");
  const [settings, keys, modelList, aliases, limits, projects] = await Promise.all([
    ctx.get("/admin/api/settings", SettingsViewSchema),
    ctx.get("/admin/api/keys", KeyListSchema),
    ctx.get("/admin/api/models", ModelListSchema).catch(optional),
    ctx.get("/admin/api/aliases", AliasesSchema).catch(optional),
    ctx.get("/admin/api/limits?scopes=0", LimitsListSchema).catch(optional),
    ctx.get("/admin/api/projects", ProjectListSchema).catch(optional),
  ]);
  const schema = settingsSchema(settings);
  const fields = Object.keys(schema.properties ?? {});
  // Aliases have their own editor when the admin API offers them; otherwise the generic form.
  const sections = groupFields(fields, (id) => id === "rotation" || (!aliases && id === "aliases"));
  return {
    title,
    body: (
      <>
        <PageHead title={title} />
        <p class="muted">{t("models.rotationHelp")}</p>
        <Island name="SettingsForm" props={{ schema, values: settings, sections }} />
        <Card id="weights" title={t("models.weightsTitle")} help={t("models.weightsHelp")}>
          <Island name="KeyWeights" props={{ keys: keys.data }} />
        </Card>
        {modelList
          ? (
            <Card id="models" title={t("models.modelsTitle")} help={t("models.modelsHelp")}>
              <Island
                name="ModelsTable"
                props={{ models: modelList.data, upstreamError: modelList.upstream_error ?? null }}
              />
            </Card>
          )
          : null}
        {aliases
          ? (
            <Card id="aliases" title={t("models.aliases")} help={t("models.aliasesHelp")}>
              <Island
                name="Aliases"
                props={{
                  aliases: aliases.aliases,
                  models: (modelList?.data ?? []).map((m) => m.id),
                }}
              />
            </Card>
          )
          : null}
        {limits
          ? (
            <Card id="limits" title={t("limits.title")} help={t("limits.help")}>
              <Island name="ModelLimits" props={{ limits: limits.data }} />
            </Card>
          )
          : null}
        {projects
          ? (
            <Card id="projects" title={t("projects.title")} help={t("projects.help")}>
              <Island
                name="Projects"
                props={{
                  projects: projects.data,
                  keysWithoutProject: projects.keys_without_project ?? 0,
                }}
              />
            </Card>
          )
          : null}
      </>
    ),
  };
};

const settingsPage: PageRenderer = async (ctx) => {
  const { t } = ctx;
  const title = t("settings.title");
  const [settings, jobs] = await Promise.all([
    ctx.get("/admin/api/settings", SettingsViewSchema),
    ctx.get("/admin/api/jobs", JobListSchema).catch(optional),
  ]);
  const schema = settingsSchema(settings);
  const sections = groupFields(
    Object.keys(schema.properties ?? {}),
    (id) => id !== "rotation" && id !== "aliases",
  );
  return {
    title,
    body: (
      <>
        <PageHead title={title} />
        <p class="muted">{t("settings.help")}</p>
        {sections.length
          ? <Island name="SettingsForm" props={{ schema, values: settings, sections }} />
          : <p class="muted">{t("settings.nothing")}</p>}
        {jobs
          ? (
            <Card id="jobs" title={t("jobs.title")} help={t("jobs.help")}>
              <Island name="Jobs" props={{ jobs: jobs.data }} />
            </Card>
          )
          : null}
      </>
    ),
  };
};

/** Audit entries shown on the request log page (the API pages further). */
export const AUDIT_PAGE = 50;

function auditWho(t: Translator, actor: string): string {
  if (actor === "password") return t("audit.byPassword");
  if (actor.startsWith("session ")) return t("audit.bySession", { tag: actor.slice(8) });
  return t("audit.byNone");
}

const AUDIT_ACTIONS: Record<string, MessageKey> = {
  login: "audit.login",
  login_failed: "audit.login_failed",
  locked_out: "audit.locked_out",
  logout: "audit.logout",
};

function auditWhat(t: Translator, e: AuditEntryView): string {
  const key = AUDIT_ACTIONS[e.action];
  return key ? t(key) : `${e.method} ${e.path}`;
}

/** The admin activity table (server-rendered: it has nothing to click). */
function AuditTable(props: { t: Translator; entries: AuditEntryView[] }) {
  const { t } = props;
  if (!props.entries.length) return <p class="muted">{t("audit.none")}</p>;
  return (
    <div class="table-wrap">
      <table class="data responsive" data-testid="audit-log">
        <thead>
          <tr>
            <th scope="col">{t("audit.time")}</th>
            <th scope="col">{t("audit.what")}</th>
            <th scope="col">{t("audit.who")}</th>
            <th scope="col">{t("audit.address")}</th>
            <th scope="col" class="num">{t("audit.result")}</th>
          </tr>
        </thead>
        <tbody>
          {props.entries.map((e, i) => (
            <tr key={i}>
              <td class="small nowrap">{formatDateTime(e.time, t.lang)}</td>
              <td data-label={t("audit.what")} class={e.action === "api" ? "key-text" : undefined}>
                {auditWhat(t, e)}
              </td>
              <td data-label={t("audit.who")}>{auditWho(t, e.actor)}</td>
              <td data-label={t("audit.address")} class="small">{e.ip}</td>
              <td data-label={t("audit.result")} class="num">
                <span class={e.status < 400 ? "badge badge-active" : "badge badge-invalid"}>
                  {e.status}
                </span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const requestLog: PageRenderer = async (ctx) => {
  const { t } = ctx;
  const title = t("logs.title");
  const [log, audit] = await Promise.all([
    ctx.get(`/admin/api/request-log?limit=${LOG_PAGE}`, RequestLogSchema).catch(optional),
    ctx.get(`/admin/api/audit-log?limit=${AUDIT_PAGE}`, AuditLogSchema).catch(optional),
  ]);
  return {
    title,
    body: (
      <>
        <PageHead title={title} />
        <p class="muted">{t("logs.help")}</p>
        {log
          ? (
            <Island
              name="RequestLog"
              props={{ entries: log.data, hasMore: log.has_more ?? false, pageSize: LOG_PAGE }}
            />
          )
          : <p class="notice">{t("logs.unavailable")}</p>}
        {audit
          ? (
            <Card id="audit" title={t("audit.title")} help={t("audit.help")}>
              <AuditTable t={t} entries={audit.data} />
            </Card>
          )
          : null}
      </>
    ),
  };
};

/** Builds the `/admin` page routes (mount at `/admin`). */
export function adminPageRoutes(gw: Gateway, options: PagesOptions): Hono<PageEnv> {
  const app = new Hono<PageEnv>();
  addSessionRoutes(app, gw);
  const gate = requireSession(gw);
  const pages: [string, string, PageRenderer][] = [
    ["/", "dashboard", dashboard],
    ["/keys", "keys", geminiKeys],
    ["/user-keys", "user-keys", userKeys],
    ["/models", "models", models],
    ["/settings", "settings", settingsPage],
    ["/logs", "logs", requestLog],
  ];
  for (const [path, active, render] of pages) {
    app.get(path, gate, async (c) => {
      const ctx = pageContext(c, gw, options);
      let page: { title: string; body: ComponentChildren };
      try {
        page = await render(ctx);
      } catch (err) {
        // The admin API refused or failed: say so inside the page instead of a bare error.
        page = {
          title: ctx.t("error.title"),
          body: (
            <>
              <PageHead title={ctx.t("error.title")} />
              <ApiFailureNotice t={ctx.t} error={err} />
            </>
          ),
        };
      }
      return await renderPage({
        lang: ctx.lang,
        title: page.title,
        path: ctx.path,
        active,
        csrf: ctx.csrf,
        cookies: c.get("cookies"),
        body: page.body,
      });
    });
  }
  app.get("/*", async (c, next) => {
    if (c.req.path.startsWith("/admin/api/")) return await next();
    const lang = requestLang(c.req.raw);
    return await renderPage({
      lang,
      title: "404",
      path: c.req.path,
      status: 404,
      body: (
        <>
          <PageHead title="404" />
          <p>{translator(lang)("error.notFound")}</p>
          <p>
            <a href="/admin">/admin</a>
          </p>
        </>
      ),
    });
  });
  return app;
}
