import { describe, expect, test } from "vitest";

import { cleanup } from "../../src/commands/cleanup.js";
import { down } from "../../src/commands/down.js";
import { renderStatus, status } from "../../src/commands/status.js";
import { up } from "../../src/commands/up.js";
import { AggregateFailure, ConfigError } from "../../src/errors.js";
import type { FirewallBackend } from "../../src/firewall/backend.js";
import { createLogger, type Logger } from "../../src/log.js";
import { MemoryStateStore } from "../../src/state.js";
import { testConfig, testContext, vpnHost } from "../fake/host.js";
import { FakeSystem } from "../fake/system.js";

const BACKENDS: FirewallBackend[] = ["nftables", "iptables", "iptables-nft", "iptables-legacy"];

/** Returns the argv of every command that may change the fake, formatted as one line each. */
function changingCommands(system: FakeSystem): string[] {
  // Batches that read carry -j, for ip's JSON output; batches that change carry none.
  const reads = [/ route show /, / route get /, / rule show$/, /^ip -[46] (-d )?-N -j -batch -$/, /-save -t (mangle|nat)$/, /^nft list /, / --version$/];
  return system.commands.map((argv) => argv.join(" ")).filter((line) => !reads.some((pattern) => pattern.test(line)));
}

function rulesAt(system: FakeSystem, family: 4 | 6, priority: number) {
  return system.ip.rules[family].filter((rule) => rule.priority === priority);
}

function tableRoutes(system: FakeSystem, family: 4 | 6, table: number) {
  return system.ip.tables[family].get(table) ?? [];
}

/** Returns the tunnels that the installed marking exempts, read from the fake's firewall state. */
function exemptTunnels(system: FakeSystem, backend: FirewallBackend): string[] {
  if (backend === "nftables") {
    const body = system.nft.tables.get("inet splitroute")?.join("\n") ?? "";
    const match = /iifname != \{ ([^}]*) \}/.exec(body);
    return match === null ? [] : match[1]!.split(", ").map((name) => JSON.parse(name) as string);
  }
  const chain = system.iptables.table(backend).get("SPLITROUTE-PRE");
  return (chain?.rules ?? []).flatMap((rule) => /^-i (\S+) -j RETURN$/.exec(rule)?.[1] ?? []);
}

/** Adds routes, rules, an nftables table and iptables rules that belong to other software. */
function addForeignState(system: FakeSystem): void {
  system.addRoutes(4, 100, ["default via 192.0.2.254 dev eth0", "10.20.0.0/16 dev eth0 scope link"]);
  system.addRoutes(6, 100, ["default via 2001:db8:1::fe dev eth0"]);
  system.addRoutes(4, 3, ["10.30.0.0/16 dev eth0"]);
  for (const family of [4, 6] as const) {
    system.setUp(
      ["ip", `-${family}`, "-batch", "-"],
      "rule add fwmark 0x4/0x4 lookup 100 priority 999\nrule add fwmark 0x2/0x2 lookup 100 priority 1001\nrule add iif eth0 lookup 3 priority 1000\n",
    );
  }
  system.setUp(["nft", "-f", "-"], 'table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tct mark 0x4 accept comment "other"\n\t}\n}\n');
  system.setUp(["nft", "-f", "-"], "table ip splitroute-other {\n}\n");
  for (const tool of ["iptables-restore", "ip6tables-restore", "iptables-nft-restore", "iptables-legacy-restore", "ip6tables-legacy-restore"]) {
    system.setUp(
      [tool, "--noflush"],
      [
        "*mangle",
        ":DOCKER-MARK - [0:0]",
        "-A DOCKER-MARK -j MARK --set-xmark 0x4/0x4",
        "-A PREROUTING -m comment --comment docker -j DOCKER-MARK",
        "-A PREROUTING -m connmark --mark 0x8/0x8 -j MARK --set-xmark 0x8/0x8",
        "-A OUTPUT -p tcp -m tcp --dport 22 -j CONNMARK --set-xmark 0x4/0x4",
        "COMMIT",
        "",
      ].join("\n"),
    );
  }
}

