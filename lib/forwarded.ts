/**
 * The client behind trusted reverse proxies (pure): the address the last of `hops` proxies saw,
 * from `X-Forwarded-For`, and the scheme the first one was reached with, from
 * `X-Forwarded-Proto`. Only for proxies the operator put there (`TRUST_PROXY`): anyone can send
 * these headers to a gateway reached directly.
 */
import { isIpLiteral } from "./ip.ts";

/** An address as `X-Forwarded-For` may spell it, or null when it is none. */
function addressOf(entry: string): string | null {
  let host = entry.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(host);
  if (bracketed) host = bracketed[1];
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(host)) host = host.slice(0, host.lastIndexOf(":"));
  return isIpLiteral(host) ? host : null;
}

/**
 * The client's address as the outermost of `hops` trusted proxies saw it: the `hops`-th entry of
 * `X-Forwarded-For` from the right (each proxy appends the address it was reached from). Null when
 * the header does not hold that many entries, or that one is not an address.
 */
export function forwardedClient(headers: Headers, hops: number): string | null {
  if (hops < 1) return null;
  const list = headers.get("x-forwarded-for");
  if (!list) return null;
  const entries = list.split(",");
  if (entries.length < hops) return null;
  return addressOf(entries[entries.length - hops]);
}

/** The connection info of a request as if it came from `address` (the same info otherwise). */
export function asFrom(info: Deno.ServeHandlerInfo, address: string): Deno.ServeHandlerInfo {
  const remote = info.remoteAddr as Deno.NetAddr;
  return { ...info, remoteAddr: { ...remote, hostname: address } };
}

/** Whether the first proxy was reached over https (`X-Forwarded-Proto`'s first entry). */
export function forwardedHttps(headers: Headers): boolean {
  return headers.get("x-forwarded-proto")?.split(",")[0].trim().toLowerCase() === "https";
}

/**
 * Whether the request reached us over https: its own scheme, or what Deno Deploy's proxy or a
 * trusted one (`trustProxy`) says.
 */
export function isSecureRequest(
  req: Request,
  options: { onDeploy: boolean; trustProxy?: number },
): boolean {
  if (new URL(req.url).protocol === "https:") return true;
  // Only Deploy's own proxy, or proxies the operator trusts (`TRUST_PROXY`), may tell the original
  // scheme; elsewhere anyone could send it.
  return (options.onDeploy || (options.trustProxy ?? 0) > 0) && forwardedHttps(req.headers);
}

/** A host (name or bracketed IPv6, with an optional port) as a `Host` header may spell it. */
const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

/**
 * The origin clients reach the gateway at: the request's own, or, behind proxies the operator
 * trusts (`trustProxy`), the scheme and host they forward (`X-Forwarded-Proto` also on Deno
 * Deploy, whose own proxy sets it). A forwarded host that is not a host is ignored.
 */
export function publicOrigin(
  req: Request,
  options: { onDeploy: boolean; trustProxy?: number },
): string {
  const url = new URL(req.url);
  const forwarded = (options.trustProxy ?? 0) > 0
    ? req.headers.get("x-forwarded-host")?.split(",")[0].trim()
    : undefined;
  const host = forwarded && HOST.test(forwarded) ? forwarded : url.host;
  return `${isSecureRequest(req, options) ? "https:" : url.protocol}//${host}`;
}
