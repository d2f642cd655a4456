import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { parseRoutes } from "../../src/snapshot/parse.js";
import type { Family, Route } from "../../src/snapshot/route.js";

// The fixtures are output of iproute2 6.1 in a network namespace. README.md
// in the fixture folder lists the commands that built the tables.
function fixture(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`../fixtures/routes/${name}.json`, import.meta.url), "utf8"));
}

function fixtureEntries(name: string): Array<Record<string, unknown>> {
  return fixture(name) as Array<Record<string, unknown>>;
}

const ipv4 = parseRoutes(fixture("ipv4-main"), 4);
const ipv6 = parseRoutes(fixture("ipv6-main"), 6);

function only(routes: readonly Route[], dst: string): Route {
  const matches = routes.filter((route) => route.dst === dst);
  expect(matches, `routes to ${dst}`).toHaveLength(1);
  return matches[0] as Route;
}

describe("parseRoutes on ip 6.1 output", () => {
  it("keeps every route of the fixtures", () => {
    expect(ipv4).toHaveLength(36);
    expect(ipv6).toHaveLength(24);
  });

  it("writes default as an explicit prefix", () => {
    expect(only(ipv4, "0.0.0.0/0")).toEqual({
      family: 4,
      type: "unicast",
      dst: "0.0.0.0/0",
      gateway: "192.0.2.1",
      dev: "d0",
      protocol: "boot",
      scope: "global",
      metric: 100,
    });
    expect(only(ipv6, "::/0")).toEqual({
      family: 6,
      type: "unicast",
      dst: "::/0",
      gateway: "2001:db8:1::1",
      dev: "d0",
      protocol: "boot",
      scope: "global",
      metric: 1024,
      pref: "low",
    });
    expect([...ipv4, ...ipv6].map((route) => route.dst)).not.toContain("default");
  });

  it("reads connected route with prefsrc", () => {
    expect(only(ipv4, "192.0.2.0/24")).toEqual({
      family: 4,
      type: "unicast",
      dst: "192.0.2.0/24",
      dev: "d0",
      protocol: "kernel",
      scope: "link",
      prefsrc: "192.0.2.2",
    });
  });

  it("keeps multipath weights", () => {
    expect(only(ipv4, "198.18.0.0/24").nexthops).toEqual([
      { gateway: "192.0.2.1", dev: "d0", weight: 3 },
      { gateway: "198.51.100.1", dev: "d1", weight: 1 },
    ]);
    expect(only(ipv6, "2001:db8:12::/48").nexthops).toEqual([
      { gateway: "2001:db8:1::1", dev: "d0", weight: 2 },
      { gateway: "2001:db8:2::1", dev: "d1", weight: 7 },
    ]);
  });

  it("keeps onlink on routes and paths", () => {
    expect(only(ipv4, "198.18.1.0/24")).toMatchObject({ gateway: "198.18.255.1", dev: "d0", onlink: true });
    expect(only(ipv4, "198.18.18.0/24").nexthops).toEqual([
      { gateway: "192.0.2.1", dev: "d0", weight: 1, realms: "5" },
      { gateway: "2001:db8:2::1", dev: "d1", weight: 1, onlink: true },
    ]);
  });

  it("drops the linkdown flag", () => {
    expect(only(ipv4, "198.18.7.0/24")).toEqual({
      family: 4,
      type: "unicast",
      dst: "198.18.7.0/24",
      gateway: "203.0.113.2",
      dev: "va",
      protocol: "boot",
      scope: "global",
    });
    expect(only(ipv4, "203.0.113.0/30").dev).toBe("va");
  });

  it("drops dead paths and collapses the rest", () => {
    const raw = fixtureEntries("ipv4-main").find((entry) => entry.dst === "198.18.21.0/24");
    expect(JSON.stringify(raw)).toContain('"dead"');

    expect(only(ipv4, "198.18.21.0/24")).toEqual({
      family: 4,
      type: "unicast",
      dst: "198.18.21.0/24",
      gateway: "192.0.2.1",
      dev: "d0",
      protocol: "boot",
      scope: "global",
    });
    expect(only(ipv6, "2001:db8:21::/48")).toMatchObject({ gateway: "2001:db8:1::1", dev: "d0" });
    expect(only(ipv6, "2001:db8:21::/48").nexthops).toBeUndefined();
  });

  it("drops a route whose paths are all dead", () => {
    const json = [
      {
        type: "unicast",
        dst: "198.18.21.0/24",
        protocol: "boot",
        scope: "global",
        flags: [],
        nexthops: [
          { gateway: "198.18.90.1", dev: "d3", weight: 1, flags: ["dead", "linkdown"] },
          { gateway: "198.18.90.9", dev: "d3", weight: 1, flags: ["dead", "linkdown"] },
        ],
      },
      { type: "unicast", dst: "198.18.22.0/24", dev: "d3", flags: ["dead"] },
    ];

    expect(parseRoutes(json, 4)).toEqual([]);
  });

  it("copies resolved paths of nexthop objects", () => {
    expect(only(ipv4, "198.18.9.0/24")).toEqual({
      family: 4,
      type: "unicast",
      dst: "198.18.9.0/24",
      gateway: "192.0.2.1",
      dev: "d0",
      protocol: "boot",
      scope: "global",
    });
    expect(only(ipv4, "198.18.10.0/24").nexthops).toEqual([
      { gateway: "192.0.2.1", dev: "d0", weight: 5 },
      { gateway: "198.51.100.1", dev: "d1", weight: 2 },
    ]);
    expect(only(ipv4, "198.18.15.0/24")).toMatchObject({ gateway: "2001:db8:1::1", dev: "d0" });
    expect(only(ipv4, "198.18.16.0/24")).toMatchObject({ dev: "d1" });
    expect(only(ipv4, "198.18.16.0/24").gateway).toBeUndefined();
    expect(only(ipv6, "2001:db8:1b::/48").nexthops).toEqual([
      { gateway: "2001:db8:1::1", dev: "d0", weight: 3 },
      { gateway: "2001:db8:2::1", dev: "d1", weight: 4 },
    ]);
  });

  it("reads blackhole nexthop object as blackhole", () => {
    expect(only(ipv4, "198.18.14.0/24")).toEqual({
      family: 4,
      type: "blackhole",
      dst: "198.18.14.0/24",
      protocol: "boot",
      scope: "global",
    });
  });

  it("reads IPv6 gateway of IPv4 route", () => {
    expect(only(ipv4, "198.18.11.0/24")).toMatchObject({ gateway: "2001:db8:1::1", dev: "d0" });
  });

  it("reads reject routes without device", () => {
    for (const type of ["blackhole", "unreachable", "prohibit", "throw"]) {
      const routes4 = ipv4.filter((route) => route.type === type);
      const routes6 = ipv6.filter((route) => route.type === type);
      expect(routes4.length, `IPv4 ${type}`).toBeGreaterThan(0);
      expect(routes6.length, `IPv6 ${type}`).toBeGreaterThan(0);
      for (const route of [...routes4, ...routes6]) {
        expect(route.dev, `${route.dst} dev`).toBeUndefined();
      }
    }
    expect(only(ipv4, "198.18.3.0/24").metric).toBe(5);
    expect(only(ipv6, "2001:db8:14::/48").metric).toBe(10);
  });

  it("reads route metrics", () => {
    expect(only(ipv4, "198.18.6.0/24").metrics).toEqual({ mtu: 1400, advmss: 1360, initcwnd: 10 });
    expect(only(ipv4, "198.18.19.0/24").metrics).toEqual({
      window: 1000,
      rtt: 300,
      rttvar: 100,
      ssthresh: 7,
      cwnd: 5,
      reordering: 3,
      ecn: true,
      rto_min: 200,
      initrwnd: 20,
      quickack: 1,
      congctl: "cubic",
      fastopen_no_cookie: 1,
    });
    expect(only(ipv6, "2001:db8:17::/48").metrics).toEqual({ mtu: 1280, advmss: 1220, hoplimit: 10 });
  });

  it("reads IPv6 pref and metric", () => {
    expect(only(ipv6, "2001:db8:10::/48")).toMatchObject({ metric: 256, pref: "high" });
    expect(only(ipv6, "2001:db8:1::/64")).toMatchObject({ metric: 256, pref: "medium", protocol: "kernel" });
  });

  it("drops IPv6 expires", () => {
    const raw = fixtureEntries("ipv6-main").find((entry) => entry.dst === "2001:db8:11::/48");
    expect(raw?.expires).toBeTypeOf("number");

    expect(only(ipv6, "2001:db8:11::/48")).toEqual({
      family: 6,
      type: "unicast",
      dst: "2001:db8:11::/48",
      gateway: "2001:db8:1::1",
      dev: "d0",
      protocol: "boot",
      scope: "global",
      metric: 1024,
      pref: "medium",
    });
  });

  it("keeps protocol and scope names and numbers", () => {
    expect(only(ipv4, "198.18.8.0/24")).toMatchObject({ protocol: "babel", scope: "link", prefsrc: "192.0.2.2" });
    expect(only(ipv4, "198.18.17.0/24")).toMatchObject({ protocol: "200", metric: 7 });
    expect(only(ipv4, "198.18.22.0/24").scope).toBe("100");
    expect(only(ipv6, "2001:db8:19::/48")).toMatchObject({ protocol: "ra", prefsrc: "2001:db8:1::2" });
  });

  it("reads tos and realms", () => {
    expect(only(ipv4, "198.18.12.0/24").tos).toBe("0x10");
    expect(only(ipv4, "198.18.24.0/24").tos).toBe("AF11");
    expect(only(ipv4, "198.18.13.0/24").realms).toBe("3/4");
    expect(only(ipv4, "198.18.27.0/24").realms).toBe("3/cosmos");
  });

  it("reads IPv6 source prefix", () => {
    expect(only(ipv6, "2001:db8:18::/48").from).toBe("2001:db8:5::/64");
  });

  it("keeps host routes as printed", () => {
    expect(only(ipv4, "198.18.20.5").gateway).toBe("192.0.2.1");
    expect(only(ipv6, "2001:db8:1c::1").gateway).toBe("2001:db8:1::1");
  });

  it("keeps routes that differ only in device", () => {
    expect(ipv4.filter((route) => route.dst === "198.18.23.0/24").map((route) => route.dev)).toEqual(["d0", "d1"]);
    expect(ipv6.filter((route) => route.dst === "fe80::/64").map((route) => route.dev)).toEqual([
      "d0p",
      "d0",
      "d1p",
      "d1",
      "d3p",
    ]);
  });

  it("reads local, broadcast, multicast and anycast types", () => {
    expect(only(ipv4, "198.18.30.1")).toMatchObject({ type: "local", scope: "host", dev: "d0" });
    expect(only(ipv4, "198.18.30.255")).toMatchObject({ type: "broadcast", dev: "d0" });
    expect(only(ipv4, "224.1.0.0/16")).toMatchObject({ type: "multicast", dev: "d0" });
    expect(only(ipv6, "2001:db8:60::/64")).toMatchObject({ type: "anycast", dev: "d0" });
    expect(only(ipv6, "ff0e::/16")).toMatchObject({ type: "multicast", dev: "d0" });
  });

  it("reads numeric ip -N output", () => {
    for (const [name, family, named] of [
      ["ipv4-main-numeric", 4, ipv4],
      ["ipv6-main-numeric", 6, ipv6],
    ] as const) {
      const numeric = parseRoutes(fixture(name), family as Family);

      expect(numeric.map((route) => [route.type, route.dst])).toEqual(named.map((route) => [route.type, route.dst]));
    }
    const numeric4 = parseRoutes(fixture("ipv4-main-numeric"), 4);
    expect(only(numeric4, "198.18.8.0/24")).toMatchObject({ protocol: "42", scope: "253" });
    expect(only(numeric4, "198.18.24.0/24").tos).toBe("0x28");
    expect(only(numeric4, "198.18.27.0/24").realms).toBe("3/0");
  });
});