describe("up snapshot", () => {
  test("up with nftables", async () => {
    const system = vpnHost();
    await up(testContext(system, testConfig("nftables")), "tun0");
    expect(system.unsupported).toEqual([]);
    expect(system.render()).toMatchInlineSnapshot(`
      "interfaces: eth0 lo tun0 tun1 wg0
      sysctls:
        net.ipv4.conf.all.rp_filter = 0
        net.ipv4.conf.all.src_valid_mark = 0
        net.ipv4.conf.default.rp_filter = 0
        net.ipv4.conf.default.src_valid_mark = 0
        net.ipv4.conf.eth0.rp_filter = 0
        net.ipv4.conf.eth0.src_valid_mark = 0
        net.ipv4.conf.lo.rp_filter = 0
        net.ipv4.conf.lo.src_valid_mark = 0
        net.ipv4.conf.tun0.rp_filter = 0
        net.ipv4.conf.tun0.src_valid_mark = 0
        net.ipv4.conf.tun1.rp_filter = 0
        net.ipv4.conf.tun1.src_valid_mark = 0
        net.ipv4.conf.wg0.rp_filter = 0
        net.ipv4.conf.wg0.src_valid_mark = 0
        net.ipv6.conf.all.disable_ipv6 = 0
      ipv4 rules:
        priority=0 src=all table=255
        priority=1000 src=all fwmark=0x2 fwmask=0x2 table=2
        priority=32766 src=all table=254
        priority=32767 src=all table=253
      ipv4 table 2:
        type=blackhole dst=203.0.113.0/24 protocol=83 scope=global flags=[]
        type=unicast dst=192.0.2.0/24 dev=eth0 protocol=83 scope=link prefsrc=192.0.2.10 metric=100 flags=[]
        type=unicast dst=198.51.100.7 gateway=192.0.2.1 dev=eth0 protocol=83 scope=global flags=[]
        type=unicast dst=default gateway=192.0.2.1 dev=eth0 protocol=83 scope=global prefsrc=192.0.2.10 metric=100 flags=[]
      ipv4 table 254:
        type=blackhole dst=203.0.113.0/24 protocol=boot scope=global flags=[]
        type=unicast dst=0.0.0.0/1 gateway=10.8.0.1 dev=tun0 protocol=boot scope=global flags=[]
        type=unicast dst=10.8.0.0/24 dev=tun0 protocol=kernel scope=link prefsrc=10.8.0.2 flags=[]
        type=unicast dst=10.99.0.0/24 dev=wg0 protocol=kernel scope=link prefsrc=10.99.0.2 flags=[]
        type=unicast dst=128.0.0.0/1 gateway=10.8.0.1 dev=tun0 protocol=boot scope=global flags=[]
        type=unicast dst=192.0.2.0/24 dev=eth0 protocol=kernel scope=link prefsrc=192.0.2.10 metric=100 flags=[]
        type=unicast dst=198.51.100.7 gateway=192.0.2.1 dev=eth0 protocol=boot scope=global flags=[]
        type=unicast dst=default gateway=192.0.2.1 dev=eth0 protocol=dhcp scope=global prefsrc=192.0.2.10 metric=100 flags=[]
      ipv6 rules:
        priority=0 src=all table=255
        priority=1000 src=all fwmark=0x2 fwmask=0x2 table=2
        priority=32766 src=all table=254
      ipv6 table 2:
        type=unicast dst=2001:db8:1::/64 dev=eth0 protocol=83 scope=global metric=256 flags=[] pref=medium
        type=unicast dst=default gateway=2001:db8:1::1 dev=eth0 protocol=83 scope=global metric=1024 flags=[] pref=medium
        type=unicast dst=fe80::/64 dev=eth0 protocol=83 scope=global metric=256 flags=[] pref=medium
      ipv6 table 254:
        type=unicast dst=2000::/3 dev=tun0 protocol=boot scope=global metric=1024 flags=[] pref=medium
        type=unicast dst=2001:db8:1::/64 dev=eth0 protocol=kernel scope=global metric=256 flags=[] pref=medium
        type=unicast dst=default gateway=2001:db8:1::1 dev=eth0 protocol=ra scope=global metric=1024 flags=[] pref=medium
        type=unicast dst=fe80::/64 dev=eth0 protocol=kernel scope=global metric=256 flags=[] pref=medium
        type=unicast dst=fe80::/64 dev=tun0 protocol=kernel scope=global metric=256 flags=[] pref=medium
      nft:
        table inet splitroute {
        	chain prerouting {
        		type filter hook prerouting priority mangle; policy accept;
        		iifname != { "tun0" } meta l4proto tcp th dport 22 ct direction original ct mark set ct mark and 0xfffffffd or 0x2 comment "bypass.ssh"
        		ct mark and 0x2 == 0x2 meta mark set meta mark and 0xfffffffd or 0x2
        	}
        	chain output {
        		type route hook output priority mangle; policy accept;
        		ct mark and 0x2 == 0x2 meta mark set meta mark and 0xfffffffd or 0x2
        	}
        }
      "
    `);
  });

  test("up with iptables-legacy", async () => {
    const system = vpnHost();
    await up(testContext(system, testConfig("iptables-legacy")), "tun0");
    expect(system.unsupported).toEqual([]);
    expect(system.render()).toMatchInlineSnapshot(`
      "interfaces: eth0 lo tun0 tun1 wg0
      sysctls:
        net.ipv4.conf.all.rp_filter = 0
        net.ipv4.conf.all.src_valid_mark = 0
        net.ipv4.conf.default.rp_filter = 0
        net.ipv4.conf.default.src_valid_mark = 0
        net.ipv4.conf.eth0.rp_filter = 0
        net.ipv4.conf.eth0.src_valid_mark = 0
        net.ipv4.conf.lo.rp_filter = 0
        net.ipv4.conf.lo.src_valid_mark = 0
        net.ipv4.conf.tun0.rp_filter = 0
        net.ipv4.conf.tun0.src_valid_mark = 0
        net.ipv4.conf.tun1.rp_filter = 0
        net.ipv4.conf.tun1.src_valid_mark = 0
        net.ipv4.conf.wg0.rp_filter = 0
        net.ipv4.conf.wg0.src_valid_mark = 0
        net.ipv6.conf.all.disable_ipv6 = 0
      ipv4 rules:
        priority=0 src=all table=255
        priority=1000 src=all fwmark=0x2 fwmask=0x2 table=2
        priority=32766 src=all table=254
        priority=32767 src=all table=253
      ipv4 table 2:
        type=blackhole dst=203.0.113.0/24 protocol=83 scope=global flags=[]
        type=unicast dst=192.0.2.0/24 dev=eth0 protocol=83 scope=link prefsrc=192.0.2.10 metric=100 flags=[]
        type=unicast dst=198.51.100.7 gateway=192.0.2.1 dev=eth0 protocol=83 scope=global flags=[]
        type=unicast dst=default gateway=192.0.2.1 dev=eth0 protocol=83 scope=global prefsrc=192.0.2.10 metric=100 flags=[]
      ipv4 table 254:
        type=blackhole dst=203.0.113.0/24 protocol=boot scope=global flags=[]
        type=unicast dst=0.0.0.0/1 gateway=10.8.0.1 dev=tun0 protocol=boot scope=global flags=[]
        type=unicast dst=10.8.0.0/24 dev=tun0 protocol=kernel scope=link prefsrc=10.8.0.2 flags=[]
        type=unicast dst=10.99.0.0/24 dev=wg0 protocol=kernel scope=link prefsrc=10.99.0.2 flags=[]
        type=unicast dst=128.0.0.0/1 gateway=10.8.0.1 dev=tun0 protocol=boot scope=global flags=[]
        type=unicast dst=192.0.2.0/24 dev=eth0 protocol=kernel scope=link prefsrc=192.0.2.10 metric=100 flags=[]
        type=unicast dst=198.51.100.7 gateway=192.0.2.1 dev=eth0 protocol=boot scope=global flags=[]
        type=unicast dst=default gateway=192.0.2.1 dev=eth0 protocol=dhcp scope=global prefsrc=192.0.2.10 metric=100 flags=[]
      ipv6 rules:
        priority=0 src=all table=255
        priority=1000 src=all fwmark=0x2 fwmask=0x2 table=2
        priority=32766 src=all table=254
      ipv6 table 2:
        type=unicast dst=2001:db8:1::/64 dev=eth0 protocol=83 scope=global metric=256 flags=[] pref=medium
        type=unicast dst=default gateway=2001:db8:1::1 dev=eth0 protocol=83 scope=global metric=1024 flags=[] pref=medium
        type=unicast dst=fe80::/64 dev=eth0 protocol=83 scope=global metric=256 flags=[] pref=medium
      ipv6 table 254:
        type=unicast dst=2000::/3 dev=tun0 protocol=boot scope=global metric=1024 flags=[] pref=medium
        type=unicast dst=2001:db8:1::/64 dev=eth0 protocol=kernel scope=global metric=256 flags=[] pref=medium
        type=unicast dst=default gateway=2001:db8:1::1 dev=eth0 protocol=ra scope=global metric=1024 flags=[] pref=medium
        type=unicast dst=fe80::/64 dev=eth0 protocol=kernel scope=global metric=256 flags=[] pref=medium
        type=unicast dst=fe80::/64 dev=tun0 protocol=kernel scope=global metric=256 flags=[] pref=medium
      ip6tables-legacy:
        *mangle
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        :SPLITROUTE-OUT - [0:0]
        :SPLITROUTE-PRE - [0:0]
        -A PREROUTING -m comment --comment splitroute -j SPLITROUTE-PRE
        -A OUTPUT -m comment --comment splitroute -j SPLITROUTE-OUT
        -A SPLITROUTE-OUT -m connmark --mark 0x2/0x2 -j MARK --set-xmark 0x2/0x2
        -A SPLITROUTE-PRE -i tun0 -j RETURN
        -A SPLITROUTE-PRE -p tcp -m tcp --dport 22 -m conntrack --ctdir ORIGINAL -m comment --comment bypass.ssh -j CONNMARK --set-xmark 0x2/0x2
        -A SPLITROUTE-PRE -m connmark --mark 0x2/0x2 -j MARK --set-xmark 0x2/0x2
        COMMIT
      iptables-legacy:
        *mangle
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        :SPLITROUTE-OUT - [0:0]
        :SPLITROUTE-PRE - [0:0]
        -A PREROUTING -m comment --comment splitroute -j SPLITROUTE-PRE
        -A OUTPUT -m comment --comment splitroute -j SPLITROUTE-OUT
        -A SPLITROUTE-OUT -m connmark --mark 0x2/0x2 -j MARK --set-xmark 0x2/0x2
        -A SPLITROUTE-PRE -i tun0 -j RETURN
        -A SPLITROUTE-PRE -p tcp -m tcp --dport 22 -m conntrack --ctdir ORIGINAL -m comment --comment bypass.ssh -j CONNMARK --set-xmark 0x2/0x2
        -A SPLITROUTE-PRE -m connmark --mark 0x2/0x2 -j MARK --set-xmark 0x2/0x2
        COMMIT
      "
    `);
  });

  test("up reads before changing", async () => {
    const system = vpnHost();
    await up(testContext(system, testConfig("iptables")), "tun0");
    const changes = changingCommands(system);
    expect(changes).toEqual(["ip -4 -batch -", "ip -6 -batch -", "iptables-restore --noflush", "ip6tables-restore --noflush"]);
    // After the changes, up only looks up where marked traffic goes now.
    const postChecks = [/ route get /, /^nft list ruleset$/];
    const lines = system.commands.map((argv) => argv.join(" ")).filter((line) => !postChecks.some((pattern) => pattern.test(line)));
    expect(lines.slice(-changes.length)).toEqual(changes);
  });
});

