/**
 * HTTP helpers for the admin UI tests that need no browser: reading cookies from responses,
 * logging in through the form, and pulling the CSRF token out of a page.
 */
import { ADMIN_PASSWORD } from "../integration/harness.ts";

/** A logged-in session: the cookie header to send and the session's CSRF token. */
export interface HttpSession {
  cookie: string;
  csrf: string;
}

/** The `name=value` parts of a response's `Set-Cookie` headers, by name. */
export function cookiesOf(res: Response): Map<string, { value: string; raw: string }> {
  const out = new Map<string, { value: string; raw: string }>();
  for (const raw of res.headers.getSetCookie()) {
    const [pair] = raw.split(";");
    const eq = pair.indexOf("=");
    out.set(pair.slice(0, eq).trim(), { value: pair.slice(eq + 1), raw });
  }
  return out;
}

/** The login form's token and its paired cookie. */
export async function loginForm(
  fetcher: (req: Request) => Response | Promise<Response>,
  base: string,
  headers: Record<string, string> = {},
): Promise<{ token: string; cookie: string; html: string; status: number }> {
  const res = await fetcher(new Request(`${base}/admin/login`, { headers }));
  const html = await res.text();
  const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1] ?? "";
  const [name, value] = [...cookiesOf(res)].find(([n]) => n.endsWith("gw_login")) ??
    ["gw_login", { value: "" }];
  return { token, cookie: `${name}=${value.value}`, html, status: res.status };
}

/** Posts the login form; returns the raw response (303 on success). */
export async function postLogin(
  fetcher: (req: Request) => Response | Promise<Response>,
  base: string,
  options: { password?: string; next?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  const form = await loginForm(fetcher, base, options.headers);
  return await fetcher(
    new Request(`${base}/admin/login`, {
      method: "POST",
      redirect: "manual",
      headers: {
        cookie: form.cookie,
        "content-type": "application/x-www-form-urlencoded",
        ...options.headers,
      },
      body: new URLSearchParams({
        _csrf: form.token,
        password: options.password ?? ADMIN_PASSWORD,
        next: options.next ?? "/admin",
      }),
    }),
  );
}

/** Logs in and reads the session's CSRF token from the dashboard. */
export async function loginHttp(
  fetcher: (req: Request) => Response | Promise<Response>,
  base: string,
  options: { password?: string } = {},
): Promise<HttpSession> {
  const res = await postLogin(fetcher, base, { password: options.password ?? ADMIN_PASSWORD });
  await res.body?.cancel();
  if (res.status !== 303) throw new Error(`Login failed with status ${res.status}`);
  const [name, { value }] = [...cookiesOf(res)].find(([n]) => n.endsWith("gw_session"))!;
  const cookie = `${name}=${value}`;
  const page = await fetcher(new Request(`${base}/admin/settings`, { headers: { cookie } }));
  const html = await page.text();
  const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(html)?.[1];
  if (!csrf) throw new Error("The page carries no CSRF token");
  return { cookie, csrf };
}