describe("parseRoutes with nexthop compat mode off", () => {
  it("rejects an unresolved nexthop group", () => {
    expect(() => parseRoutes(fixture("ipv4-main-nexthop-compat-off"), 4)).toThrow(
      /198\.18\.10\.0\/24.*nexthop group 12.*net\.ipv4\.nexthop_compat_mode/,
    );
    expect(() => parseRoutes(fixture("ipv6-main-nexthop-compat-off"), 6)).toThrow(/nexthop group 17/);
  });

  it("resolves single nexthop objects from nh_info", () => {
    const entries = fixtureEntries("ipv4-main-nexthop-compat-off");
    const nhidEntries = entries.filter((entry) => entry.nhid !== undefined && entry.dst !== "198.18.10.0/24");
    expect(nhidEntries.map((entry) => entry.dst)).toEqual([
      "198.18.9.0/24",
      "198.18.14.0/24",
      "198.18.15.0/24",
      "198.18.16.0/24",
    ]);
    for (const entry of nhidEntries) {
      expect(entry.dev, `${String(entry.dst)} has no resolved dev`).toBeUndefined();
    }

    const resolved = parseRoutes(nhidEntries, 4);

    expect(resolved).toEqual(nhidEntries.map((entry) => only(ipv4, entry.dst as string)));
  });
});

