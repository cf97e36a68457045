/**
 * MIME types that clients name (a multipart part's type, a data URL's, an audio format): checked
 * before they reach Gemini, where some become an upload header that a stray character (a line
 * break, a letter beyond Latin-1) would make impossible to send.
 */

const MIME_TYPE = /^[\w.+-]+\/[\w.+-]+$/;

/** Whether `value` is a plain `type/subtype` MIME type (letters, digits, `.+-_`; no parameters). */
export function isMimeType(value: string): boolean {
  return MIME_TYPE.test(value);
}
