import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";

import { main } from "../../src/cli.js";
import { check, checkNode, renderCheck, type CheckReport } from "../../src/commands/check.js";
import { parseIptablesMarkWrite, parseNftMarkWrite } from "../../src/check/marks.js";
import { parseOpenVpnConfig } from "../../src/check/openvpn.js";
import { exitCodeOf } from "../../src/check/report.js";
import { describeRule, takesMarkedPackets } from "../../src/check/rules.js";
import type { BackendChoice, Bypass, Config } from "../../src/config/types.js";
import type { ObservedRule } from "../../src/rule.js";
import { MemoryStateStore } from "../../src/state.js";
import { up } from "../../src/commands/up.js";
import { testConfig, testContext, vpnHost } from "../fake/host.js";
import { FakeSystem } from "../fake/system.js";

const RT_TABLES = "/etc/iproute2/rt_tables";
const RT_TABLES_D = "/etc/iproute2/rt_tables.d";

/** Builds the fake VPN host with table 2 declared as redirect, as the packages install it. */
function declaredHost(options: ConstructorParameters<typeof FakeSystem>[0] = {}): FakeSystem {
  const system = vpnHost(options);
  system.files.set(RT_TABLES, "255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n#1\tinr.ruhep\n");
  system.files.set(`${RT_TABLES_D}/splitroute.conf`, "2 redirect\n");
  return system;
}

async function runCheck(system: FakeSystem, options: Parameters<typeof check>[1] = {}, config: Config = testConfig("nftables")): Promise<CheckReport> {
  return check(testContext(system, config), options);
}

/**
 * Adds rules as `ip -j -N rule show` prints them, in the kernel's order. The
 * fake's `ip rule add` models lookup rules only, without `not`.
 */
function addRules(system: FakeSystem, family: 4 | 6, rules: readonly ObservedRule[]): void {
  system.ip.rules[family].push(...(rules as typeof system.ip.rules[4]));
  system.ip.rules[family].sort((a, b) => Number(a.priority) - Number(b.priority));
}

/** Returns the findings of one severity whose text contains `text`. */
function matching(report: CheckReport, severity: string, text: string) {
  return report.findings.filter((finding) => finding.severity === severity && `${finding.what} ${finding.fix ?? ""}`.includes(text));
}

describe("check on a clean host", () => {
  test("clean host reports only ok", async () => {
    const system = declaredHost();
    const report = await runCheck(system);
    expect(report.findings.filter((finding) => finding.severity !== "ok")).toEqual([]);
    expect(report.exitCode).toBe(0);
    expect(system.unsupported).toEqual([]);
  });

  test("check changes nothing", async () => {
    const system = declaredHost();
    system.setUp(["nft", "-f", "-"], "table inet foreign {\n\tchain pre {\n\t\tmeta mark set 0x00000002\n\t}\n}\n");
    const before = system.render();
    for (const backend of ["nftables", "iptables", "iptables-nft", "iptables-legacy"] as BackendChoice[]) {
      await runCheck(system, { openvpn: ["/etc/openvpn/client.conf"] }, testConfig(backend));
    }
    expect(system.render()).toBe(before);
    const writes = system.commands.map((argv) => argv.join(" ")).filter((line) => !/ route show | rule show$|^nft list |-save -t mangle$/.test(line));
    expect(writes).toEqual([]);
  });

  test("active bypass counts as no conflict", async () => {
    const system = declaredHost();
    const store = new MemoryStateStore();
    await up(testContext(system, testConfig("nftables"), store), "tun0");
    const report = await check(testContext(system, testConfig("nftables"), store));
    expect(report.findings.filter((finding) => finding.severity !== "ok")).toEqual([]);
    expect(matching(report, "ok", "already active here for tun0")).toHaveLength(1);
  });
});

