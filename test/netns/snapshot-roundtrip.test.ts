// Copies a main table with many kinds of routes into another table through
// one `ip -batch -` run, inside a throwaway network namespace, and checks
// that the copy parses to the same routes as the original.

import { randomBytes } from "node:crypto";

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { parseRoutes } from "../../src/snapshot/parse.js";
import { routeAddArgs } from "../../src/snapshot/render.js";
import type { Family, Route } from "../../src/snapshot/route.js";
import { routeDevices, selectRoutes } from "../../src/snapshot/select.js";

const skipReason = process.getuid?.() === 0 ? undefined : "skipped: creating network namespaces needs root";
const namespace = `srsnap-${randomBytes(4).toString("hex")}`;
const COPY_TABLE = 100;
const SELECT_TABLE = 101;

// Each line runs as `ip -n NAMESPACE <line>`. Devices: d0, d1 and d3 are veth
// ends with their peers up, va is up but its peer vb is down (so va's routes
// are linkdown), and d3 goes down at the end (so its paths are dead).
const SETUP = `
link set lo up
link add d0 type veth peer name d0p
link add d1 type veth peer name d1p
link add d3 type veth peer name d3p
link add va type veth peer name vb
link set d0 up
link set d0p up
link set d1 up
link set d1p up
link set d3 up
link set d3p up
link set va up
addr add 192.0.2.2/24 dev d0
addr add 198.51.100.2/24 dev d1
addr add 203.0.113.1/30 dev va
addr add 198.18.90.2/24 dev d3
-6 addr add 2001:db8:1::2/64 dev d0 nodad
-6 addr add 2001:db8:2::2/64 dev d1 nodad
-6 addr add 2001:db8:90::2/64 dev d3 nodad
route add default via 192.0.2.1 dev d0 metric 100
route add 198.18.0.0/24 nexthop via 192.0.2.1 dev d0 weight 3 nexthop via 198.51.100.1 dev d1 weight 1
route add 198.18.1.0/24 via 198.18.255.1 dev d0 onlink
route add blackhole 198.18.2.0/24
route add unreachable 198.18.3.0/24 metric 5
route add prohibit 198.18.4.0/24
route add throw 198.18.5.0/24
route add 198.18.6.0/24 via 192.0.2.1 dev d0 proto static mtu 1400 advmss 1360 initcwnd 10
route add 198.18.7.0/24 via 203.0.113.2 dev va
route add 198.18.8.0/24 dev d0 proto 42 scope link src 192.0.2.2
nexthop add id 10 via 192.0.2.1 dev d0
nexthop add id 11 via 198.51.100.1 dev d1
nexthop add id 12 group 10,5/11,2
route add 198.18.9.0/24 nhid 10
route add 198.18.10.0/24 nhid 12
route add 198.18.11.0/24 via inet6 2001:db8:1::1 dev d0
route add 198.18.12.0/24 via 192.0.2.1 dev d0 tos 0x10
route add 198.18.13.0/24 via 192.0.2.1 dev d0 realms 3/4
nexthop add id 13 blackhole
route add 198.18.14.0/24 nhid 13
-6 nexthop add id 14 via 2001:db8:1::1 dev d0
route add 198.18.15.0/24 nhid 14
nexthop add id 15 dev d1
route add 198.18.16.0/24 nhid 15
route add 198.18.17.0/24 dev d0 proto 200 metric 7
route add 198.18.18.0/24 nexthop via 192.0.2.1 dev d0 realms 5 nexthop via inet6 2001:db8:2::1 dev d1 onlink
route add 198.18.19.0/24 via 192.0.2.1 dev d0 rtt 300ms rttvar 100ms rto_min 200ms features ecn congctl cubic quickack 1 initrwnd 20 window 1000 cwnd 5 ssthresh 7 reordering 3 fastopen_no_cookie 1
route add 198.18.20.5 via 192.0.2.1 dev d0
route add 198.18.21.0/24 nexthop via 192.0.2.1 dev d0 nexthop via 198.18.90.1 dev d3
route add 198.18.22.0/24 dev d0 scope 100
route add 198.18.23.0/24 dev d0
route append 198.18.23.0/24 dev d1
route add 198.18.24.0/24 via 192.0.2.1 dev d0 tos 0x28
route add 198.18.25.0/24 via 192.0.2.1 dev d0 tos 0x08
route add 198.18.26.0/24 via 192.0.2.1 dev d0 tos 0x28
route add 198.18.27.0/24 via 192.0.2.1 dev d0 realms 3/0
route add local 198.18.30.1 dev d0 table main
route add broadcast 198.18.30.255 dev d0 table main
route add multicast 224.1.0.0/16 dev d0 table main
-6 route add 2001:db8:10::/48 via 2001:db8:1::1 dev d0 metric 256 pref high
-6 route add 2001:db8:11::/48 via 2001:db8:1::1 dev d0 expires 300
-6 route add default via 2001:db8:1::1 dev d0 metric 1024 pref low
-6 route add 2001:db8:12::/48 nexthop via 2001:db8:1::1 dev d0 weight 2 nexthop via 2001:db8:2::1 dev d1 weight 7
-6 route add blackhole 2001:db8:13::/48
-6 route add unreachable 2001:db8:14::/48 metric 10
-6 route add prohibit 2001:db8:15::/48
-6 route add throw 2001:db8:16::/48
-6 route add 2001:db8:17::/48 via 2001:db8:1::1 dev d0 mtu 1280 hoplimit 10 advmss 1220
-6 route add 2001:db8:18::/48 from 2001:db8:5::/64 via 2001:db8:1::1 dev d0
-6 route add 2001:db8:19::/48 via 2001:db8:1::1 dev d0 src 2001:db8:1::2 proto ra
-6 route add 2001:db8:1a::/48 nhid 14
-6 nexthop add id 16 via 2001:db8:2::1 dev d1
nexthop add id 17 group 14,3/16,4
-6 route add 2001:db8:1b::/48 nhid 17
-6 route add 2001:db8:1c::1 via 2001:db8:1::1 dev d0
-6 route add 2001:db8:21::/48 nexthop via 2001:db8:1::1 dev d0 nexthop via 2001:db8:90::1 dev d3
-6 route add anycast 2001:db8:60::/64 dev d0 table main
-6 route add multicast ff0e::/16 dev d0 table main
link set d3 down
`;

