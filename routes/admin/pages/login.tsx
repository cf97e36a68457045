/**
 * The login page: a plain HTML form (it works without JavaScript), or, with no admin password
 * configured, how to set one.
 */
import { CSRF_FIELD } from "../../../lib/auth/sessions.ts";
import { type Lang, translator } from "../../../lib/ui/i18n.ts";

/** What the login page shows. */
export type LoginState =
  | { kind: "form" }
  | { kind: "loggedOut" }
  | { kind: "wrong"; attemptsLeft: number }
  | { kind: "locked"; minutes: number }
  | { kind: "badForm" }
  | { kind: "crossSite" }
  | { kind: "unconfigured" };

/** Props of `LoginPage`. */
export interface LoginPageProps {
  lang: Lang;
  state: LoginState;
  next: string;
  formToken: string;
  onDeploy: boolean;
  /** True when the password in use was generated at first start (no ADMIN_PASSWORD). */
  generatedPassword: boolean;
}

/** The login page body. */
export function LoginPage(props: LoginPageProps) {
  const t = translator(props.lang);
  const s = props.state;
  if (s.kind === "unconfigured") {
    return (
      <section class="login card" aria-labelledby="login-title">
        <h1 id="login-title">{t("login.unconfiguredTitle")}</h1>
        <p data-testid="unconfigured">
          {props.onDeploy ? t("login.unconfiguredDeploy") : t("login.unconfiguredLocal")}
        </p>
      </section>
    );
  }
  let notice = null;
  if (s.kind === "wrong") {
    notice = (
      <div class="notice notice-bad" role="alert">{t("login.wrong", { n: s.attemptsLeft })}</div>
    );
  } else if (s.kind === "locked") {
    notice = (
      <div class="notice notice-bad" role="alert" data-testid="locked">
        {t("login.lockedOut", { minutes: s.minutes })}
      </div>
    );
  } else if (s.kind === "badForm") {
    notice = <div class="notice notice-warn" role="alert">{t("login.badForm")}</div>;
  } else if (s.kind === "crossSite") {
    notice = <div class="notice notice-bad" role="alert">{t("login.crossSite")}</div>;
  } else if (s.kind === "loggedOut") {
    notice = <div class="notice notice-ok" role="status">{t("login.loggedOut")}</div>;
  }
  return (
    <section class="login card" aria-labelledby="login-title">
      <h1 id="login-title">{t("login.heading")}</h1>
      <p class="muted">{t("login.intro")}</p>
      {notice}
      <form method="post" action="/admin/login">
        <input type="hidden" name={CSRF_FIELD} value={props.formToken} />
        <input type="hidden" name="next" value={props.next} />
        <div class="field">
          <label for="password">{t("login.password")}</label>
          <input
            id="password"
            name="password"
            type="password"
            required
            autocomplete="current-password"
            autofocus
          />
        </div>
        <button type="submit" class="btn btn-primary">{t("login.submit")}</button>
      </form>
      {props.generatedPassword
        ? <p class="muted small login-hint">{t("login.localHint")}</p>
        : null}
    </section>
  );
}
