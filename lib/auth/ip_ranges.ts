/**
 * IP allow-lists of user keys: addresses and CIDR ranges, IPv4 and IPv6 (`203.0.113.7`,
 * `203.0.113.0/24`, `2001:db8::/32`). An IPv4 address seen as IPv6 (`::ffff:203.0.113.7`) matches
 * IPv4 ranges. Pure functions (parsing is `lib/ip.ts`'s); a parsed list is cached per list object.
 */
import { parseIpv4, parseIpv6 } from "../ip.ts";

/** A parsed range: its family's bytes and how many leading bits must match. */
export interface IpRange {
  bytes: number[];
  prefix: number;
}

/** An address as bytes (4 for IPv4, including IPv4-mapped IPv6; else 16), or null. */
export function parseIp(text: string): number[] | null {
  const t = text.trim();
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
  if (prefixText === undefined) return { bytes, prefix: bytes.length * 8 };
  if (!/^\d{1,3}$/.test(prefixText)) return null;
  const prefix = Number(prefixText);
  // An IPv4-mapped IPv6 range counts its prefix out of 128: `::ffff:10.0.0.0/104` is 10.0.0.0/8.
  const mapped = bytes.length === 4 && address.includes(":");
  if (mapped) return prefix >= 96 && prefix <= 128 ? { bytes, prefix: prefix - 96 } : null;
  return prefix <= bytes.length * 8 ? { bytes, prefix } : null;
}

/** Whether `address` (bytes from `parseIp`) is in `range`. */
export function inRange(range: IpRange, address: readonly number[]): boolean {
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