async function ip(args: readonly string[], input?: string): Promise<string> {
  const result = await execa("ip", ["-n", namespace, ...args], input === undefined ? {} : { input });
  return result.stdout;
}

async function showTable(family: Family, table: string | number, numeric = false): Promise<unknown> {
  const options = numeric ? ["-N"] : [];
  return JSON.parse(await ip([`-${family}`, ...options, "-d", "-j", "route", "show", "table", String(table)]));
}

async function readRoutes(family: Family, table: string | number, numeric = false): Promise<Route[]> {
  return parseRoutes(await showTable(family, table, numeric), family);
}

async function setNexthopCompatMode(value: 0 | 1): Promise<void> {
  await execa("ip", ["netns", "exec", namespace, "sysctl", "-qw", `net.ipv4.nexthop_compat_mode=${value}`]);
}

/** Writes every route into `table` through a single `ip -batch -` run. */
async function batchAppend(routes: readonly Route[], table: number): Promise<void> {
  const lines = routes.map((route) => routeAddArgs(route, table).join(" "));
  await ip(["-batch", "-"], `${lines.join("\n")}\n`);
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.map(sortKeys);
  }
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).sort(([left], [right]) => left.localeCompare(right));
    return Object.fromEntries(entries.map(([key, item]) => [key, sortKeys(item)]));
  }
  return value;
}

/** Sorts routes into a canonical order, because a comparison should not depend on dump order. */
function canonical(routes: readonly Route[]): string[] {
  return routes.map((route) => JSON.stringify(sortKeys(route))).sort();
}

function byDst(routes: readonly Route[], dst: string): Route[] {
  return routes.filter((route) => route.dst === dst);
}