describe.each(BACKENDS)("up and down with %s", (backend) => {
  test("down restores starting state", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig(backend));
    const before = system.render();

    await up(context, "tun0");
    expect(system.render()).not.toBe(before);
    expect(await context.store.read()).toMatchObject({ tunnels: ["tun0"], backend, families: [4, 6] });

    await down(context, "tun0");
    expect(system.render()).toBe(before);
    expect(await context.store.read()).toBeUndefined();
    expect(system.unsupported).toEqual([]);
  });

  test("up twice keeps one copy", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig(backend));
    await up(context, "tun0");
    const once = system.render();

    await up(context, "tun0");
    expect(system.render()).toBe(once);
    expect(rulesAt(system, 4, 1000)).toHaveLength(1);
    expect(rulesAt(system, 6, 1000)).toHaveLength(1);
    expect((await context.store.read())?.tunnels).toEqual(["tun0"]);

    await down(context, "tun0");
    expect(await context.store.read()).toBeUndefined();
  });

  test("down without state changes nothing", async () => {
    const system = vpnHost();
    const before = system.render();
    await down(testContext(system, testConfig(backend)), "tun0");
    expect(system.render()).toBe(before);
    expect(system.commands).toEqual([]);
  });

  test("foreign state survives up and down", async () => {
    const system = vpnHost();
    addForeignState(system);
    const context = testContext(system, testConfig(backend));
    const before = system.render();

    await up(context, "tun0");
    expect(rulesAt(system, 4, 999)).toEqual([{ priority: 999, src: "all", fwmark: "0x4", fwmask: "0x4", table: "100" }]);
    expect(rulesAt(system, 4, 1001)).toEqual([{ priority: 1001, src: "all", fwmark: "0x2", fwmask: "0x2", table: "100" }]);
    expect(rulesAt(system, 4, 1000)).toHaveLength(2);
    expect(system.nft.tables.has("inet filter")).toBe(true);

    await down(context, "tun0");
    expect(system.render()).toBe(before);
    expect(system.unsupported).toEqual([]);
  });

  test("tunnel and excluded routes skipped", async () => {
    const system = vpnHost();
    await up(testContext(system, testConfig(backend)), "tun0");
    const devices = (family: 4 | 6) => tableRoutes(system, family, 2).map((route) => route.dev ?? `(${String(route.type)})`);
    expect(devices(4).sort()).toEqual(["(blackhole)", "eth0", "eth0", "eth0"]);
    expect(devices(6).sort()).toEqual(["eth0", "eth0", "eth0"]);
    expect(tableRoutes(system, 4, 2).map((route) => route.dst)).not.toContain("10.99.0.0/24");
  });

  test("strict rp_filter marks uplink only", async () => {
    const system = vpnHost();
    system.sysctls.set("net.ipv4.conf.eth0.rp_filter", "1");
    const context = testContext(system, testConfig(backend));
    const before = system.render();

    await up(context, "tun0");
    expect(system.sysctls.get("net.ipv4.conf.eth0.src_valid_mark")).toBe("1");
    expect(system.sysctls.get("net.ipv4.conf.all.src_valid_mark")).toBe("0");
    expect(system.sysctls.get("net.ipv4.conf.tun0.src_valid_mark")).toBe("0");
    expect((await context.store.read())?.sysctls).toEqual([
      { key: "net.ipv4.conf.eth0.src_valid_mark", value: "1", previous: "0" },
    ]);

    await down(context, "tun0");
    expect(system.render()).toBe(before);
  });

  test("strict all rp_filter marks uplink", async () => {
    const system = vpnHost();
    system.sysctls.set("net.ipv4.conf.all.rp_filter", "1");
    const context = testContext(system, testConfig(backend));
    await up(context, "tun0");
    expect(system.sysctls.get("net.ipv4.conf.eth0.src_valid_mark")).toBe("1");
    expect(system.sysctls.get("net.ipv4.conf.all.src_valid_mark")).toBe("0");
    expect(system.sysctls.get("net.ipv4.conf.wg0.src_valid_mark")).toBe("0");
  });

  test("loose rp_filter changes nothing", async () => {
    const system = vpnHost();
    system.sysctls.set("net.ipv4.conf.all.rp_filter", "2");
    system.sysctls.set("net.ipv4.conf.eth0.rp_filter", "1");
    const context = testContext(system, testConfig(backend));
    await up(context, "tun0");
    expect(system.sysctls.get("net.ipv4.conf.eth0.src_valid_mark")).toBe("0");
    expect((await context.store.read())?.sysctls).toEqual([]);
  });

  test("custom table, mark and ports", async () => {
    const system = vpnHost();
    const config = testConfig(backend, {
      table: { name: "bypass", id: 100, priority: 500 },
      mark: { value: 0x100, mask: 0x300 },
      bypass: [
        { name: "ssh", protocol: "tcp", localPort: 2222 },
        { name: "dns", protocol: "udp", localPort: 53 },
      ],
    });
    const context = testContext(system, config);
    const before = system.render();

    await up(context, "tun0");
    expect(rulesAt(system, 4, 500)).toEqual([{ priority: 500, src: "all", fwmark: "0x100", fwmask: "0x300", table: "100" }]);
    expect(tableRoutes(system, 6, 100)).toHaveLength(3);
    const firewall = system.render();
    if (backend === "nftables") {
      expect(firewall).toContain("meta l4proto tcp th dport 2222 ");
      expect(firewall).toContain("meta l4proto udp th dport 53 ");
      expect(firewall).toContain("ct mark and 0x300 == 0x100 meta mark set meta mark and 0xfffffcff or 0x100");
    } else {
      expect(firewall).toContain("-p tcp -m tcp --dport 2222 ");
      expect(firewall).toContain("-p udp -m udp --dport 53 ");
      expect(firewall).toContain("-m connmark --mark 0x100/0x300 -j MARK --set-xmark 0x100/0x300");
    }

    await down(context, "tun0");
    expect(system.render()).toBe(before);
  });

  test("firewall failure rolls back up", async () => {
    const system = vpnHost();
    system.sysctls.set("net.ipv4.conf.all.rp_filter", "1");
    const context = testContext(system, testConfig(backend));
    const before = system.render();
    system.failOn((argv, input) => /^(nft -f -|.*-restore --noflush)$/.test(argv.join(" ")) && /chain prerouting|:SPLITROUTE-PRE/.test(input ?? ""));

    await expect(up(context, "tun0")).rejects.toThrow(/^up for tun0 failed and was rolled back: installing .*marking: /);
    expect(system.render()).toBe(before);
    expect(await context.store.read()).toBeUndefined();
  });

  test("sysctl failure rolls back up", async () => {
    const system = vpnHost();
    system.sysctls.set("net.ipv4.conf.eth0.rp_filter", "1");
    const context = testContext(system, testConfig(backend));
    const before = system.render();
    system.failOn((argv) => argv[0] === "sysctl" && argv[2] === "net.ipv4.conf.eth0.src_valid_mark=1");

    await expect(up(context, "tun0")).rejects.toThrow("up for tun0 failed and was rolled back");
    expect(system.render()).toBe(before);
    expect(await context.store.read()).toBeUndefined();
  });

  test("down failure keeps state", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig(backend));
    const before = system.render();
    await up(context, "tun0");
    system.failOn((argv) => argv.join(" ") === "ip -4 -batch -");

    const failure = await down(context, "tun0").catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(AggregateFailure);
    expect((failure as AggregateFailure).failures).toHaveLength(1);
    expect((failure as Error).message).toContain("removing the IPv4 rule and table redirect (2)");
    // Every other removal ran.
    expect(rulesAt(system, 6, 1000)).toEqual([]);
    expect(tableRoutes(system, 6, 2)).toEqual([]);
    expect(exemptTunnels(system, backend)).toEqual([]);
    expect(system.nft.tables.has("inet splitroute")).toBe(false);
    expect(rulesAt(system, 4, 1000)).toHaveLength(1);
    expect((await context.store.read())?.tunnels).toEqual(["tun0"]);

    system.clearFailures();
    await down(context, "tun0");
    expect(system.render()).toBe(before);
    expect(await context.store.read()).toBeUndefined();
  });

  test("foreign table routes block up", async () => {
    const system = vpnHost();
    system.addRoutes(4, 2, ["10.40.0.0/16 dev eth0"]);
    const context = testContext(system, testConfig(backend));
    const before = system.render();

    const failure = await up(context, "tun0").catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ConfigError);
    expect((failure as Error).message).toContain("table 2 already contains 1 IPv4 route(s) that splitroute did not install");
    expect((failure as Error).message).toContain("/etc/splitroute/test.conf");
    expect(changingCommands(system)).toEqual([]);
    expect(system.render()).toBe(before);
    expect(await context.store.read()).toBeUndefined();
  });

  test("two tunnels share one bypass", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig(backend));
    const before = system.render();

    await up(context, "tun0");
    await up(context, "tun1");
    expect((await context.store.read())?.tunnels).toEqual(["tun0", "tun1"]);
    expect(rulesAt(system, 4, 1000)).toHaveLength(1);
    expect(rulesAt(system, 6, 1000)).toHaveLength(1);
    expect(exemptTunnels(system, backend)).toEqual(["tun0", "tun1"]);
    const shared = tableRoutes(system, 4, 2);

    await down(context, "tun0");
    expect((await context.store.read())?.tunnels).toEqual(["tun1"]);
    expect(rulesAt(system, 4, 1000)).toHaveLength(1);
    expect(tableRoutes(system, 4, 2)).toEqual(shared);
    expect(exemptTunnels(system, backend)).toEqual(["tun1"]);

    await down(context, "tun1");
    expect(system.render()).toBe(before);
    expect(await context.store.read()).toBeUndefined();
  });

  test("down of other tunnel ignored", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig(backend));
    await up(context, "tun0");
    const installed = system.render();

    await down(context, "tun1");
    expect(system.render()).toBe(installed);
    expect((await context.store.read())?.tunnels).toEqual(["tun0"]);
  });

  test("failed second up keeps first", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig(backend));
    await up(context, "tun0");
    const installed = system.render();
    system.failOn((argv, input) => /^(nft -f -|.*-restore --noflush)$/.test(argv.join(" ")) && /tun1/.test(input ?? ""));

    await expect(up(context, "tun1")).rejects.toThrow("up for tun1 failed");
    // tun0 is still connected, so its bypass must stay as it was.
    expect(system.render()).toBe(installed);
    expect((await context.store.read())?.tunnels).toEqual(["tun0"]);
  });

  test("random up and down sequences", async () => {
    const random = seededRandom(20240611);
    const devices = ["tun0", "tun1", "wg0"];
    const system = vpnHost();
    const context = testContext(system, testConfig(backend));
    const before = system.render();
    const active = new Set<string>();

    for (let step = 0; step < 60; step++) {
      const device = devices[Math.floor(random() * devices.length)]!;
      const action = random() < 0.5 ? "up" : "down";
      if (action === "up") {
        await up(context, device);
        active.add(device);
      } else {
        await down(context, device);
        // Down of a tunnel that does not hold the bypass changes nothing.
        active.delete(device);
      }

      const where = `after step ${step} (${action} ${device}), active ${[...active].join(",") || "none"}`;
      const state = await context.store.read();
      if (active.size === 0) {
        expect(state, where).toBeUndefined();
        expect(system.render(), where).toBe(before);
        continue;
      }
      expect(state?.tunnels, where).toEqual([...active].sort());
      expect(rulesAt(system, 4, 1000), where).toHaveLength(1);
      expect(rulesAt(system, 6, 1000), where).toHaveLength(1);
      expect(exemptTunnels(system, backend), where).toEqual([...active].sort());
      expect(tableRoutes(system, 4, 2).length, where).toBe(state?.routeCounts[4]);
    }
    expect(system.unsupported).toEqual([]);
  });

  test("status follows live state", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig(backend));
    expect(await status(context)).toEqual({ installed: false, stateFile: "(memory)", leftovers: [], drift: [] });

    await up(context, "tun0");
    const report = await status(context);
    expect(report.installed).toBe(true);
    expect(report.drift).toEqual([]);
    expect(report.live).toEqual({
      rule: { ipv4: true, ipv6: true },
      tableRoutes: { ipv4: 4, ipv6: 3 },
      tunnels: { tun0: true },
      copyChanges: { ipv4: 0, ipv6: 0 },
      firewall: true,
    });
    expect(renderStatus(report)).toContain("live:      matches the record");

    system.setUp(["ip", "-4", "-batch", "-"], "rule del fwmark 0x2/0x2 lookup 2 priority 1000\n");
    // The missing rule is the cause; status does not also blame another rule.
    expect((await status(context)).drift).toEqual(["the IPv4 rule at priority 1000 is missing"]);
  });
});

