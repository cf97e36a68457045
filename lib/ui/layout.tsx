/**
 * The HTML document around every admin page: head with the hashed stylesheet and bundle, the top
 * bar with navigation, language switch and logout, and the page's language for everything inside.
 */
import type { ComponentChildren } from "preact";
import type { PageAssets } from "./assets.ts";
import { type Lang, LangContext, type MessageKey, translator } from "./i18n.ts";

/** The pages of the navigation, in order. */
export const NAV: { id: string; href: string; label: MessageKey }[] = [
  { id: "dashboard", href: "/admin", label: "nav.dashboard" },
  { id: "keys", href: "/admin/keys", label: "nav.keys" },
  { id: "user-keys", href: "/admin/user-keys", label: "nav.userKeys" },
  { id: "models", href: "/admin/models", label: "nav.models" },
  { id: "settings", href: "/admin/settings", label: "nav.settings" },
  { id: "logs", href: "/admin/logs", label: "nav.logs" },
];

/** What the layout needs to know about the page. */
export interface LayoutProps {
  lang: Lang;
  title: string;
  assets: PageAssets;
  /** The current path with query, for the language switch to return to. */
  path: string;
  /** The nav entry to highlight. */
  active?: string;
  /** The session's CSRF token; present when logged in. */
  csrf?: string;
  children: ComponentChildren;
}

/** The admin page document. */
export function Layout(props: LayoutProps) {
  const t = translator(props.lang);
  const other: Lang = props.lang === "en" ? "zh-CN" : "en";
  const switchHref = `/admin/lang?to=${encodeURIComponent(other)}&next=${
    encodeURIComponent(props.path)
  }`;
  return (
    <html lang={props.lang}>
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <meta name="referrer" content="same-origin" />
        {props.csrf ? <meta name="csrf-token" content={props.csrf} /> : null}
        <title>{`${props.title} · ${t("app.name")}`}</title>
        <link rel="icon" href="/static/favicon.svg" type="image/svg+xml" />
        <link rel="stylesheet" href={props.assets.css} />
        {props.assets.js ? <script type="module" src={props.assets.js} /> : null}
      </head>
      <body>
        <LangContext.Provider value={props.lang}>
          <a class="skip-link" href="#main">{t("app.skip")}</a>
          <header class="topbar">
            <div class="topbar-inner">
              <a class="brand" href="/admin">
                <svg class="brand-mark" viewBox="0 0 24 24" aria-hidden="true">
                  <path d="M12 2l2.4 7.6L22 12l-7.6 2.4L12 22l-2.4-7.6L2 12l7.6-2.4z" />
                </svg>
                <span>{t("app.name")}</span>
              </a>
              <div class="topbar-tools">
                <a
                  class="lang-switch"
                  href={switchHref}
                  hreflang={other}
                  lang={other}
                  aria-label={t("nav.switchLangLabel")}
                >
                  {t("nav.switchLang")}
                </a>
                {props.csrf
                  ? (
                    <form method="post" action="/admin/logout" class="logout-form">
                      <input type="hidden" name="_csrf" value={props.csrf} />
                      <button type="submit" class="btn btn-ghost">{t("nav.logout")}</button>
                    </form>
                  )
                  : null}
              </div>
            </div>
            {props.csrf
              ? (
                <nav class="nav" aria-label={t("nav.label")}>
                  <ul>
                    {NAV.map((item) => (
                      <li>
                        <a
                          href={item.href}
                          aria-current={item.id === props.active ? "page" : undefined}
                        >
                          {t(item.label)}
                        </a>
                      </li>
                    ))}
                  </ul>
                </nav>
              )
              : null}
          </header>
          <main id="main" tabindex={-1}>
            {props.children}
          </main>
        </LangContext.Provider>
      </body>
    </html>
  );
}
