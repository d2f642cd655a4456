// status against the fake host: objects left without a record, why marked
// traffic misses the table, a stale copy, a deleted tunnel, and the repair
// line that each of them gets.

import { describe, expect, test } from "vitest";

import { checkMarkedRoute } from "../../src/checks.js";
import { cleanup } from "../../src/commands/cleanup.js";
import { renderStatus, status } from "../../src/commands/status.js";
import { up } from "../../src/commands/up.js";
import type { FirewallBackend } from "../../src/firewall/backend.js";
import { MemoryStateStore } from "../../src/state.js";
import { testConfig, testContext, vpnHost } from "../fake/host.js";
import type { FakeSystem } from "../fake/system.js";

const IPTABLES_ONLY = ["ip", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"];

/** Installs the bypass for tun0 and returns a context whose store is empty, as after a lost state file. */
async function installWithoutRecord(system: FakeSystem, backend: FirewallBackend) {
  await up(testContext(system, testConfig(backend)), "tun0");
  return testContext(system, testConfig(backend), new MemoryStateStore());
}

function deleteRule(system: FakeSystem, family: 4 | 6 = 4): void {
  system.setUp(["ip", `-${family}`, "-batch", "-"], "rule del fwmark 0x2/0x2 lookup 2 priority 1000\n");
}

function flushTable(system: FakeSystem): void {
  system.setUp(["ip", "-4", "-batch", "-"], "route flush table 2\n");
}

describe.each(["nftables", "iptables-nft", "iptables-legacy"] as const)("status without record, %s", (backend) => {
  test("reports leftovers", async () => {
    const system = vpnHost();
    const context = await installWithoutRecord(system, backend);

    const report = await status(context);
    expect(report.installed).toBe(false);
    expect(report.leftovers).toContain("IPv4 rule fwmark 0x2/0x2 lookup 2 priority 1000");
    expect(report.leftovers).toContain("IPv6 rule fwmark 0x2/0x2 lookup 2 priority 1000");
    expect(report.leftovers).toContain("4 IPv4 route(s) with protocol 83 in table 2");
    expect(report.leftovers).toContain("3 IPv6 route(s) with protocol 83 in table 2");
    expect(report.drift).toEqual([
      "splitroute's objects exist without a record in (memory) (found by table 2 and mark 0x2/0x2 from /etc/splitroute/test.conf)",
    ]);
    expect(report.repair).toBe("while a tunnel is up, run splitroute up --dev TUNNEL, which takes them over and writes a new record; otherwise run splitroute cleanup, which removes them");
    expect(report.unchecked).toBeUndefined();
  });

  test("names the firewall objects", async () => {
    const system = vpnHost();
    const report = await status(await installWithoutRecord(system, backend));
    if (backend === "nftables") {
      expect(report.leftovers).toContain("nftables table inet splitroute");
    } else {
      const tool = backend.replace("iptables", "");
      expect(report.leftovers).toContain(`iptables${tool} mangle table: chain(s) SPLITROUTE-OUT, SPLITROUTE-PRE and 2 jump(s) tagged "splitroute"`);
      expect(report.leftovers).toContain(`ip6tables${tool} mangle table: chain(s) SPLITROUTE-OUT, SPLITROUTE-PRE and 2 jump(s) tagged "splitroute"`);
    }
  });

  test("nothing left after cleanup", async () => {
    const system = vpnHost();
    const context = await installWithoutRecord(system, backend);
    await cleanup(context);

    const report = await status(context);
    expect(report).toEqual({ installed: false, stateFile: "(memory)", leftovers: [], drift: [] });
    expect(renderStatus(report)).toBe("splitroute: not active in this network namespace\n");
  });
});

describe("status without record", () => {
  test("renders leftovers and repair", async () => {
    const system = vpnHost();
    const text = renderStatus(await status(await installWithoutRecord(system, "nftables")));
    expect(text.split("\n")).toEqual([
      "state:     (memory) does not exist",
      "leftover:  IPv4 rule fwmark 0x2/0x2 lookup 2 priority 1000",
      "leftover:  4 IPv4 route(s) with protocol 83 in table 2",
      "leftover:  IPv6 rule fwmark 0x2/0x2 lookup 2 priority 1000",
      "leftover:  3 IPv6 route(s) with protocol 83 in table 2",
      "leftover:  nftables table inet splitroute",
      "drift:     splitroute's objects exist without a record in (memory) (found by table 2 and mark 0x2/0x2 from /etc/splitroute/test.conf)",
      "repair:    while a tunnel is up, run splitroute up --dev TUNNEL, which takes them over and writes a new record; otherwise run splitroute cleanup, which removes them",
      "",
    ]);
  });

  test("finds a rule at another priority", async () => {
    const system = vpnHost();
    system.setUp(["ip", "-4", "-batch", "-"], "rule add fwmark 0x2/0x2 lookup 2 priority 900\n");
    const report = await status(testContext(system, testConfig("nftables")));
    expect(report.leftovers).toEqual(["IPv4 rule fwmark 0x2/0x2 lookup 2 priority 900"]);
    expect(report.drift).toHaveLength(1);
  });

  test("searches with the configured identity", async () => {
    const system = vpnHost();
    await installWithoutRecord(system, "nftables");
    const other = testConfig("nftables", { table: { name: "other", id: 7, priority: 1000 }, mark: { value: 0x10, mask: 0x10 } });
    const report = await status(testContext(system, other));
    // The nft table is ours whatever the table id and mark.
    expect(report.leftovers).toEqual(["nftables table inet splitroute"]);
  });

  test("plain iptables leftovers", async () => {
    const system = vpnHost({ tools: IPTABLES_ONLY });
    const report = await status(await installWithoutRecord(system, "iptables"));
    expect(report.leftovers).toContain('iptables mangle table: chain(s) SPLITROUTE-OUT, SPLITROUTE-PRE and 2 jump(s) tagged "splitroute"');
  });

  test("clean host reads little", async () => {
    const system = vpnHost();
    await status(testContext(system, testConfig("nftables")));
    const commands = system.commands.map((argv) => argv.join(" "));
    // No iptables-save: the ruleset shows no chain of ours, and no legacy table is loaded.
    expect(commands.filter((line) => /-save /.test(line))).toEqual([]);
    expect(commands.filter((line) => line.startsWith("nft"))).toEqual(["nft list ruleset"]);
    expect(commands.every((line) => /^ip -[46] .*(-batch -|route show table 2|rule show)$/.test(line) || line === "nft list ruleset")).toBe(true);
  });

  test("without root reads routing only", async () => {
    const system = vpnHost();
    const context = await installWithoutRecord(system, "nftables");
    system.commands.length = 0;

    const report = await status(context, { readFirewall: false });
    expect(report.leftovers).toHaveLength(4);
    expect(report.unchecked).toEqual(["nftables and iptables objects of splitroute's: reading them needs root"]);
    expect(report.drift).toHaveLength(1);
    expect(system.commands.every((argv) => argv[0] === "ip")).toBe(true);
  });

  test("without root, nothing found", async () => {
    const system = vpnHost();
    const report = await status(testContext(system, testConfig("nftables")), { readFirewall: false });
    expect(report.drift).toEqual([]);
    expect(renderStatus(report)).toBe(
      "splitroute: not active in this network namespace\nunchecked: nftables and iptables objects of splitroute's: reading them needs root\n",
    );
  });

  test("unreadable iptables is unchecked", async () => {
    const system = vpnHost();
    const context = await installWithoutRecord(system, "iptables-nft");
    system.failOn((argv) => argv[0] === "nft");
    system.failOn((argv) => argv[0] === "iptables-nft-save", "iptables-nft-save: permission denied");

    const report = await status(context);
    expect(report.unchecked).toEqual([expect.stringMatching(/^iptables-nft chains of splitroute's: .*permission denied/)]);
    expect(report.leftovers).toContain("IPv4 rule fwmark 0x2/0x2 lookup 2 priority 1000");
  });
});

describe("marked route messages", () => {
  test("flushed table names the missing route", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    flushTable(system);

    const problems = await checkMarkedRoute(system, (await context.store.read())!);
    expect(problems).toEqual([
      "IPv4 marked traffic to 203.0.113.1 is routed by table 254 via eth0, not by table 2, because table 2 has no route to 203.0.113.1 " +
        "and the lookup falls through to the rule at priority 32766; run splitroute refresh to copy the routes into table 2 again, or splitroute up --dev tun0 again",
    ]);
  });

  test("earlier rule keeps old message", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    system.setUp(["ip", "-4", "-batch", "-"], "rule add lookup main priority 500\n");

    const problems = await checkMarkedRoute(system, (await context.store.read())!);
    expect(problems).toEqual([
      "IPv4 marked traffic to 203.0.113.1 is routed by table 254 via eth0, not by table 2: a rule before priority 1000 takes it (see ip -4 rule show); " +
        "give that rule a priority above 1000, or set table.priority below that rule's priority and run splitroute up again",
    ]);
    const report = await status(context);
    expect(report.repair).toBe("give the rule that takes marked traffic a priority above 1000, or set table.priority below that rule's priority and run splitroute up again");
  });
});

describe("status repair line", () => {
  test("deleted rule needs up", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    deleteRule(system);

    const report = await status(context);
    expect(report.drift).toEqual(["the IPv4 rule at priority 1000 is missing"]);
    expect(report.repair).toBe("run splitroute up --dev tun0 again, which installs the bypass again");
    expect(renderStatus(report).split("\n").at(-2)).toBe("repair:    run splitroute up --dev tun0 again, which installs the bypass again");

    await up(context, "tun0");
    expect((await status(context)).drift).toEqual([]);
  });

  test("deleted nft table needs up", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    system.setUp(["nft", "-f", "-"], "delete table inet splitroute\n");

    const report = await status(context);
    expect(report.drift).toEqual(["the nftables marking is missing"]);
    expect(report.repair).toBe("run splitroute up --dev tun0 again, which installs the bypass again");

    await up(context, "tun0");
    expect((await status(context)).drift).toEqual([]);
  });

  test("flushed table needs refresh", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    flushTable(system);

    const report = await status(context);
    expect(report.drift[0]).toBe("table 2 holds 0 IPv4 routes; 4 were installed");
    expect(report.drift[1]).toContain("because table 2 has no route to 203.0.113.1");
    expect(report.repair).toBe("run splitroute refresh, which copies main into redirect (2) again");
  });

  test("two tunnels each need up", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    await up(context, "tun1");
    deleteRule(system);

    // up without the rule starts afresh with its own tunnel only.
    expect((await status(context)).repair).toBe("run splitroute up --dev tun0 and splitroute up --dev tun1 again, which installs the bypass again");
  });

  test("no line without drift", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    const report = await status(context);
    expect(report.repair).toBeUndefined();
    expect(renderStatus(report)).not.toContain("repair:");
  });
});

