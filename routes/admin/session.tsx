/**
 * Admin login and logout for the web UI, and the language switch. Login checks `ADMIN_PASSWORD`
 * (or the stored hash of a generated one), refuses forms started elsewhere, counts failures per
 * client and locks it out after too many; success sets the HttpOnly session cookie. Logins, failed
 * logins, lockouts and logouts go into the audit log.
 */
import type { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { isSecureRequest } from "../../lib/forwarded.ts";
import {
  clientAddress,
  createSession,
  CSRF_FIELD,
  csrfMatches,
  endSession,
  forgetLoginFailures,
  isCrossSite,
  loginFormToken,
  loginFormTokenMatches,
  readSession,
  recordLoginFailure,
  releaseLoginAttempt,
  reserveLoginAttempt,
  serializeCookie,
  sessionActor,
} from "../../lib/auth/sessions.ts";
import type { AdminCheck } from "../../lib/auth/admin_auth.ts";
import { auditEvent } from "../../lib/auth/audit.ts";
import type { AuditAction } from "../../lib/store/audit_log.ts";
import type { Gateway } from "../../lib/gateway.ts";
import { isLang, LANG_COOKIE, translator } from "../../lib/ui/i18n.ts";
import { LoginPage, type LoginState } from "./pages/login.tsx";
import { isAdminPath, type PageEnv, renderPage, requestLang, safeNext } from "./pages/page.tsx";

const LOGIN_BODY_LIMIT = 16 * 1024;
const LANG_COOKIE_MAX_AGE_S = 365 * 86_400;

async function loginResponse(
  gw: Gateway,
  req: Request,
  options: { state: LoginState; next: string; status: number; cookies?: string[] },
): Promise<Response> {
  const lang = requestLang(req);
  const form = loginFormToken(gw, req);
  return await renderPage({
    lang,
    title: translator(lang)("login.title"),
    path: `/admin/login?next=${encodeURIComponent(options.next)}`,
    status: options.status,
    islands: false,
    cookies: [...(options.cookies ?? []), form.cookie],
    body: (
      <LoginPage
        lang={lang}
        state={options.state}
        next={options.next}
        formToken={form.token}
        onDeploy={gw.config.onDeploy}
        generatedPassword={!gw.config.adminPassword && !gw.config.onDeploy}
      />
    ),
  });
}

/** Adds `/login`, `/logout` and `/lang` to the admin page routes. */
export function addSessionRoutes(app: Hono<PageEnv>, gw: Gateway): void {
  app.get("/login", async (c) => {
    const next = safeNext(c.req.query("next"));
    if (!gw.admin.configured) {
      return await loginResponse(gw, c.req.raw, {
        state: { kind: "unconfigured" },
        next,
        status: 503,
      });
    }
    if (await readSession(gw, c.req.raw)) return c.redirect(next, 303);
    const state: LoginState = c.req.query("out") ? { kind: "loggedOut" } : { kind: "form" };
    return await loginResponse(gw, c.req.raw, { state, next, status: 200 });
  });

  app.post(
    "/login",
    bodyLimit({ maxSize: LOGIN_BODY_LIMIT, onError: (c) => c.text("Login form too large", 413) }),
    async (c) => {
      const req = c.req.raw;
      const form = await c.req.parseBody();
      const field = (
        name: string,
      ) => (typeof form[name] === "string" ? form[name] as string : null);
      const next = safeNext(field("next"));
      if (!gw.admin.configured) {
        return await loginResponse(gw, req, { state: { kind: "unconfigured" }, next, status: 503 });
      }
      if (isCrossSite(req)) {
        return await loginResponse(gw, req, { state: { kind: "crossSite" }, next, status: 403 });
      }
      if (!loginFormTokenMatches(gw, req, { presented: field(CSRF_FIELD) })) {
        return await loginResponse(gw, req, { state: { kind: "badForm" }, next, status: 403 });
      }
      const client = clientAddress(c.env);
      const audit = (action: AuditAction, actor: string, res: Response) => {
        // A locked-out client may keep trying: its attempts are throttled in the log.
        const throttle = action === "locked_out";
        auditEvent(gw, req, { env: c.env, action, actor, status: res.status, throttle });
        return res;
      };
      // The check is reserved first, atomically: parallel posts cannot all be checked.
      const attempt = await reserveLoginAttempt(gw, client);
      if (!attempt.allowed) {
        return audit(
          "locked_out",
          "none",
          await lockedResponse(gw, req, next, attempt.refusedForMs),
        );
      }
      let check: AdminCheck;
      try {
        check = await gw.admin.check(field("password"));
      } catch (err) {
        await releaseLoginAttempt(gw, client);
        throw err;
      }
      if (check !== "ok") {
        const outcome = await recordLoginFailure(gw, client);
        if (outcome.lockedForMs > 0) {
          return audit(
            "locked_out",
            "none",
            await lockedResponse(gw, req, next, outcome.lockedForMs),
          );
        }
        return audit(
          "login_failed",
          "none",
          await loginResponse(gw, req, {
            state: { kind: "wrong", attemptsLeft: outcome.attemptsLeft },
            next,
            status: 401,
          }),
        );
      }
      await forgetLoginFailures(gw, client);
      const { cookie, active } = await createSession(gw, req);
      return audit("login", sessionActor(active), seeOther(next, cookie));
    },
  );

  app.post("/logout", bodyLimit({ maxSize: LOGIN_BODY_LIMIT }), async (c) => {
    const req = c.req.raw;
    const active = await readSession(gw, req);
    if (active) {
      const form = await c.req.parseBody();
      const token = typeof form[CSRF_FIELD] === "string" ? form[CSRF_FIELD] as string : null;
      if (isCrossSite(req) || !csrfMatches(active.session, token)) {
        return c.text("Logout refused: the form did not carry this session's CSRF token", 403);
      }
    }
    const res = seeOther("/admin/login?out=1", await endSession(gw, req));
    if (active) {
      auditEvent(gw, req, {
        env: c.env,
        action: "logout",
        actor: sessionActor(active),
        status: res.status,
      });
    }
    return res;
  });

  app.get("/lang", (c) => {
    const to = c.req.query("to");
    const back = c.req.query("next");
    const target = isAdminPath(back) ? back : "/admin";
    if (!isLang(to)) return seeOther(target);
    const secure = isSecureRequest(c.req.raw, gw.config);
    return seeOther(
      target,
      serializeCookie(LANG_COOKIE, to, { maxAge: LANG_COOKIE_MAX_AGE_S, secure }),
    );
  });
}

/** A 303 to `location` that no cache keeps, setting `cookie` when given. */
function seeOther(location: string, cookie?: string): Response {
  const headers = new Headers({ location, "cache-control": "no-store" });
  if (cookie) headers.append("set-cookie", cookie);
  return new Response(null, { status: 303, headers });
}

async function lockedResponse(
  gw: Gateway,
  req: Request,
  next: string,
  remainingMs: number,
): Promise<Response> {
  const res = await loginResponse(gw, req, {
    state: { kind: "locked", minutes: Math.max(1, Math.ceil(remainingMs / 60_000)) },
    next,
    status: 429,
  });
  res.headers.set("retry-after", String(Math.max(1, Math.ceil(remainingMs / 1000))));
  return res;
}