describe("check tools", () => {
  test("missing ip is an error", async () => {
    const system = declaredHost();
    system.tools.delete("ip");
    const report = await runCheck(system);
    expect(matching(report, "error", "ip is not installed")).toHaveLength(1);
    expect(report.exitCode).toBe(2);
  });

  test("missing nft for nftables backend", async () => {
    const report = await runCheck(declaredHost({ tools: ["ip"] }));
    expect(matching(report, "error", "needs nft")).toHaveLength(1);
  });

  test("auto without any firewall tool", async () => {
    const report = await runCheck(declaredHost({ tools: ["ip"] }), {}, testConfig("auto"));
    expect(matching(report, "error", "no firewall tool found")).toHaveLength(1);
  });

  test("missing iptables save tools", async () => {
    const report = await runCheck(declaredHost({ tools: ["ip", "iptables-restore", "ip6tables-restore"] }), {}, testConfig("iptables"));
    expect(matching(report, "error", "iptables-save and ip6tables-save not installed")).toHaveLength(1);
  });

  test("auto without root is undecided", async () => {
    const system = declaredHost();
    const report = await runCheck(system, { readFirewall: false }, testConfig("auto"));
    const [finding] = matching(report, "warning", "firewall.backend = auto: which backend up would use cannot be decided without root");
    expect(finding?.fix).toBe("run check as root");
    expect(report.findings.filter((entry) => entry.area === "tools" && /uses (nftables|iptables)/.test(entry.what))).toEqual([]);
    expect(system.commands.filter((argv) => argv[0] === "nft")).toEqual([]);
  });

  test("auto without root reads the record", async () => {
    const system = declaredHost();
    const store = new MemoryStateStore();
    await up(testContext(system, testConfig("iptables-legacy"), store), "tun0");
    const report = await check(testContext(system, testConfig("auto"), store), { readFirewall: false });
    const [finding] = matching(report, "ok", "firewall.backend = auto: the installed bypass uses iptables-legacy, as its record shows, and its tools are installed");
    expect(finding?.why).toContain("without root");
  });

  test("auto without root or nft", async () => {
    const tools = ["ip", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save"];
    const report = await runCheck(declaredHost({ tools }), { readFirewall: false }, testConfig("auto"));
    expect(matching(report, "ok", "firewall.backend = auto uses iptables, and its tools are installed")).toHaveLength(1);
  });

  test("node version below 18.19", () => {
    expect(checkNode("v18.18.2").severity).toBe("error");
    expect(checkNode("v18.19.0").severity).toBe("ok");
    expect(checkNode("v20.1.0").severity).toBe("ok");
    expect(checkNode(process.version).what).toContain(process.version);
  });
});

describe("check rp_filter", () => {
  test("strict rp_filter names src_valid_mark", async () => {
    const system = declaredHost();
    system.sysctls.set("net.ipv4.conf.eth0.rp_filter", "1");
    const report = await runCheck(system);
    expect(matching(report, "ok", "strict rp_filter on eth0: up sets net.ipv4.conf.eth0.src_valid_mark=1 and down puts back 0")).toHaveLength(1);
    expect(report.exitCode).toBe(0);
  });

  test("loose rp_filter is fine", async () => {
    const system = declaredHost();
    system.sysctls.set("net.ipv4.conf.all.rp_filter", "2");
    const report = await runCheck(system);
    expect(matching(report, "ok", "loose rp_filter on eth0")).toHaveLength(1);
  });
});

describe("check table names", () => {
  test("undeclared name is a warning", async () => {
    const system = declaredHost();
    system.files.delete(`${RT_TABLES_D}/splitroute.conf`);
    const report = await runCheck(system);
    const [finding] = matching(report, "warning", "table name redirect is not declared");
    expect(finding?.fix).toBe('declare it: echo "2 redirect" > /etc/iproute2/rt_tables.d/splitroute.conf');
    expect(report.exitCode).toBe(1);
  });

  test("name with another id", async () => {
    const system = declaredHost();
    system.files.set(`${RT_TABLES_D}/splitroute.conf`, "# other\n0x7 redirect\n");
    const report = await runCheck(system);
    expect(matching(report, "error", "declared as table 7 in /etc/iproute2/rt_tables.d/splitroute.conf")).toHaveLength(1);
  });

  test("id with another name", async () => {
    const system = declaredHost();
    system.files.set(RT_TABLES, `${system.files.get(RT_TABLES)}2 vpnpolicy\n`);
    const report = await runCheck(system);
    expect(matching(report, "warning", "table 2 is also declared as vpnpolicy (/etc/iproute2/rt_tables)")).toHaveLength(1);
  });

  test("undeclared snapshot table name", async () => {
    const report = await runCheck(declaredHost(), {}, testConfig("nftables", { snapshot: { exclude: ["tun*"], table: "uplink" } }));
    expect(matching(report, "error", "snapshot.table uplink is not declared")).toHaveLength(1);
    // Reading the table fails for the same reason, so it gives no second error.
    expect(report.findings.filter((finding) => finding.severity === "error")).toHaveLength(1);
    expect(report.findings.filter((finding) => finding.fix?.includes("run check as root"))).toEqual([]);
  });

  test("snapshot name unknown to ip", async () => {
    const system = declaredHost();
    system.files.set(`${RT_TABLES_D}/uplink.conf`, "100 uplink\n");
    const report = await runCheck(system, {}, testConfig("nftables", { snapshot: { exclude: ["tun*"], table: "uplink" } }));
    const errors = report.findings.filter((finding) => finding.severity === "error");
    expect(errors.map((finding) => finding.what)).toEqual([
      "cannot read IPv4 table uplink: ip does not know the table name that snapshot.table gives",
      "cannot read IPv6 table uplink: ip does not know the table name that snapshot.table gives",
    ]);
    expect(errors[0]?.fix).toContain("declare its name in /etc/iproute2/rt_tables.d/");
  });
});

describe("check rules and tables", () => {
  test("foreign rule at our priority", async () => {
    const system = declaredHost();
    system.setUp(["ip", "-4", "rule", "add", "iif", "eth0", "lookup", "3", "priority", "1000"]);
    const report = await runCheck(system);
    expect(matching(report, "warning", 'IPv4 rule "1000: from all iif eth0 lookup 3" already uses priority 1000')).toHaveLength(1);
  });

  test("foreign rule using our table", async () => {
    const system = declaredHost();
    system.setUp(["ip", "-6", "rule", "add", "from", "2001:db8:9::/48", "lookup", "2", "priority", "2000"]);
    const report = await runCheck(system);
    expect(matching(report, "error", "IPv6 rule \"2000: from 2001:db8:9::/48 lookup 2\" already looks up table 2")).toHaveLength(1);
  });

  test("fwmark rule setting our bit", async () => {
    const system = declaredHost();
    system.setUp(["ip", "-4", "rule", "add", "fwmark", "0x6/0x6", "lookup", "100", "priority", "900"]);
    const report = await runCheck(system);
    expect(matching(report, "error", "matches mark bits 0x2 inside splitroute's mask 0x2")).toHaveLength(1);
  });

  test("fwmark rule reading our bit", async () => {
    const system = declaredHost();
    system.setUp(["ip", "-4", "rule", "add", "fwmark", "0x1", "lookup", "100", "priority", "900"]);
    const report = await runCheck(system);
    expect(matching(report, "warning", 'IPv4 rule "900: from all fwmark 0x1 lookup 100" reads mark bits 0x2')).toHaveLength(1);
  });

  test("disjoint and wg-quick marks pass", async () => {
    const system = declaredHost();
    system.setUp(["ip", "-4", "rule", "add", "fwmark", "0x4/0x4", "lookup", "100", "priority", "900"]);
    system.setUp(["ip", "-4", "rule", "add", "fwmark", "0xca6c", "lookup", "51820", "priority", "32764"]);
    const report = await runCheck(system);
    expect(report.findings.filter((finding) => finding.area === "mark" && finding.severity !== "ok")).toEqual([]);
  });

  test("foreign routes in our table", async () => {
    const system = declaredHost();
    system.addRoutes(4, 2, ["10.30.0.0/16 dev eth0"]);
    const report = await runCheck(system);
    expect(matching(report, "error", "IPv4 table 2 already holds 1 route(s) of other software, such as 10.30.0.0/16 dev eth0")).toHaveLength(1);
  });

  test("leftover routes of ours", async () => {
    const system = declaredHost();
    system.addRoutes(6, 2, ["2001:db8:1::/64 dev eth0 proto 83"]);
    const report = await runCheck(system);
    const [finding] = matching(report, "warning", "IPv6 table 2 holds 1 route(s) with splitroute's protocol 83");
    expect(finding?.fix).toBe("run splitroute cleanup");
  });

  test("no IPv4 default route", async () => {
    const system = new FakeSystem({ interfaces: ["eth0", "tun0"] });
    system.files.set(`${RT_TABLES_D}/splitroute.conf`, "2 redirect\n");
    system.addRoutes(4, "main", ["192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.10", "default via 10.8.0.1 dev tun0"]);
    const report = await runCheck(system);
    expect(matching(report, "error", "IPv4 table main has no default route that up would copy")).toHaveLength(1);
    expect(matching(report, "ok", "IPv6 table main has no default route")).toHaveLength(1);
  });
});

describe("check rules before ours", () => {
  // What `ip -j -N rule show` prints for wg-quick's two rules.
  const wgQuick = (priority: number): ObservedRule[] => [
    { priority: priority - 1, src: "all", table: "254", suppress_prefixlen: 0 },
    { priority, not: null, src: "all", fwmark: "0xca6c", table: "51820" },
  ];
  const beforeOurs = (report: CheckReport) => report.findings.filter((finding) => finding.what.includes("comes before splitroute's rule"));

  test("catch-all rule is an error", async () => {
    const system = declaredHost();
    system.setUp(["ip", "-4", "rule", "add", "priority", "500", "lookup", "100"]);
    system.addRoutes(4, 100, ["default dev tun0"]);
    const report = await runCheck(system);
    const [finding, ...rest] = beforeOurs(report);
    expect(rest).toEqual([]);
    expect(finding?.severity).toBe("error");
    expect(finding?.what).toBe('IPv4 rule "500: from all lookup 100" comes before splitroute\'s rule at priority 1000 and matches the packets that splitroute marks');
    expect(finding?.why).toContain("take the routes of table 100");
    expect(finding?.fix).toBe(
      "give that rule a priority above 1000 (delete it and add it again), so that splitroute's rule comes first, or set table.priority to a free priority below 500",
    );
    expect(report.exitCode).toBe(2);
  });

  test("wg-quick rules before ours pass", async () => {
    const system = declaredHost();
    for (const family of [4, 6] as const) {
      addRules(system, family, wgQuick(999));
    }
    const report = await runCheck(system);
    // up would put its rule at 997, before both.
    expect(report.findings.filter((finding) => finding.area === "rules" && finding.severity !== "ok")).toEqual([]);
    expect(report.exitCode).toBe(0);
  });

  test("catch-all between moved rule and configured", async () => {
    const system = declaredHost();
    addRules(system, 4, [...wgQuick(900), { priority: 950, src: "all", table: "100" }]);
    const report = await runCheck(system);
    // up would put its rule at 898, so the rule at 950 comes after it.
    expect(beforeOurs(report)).toEqual([]);
  });

  test("catch-all before moved rule", async () => {
    const system = declaredHost();
    addRules(system, 6, [{ priority: 500, src: "all", action: "7" }, ...wgQuick(900)]);
    const report = await runCheck(system);
    expect(beforeOurs(report).map((finding) => finding.what)).toEqual([
      'IPv6 rule "500: from all unreachable" comes before splitroute\'s rule at priority 898 and matches the packets that splitroute marks',
    ]);
  });

  test("no priority below wg-quick", async () => {
    const system = declaredHost();
    addRules(system, 4, wgQuick(2));
    const report = await runCheck(system);
    const [finding] = matching(report, "error", "wg-quick's policy rules sit at priority 1, leaving no priority below them");
    expect(finding?.fix).toBe("remove rules at priorities below 1000 or set table.priority lower");
  });

  test("catch-all at our priority", async () => {
    const system = declaredHost();
    system.setUp(["ip", "-4", "rule", "add", "priority", "1000", "lookup", "100"]);
    const report = await runCheck(system);
    expect(beforeOurs(report)).toHaveLength(1);
    expect(matching(report, "warning", "already uses priority 1000")).toEqual([]);
  });

  test("catch-all after installed rule", async () => {
    const system = declaredHost();
    const store = new MemoryStateStore();
    await up(testContext(system, testConfig("nftables"), store), "tun0");
    // The kernel adds it after splitroute's rule of the same priority.
    system.setUp(["ip", "-4", "rule", "add", "priority", "1000", "lookup", "100"]);
    const report = await check(testContext(system, testConfig("nftables"), store));
    expect(beforeOurs(report)).toEqual([]);
    expect(matching(report, "warning", 'IPv4 rule "1000: from all lookup 100" already uses priority 1000')).toHaveLength(1);
  });

  test("catch-all after ours passes", async () => {
    const system = declaredHost();
    system.setUp(["ip", "-4", "rule", "add", "priority", "1500", "lookup", "100"]);
    expect(beforeOurs(await runCheck(system))).toEqual([]);
  });

  const config = testConfig("nftables");
  const rule = (fields: Omit<ObservedRule, "priority" | "src">): ObservedRule => ({ priority: 500, src: "all", ...fields });

  test.each([
    ["lookup", rule({ table: "100" })],
    ["lookup main", rule({ table: "254" })],
    ["unreachable", rule({ action: "7" })],
    ["blackhole", rule({ action: "6" })],
    ["goto past ours", rule({ goto: 2000 })],
    ["not other mark", rule({ not: null, fwmark: "0xca6c", table: "100" })],
    ["our mark", rule({ fwmark: "0x2", fwmask: "0x2", table: "100" })],
    ["no other mark bits", rule({ fwmark: "0", fwmask: "0xff00", table: "100" })],
    ["with realms and protocol", rule({ table: "100", flow_to: "3", protocol: "4" })],
  ])("takes marked packets: %s", (_name, observed) => {
    expect(takesMarkedPackets(observed, config, 1000)).toBe(true);
  });

  test.each([
    ["wg-quick suppress", rule({ table: "254", suppress_prefixlen: 0 })],
    ["suppress_ifgroup", rule({ table: "100", suppress_ifgroup: "3" })],
    ["local table", rule({ table: "255" })],
    ["other mark", rule({ fwmark: "0x4", fwmask: "0x4", table: "100" })],
    ["mark with other bits", rule({ fwmark: "0x6", fwmask: "0x6", table: "100" })],
    ["not our mark", rule({ not: null, fwmark: "0x2", fwmask: "0x2", table: "100" })],
    ["not without selector", rule({ not: null, table: "100" })],
    ["source", { priority: 500, src: "192.0.2.0", srclen: 24, table: "100" }],
    ["iif", rule({ iif: "eth0", table: "100" })],
    ["uidrange", rule({ uid_start: 100, uid_end: 200, table: "100" })],
    ["dport", rule({ ipproto: "ipproto-6", dport: 22, table: "100" })],
    ["l3mdev", rule({ l3mdev: null })],
    ["nop", rule({ nop: null })],
    ["goto before ours", rule({ goto: 800 })],
    ["unresolved goto", rule({ goto: 2000, unresolved: null })],
  ])("lets marked packets pass: %s", (_name, observed) => {
    expect(takesMarkedPackets(observed, config, 1000)).toBe(false);
  });

  test("rules shown with their action", () => {
    expect(describeRule({ priority: 500, src: "all", action: "8" })).toBe("500: from all prohibit");
    expect(describeRule({ priority: 501, src: "all", goto: 600, unresolved: null })).toBe("501: from all goto 600");
    expect(describeRule({ priority: 502, src: "all", table: "254", suppress_prefixlen: 0 })).toBe("502: from all lookup 254 suppress_prefixlength 0");
    expect(describeRule({ priority: 503, not: null, src: "all", fwmark: "0xca6c", table: "51820" })).toBe("503: not from all fwmark 0xca6c lookup 51820");
    expect(describeRule({ priority: 504, src: "all", uid_start: 100, uid_end: 200, table: "100" })).toBe("504: from all uidrange 100-200 lookup 100");
  });
});

describe("check selectors", () => {
  const UNIFIED_MOUNTINFO = "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
  const withBypass = (...bypass: Bypass[]) => testConfig("nftables", { bypass });

  test("stopped service unit is an error", async () => {
    const system = declaredHost();
    system.files.set("/proc/self/mountinfo", UNIFIED_MOUNTINFO);
    const report = await runCheck(system, {}, withBypass({ name: "torrent", service: "transmission-daemon.service" }));
    const findings = report.findings.filter((finding) => finding.area === "service");
    expect(findings.map((finding) => [finding.severity, finding.what])).toEqual([
      ["error", "bypass.torrent.service: cgroup /sys/fs/cgroup/system.slice/transmission-daemon.service not found"],
    ]);
    expect(findings[0]?.fix).toMatch(/^start transmission-daemon\.service before up/);
    expect(report.exitCode).toBe(2);
  });

  test("no cgroup2 mount is an error", async () => {
    const system = declaredHost();
    system.files.set("/proc/self/mountinfo", "");
    const report = await runCheck(system, {}, withBypass({ name: "torrent", service: "transmission-daemon.service" }));
    const [finding] = matching(report, "error", "bypass.torrent.service: no cgroup v2 hierarchy is mounted");
    expect(finding?.fix).toContain("nsenter --net=/run/netns/NAME");
  });

  test("running service unit is ok", async () => {
    const system = declaredHost();
    system.files.set("/proc/self/mountinfo", UNIFIED_MOUNTINFO);
    system.files.set("/sys/fs/cgroup/system.slice/cron.service/cgroup.procs", "321\n");
    const report = await runCheck(system, {}, withBypass({ name: "cron", service: "cron.service" }));
    expect(matching(report, "ok", "the cgroup of cron.service exists")).toHaveLength(1);
    expect(report.exitCode).toBe(0);
  });

  test("missing interface is a warning", async () => {
    const report = await runCheck(declaredHost(), {}, withBypass({ name: "lan", interface: "nosuchif0" }));
    const [finding] = matching(report, "warning", "bypass.lan.interface nosuchif0 does not exist in this network namespace");
    expect(finding?.why).toContain("matches the interface by name");
    expect(report.exitCode).toBe(1);
  });

  test("existing interface is ok", async () => {
    const report = await runCheck(declaredHost(), {}, withBypass({ name: "lan", interface: "eth0" }));
    expect(matching(report, "ok", "bypass.lan.interface eth0 exists")).toHaveLength(1);
    expect(report.exitCode).toBe(0);
  });
});

describe("check firewall marks", () => {
  const FOREIGN = [
    "table inet foreign {",
    "\tchain pre {",
    "\t\ttype filter hook prerouting priority mangle; policy accept;",
    "\t\ttcp dport 80 meta mark set 0x00000002 counter",
    "\t\tmeta mark set meta mark | 0x00000004",
    "\t\tct mark set 0x00000100",
    "\t}",
    "}",
    "",
  ].join("\n");

  test("nft rules writing our bits", async () => {
    const system = declaredHost();
    system.setUp(["nft", "-f", "-"], FOREIGN);
    const report = await runCheck(system);
    expect(matching(report, "error", 'nftables table inet foreign chain pre sets mark bits 0x2 inside splitroute\'s mask 0x2 with "meta mark set 0x00000002"')).toHaveLength(1);
    expect(matching(report, "warning", 'clears or replaces mark bits 0x2 inside splitroute\'s mask 0x2 with "ct mark set 0x00000100"')).toHaveLength(1);
    expect(report.findings.filter((finding) => finding.what.includes("0x00000004"))).toEqual([]);
    expect(matching(report, "ok", "no other rule or firewall")).toEqual([]);
  });

  test("iptables rules writing our bits", async () => {
    const system = declaredHost();
    system.files.set("/proc/net/ip_tables_names", "mangle\nfilter\n");
    system.setUp(
      ["iptables-legacy-restore", "--noflush"],
      "*mangle\n-A PREROUTING -j MARK --set-xmark 0x2/0xffffffff\n-A OUTPUT -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff\n-A OUTPUT -j MARK --set-xmark 0x4/0x4\nCOMMIT\n",
    );
    const report = await runCheck(system);
    expect(matching(report, "error", "iptables-legacy-save mangle chain PREROUTING sets mark bits 0x2")).toHaveLength(1);
    expect(matching(report, "warning", "iptables-legacy-save mangle chain OUTPUT copies the whole mark 0x2")).toHaveLength(1);
    expect(report.findings.filter((finding) => finding.what.includes("0x4/0x4"))).toEqual([]);
  });

  test("legacy table absent is not read", async () => {
    const system = declaredHost();
    await runCheck(system);
    expect(system.commands.filter((argv) => argv[0]!.includes("legacy"))).toEqual([]);
  });

  test("without root marks are unchecked", async () => {
    const report = await runCheck(declaredHost(), { readFirewall: false });
    expect(matching(report, "warning", "were not read")).toHaveLength(1);
    expect(report.exitCode).toBe(1);
  });

  test("nft mark expressions", () => {
    expect(parseNftMarkWrite("meta", "0x00000010")).toEqual({ touched: 0xffffffff, set: 0x10, copies: false });
    expect(parseNftMarkWrite("meta", "meta mark | 0x00000004")).toEqual({ touched: 0x4, set: 0x4, copies: false });
    expect(parseNftMarkWrite("meta", "mark and 0xfffffffd")).toEqual({ touched: 0x2, set: 0, copies: false });
    expect(parseNftMarkWrite("ct", "ct mark & 0xfffffff8 | 0x00000008")).toEqual({ touched: 0xf, set: 0x8, copies: false });
    expect(parseNftMarkWrite("ct", "meta mark")).toEqual({ touched: 0xffffffff, set: 0, copies: true });
    expect(parseNftMarkWrite("meta", "ip saddr map { 192.0.2.1 : 0x1 }")).toBeUndefined();
  });

  test("iptables mark targets", () => {
    expect(parseIptablesMarkWrite("-A X -j MARK --set-xmark 0x0/0xffffff02")).toEqual({ touched: 0xffffff02, set: 0, copies: false });
    expect(parseIptablesMarkWrite("-A X -j CONNMARK --save-mark --nfmask 0x6 --ctmask 0x6")).toEqual({ touched: 0x6, set: 0, copies: true });
  });
});

describe("check firewalld and networkd", () => {
  test("early IPv6 rpfilter is an error", async () => {
    const system = declaredHost();
    system.setUp(
      ["nft", "-f", "-"],
      "table inet firewalld {\n\tchain filter_PREROUTING {\n\t\ttype filter hook prerouting priority raw + 10; policy accept;\n\t\tmeta nfproto ipv6 fib saddr . mark . iif oif missing drop\n\t}\n}\n",
    );
    system.files.set("/etc/firewalld/firewalld.conf", "IPv6_rpfilter=yes\n");
    const report = await runCheck(system);
    const [finding] = matching(report, "error", "the reverse-path filter in nftables chain filter_PREROUTING (prerouting, priority -290)");
    expect(finding?.fix).toContain("IPv6_rpfilter=loose");
    expect(report.findings.filter((entry) => entry.area === "firewalld")).toHaveLength(1);
  });

  test("firewalld.conf strict without ruleset", async () => {
    const system = declaredHost();
    system.files.set("/etc/firewalld/firewalld.conf", "# comment\nDefaultZone=public\n");
    const report = await runCheck(system);
    expect(matching(report, "warning", "sets IPv6_rpfilter=yes (the default)")).toHaveLength(1);
    system.files.set("/etc/firewalld/firewalld.conf", "IPv6_rpfilter=loose\n");
    expect(matching(await runCheck(system), "ok", "IPv6 reverse-path filter is loose")).toHaveLength(1);
  });

  test("firewalld checking after marking", async () => {
    const system = declaredHost();
    system.setUp(
      ["nft", "-f", "-"],
      "table inet firewalld {\n\tchain filter_PREROUTING {\n\t\ttype filter hook prerouting priority filter + 10; policy accept;\n\t\tmeta nfproto ipv6 fib saddr . mark . iif oif missing drop\n\t}\n}\n",
    );
    system.files.set("/etc/firewalld/firewalld.conf", "IPv6_rpfilter=strict\n");
    const report = await runCheck(system);
    expect(report.findings.filter((finding) => finding.area === "firewalld").map((finding) => [finding.severity, finding.what])).toEqual([
      ["ok", "firewalld runs with IPv6_rpfilter=strict, and its reverse-path check comes after splitroute marks packets"],
    ]);
  });

  test("networkd removes foreign rules", async () => {
    const system = declaredHost();
    system.files.set("/run/systemd/netif/state", "OPER_STATE=routable\n");
    system.files.set("/etc/systemd/networkd.conf", "[Network]\n#ManageForeignRoutingPolicyRules=yes\n");
    const report = await runCheck(system);
    const [finding] = matching(report, "warning", "ManageForeignRoutingPolicyRules=yes (the default)");
    expect(finding?.fix).toContain("ManageForeignRoutingPolicyRules=no");
    expect(matching(report, "warning", "ManageForeignRoutes=yes (the default)")).toHaveLength(1);
  });

  test("networkd drop-in keeps foreign rules", async () => {
    const system = declaredHost();
    system.files.set("/run/systemd/netif/state", "OPER_STATE=routable\n");
    system.files.set("/usr/lib/systemd/networkd.conf.d/50-vendor.conf", "[Network]\nManageForeignRoutingPolicyRules=yes\n");
    system.files.set("/etc/systemd/networkd.conf.d/splitroute.conf", "[Network]\nManageForeignRoutingPolicyRules=no\nManageForeignRoutes=off\n");
    const report = await runCheck(system);
    expect(report.findings.filter((finding) => finding.area === "systemd-networkd").map((finding) => finding.severity)).toEqual(["ok", "ok"]);
  });

  test("networkd not running is fine", async () => {
    const report = await runCheck(declaredHost());
    expect(matching(report, "ok", "systemd-networkd is not running")).toHaveLength(1);
  });
});

describe("check OpenVPN configuration", () => {
  const PATH = "/etc/openvpn/client.conf";

  test("user without down-root plugin", async () => {
    const system = declaredHost();
    system.files.set(PATH, "client\ndev tun\nuser nobody\ngroup nogroup\nup-restart\nup /usr/lib/splitroute/up\ndown /usr/lib/splitroute/down\n");
    const report = await runCheck(system, { openvpn: [PATH] });
    const openvpn = report.findings.filter((finding) => finding.area === "openvpn");
    expect(openvpn.map((finding) => [finding.severity, finding.what])).toEqual([
      ["error", `${PATH}: script-security is not set (1)`],
      ["error", `${PATH}: "user nobody" without the down-root plugin`],
      ["warning", `${PATH}: up-restart together with "user nobody"`],
      ["warning", `${PATH}: "user nobody" without persist-tun`],
      ["warning", `${PATH}: "user nobody" without persist-key`],
    ]);
    expect(report.exitCode).toBe(2);
  });

  test("README configuration passes", async () => {
    const system = declaredHost();
    system.files.set(
      PATH,
      [
        "# client",
        "user nobody",
        "group nogroup",
        "persist-tun",
        "persist-key",
        "script-security 2",
        "up /usr/lib/splitroute/up",
        "plugin /usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-down-root.so /usr/lib/splitroute/down",
        "<ca>",
        "user root",
        "</ca>",
      ].join("\n"),
    );
    const report = await runCheck(system, { openvpn: [PATH] });
    expect(report.findings.filter((finding) => finding.area === "openvpn").map((finding) => finding.severity)).toEqual(["ok"]);
    expect(report.exitCode).toBe(0);
  });

  test("low script-security and missing file", async () => {
    const system = declaredHost();
    system.files.set(PATH, "script-security 1 ; hooks off\n");
    const report = await runCheck(system, { openvpn: [PATH, "/etc/openvpn/missing.conf"] });
    expect(matching(report, "error", `${PATH}: script-security is 1`)).toHaveLength(1);
    expect(matching(report, "error", "OpenVPN configuration /etc/openvpn/missing.conf not found")).toHaveLength(1);
  });

  test("low script-security line changed", async () => {
    const system = declaredHost();
    system.files.set(PATH, "script-security 1\nup /usr/lib/splitroute/up\n");
    const [finding] = matching(await runCheck(system, { openvpn: [PATH] }), "error", `${PATH}: script-security is 1`);
    expect(finding?.fix).toBe(`change the line "script-security 1" in ${PATH} to "script-security 2"`);
  });

  test("unset script-security added", async () => {
    const system = declaredHost();
    system.files.set(PATH, "up /usr/lib/splitroute/up\n");
    const [finding] = matching(await runCheck(system, { openvpn: [PATH] }), "error", `${PATH}: script-security is not set (1)`);
    expect(finding?.fix).toBe(`add "script-security 2" to ${PATH}`);
  });

  const DOWN_ROOT = [
    "user nobody",
    "group nogroup",
    "persist-tun",
    "persist-key",
    "script-security 2",
    "up /usr/lib/splitroute/up",
    "plugin /usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-down-root.so /usr/lib/splitroute/down",
  ];

  test("plain down beside down-root plugin", async () => {
    const system = declaredHost();
    system.files.set(PATH, [...DOWN_ROOT, "down /usr/lib/splitroute/down"].join("\n"));
    const report = await runCheck(system, { openvpn: [PATH] });
    const openvpn = report.findings.filter((finding) => finding.area === "openvpn");
    expect(openvpn.map((finding) => [finding.severity, finding.what])).toEqual([
      ["warning", `${PATH}: "down /usr/lib/splitroute/down" beside the down-root plugin, which runs /usr/lib/splitroute/down too`],
    ]);
    expect(openvpn[0]?.why).toContain("as nobody as well, which cannot remove anything");
    expect(openvpn[0]?.fix).toBe(`remove the line "down /usr/lib/splitroute/down" from ${PATH}, so that down runs only through the plugin, as in splitroute(8)'s down-root example`);
    expect(report.exitCode).toBe(1);
  });

  test("quoted plain down matches plugin", async () => {
    const system = declaredHost();
    const plugin = 'plugin /usr/lib/openvpn/openvpn-plugin-down-root.so "/usr/lib/splitroute/down --config /etc/splitroute/office.conf"';
    system.files.set(PATH, [...DOWN_ROOT.slice(0, -1), plugin, 'down "/usr/lib/splitroute/down --config /etc/splitroute/office.conf"'].join("\n"));
    const report = await runCheck(system, { openvpn: [PATH] });
    expect(matching(report, "warning", "beside the down-root plugin, which runs /usr/lib/splitroute/down too")).toHaveLength(1);
  });

  test("plain down of another script", async () => {
    const system = declaredHost();
    const plugin = "plugin /usr/lib/openvpn/openvpn-plugin-down-root.so /etc/openvpn/update-resolv-conf";
    system.files.set(PATH, [...DOWN_ROOT.slice(0, -1), plugin, "down /usr/lib/splitroute/down"].join("\n"));
    const [finding, ...others] = (await runCheck(system, { openvpn: [PATH] })).findings.filter((finding) => finding.area === "openvpn");
    expect(others).toEqual([]);
    expect(finding?.severity).toBe("warning");
    expect(finding?.what).toBe(`${PATH}: "down /usr/lib/splitroute/down" runs as nobody`);
    expect(finding?.why).toContain("Only the plugin's command (/etc/openvpn/update-resolv-conf) runs as root");
    expect(finding?.fix).toMatch(/^if \/usr\/lib\/splitroute\/down is splitroute's down, remove the line "down \/usr\/lib\/splitroute\/down"/);
  });

  test("plain down without user is fine", async () => {
    const system = declaredHost();
    system.files.set(PATH, "script-security 2\nup /usr/lib/splitroute/up\ndown /usr/lib/splitroute/down\n");
    const report = await runCheck(system, { openvpn: [PATH] });
    expect(report.findings.filter((finding) => finding.area === "openvpn").map((finding) => finding.severity)).toEqual(["ok"]);
  });

  test("parser skips comments and blocks", () => {
    const directives = parseOpenVpnConfig("; comment\n# user root\n<key>\nuser x\n</key>\n--persist-tun\nUSER nobody\n");
    expect([...directives.keys()]).toEqual(["persist-tun", "user"]);
  });
});

describe("check report", () => {
  test("exit code follows worst finding", () => {
    expect(exitCodeOf([{ severity: "ok", area: "a", what: "w" }])).toBe(0);
    expect(exitCodeOf([{ severity: "ok", area: "a", what: "w" }, { severity: "warning", area: "a", what: "w" }])).toBe(1);
    expect(exitCodeOf([{ severity: "warning", area: "a", what: "w" }, { severity: "error", area: "a", what: "w" }])).toBe(2);
  });

  test("render lists errors first", async () => {
    const system = declaredHost();
    system.addRoutes(4, 2, ["10.30.0.0/16 dev eth0"]);
    system.files.delete(`${RT_TABLES_D}/splitroute.conf`);
    const text = renderCheck(await runCheck(system));
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^error    table: IPv4 table 2 already holds 1 route/);
    expect(lines[1]).toMatch(/^ {9}why: /);
    expect(lines[2]).toMatch(/^ {9}fix: set table.id/);
    expect(lines[3]).toMatch(/^warning  table name: table name redirect is not declared/);
    expect(text).toMatch(/\n1 error, 1 warning, \d+ ok\n$/);
  });

  test("report is plain JSON", async () => {
    const report = await runCheck(declaredHost());
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });
});

describe("check --json with a broken configuration", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** Runs the command line with stdout and stderr captured. */
  async function runMain(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    let stdout = "";
    let stderr = "";
    vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      stdout += String(chunk);
      return true;
    });
    vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
      stderr += String(chunk);
      return true;
    });
    const exitCode = await main(args, {});
    vi.restoreAllMocks();
    return { exitCode, stdout, stderr };
  }

  test("invalid file gives a JSON report", async () => {
    const folder = await mkdtemp(join(tmpdir(), "splitroute-check-"));
    try {
      const path = join(folder, "splitroute.conf");
      await writeFile(path, "[table]\nid = 254\n", { mode: 0o644 });
      const { exitCode, stdout, stderr } = await runMain(["check", "--json", "--config", path]);
      expect(exitCode).toBe(2);
      const report = JSON.parse(stdout) as CheckReport;
      expect(report.exitCode).toBe(2);
      expect(report.counts).toEqual({ error: 1, warning: 0, ok: 0 });
      const [finding] = report.findings;
      expect(finding?.severity).toBe("error");
      expect(finding?.area).toBe("configuration");
      expect(finding?.what).toContain(`invalid configuration in ${path}:`);
      expect(finding?.what).toContain('table.id: invalid value "254"');
      expect(finding?.fix).toContain("splitroute.conf(5)");
      expect(stderr).toContain('table.id: invalid value "254"');
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  test("missing file gives a JSON report", async () => {
    const path = join(tmpdir(), "splitroute-check-missing", "splitroute.conf");
    const { exitCode, stdout, stderr } = await runMain(["check", "--json", "--config", path]);
    expect(exitCode).toBe(2);
    const [finding] = (JSON.parse(stdout) as CheckReport).findings;
    expect(finding?.what).toMatch(new RegExp(`^configuration file ${path} not found; correct the path given with --config`));
    expect(finding?.fix).toContain("name an existing file");
    expect(stderr).toContain(`configuration file ${path} not found`);
  });

  test("without --json stdout stays empty", async () => {
    const path = join(tmpdir(), "splitroute-check-missing", "splitroute.conf");
    const { exitCode, stdout, stderr } = await runMain(["check", "--config", path]);
    expect(exitCode).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain(`configuration file ${path} not found`);
  });
});