describe("status of the copy", () => {
  test("new route in main noted", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    // As OpenVPN adds its server's route after running up.
    system.addRoutes(4, "main", ["198.51.100.0/24 via 192.0.2.1 dev eth0"]);

    const report = await status(context);
    expect(report.live?.copyChanges).toEqual({ ipv4: 1, ipv6: 0 });
    expect(report.drift).toEqual([]);
    expect(report.notes).toEqual([
      "main has 1 IPv4 route(s) that the copy lacks, such as routes the VPN added after up; splitroute refresh copies them if replies need them",
    ]);
    expect(renderStatus(report)).toContain("\nnote:      main has 1 IPv4 route(s) that the copy lacks");
  });

  test("gone route in main is drift", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    system.addRoutes(4, "main", ["198.51.100.0/24 via 192.0.2.1 dev eth0"]);
    await up(context, "tun0");
    const main = system.ip.tables[4].get(254)!;
    main.splice(main.findIndex((route) => route.dst === "198.51.100.0/24"), 1);

    const report = await status(context);
    expect(report.drift).toEqual(["the IPv4 copy differs from main: 0 route(s) changed and 1 gone there since it was copied; run splitroute refresh"]);
    expect(report.repair).toBe("run splitroute refresh, which copies main into redirect (2) again");
  });

  test("tunnel routes are not drift", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    system.addRoutes(4, "main", ["10.9.0.0/16 via 10.8.0.1 dev tun0"]);
    expect((await status(context)).drift).toEqual([]);
  });

  test("other configuration leaves it unchecked", async () => {
    const system = vpnHost();
    const store = new MemoryStateStore();
    await up(testContext(system, testConfig("nftables"), store), "tun0");
    system.addRoutes(4, "main", ["198.51.100.0/24 via 192.0.2.1 dev eth0"]);

    const report = await status(testContext(system, { ...testConfig("nftables"), source: "built-in defaults" }, store));
    expect(report.drift).toEqual([]);
    expect(report.live?.copyChanges).toBeUndefined();
    expect(report.unchecked).toEqual([
      "the copy against the table it was copied from: the bypass was installed with /etc/splitroute/test.conf, and status read built-in defaults",
    ]);
  });
});

describe("status of tunnels", () => {
  test("deleted tunnel needs down", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    system.removeInterface("tun0");

    const report = await status(context);
    expect(report.live?.tunnels).toEqual({ tun0: false });
    expect(report.drift).toEqual(["tunnel tun0 no longer exists; run splitroute down --dev tun0"]);
    expect(report.repair).toBe("run splitroute down --dev tun0");
  });

  test("down goes before up", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    await up(context, "tun1");
    system.removeInterface("tun1");
    deleteRule(system);

    const report = await status(context);
    expect(report.drift).toEqual(["tunnel tun1 no longer exists; run splitroute down --dev tun1", "the IPv4 rule at priority 1000 is missing"]);
    expect(report.repair).toBe("run splitroute down --dev tun1, then splitroute up --dev tun0 again, which installs the bypass again");
    expect(renderStatus(report).split("\n").slice(-4)).toEqual([
      "drift:     tunnel tun1 no longer exists; run splitroute down --dev tun1",
      "drift:     the IPv4 rule at priority 1000 is missing",
      "repair:    run splitroute down --dev tun1, then splitroute up --dev tun0 again, which installs the bypass again",
      "",
    ]);
  });
});
