import assert from "node:assert/strict";
import { inRange, ipAllowed, parseIp, parseIpRange } from "../../lib/auth/ip_ranges.ts";

Deno.test("IP addresses parse in both families, with compression, zones, brackets and IPv4-mapped forms", () => {
  assert.deepEqual([...parseIp("203.0.113.7")!], [203, 0, 113, 7]);
  assert.deepEqual([...parseIp("::ffff:203.0.113.7")!], [203, 0, 113, 7], "IPv4-mapped is IPv4");
  assert.deepEqual([...parseIp("::FFFF:cb00:7107")!], [203, 0, 113, 7]);
  assert.deepEqual([...parseIp("[::1]")!], [...new Array(15).fill(0), 1]);
  assert.deepEqual([...parseIp("fe80::1%eth0")!].slice(0, 2), [0xfe, 0x80]);
  assert.deepEqual(
    [...parseIp("2001:db8::8a2e:370:7334")!],
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0x8a, 0x2e, 0x03, 0x70, 0x73, 0x34],
  );
  assert.equal(parseIp("::")!.length, 16);
  for (
    const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "1.2.3.x",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      ":::",
      "12345::",
      "1:2:3:4:5:6:7::8",
      "localhost",
    ]
  ) assert.equal(parseIp(bad), null, bad);
});

Deno.test("CIDR ranges match by prefix and never across families", () => {
  const net = parseIpRange("203.0.113.0/24")!;
  assert.ok(inRange(net, parseIp("203.0.113.200")!));
  assert.ok(!inRange(net, parseIp("203.0.114.1")!));
  const odd = parseIpRange("10.0.0.0/9")!;
  assert.ok(inRange(odd, parseIp("10.127.255.255")!));
  assert.ok(!inRange(odd, parseIp("10.128.0.0")!));
  assert.ok(inRange(parseIpRange("0.0.0.0/0")!, parseIp("8.8.8.8")!));
  assert.ok(!inRange(parseIpRange("0.0.0.0/0")!, parseIp("2001:db8::1")!), "no cross-family match");
  const v6 = parseIpRange("2001:db8::/32")!;
  assert.ok(inRange(v6, parseIp("2001:db8:ffff::1")!));
  assert.ok(!inRange(v6, parseIp("2001:db9::1")!));
  assert.equal(parseIpRange("1.2.3.4/33"), null);
  assert.equal(parseIpRange("1.2.3.4/"), null);
  assert.equal(parseIpRange("1.2.3.4/8/8"), null);
  assert.equal(parseIpRange("::/129"), null);
  assert.equal(parseIpRange("::1/128")!.prefix, 128);
  assert.equal(parseIpRange("1.2.3.4")!.prefix, 32, "an address is a /32");
  // IPv4-mapped IPv6 ranges count their prefix out of 128.
  assert.deepEqual(parseIpRange("::ffff:10.0.0.0/104"), { bytes: [10, 0, 0, 0], prefix: 8 });
  assert.equal(parseIpRange("::ffff:10.0.0.0/24"), null, "a /24 of 128 bits is not a mapped range");
  assert.ok(inRange(parseIpRange("::ffff:10.0.0.0/104")!, parseIp("10.200.1.1")!));
});

Deno.test("an allow-list admits its addresses and ranges only", () => {
  const list = ["127.0.0.1", "2001:db8::/48"];
  assert.ok(ipAllowed(list, "127.0.0.1"));
  assert.ok(ipAllowed(list, "::ffff:127.0.0.1"));
  assert.ok(ipAllowed(list, "2001:db8:0:1::5"));
  assert.ok(!ipAllowed(list, "127.0.0.2"));
  assert.ok(!ipAllowed(list, "2001:db8:1::5"));
  assert.ok(!ipAllowed(list, "unknown"), "an address the server did not see is not allowed");
  assert.ok(!ipAllowed([], "127.0.0.1"), "an empty list allows nothing");
});
