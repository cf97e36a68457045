/**
 * Response headers of the admin pages: a Content Security Policy that allows only this origin's
 * own scripts, styles, images and API calls (island props travel in JSON data blocks, which CSP
 * does not treat as scripts), no framing, no sniffing, and no caching of pages that carry tokens.
 */

/** The Content Security Policy of every admin page. */
export const ADMIN_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

/** Headers for an HTML page of the admin UI. */
export function pageHeaders(): Record<string, string> {
  return {
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": ADMIN_CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "cache-control": "no-store",
    vary: "cookie, accept-language",
  };
}
