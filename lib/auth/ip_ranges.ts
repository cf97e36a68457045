/**
 * IP allow-lists of user keys: addresses and CIDR ranges, IPv4 and IPv6 (`203.0.113.7`,
 * `203.0.113.0/24`, `2001:db8::/32`). An IPv4 address seen as IPv6 (`::ffff:203.0.113.7`) matches
 * IPv4 ranges. Pure functions; a parsed list is cached per list object.
 */

/** A parsed range: its family's bytes and how many leading bits must match. */
export interface IpRange {
  bytes: Uint8Array;
  prefix: number;
}

function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i])) return null;
    const n = Number(parts[i]);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | null {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i];
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIpv4(piece);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(piece)) return null;
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...new Array(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** An address as bytes (4 for IPv4, including IPv4-mapped IPv6; else 16), or null. */
export function parseIp(text: string): Uint8Array | null {
  let t = text.trim();
  if (t.startsWith("[") && t.endsWith("]")) t = t.slice(1, -1);
  const zone = t.indexOf("%");
  if (zone >= 0) t = t.slice(0, zone);
  if (!t.includes(":")) return parseIpv4(t);
  const v6 = parseIpv6(t);
  if (!v6) return null;
  const mapped = v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
  return mapped ? v6.slice(12) : v6;
}

/** A range (`address` or `address/prefix`), or null when it is not one. */
export function parseIpRange(text: string): IpRange | null {
  const [address, prefixText, extra] = text.trim().split("/");
  if (extra !== undefined) return null;
  const bytes = parseIp(address);
  if (!bytes) return null;
  const bits = bytes.length * 8;
  if (prefixText === undefined) return { bytes, prefix: bits };
  if (!/^\d{1,3}$/.test(prefixText)) return null;
  const prefix = Number(prefixText);
  return prefix <= bits ? { bytes, prefix } : null;
}

/** Whether `address` (bytes from `parseIp`) is in `range`. */
export function inRange(range: IpRange, address: Uint8Array): boolean {
  if (range.bytes.length !== address.length) return false;
  let bits = range.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((range.bytes[i] & mask) !== (address[i] & mask)) return false;
  }
  return true;
}

const parsedLists = new WeakMap<readonly string[], IpRange[]>();

/** Whether `address` (as the server saw it) is in one of `ranges` (texts, parsed once per list). */
export function ipAllowed(ranges: readonly string[], address: string): boolean {
  let parsed = parsedLists.get(ranges);
  if (!parsed) {
    parsed = ranges.map(parseIpRange).filter((r): r is IpRange => r !== null);
    parsedLists.set(ranges, parsed);
  }
  const bytes = parseIp(address);
  return bytes !== null && parsed.some((r) => inRange(r, bytes));
}