describe("special hosts", () => {
  test("IPv6 disabled uses IPv4 only", async () => {
    const system = vpnHost({ ipv6: false });
    const context = testContext(system, testConfig("iptables-legacy"));
    const before = system.render();

    await up(context, "tun0");
    expect((await context.store.read())?.families).toEqual([4]);
    expect(system.commands.some((argv) => argv.includes("-6") || argv[0]!.startsWith("ip6tables"))).toBe(false);
    expect(rulesAt(system, 6, 1000)).toEqual([]);

    await down(context, "tun0");
    expect(system.render()).toBe(before);
  });

  test("auto picks nftables when present", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("auto"));
    await up(context, "tun0");
    expect((await context.store.read())?.backend).toBe("nftables");
  });

  test("auto falls back to iptables", async () => {
    const system = vpnHost({ tools: ["ip", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"] });
    const context = testContext(system, testConfig("auto"));
    const before = system.render();
    await up(context, "tun0");
    expect((await context.store.read())?.backend).toBe("iptables");
    await down(context, "tun0");
    expect(system.render()).toBe(before);
  });

  test("missing backend tool rejected", async () => {
    const system = vpnHost({ tools: ["ip", "nft"] });
    const context = testContext(system, testConfig("iptables-legacy"));
    await expect(up(context, "tun0")).rejects.toThrow(
      "firewall.backend = iptables-legacy needs iptables-legacy-restore and ip6tables-legacy-restore, which is not installed",
    );
    expect(changingCommands(system)).toEqual([]);
  });

  test("changed configuration replaces bypass", async () => {
    const system = vpnHost();
    const store = new MemoryStateStore();
    const before = system.render();
    await up(testContext(system, testConfig("nftables"), store), "tun0");

    const moved = testConfig("nftables", { table: { name: "moved", id: 7, priority: 900 } });
    await up(testContext(system, moved, store), "tun0");
    expect(rulesAt(system, 4, 1000)).toEqual([]);
    expect(tableRoutes(system, 4, 2)).toEqual([]);
    expect(rulesAt(system, 4, 900)).toHaveLength(1);
    expect(tableRoutes(system, 4, 7)).toHaveLength(4);

    await down(testContext(system, moved, store), "tun0");
    expect(system.render()).toBe(before);
  });

  test("VLAN uplink sysctl key", async () => {
    const system = new FakeSystem({ interfaces: ["eth0.100", "tun0"] });
    system.addRoutes(4, "main", ["default via 192.0.2.1 dev eth0.100", "0.0.0.0/1 via 10.8.0.1 dev tun0"]);
    system.sysctls.set("net.ipv4.conf.eth0/100.rp_filter", "1");
    const context = testContext(system, testConfig("nftables"));
    const before = system.render();

    await up(context, "tun0");
    expect(system.sysctls.get("net.ipv4.conf.eth0/100.src_valid_mark")).toBe("1");
    await down(context, "tun0");
    expect(system.render()).toBe(before);
  });

  test("up after failed down restores sysctl", async () => {
    const system = vpnHost();
    system.sysctls.set("net.ipv4.conf.eth0.rp_filter", "1");
    const context = testContext(system, testConfig("nftables"));
    const before = system.render();
    await up(context, "tun0");
    system.failOn((argv) => argv[0] === "sysctl");
    await expect(down(context, "tun0")).rejects.toThrow(AggregateFailure);
    expect(system.sysctls.get("net.ipv4.conf.eth0.src_valid_mark")).toBe("1");
    system.clearFailures();

    // The failed down removed the rule, so this up finds a stale record.
    await up(context, "tun0");
    await down(context, "tun0");
    expect(system.render()).toBe(before);
  });

  test("stale state without rule restarts", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    const before = system.render();
    await up(context, "tun0");
    // Someone flushed the rules and the table by hand, so the record is stale.
    for (const family of [4, 6]) {
      system.setUp(["ip", `-${family}`, "-batch", "-"], "rule del fwmark 0x2/0x2 lookup 2 priority 1000\nroute flush table 2\n");
    }

    await up(context, "tun1");
    expect((await context.store.read())?.tunnels).toEqual(["tun1"]);
    expect(rulesAt(system, 4, 1000)).toHaveLength(1);
    await down(context, "tun1");
    expect(system.render()).toBe(before);
  });
});

