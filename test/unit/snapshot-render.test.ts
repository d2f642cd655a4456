import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { parseRoutes } from "../../src/snapshot/parse.js";
import { MAX_BATCH_ARGS, routeAddArgs } from "../../src/snapshot/render.js";
import type { Nexthop, Route } from "../../src/snapshot/route.js";

function fixtureRoutes(name: string, family: 4 | 6): Route[] {
  const json: unknown = JSON.parse(readFileSync(new URL(`../fixtures/routes/${name}.json`, import.meta.url), "utf8"));
  return parseRoutes(json, family);
}

const connected: Route = {
  family: 4,
  type: "unicast",
  dst: "192.0.2.0/24",
  dev: "eth0",
  protocol: "kernel",
  scope: "link",
  prefsrc: "192.0.2.2",
};

describe("routeAddArgs", () => {
  it("renders connected route", () => {
    expect(routeAddArgs(connected, 2)).toEqual([
      "route",
      "append",
      "192.0.2.0/24",
      "dev",
      "eth0",
      "proto",
      "2",
      "scope",
      "253",
      "src",
      "192.0.2.2",
      "table",
      "2",
    ]);
  });

  it("renders default as explicit prefix", () => {
    expect(routeAddArgs({ family: 4, type: "unicast", dst: "default", gateway: "192.0.2.1", dev: "eth0" }, 7)).toEqual([
      "route",
      "append",
      "0.0.0.0/0",
      "via",
      "192.0.2.1",
      "dev",
      "eth0",
      "table",
      "7",
    ]);
    expect(routeAddArgs({ family: 6, type: "unicast", dst: "default", gateway: "2001:db8::1", dev: "eth0" }, 7)[2]).toBe("::/0");
    expect(routeAddArgs({ family: 6, type: "unicast", dst: "::/0", dev: "eth0" }, 7)[2]).toBe("::/0");
  });

  it("puts table before nexthops", () => {
    const route: Route = {
      family: 4,
      type: "unicast",
      dst: "198.18.0.0/24",
      protocol: "boot",
      scope: "global",
      metric: 10,
      nexthops: [
        { gateway: "192.0.2.1", dev: "eth0", weight: 3, realms: "cosmos" },
        { gateway: "2001:db8::1", dev: "eth1", weight: 1, onlink: true },
      ],
    };

    expect(routeAddArgs(route, 100).join(" ")).toBe(
      "route append 198.18.0.0/24 proto 3 scope 0 metric 10 table 100 " +
        "nexthop via 192.0.2.1 dev eth0 weight 3 realms 0 " +
        "nexthop via inet6 2001:db8::1 dev eth1 weight 1 onlink",
    );
  });

  it("renders IPv6 gateway of IPv4 route", () => {
    const route: Route = { family: 4, type: "unicast", dst: "198.18.11.0/24", gateway: "2001:db8:1::1", dev: "d0" };

    expect(routeAddArgs(route, 100)).toEqual([
      "route",
      "append",
      "198.18.11.0/24",
      "via",
      "inet6",
      "2001:db8:1::1",
      "dev",
      "d0",
      "table",
      "100",
    ]);
  });

  it("renders reject types without device", () => {
    for (const type of ["blackhole", "unreachable", "prohibit", "throw"] as const) {
      const route: Route = { family: 6, type, dst: "2001:db8:13::/48", protocol: "boot", metric: 1024, pref: "medium" };

      expect(routeAddArgs(route, 100).join(" ")).toBe(
        `route append ${type} 2001:db8:13::/48 proto 3 metric 1024 pref medium table 100`,
      );
    }
  });

  it("renders metrics with units", () => {
    const route: Route = {
      family: 4,
      type: "unicast",
      dst: "198.18.19.0/24",
      gateway: "192.0.2.1",
      dev: "d0",
      metrics: { mtu: 1400, advmss: 1360, rtt: 300, rttvar: 100, rto_min: 200, hoplimit: 10, ecn: true, congctl: "cubic" },
    };

    expect(routeAddArgs(route, 100).join(" ")).toBe(
      "route append 198.18.19.0/24 via 192.0.2.1 dev d0 " +
        "mtu 1400 rtt 300ms rttvar 100ms advmss 1360 hoplimit 10 rto_min 200ms features ecn congctl cubic table 100",
    );
  });

  it("renders IPv6 source prefix, tos and realms", () => {
    const ipv6: Route = { family: 6, type: "unicast", dst: "2001:db8:18::/48", from: "2001:db8:5::/64", dev: "d0" };
    const ipv4: Route = { family: 4, type: "unicast", dst: "198.18.24.0/24", tos: "AF11", realms: "3/cosmos", dev: "d0" };

    expect(routeAddArgs(ipv6, 5).join(" ")).toBe("route append 2001:db8:18::/48 from 2001:db8:5::/64 dev d0 table 5");
    expect(routeAddArgs(ipv4, 5).join(" ")).toBe("route append 198.18.24.0/24 tos 0x28 dev d0 realms 3/0 table 5");
  });

  it("writes known names as numbers", () => {
    const cases: Array<[Partial<Route>, string[]]> = [
      [{ protocol: "kernel" }, ["proto", "2"]],
      [{ protocol: "boot" }, ["proto", "3"]],
      [{ protocol: "static" }, ["proto", "4"]],
      [{ protocol: "ra" }, ["proto", "9"]],
      [{ protocol: "dhcp" }, ["proto", "16"]],
      [{ protocol: "babel" }, ["proto", "42"]],
      [{ protocol: "200" }, ["proto", "200"]],
      [{ protocol: "myrouter" }, ["proto", "myrouter"]],
      [{ scope: "global" }, ["scope", "0"]],
      [{ scope: "site" }, ["scope", "200"]],
      [{ scope: "link" }, ["scope", "253"]],
      [{ scope: "host" }, ["scope", "254"]],
      [{ scope: "100" }, ["scope", "100"]],
      [{ tos: "CS1" }, ["tos", "0x20"]],
      [{ tos: "EF" }, ["tos", "0xb8"]],
      [{ tos: "AF43" }, ["tos", "0x98"]],
      [{ tos: "0x10" }, ["tos", "0x10"]],
      [{ realms: "cosmos" }, ["realms", "0"]],
      [{ realms: "5" }, ["realms", "5"]],
    ];

    for (const [fields, expected] of cases) {
      const args = routeAddArgs({ family: 4, type: "unicast", dst: "198.18.0.0/24", dev: "d0", ...fields }, 9);
      const index = args.indexOf(expected[0] as string);

      expect(args.slice(index, index + 2), JSON.stringify(fields)).toEqual(expected);
    }
  });

  it("renders every fixture route", () => {
    const routes = [...fixtureRoutes("ipv4-main", 4), ...fixtureRoutes("ipv6-main", 6)];

    for (const route of routes) {
      const args = routeAddArgs(route, 100);
      const tableIndex = args.indexOf("table");
      const firstNexthop = args.indexOf("nexthop");

      expect(args.slice(0, 2), route.dst).toEqual(["route", "append"]);
      expect(args.slice(tableIndex, tableIndex + 2), route.dst).toEqual(["table", "100"]);
      expect(firstNexthop === -1 || firstNexthop > tableIndex, `${route.dst} table before nexthop`).toBe(true);
      expect(args, route.dst).not.toContain("default");
    }
  });

  it("renders the same lines from ip -N output", () => {
    for (const family of [4, 6] as const) {
      const named = fixtureRoutes(`ipv${family}-main`, family);
      const numeric = fixtureRoutes(`ipv${family}-main-numeric`, family);

      expect(numeric.map((route) => routeAddArgs(route, 100))).toEqual(named.map((route) => routeAddArgs(route, 100)));
    }
  });
});

