/**
 * The path and query of a request URL, read without a URL parser on the hot path: middleware
 * that only routes by path would otherwise parse every request's URL once or twice more.
 */

/**
 * The pathname of an absolute URL, as `new URL(url).pathname` gives it. URLs that need
 * normalizing (percent escapes, dot segments, backslashes) go through the URL parser.
 */
export function urlPath(url: string): string {
  const scheme = url.indexOf("://");
  const start = scheme < 0 ? -1 : url.indexOf("/", scheme + 3);
  if (start < 0) return new URL(url).pathname;
  let end = url.length;
  for (let i = start; i < url.length; i++) {
    const ch = url.charCodeAt(i);
    if (ch === 63 /* ? */ || ch === 35 /* # */) {
      end = i;
      break;
    }
  }
  const path = url.slice(start, end);
  if (path.includes("%") || path.includes("/.") || path.includes("\\")) {
    return new URL(url).pathname;
  }
  return path;
}

/** Whether the query string of an absolute URL has parameter `name` (like `searchParams.has`). */
export function urlHasParam(url: string, name: string): boolean {
  const q = url.indexOf("?");
  if (q < 0) return false;
  return new URL(url).searchParams.has(name);
}
