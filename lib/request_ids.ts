/**
 * `X-Request-Id`s for the request log and the response header.
 *
 * @module
 */
import { randomId } from "./secrets.ts";

/**
 * `X-Request-Id`s: the client's own when it is a sane token; else this isolate's random prefix and
 * a counter, cheaper than a UUID. Each request's id is kept in `ids` for the request log. The
 * prefix starts with a letter: an id starting with `-` would be quoted in the log's CSV export
 * (as a spreadsheet formula could), and not be found as written there.
 */
export function requestIds(ids: WeakMap<Request, string>): (req: Request) => string {
  const prefix = randomId("r", 6);
  let count = 0;
  return (req) => {
    let id = req.headers.get("x-request-id");
    if (!id || id.length > 255 || /[^\w\-=]/.test(id)) id = `${prefix}-${(++count).toString(36)}`;
    ids.set(req, id);
    return id;
  };
}