describe.skipIf(skipReason !== undefined)(`snapshot round trip in a network namespace${skipReason ? ` (${skipReason})` : ""}`, () => {
  const main: Record<Family, Route[]> = { 4: [], 6: [] };

  beforeAll(async () => {
    await execa("ip", ["netns", "add", namespace]);
    for (const line of SETUP.trim().split("\n")) {
      await ip(line.split(" "));
    }
    main[4] = await readRoutes(4, "main");
    main[6] = await readRoutes(6, "main");
  });

  afterAll(async () => {
    // reject: false, so a failed setup that never created the namespace
    // does not hide the original error.
    await execa("ip", ["netns", "del", namespace], { reject: false });
  });

  it("main table has every route kind", () => {
    const all = [...main[4], ...main[6]];
    const types = new Set(all.map((route) => route.type));
    for (const type of ["unicast", "blackhole", "unreachable", "prohibit", "throw", "local", "broadcast", "multicast", "anycast"]) {
      expect(types, type).toContain(type);
    }
    expect(byDst(main[4], "0.0.0.0/0")).toHaveLength(1);
    expect(byDst(main[6], "::/0")).toHaveLength(1);
    expect(byDst(main[4], "198.18.0.0/24")[0]?.nexthops).toEqual([
      { gateway: "192.0.2.1", dev: "d0", weight: 3 },
      { gateway: "198.51.100.1", dev: "d1", weight: 1 },
    ]);
    expect(byDst(main[4], "198.18.1.0/24")[0]?.onlink).toBe(true);
    expect(byDst(main[4], "198.18.7.0/24")[0]?.dev).toBe("va");
    expect(byDst(main[6], "2001:db8:11::/48")).toHaveLength(1);
  });

  it("copy through one batch equals main", async () => {
    await batchAppend([...main[4], ...main[6]], COPY_TABLE);

    const copy4 = await readRoutes(4, COPY_TABLE);
    const copy6 = await readRoutes(6, COPY_TABLE);

    expect(canonical(copy4)).toEqual(canonical(main[4]));
    expect(canonical(copy6)).toEqual(canonical(main[6]));
  });

  it("copy does not expire", async () => {
    const raw = (await showTable(6, COPY_TABLE)) as Array<Record<string, unknown>>;
    const copied = raw.find((entry) => entry.dst === "2001:db8:11::/48");

    expect(copied).toBeDefined();
    expect(copied?.expires).toBeUndefined();
  });

  it("dead path is left out of the copy", () => {
    expect(byDst(main[4], "198.18.21.0/24")).toEqual([
      { family: 4, type: "unicast", dst: "198.18.21.0/24", gateway: "192.0.2.1", dev: "d0", protocol: "boot", scope: "global" },
    ]);
    expect(byDst(main[6], "2001:db8:21::/48")[0]?.nexthops).toBeUndefined();
    expect(byDst(main[6], "2001:db8:21::/48")[0]?.dev).toBe("d0");
  });

  it("selected routes copy without excluded devices", async () => {
    const selected = [...selectRoutes(main[4], ["d1"]), ...selectRoutes(main[6], ["d1"])];
    await batchAppend(selected, SELECT_TABLE);

    const copy = [...(await readRoutes(4, SELECT_TABLE)), ...(await readRoutes(6, SELECT_TABLE))];

    expect(canonical(copy)).toEqual(canonical(selected));
    expect(copy.flatMap(routeDevices)).not.toContain("d1");
    expect(byDst(copy, "198.18.0.0/24")[0]?.gateway).toBe("192.0.2.1");
    expect(byDst(copy, "2001:db8:12::/48")[0]?.dev).toBe("d0");
  });

  it("numeric ip output renders the same lines", async () => {
    for (const family of [4, 6] as const) {
      const numeric = await readRoutes(family, "main", true);
      const named = main[family];

      expect(numeric.map((route) => routeAddArgs(route, COPY_TABLE))).toEqual(
        named.map((route) => routeAddArgs(route, COPY_TABLE)),
      );
    }
  });

  it("nexthop compat mode off resolves single nexthops", async () => {
    await setNexthopCompatMode(0);
    try {
      const raw = (await showTable(4, "main")) as Array<Record<string, unknown>>;
      const groups = raw.filter((entry) => {
        const info = entry.nh_info as Record<string, unknown> | undefined;
        return info?.group !== undefined;
      });
      const singles = raw.filter((entry) => !groups.includes(entry));

      expect(groups.map((entry) => entry.dst)).toEqual(["198.18.10.0/24"]);
      expect(() => parseRoutes(raw, 4)).toThrow(/nexthop group 12.*nexthop_compat_mode/);

      const withoutGroups = main[4].filter((route) => route.dst !== "198.18.10.0/24");
      expect(canonical(parseRoutes(singles, 4))).toEqual(canonical(withoutGroups));
    } finally {
      await setNexthopCompatMode(1);
    }
  });
});
