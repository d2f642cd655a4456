import { describe, expect, it } from "vitest";

import type { Route } from "../../src/snapshot/route.js";
import { routeDevices, selectRoutes } from "../../src/snapshot/select.js";

function viaDevice(dst: string, dev: string): Route {
  return { family: 4, type: "unicast", dst, gateway: "192.0.2.1", dev };
}

const multipath: Route = {
  family: 4,
  type: "unicast",
  dst: "198.18.0.0/24",
  protocol: "boot",
  nexthops: [
    { gateway: "192.0.2.1", dev: "eth0", weight: 3 },
    { gateway: "198.51.100.1", dev: "tun0", weight: 1, onlink: true },
    { gateway: "203.0.113.1", dev: "eth1", weight: 2 },
  ],
};

const blackhole: Route = { family: 6, type: "blackhole", dst: "2001:db8::/32" };

describe("routeDevices", () => {
  it("lists own device", () => {
    expect(routeDevices(viaDevice("198.18.1.0/24", "eth0"))).toEqual(["eth0"]);
  });

  it("lists path devices once", () => {
    const route: Route = { ...multipath, nexthops: [...(multipath.nexthops ?? []), { gateway: "192.0.2.9", dev: "eth0" }] };

    expect(routeDevices(route)).toEqual(["eth0", "tun0", "eth1"]);
  });

  it("lists nothing for blackhole", () => {
    expect(routeDevices(blackhole)).toEqual([]);
  });
});

describe("selectRoutes", () => {
  it("drops routes through excluded name", () => {
    const routes = [viaDevice("198.18.1.0/24", "eth0"), viaDevice("198.18.2.0/24", "tun0"), viaDevice("198.18.3.0/24", "tun01")];

    expect(selectRoutes(routes, ["tun0"]).map((route) => route.dst)).toEqual(["198.18.1.0/24", "198.18.3.0/24"]);
  });

  it("matches globs on the whole name", () => {
    const devices = ["tun", "tun0", "tun-vpn", "xtun0", "wg0", "eth0", "a.b1", "axb1"];
    const routes = devices.map((dev, index) => viaDevice(`198.18.${index}.0/24`, dev));

    const remainingDevices = selectRoutes(routes, ["tun*", "*g0", "a.b*"]).map((route) => route.dev);

    expect(remainingDevices).toEqual(["xtun0", "eth0", "axb1"]);
  });

  it("star alone excludes every device", () => {
    const routes = [viaDevice("198.18.1.0/24", "eth0"), blackhole];

    expect(selectRoutes(routes, ["*"])).toEqual([blackhole]);
  });

  it("keeps routes without device", () => {
    expect(selectRoutes([blackhole], ["tun0", "*"])).toEqual([blackhole]);
  });

  it("drops only excluded paths", () => {
    const [route] = selectRoutes([multipath], ["tun0"]);

    expect(route?.nexthops).toEqual([
      { gateway: "192.0.2.1", dev: "eth0", weight: 3 },
      { gateway: "203.0.113.1", dev: "eth1", weight: 2 },
    ]);
    expect(route?.protocol).toBe("boot");
  });

  it("collapses a single remaining path", () => {
    const [route] = selectRoutes([multipath], ["tun*", "eth1"]);

    expect(route).toEqual({
      family: 4,
      type: "unicast",
      dst: "198.18.0.0/24",
      protocol: "boot",
      gateway: "192.0.2.1",
      dev: "eth0",
    });
  });

  it("collapsed path keeps onlink and realms", () => {
    const route: Route = {
      family: 4,
      type: "unicast",
      dst: "198.18.0.0/24",
      nexthops: [
        { gateway: "198.18.255.1", dev: "eth0", weight: 2, onlink: true, realms: "5" },
        { gateway: "192.0.2.1", dev: "wg0" },
      ],
    };

    expect(selectRoutes([route], ["wg*"])).toEqual([
      { family: 4, type: "unicast", dst: "198.18.0.0/24", gateway: "198.18.255.1", dev: "eth0", onlink: true, realms: "5" },
    ]);
  });

  it("drops route when no path remains", () => {
    expect(selectRoutes([multipath], ["eth*", "tun0"])).toEqual([]);
  });

  it("keeps everything with no exclusions", () => {
    const routes = [multipath, blackhole, viaDevice("198.18.1.0/24", "tun0")];

    expect(selectRoutes(routes, [])).toEqual(routes);
  });

  it("leaves its input unchanged", () => {
    const before = structuredClone(multipath);

    selectRoutes([multipath], ["tun0", "eth1"]);

    expect(multipath).toEqual(before);
  });
});
