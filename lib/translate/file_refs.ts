/**
 * The Gemini files a native request body names, found in the parsed JSON (what Google reads), never
 * in its text: an escape (`files\/abc`, `"file\u0055ri"`) or a duplicate key cannot hide one from
 * the owner check and the key pinning. Pure.
 */

/**
 * A character of `files/` escaped in JSON text (`\/`, or `\u00XX` for one of its letters in either
 * case, or for `/`): text without one, and without `files/` itself, cannot name a file once parsed.
 */
const MAY_NAME_FILES = /files\/|\\\/|\\u00(?:[46][569c]|[57]3|2f)/i;

/** A Files API reference as Google writes it: `files/{id}`, or an http(s) URL ending in one. */
const FILE_URI =
  /^(?:https?:\/\/[A-Za-z0-9.-]+(?::\d{1,5})?(?:\/[A-Za-z0-9._~-]+)*\/)?(files\/[a-z0-9-]+)$/;
/** What Google may take for a Files API reference: `files/` not inside a word, in any case. */
const LOOKS_LIKE_FILE = /(?:^|[^a-z0-9])files(?:\/|%2f)/i;

/**
 * Whether the text of a JSON body may name a file once parsed. A body that cannot is forwarded as
 * it came (most requests: no walk, no new serialization).
 */
export function mayNameFiles(text: string): boolean {
  return MAY_NAME_FILES.test(text);
}

/** A key compared as Google's JSON parser may read it: `file_data`, `fileData`, any case. */
function keyIs(key: string, name: string): boolean {
  return key.length >= name.length && key.replaceAll("_", "").toLowerCase() === name;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The string values of `record` under the keys `names` (compared as `keyIs` does). */
function stringsUnder(record: Record<string, unknown>, name: string): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (typeof value === "string" && keyIs(key, name)) out.push(value);
  }
  return out;
}

/** A file reference found in a body: where it was (a part's `fileData`, or a batch's input). */
export interface NamedFile {
  uri: string;
  from: "fileData" | "batchInput";
}

/**
 * Every file a parsed body names: `fileData.fileUri` (and `file_data.file_uri`) wherever it is
 * (contents, nested requests, function responses), and a batch's `inputConfig.fileName` at the
 * top level or under `batch` (elsewhere, in a function's arguments say, such a key is only data).
 * Walked without recursion: no nesting depth can overflow the stack.
 */
export function namedFileUris(json: unknown): NamedFile[] {
  const out: NamedFile[] = [];
  // Each value with whether a batch's input may be named there (the top, or under `batch`).
  const stack: [unknown, boolean][] = [[json, true]];
  while (stack.length) {
    const [value, batchLevel] = stack.pop()!;
    if (Array.isArray(value)) {
      for (const item of value) {
        if (typeof item === "object" && item !== null) stack.push([item, false]);
      }
      continue;
    }
    if (!isRecord(value)) continue;
    for (const [key, inner] of Object.entries(value)) {
      if (typeof inner !== "object" || inner === null) continue;
      if (isRecord(inner)) {
        if (keyIs(key, "filedata")) {
          for (const uri of stringsUnder(inner, "fileuri")) out.push({ uri, from: "fileData" });
        } else if (batchLevel && keyIs(key, "inputconfig")) {
          for (const uri of stringsUnder(inner, "filename")) out.push({ uri, from: "batchInput" });
        }
      }
      stack.push([inner, batchLevel && keyIs(key, "batch")]);
    }
  }
  return out;
}

/** What a file URI in a request names. */
export type FileUriMeaning =
  /** A Files API file, by its name (`files/abc`): checked against the gateway's records. */
  | { kind: "file"; name: string }
  /** Something else (a YouTube or other web URL, a bucket): Google fetches it, no key owns it. */
  | { kind: "other" }
  /** It looks like a Files API file but is not spelled as Google writes one: refused. */
  | { kind: "malformed" };

/**
 * What `uri` names. `googleHost` tells whether a URL's host is the upstream's (where a `files/`
 * path is a Files API file); on other hosts such a path is only a web address.
 */
export function fileUriMeaning(
  uri: string,
  googleHost: (host: string) => boolean,
): FileUriMeaning {
  const m = FILE_URI.exec(uri);
  if (m) {
    // A full URL names a Files API file only on the Files API's host.
    const host = /^https?:\/\/([^/]+)/i.exec(uri)?.[1];
    return host === undefined || googleHost(host.toLowerCase())
      ? { kind: "file", name: m[1] }
      : { kind: "other" };
  }
  if (!LOOKS_LIKE_FILE.test(uri)) return { kind: "other" };
  // Another scheme (`gs://`) is never a Files API file.
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !/^https?:/i.test(uri)) return { kind: "other" };
  let url: URL | null = null;
  try {
    url = /^https?:\/\//i.test(uri) ? new URL(uri) : null;
  } catch {
    url = null;
  }
  return url && !googleHost(url.host.toLowerCase()) ? { kind: "other" } : { kind: "malformed" };
}
