/**
 * CORS for the API surfaces (`/v1`, `/v1beta`, `/upload`), so that chat apps running in a browser
 * can call the gateway from their own origin. Keys travel in headers, never in cookies, so any
 * origin may call (`*`, without credentials). The admin area sends no CORS headers: its session
 * cookie and CSRF token are for its own pages only.
 */

/** Response headers a browser script may read besides the simple ones. */
const EXPOSED = ["x-request-id", "retry-after"].join(", ");

/** Whether `path` belongs to an API surface that answers cross-origin calls. */
export function isApiPath(path: string): boolean {
  return path.startsWith("/v1/") || path.startsWith("/v1beta/") || path.startsWith("/upload/") ||
    path === "/v1" || path === "/v1beta";
}

/** The answer to a preflight `OPTIONS` request (no key needed, nothing else runs). */
export function preflightResponse(req: Request): Response {
  const headers = new Headers({
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
    "access-control-max-age": "86400",
  });
  // `*` would not cover `Authorization`: the headers asked for are allowed by name.
  const asked = req.headers.get("access-control-request-headers");
  if (asked) headers.set("access-control-allow-headers", asked);
  return new Response(null, { status: 204, headers });
}

/**
 * Adds the CORS headers of an API answer to `headers` (keeping headers a route exposes); headers
 * that have them already (a response copied after it was finished) are left as they are.
 */
export function addCorsHeaders(headers: Headers): void {
  headers.set("access-control-allow-origin", "*");
  const exposed = headers.get("access-control-expose-headers");
  if (exposed?.endsWith(EXPOSED)) return;
  headers.set("access-control-expose-headers", exposed ? `${exposed}, ${EXPOSED}` : EXPOSED);
}