describe("parseRoutes rejects", () => {
  it("encapsulation", () => {
    expect(() => parseRoutes(fixture("ipv4-encap"), 4)).toThrow(/encap "ip"/);
  });

  it("non-array input", () => {
    expect(() => parseRoutes({ dst: "default" }, 4)).toThrow(/expected an array of routes, got an object/);
    expect(() => parseRoutes("[]", 4)).toThrow(/got string/);
  });

  it("non-object route", () => {
    expect(() => parseRoutes([null], 4)).toThrow(/route 0 is null/);
  });

  const base = { type: "unicast", dst: "198.18.0.0/24", dev: "eth0", flags: [] };
  const cases: Array<[string, Family, Record<string, unknown>, RegExp]> = [
    ["dst of the other family", 4, { ...base, dst: "2001:db8::/32" }, /"dst" is "2001:db8::\/32", expected an IPv4 address or prefix/],
    ["prefix length too long", 4, { ...base, dst: "198.18.0.0/33" }, /"dst" is "198.18.0.0\/33"/],
    ["missing dst", 4, { type: "unicast", dev: "eth0" }, /route 0 \(no dst\).*"dst" is undefined/],
    ["unknown type", 4, { ...base, type: "nat" }, /"type" is "nat", expected one of unicast/],
    ["negative metric", 4, { ...base, metric: -1 }, /"metric" is -1/],
    ["fractional metric", 4, { ...base, metric: 1.5 }, /"metric" is 1.5/],
    ["pervasive flag", 4, { ...base, flags: ["pervasive"] }, /"flags" is \["pervasive"\]/],
    ["unknown field", 4, { ...base, color: "blue" }, /unsupported field "color" \("blue"\)/],
    ["pref on IPv4", 4, { ...base, pref: "high" }, /"pref" is "high"/],
    ["unknown IPv6 pref", 6, { ...base, dst: "2001:db8::/32", pref: "urgent" }, /"pref" is "urgent"/],
    ["invalid gateway", 4, { ...base, gateway: "198.18.0.256" }, /"gateway" is "198.18.0.256"/],
    ["via of unknown family", 4, { ...base, via: { family: "mpls", host: "100" } }, /"via" is \{"family":"mpls"/],
    ["via with wrong address", 4, { ...base, via: { family: "inet6", host: "192.0.2.1" } }, /"via.host" is "192.0.2.1", expected an IPv6 address/],
    ["empty nexthops", 4, { type: "unicast", dst: "198.18.0.0/24", nexthops: [] }, /"nexthops" is \[\]/],
    ["nexthops beside dev", 4, { ...base, nexthops: [{ dev: "eth1" }, { dev: "eth2" }] }, /"nexthops" is .*expected no nexthops list next to/],
    ["zero weight", 4, { type: "unicast", dst: "198.18.0.0/24", nexthops: [{ dev: "a", weight: 0 }, { dev: "b" }] }, /"nexthops\[0\].weight" is 0/],
    ["nexthop encap", 4, { type: "unicast", dst: "198.18.0.0/24", nexthops: [{ dev: "a", encap: "mpls" }, { dev: "b" }] }, /encap "mpls"/],
    ["unicast without device", 4, { type: "unicast", dst: "198.18.0.0/24", gateway: "192.0.2.1" }, /"dev" is undefined, expected a device/],
    ["blackhole with real device", 4, { type: "blackhole", dst: "198.18.0.0/24", dev: "eth0" }, /"dev" is "eth0", expected "lo" or no device/],
    ["blackhole with gateway", 4, { type: "blackhole", dst: "198.18.0.0/24", gateway: "192.0.2.1" }, /"gateway" is "192.0.2.1"/],
    ["metrics not in an array", 4, { ...base, metrics: { mtu: 1400 } }, /"metrics" is \{"mtu":1400\}/],
    ["unknown metric", 4, { ...base, metrics: [{ mtu: 1400, lock: 1 }] }, /"metrics.lock" is 1/],
    ["realms without to", 4, { ...base, flow: { from: "3" } }, /"flow.to" is undefined/],
    ["empty device", 4, { ...base, dev: "" }, /"dev" is ""/],
  ];

  it.each(cases)("%s", (_name, family, entry, message) => {
    expect(() => parseRoutes([entry], family)).toThrow(message);
  });
});