describe("routeAddArgs rejects", () => {
  const unsafeDevices = ["eth 0", "eth\t0", "eth0\n", "eth'0", 'eth"0', "eth#0", "eth0\\", "eth\u00000", "eth\u007f0", ""];

  it.each(unsafeDevices)("device %j", (dev) => {
    expect(() => routeAddArgs({ ...connected, dev }, 100)).toThrow(/cannot render route 192\.0\.2\.0\/24 as an ip -batch line/);
  });

  it("unsafe value in any field", () => {
    const nexthops: Nexthop[] = [{ dev: "a#b" }, { dev: "c" }];
    const withNexthops: Route = { family: 4, type: "unicast", dst: "198.18.0.0/24", nexthops };

    expect(() => routeAddArgs(withNexthops, 100)).toThrow(/"a#b"/);
    expect(() => routeAddArgs({ ...connected, protocol: "my proto" }, 100)).toThrow(/"my proto"/);
    expect(() => routeAddArgs({ ...connected, metrics: { congctl: "cubic\n" } }, 100)).toThrow(/"cubic\\n"/);
    expect(() => routeAddArgs({ ...connected, dst: "192.0.2.0/24#" }, 100)).toThrow(/not an IPv4 prefix/);
    expect(() => routeAddArgs({ ...connected, from: "2001:db8::/64 table 5" }, 100)).toThrow(/"2001:db8::\/64 table 5"/);
  });

  it.each([0, -1, 1.5, 4_294_967_296, Number.NaN])("table %s", (table) => {
    expect(() => routeAddArgs(connected, table)).toThrow(/invalid routing table/);
  });

  it("destination of the other family", () => {
    expect(() => routeAddArgs({ ...connected, family: 6 }, 100)).toThrow(/not an IPv6 prefix/);
  });

  it("nexthops beside own device", () => {
    const route: Route = { ...connected, nexthops: [{ dev: "a" }, { dev: "b" }] };

    expect(() => routeAddArgs(route, 100)).toThrow(/both nexthops and its own gateway or device/);
  });

  it("invalid numbers", () => {
    const route: Route = { family: 4, type: "unicast", dst: "198.18.0.0/24", nexthops: [{ dev: "a", weight: 0 }, { dev: "b" }] };

    expect(() => routeAddArgs(route, 100)).toThrow(/nexthop weight 0/);
    expect(() => routeAddArgs({ ...connected, metric: -1 }, 100)).toThrow(/metric -1/);
    expect(() => routeAddArgs({ ...connected, metrics: { mtu: 1.5 } }, 100)).toThrow(/mtu 1.5/);
    expect(() => routeAddArgs({ ...connected, gateway: "gw" }, 100)).toThrow(/invalid gateway "gw"/);
  });

  it("line longer than ip -batch accepts", () => {
    // Each path adds 7 arguments and the rest of the line 5, so 72 paths
    // make 509 arguments and 73 paths make 516.
    const paths = (count: number): Route => ({
      family: 4,
      type: "unicast",
      dst: "198.18.0.0/24",
      nexthops: Array.from({ length: count }, (_, index) => ({ gateway: "192.0.2.1", dev: `eth${index}`, weight: 1 })),
    });

    expect(routeAddArgs(paths(72), 100)).toHaveLength(509);
    expect(MAX_BATCH_ARGS).toBe(511);
    expect(() => routeAddArgs(paths(73), 100)).toThrow(/needs 516 ip -batch arguments, but ip accepts at most 511/);
  });
});
