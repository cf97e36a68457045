/**
 * What every admin page shares: the request's language, the session gate, reading the admin API
 * in-process with the caller's own session (so pages show exactly what the API offers), and turning
 * a page into an HTML response with the admin security headers.
 */
import type { Context, MiddlewareHandler } from "hono";
import type { ComponentChildren } from "preact";
import { renderToString } from "preact-render-to-string";
import type * as z from "zod";
import type { ActiveSession } from "../../../lib/auth/sessions.ts";
import { readCookie, readSession, renewSession } from "../../../lib/auth/sessions.ts";
import type { Gateway } from "../../../lib/gateway.ts";
import { pageAssets } from "../../../lib/ui/assets.ts";
import {
  type Lang,
  LANG_COOKIE,
  pickLang,
  type Translator,
  translator,
} from "../../../lib/ui/i18n.ts";
import { Layout } from "../../../lib/ui/layout.tsx";
import { pageHeaders } from "../../../lib/ui/security.ts";

/** Hono environment of the page routes. */
export interface PageEnv {
  Variables: { session: ActiveSession; cookies: string[] };
}

/** How pages reach the admin API: the app's own fetch, called in-process. */
export interface PagesOptions {
  api: (req: Request) => Response | Promise<Response>;
}

/** An admin API call that did not succeed. */
export class ApiFailure extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = "ApiFailure";
    this.status = status;
  }
}

/** The language of a request. */
export function requestLang(req: Request): Lang {
  return pickLang(req.headers.get("accept-language"), readCookie(req, LANG_COOKIE));
}

/** Whether `path` is a path of this site's admin area (not another site, not header-breaking). */
export function isAdminPath(path: string | null | undefined): path is string {
  return typeof path === "string" && /^\/admin(?:[/?#]|$)/.test(path) &&
    /^[\x21-\x7e]+$/.test(path) && !path.includes("\\") && !path.includes("//");
}

/** A safe place to return to after login: an admin page, never another site or the login itself. */
export function safeNext(next: string | null | undefined, fallback = "/admin"): string {
  if (!isAdminPath(next)) return fallback;
  if (/^\/admin\/(login|logout|lang)\b/.test(next)) return fallback;
  return next;
}

/** The path and query of a request. */
export function pathOf(req: Request): string {
  const url = new URL(req.url);
  return url.pathname + url.search;
}

/** Sends visitors without a live session to the login page; renews sessions past half-life. */
export function requireSession(gw: Gateway): MiddlewareHandler<PageEnv> {
  return async (c, next) => {
    const active = gw.admin.configured ? await readSession(gw, c.req.raw) : null;
    if (!active) {
      return c.redirect(`/admin/login?next=${encodeURIComponent(pathOf(c.req.raw))}`, 303);
    }
    const renewed = await renewSession(gw, c.req.raw, { active });
    c.set("session", active);
    c.set("cookies", renewed ? [renewed] : []);
    await next();
  };
}

/** Everything a page renderer needs. */
export interface PageContext {
  gw: Gateway;
  req: Request;
  lang: Lang;
  t: Translator;
  path: string;
  csrf: string;
  /** Reads an admin API resource as this session; throws `ApiFailure` on an error answer. */
  get<S extends z.ZodType>(path: string, schema: S): Promise<z.infer<S>>;
}

/** Builds the page context of a request that passed `requireSession`. */
export function pageContext(
  c: Context<PageEnv>,
  gw: Gateway,
  options: PagesOptions,
): PageContext {
  const req = c.req.raw;
  const lang = requestLang(req);
  return {
    gw,
    req,
    lang,
    t: translator(lang),
    path: pathOf(req),
    csrf: c.get("session").session.csrf,
    async get(path, schema) {
      const headers = new Headers({ accept: "application/json" });
      for (const name of ["cookie", "x-forwarded-proto"]) {
        const value = req.headers.get(name);
        if (value) headers.set(name, value);
      }
      const res = await options.api(new Request(new URL(path, req.url), { headers }));
      const text = await res.text();
      let json: unknown = null;
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
      if (!res.ok) {
        const message = (json as { error?: { message?: string } } | null)?.error?.message ??
          `HTTP ${res.status}`;
        throw new ApiFailure(res.status, message);
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        throw new ApiFailure(
          502,
          `Unexpected answer from ${path}: ${parsed.error.issues[0]?.message}`,
        );
      }
      return parsed.data;
    },
  };
}

/** Options of `renderPage`. */
export interface RenderOptions {
  lang: Lang;
  title: string;
  path: string;
  active?: string;
  csrf?: string;
  status?: number;
  cookies?: string[];
  /** False for pages without islands (login): the bundle is not loaded there. */
  islands?: boolean;
  body: ComponentChildren;
}

/** Renders a full admin page into an HTML response with the security headers. */
export async function renderPage(options: RenderOptions): Promise<Response> {
  const built = await pageAssets();
  const assets = options.islands === false ? { ...built, js: null } : built;
  const html = "<!DOCTYPE html>" + renderToString(
    <Layout
      lang={options.lang}
      title={options.title}
      assets={assets}
      path={options.path}
      active={options.active}
      csrf={options.csrf}
    >
      {options.body}
    </Layout>,
  );
  const headers = new Headers(pageHeaders());
  for (const cookie of options.cookies ?? []) headers.append("set-cookie", cookie);
  return new Response(html, { status: options.status ?? 200, headers });
}

/** The header of a page: its title and optional tools on the right. */
export function PageHead(props: { title: string; children?: ComponentChildren }) {
  return (
    <div class="page-head">
      <h1>{props.title}</h1>
      {props.children}
    </div>
  );
}

/** A notice that an admin API call failed. */
export function ApiFailureNotice(props: { t: Translator; error: unknown }) {
  const e = props.error;
  const status = e instanceof ApiFailure ? e.status : 500;
  const message = e instanceof Error ? e.message : String(e);
  return (
    <div class="notice notice-bad" role="alert">
      {props.t("error.api", { status, message })}
    </div>
  );
}