// A small deterministic generator (mulberry32), so a failing sequence can be replayed.
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

describe("cleanup", () => {
  test("clean host runs nothing", async () => {
    const system = vpnHost();
    await cleanup(testContext(system, testConfig("nftables")));
    expect(changingCommands(system)).toEqual([]);
  });

  test("leftover table removed without state", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    const before = system.render();
    await up(context, "tun0");
    await context.store.remove();
    system.commands.length = 0;

    await cleanup(testContext(system, testConfig("nftables"), new MemoryStateStore()));
    expect(changingCommands(system)).toContain("nft -f -");
    expect(system.render()).toBe(before);
  });

  test("warns of src_valid_mark without state", async () => {
    const system = vpnHost();
    system.sysctls.set("net.ipv4.conf.eth0.rp_filter", "1");
    const context = testContext(system, testConfig("nftables"));
    await up(context, "tun0");
    expect(system.sysctls.get("net.ipv4.conf.eth0.src_valid_mark")).toBe("1");
    await context.store.remove();
    system.commands.length = 0;

    const warnings: string[] = [];
    await cleanup({ ...testContext(system, testConfig("nftables"), new MemoryStateStore()), log: warningLogger(warnings) });
    expect(warnings).toEqual([
      "splitroute: warning: src_valid_mark is 1 on eth0, and cleanup leaves it. " +
        "splitroute's up sets it on uplinks with strict rp_filter, but without a state file cleanup cannot tell whether splitroute set it. " +
        "If nothing else needs it, set it back with: sysctl -w net.ipv4.conf.eth0.src_valid_mark=0\n",
    ]);
    expect(system.sysctls.get("net.ipv4.conf.eth0.src_valid_mark")).toBe("1");
    expect(changingCommands(system).filter((line) => line.startsWith("sysctl"))).toEqual([]);
  });

  test("warning names dotted interfaces", async () => {
    const system = vpnHost();
    system.addInterface("eth0.100");
    system.addInterface("eth1");
    system.sysctls.set("net.ipv4.conf.eth0/100.src_valid_mark", "1");
    system.sysctls.set("net.ipv4.conf.eth1.src_valid_mark", "1");

    const warnings: string[] = [];
    await cleanup({ ...testContext(system, testConfig("nftables")), log: warningLogger(warnings) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("src_valid_mark is 1 on eth0.100, eth1, and cleanup leaves it.");
    expect(warnings[0]).toContain("sysctl -w net.ipv4.conf.eth0/100.src_valid_mark=0 net.ipv4.conf.eth1.src_valid_mark=0\n");
  });

  test("no warning with state or unset", async () => {
    const system = vpnHost();
    system.sysctls.set("net.ipv4.conf.eth0.rp_filter", "1");
    const context = testContext(system, testConfig("nftables"));
    const before = system.render();
    const warnings: string[] = [];
    await up(context, "tun0");

    await cleanup({ ...context, log: warningLogger(warnings) });
    expect(system.render()).toBe(before);
    await cleanup({ ...context, log: warningLogger(warnings) });
    expect(warnings).toEqual([]);
  });
});

/** Builds a text logger that keeps only warnings and errors, appending each line to `lines`. */
function warningLogger(lines: string[]): Logger {
  const stream = {
    write(text: string): boolean {
      lines.push(text);
      return true;
    },
  };
  return createLogger("text", "warn", stream as unknown as NodeJS.WritableStream);
}
