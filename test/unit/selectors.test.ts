// The selectors of [bypass.NAME]: how each key is validated, and the nft and
// iptables rules that each selector becomes.

import { parse } from "ini";
import { describe, expect, test } from "vitest";

import { down } from "../../src/commands/down.js";
import { up } from "../../src/commands/up.js";
import type { AccountDatabase } from "../../src/config/accounts.js";
import { localAccounts } from "../../src/config/accounts.js";
import { parseCidr } from "../../src/config/cidr.js";
import type { Bypass, Config } from "../../src/config/types.js";
import { validateConfig } from "../../src/config/validate.js";
import { ConfigError } from "../../src/errors.js";
import { NOTHING_OBSERVED, renderIptablesApply } from "../../src/firewall/iptables.js";
import {
  cgroup2Mount,
  checkServiceSelectors,
  nftCgroupPath,
  describeBypass,
  selectionsOf,
  type MarkingSpec,
} from "../../src/firewall/marking.js";
import { renderNftTable } from "../../src/firewall/nftables.js";
import { testConfig, testContext, vpnHost } from "../fake/host.js";
import { FakeSystem } from "../fake/system.js";

const SOURCE = "/etc/x.conf";

const ACCOUNTS: AccountDatabase = {
  userId: (name) => ({ root: 0, nobody: 65534, "debian-transmission": 105 })[name],
  groupId: (name) => ({ root: 0, nogroup: 65534 })[name],
};

function validate(text: string): Config {
  return validateConfig(parse(text), SOURCE, ACCOUNTS);
}

/** Returns the bypass sections of a file with one section whose body is `body`. */
function section(body: string): Bypass[] {
  return validate(`[bypass.test]\n${body}`).bypass;
}

/** Returns the problem lines of the ConfigError that validating `text` throws. */
function problems(text: string): string[] {
  try {
    validate(text);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const [first, ...rest] = (error as Error).message.split("\n");
    expect(first).toBe(`invalid configuration in ${SOURCE}:`);
    return rest.map((line) => line.trim());
  }
  throw new Error(`expected the configuration to be rejected:\n${text}`);
}

function spec(...bypass: Bypass[]): MarkingSpec {
  return { mark: { value: 0x2, mask: 0x2 }, tunnels: ["tun0"], bypass };
}

/** Returns the nft rules of our table that carry a bypass comment, by chain. */
function nftSelections(marking: MarkingSpec): Record<string, string[]> {
  const chains: Record<string, string[]> = {};
  let chain = "";
  for (const line of renderNftTable(marking).split("\n")) {
    const header = /^\tchain (\S+) \{$/.exec(line);
    if (header !== null) {
      chain = header[1]!;
      chains[chain] = [];
    } else if (line.includes('comment "bypass.')) {
      chains[chain]!.push(line.trim());
    }
  }
  return chains;
}

/** Returns the iptables rules of one family that carry a bypass comment. */
function iptablesSelections(marking: MarkingSpec, family: 4 | 6): string[] {
  return renderIptablesApply(marking, NOTHING_OBSERVED, family)
    .split("\n")
    .filter((line) => line.includes("--comment bypass."));
}

const SET = "ct direction original ct mark set ct mark and 0xfffffffd or 0x2";
const CONNMARK = "-m conntrack --ctdir ORIGINAL -m comment --comment bypass.test -j CONNMARK --set-xmark 0x2/0x2";

describe("selector validation", () => {
  test("accepts every selector", () => {
    expect(section("protocol = udp\nremote_port = 123\nsource = 192.0.2.0/24 2001:DB8::/32\n")).toEqual([
      { name: "test", protocol: "udp", remotePort: 123, source: ["192.0.2.0/24", "2001:db8::/32"] },
    ]);
    expect(section("destination = 198.51.100.0/24 203.0.113.10 2001:db8:3::/48\n")).toEqual([
      { name: "test", destination: ["198.51.100.0/24", "203.0.113.10", "2001:db8:3::/48"] },
    ]);
    expect(section("uid = 1000\ngid = 100\n")).toEqual([{ name: "test", uid: 1000, gid: 100 }]);
    expect(section("interface = lan0\nsource = 192.0.2.128/25\n")).toEqual([{ name: "test", interface: "lan0", source: ["192.0.2.128/25"] }]);
    expect(section("service = transmission-daemon.service\n")).toEqual([{ name: "test", service: "transmission-daemon.service" }]);
  });

  test("resolves user and group names", () => {
    expect(section("uid = nobody\ngid = nogroup\n")).toEqual([{ name: "test", uid: 65534, gid: 65534 }]);
    expect(section("uid = debian-transmission\n")).toEqual([{ name: "test", uid: 105 }]);
  });

  test("local accounts read passwd", () => {
    const accounts = localAccounts("/etc/passwd", "/etc/group");
    expect(accounts.userId("root")).toBe(0);
    expect(accounts.groupId("root")).toBe(0);
    expect(localAccounts("/nonexistent/passwd").userId("root")).toBeUndefined();
  });

  test("legacy sections keep their shape", () => {
    expect(section("protocol = tcp\nlocal_port = 22\n")).toEqual([{ name: "test", protocol: "tcp", localPort: 22 }]);
  });

  const CIDR_ALLOWED = "IPv4 or IPv6 networks such as 192.0.2.0/24";
  const badCases: Array<{ name: string; body: string; key: string; value: string; allowed: string }> = [
    { name: "remote port 0", body: "protocol = tcp\nremote_port = 0\n", key: "remote_port", value: '"0"', allowed: "a port number from 1 to 65535" },
    { name: "remote port word", body: "protocol = tcp\nremote_port = ntp\n", key: "remote_port", value: '"ntp"', allowed: "a port number from 1 to 65535" },
    { name: "cidr host bits", body: "source = 192.0.2.1/24\n", key: "source", value: '"192.0.2.1/24"', allowed: "no bits set after the prefix length" },
    { name: "cidr prefix 33", body: "destination = 192.0.2.0/33\n", key: "destination", value: '"192.0.2.0/33"', allowed: CIDR_ALLOWED },
    { name: "cidr octet 256", body: "destination = 192.0.2.256\n", key: "destination", value: '"192.0.2.256"', allowed: CIDR_ALLOWED },
    { name: "cidr leading zero", body: "destination = 192.0.2.010\n", key: "destination", value: '"192.0.2.010"', allowed: CIDR_ALLOWED },
    { name: "cidr hostname", body: "destination = example.com\n", key: "destination", value: '"example.com"', allowed: CIDR_ALLOWED },
    { name: "cidr with comma", body: "destination = 192.0.2.0/24,198.51.100.0/24\n", key: "destination", value: '"192.0.2.0/24,198.51.100.0/24"', allowed: CIDR_ALLOWED },
    { name: "cidr quote", body: 'destination = 192.0.2.0/24"\n', key: "destination", value: "192.0.2.0/24", allowed: CIDR_ALLOWED },
    { name: "cidr ipv6 zone", body: "source = fe80::1%eth0\n", key: "source", value: '"fe80::1%eth0"', allowed: CIDR_ALLOWED },
    { name: "cidr ipv6 host bits", body: "source = 2001:db8::1/64\n", key: "source", value: '"2001:db8::1/64"', allowed: CIDR_ALLOWED },
    { name: "cidr overlap", body: "destination = 198.51.100.0/24 198.51.100.128/25\n", key: "destination", value: '"198.51.100.0/24 198.51.100.128/25"', allowed: "no two entries overlapping" },
    { name: "unknown user", body: "uid = mallory\n", key: "uid", value: '"mallory"', allowed: "a user name listed in /etc/passwd" },
    { name: "uid minus one", body: "uid = 4294967295\n", key: "uid", value: '"4294967295"', allowed: "a user id from 0 to 4294967294" },
    { name: "negative uid", body: "uid = -1\n", key: "uid", value: '"-1"', allowed: "a user id from 0 to 4294967294" },
    { name: "unknown group", body: "gid = wheel\n", key: "gid", value: '"wheel"', allowed: "a group name listed in /etc/group" },
    { name: "interface too long", body: "interface = abcdefghijklmnop\n", key: "interface", value: '"abcdefghijklmnop"', allowed: "an interface name of at most 15 characters" },
    { name: "interface wildcard", body: "interface = lan*\n", key: "interface", value: '"lan*"', allowed: "an interface name" },
    { name: "interface quote", body: 'interface = "lan0" accept\n', key: "interface", value: "accept", allowed: "an interface name" },
    { name: "service without suffix", body: "service = cron\n", key: "service", value: '"cron"', allowed: "a systemd unit name ending in .service" },
    { name: "service template", body: "service = openvpn@office.service\n", key: "service", value: '"openvpn@office.service"', allowed: "template instances with @ are not supported" },
    { name: "service path", body: "service = ../user.slice/x.service\n", key: "service", value: '"../user.slice/x.service"', allowed: "a systemd unit name" },
  ];

  for (const bad of badCases) {
    test(`rejects ${bad.name}`, () => {
      const lines = problems(`[bypass.test]\n${bad.body}`);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^bypass\\.test\\.${bad.key}: invalid value `));
      expect(lines[0]).toContain(bad.value);
      expect(lines[0]).toContain(bad.allowed);
    });
  }

  test("rejects section without selector", () => {
    const lines = problems("[bypass.test]\nprotocol = tcp\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("bypass.test.local_port: missing");
    expect(lines[0]).toContain("another selector: remote_port, source, destination, uid, gid, interface, service");
  });

  test("rejects ports without protocol", () => {
    expect(problems("[bypass.test]\nremote_port = 53\n")).toEqual([
      "bypass.test.protocol: missing; local_port and remote_port need it; allowed: tcp, udp",
    ]);
  });

  test("rejects local port outgoing", () => {
    const lines = problems("[bypass.test]\nprotocol = tcp\nlocal_port = 22\nuid = 1000\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("bypass.test.local_port: cannot be combined with uid");
    expect(lines[0]).toContain("use remote_port");
  });

  test("rejects uid with interface", () => {
    const lines = problems("[bypass.test]\nuid = 1000\ninterface = lan0\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("bypass.test.interface: cannot be combined with uid");
    expect(lines[0]).toContain("use two [bypass.NAME] sections");
  });

  test("rejects service with source", () => {
    const lines = problems("[bypass.test]\nservice = cron.service\nsource = 192.0.2.0/24\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("bypass.test.source: cannot be combined with service");
  });

  test("rejects identical selector sections", () => {
    const lines = problems("[bypass.a]\nuid = 1000\n[bypass.b]\nuid = 1000\n");
    expect(lines).toEqual(["bypass.b: uid 1000 is already selected by another [bypass.*] section"]);
  });

  test("one bad value, one message", () => {
    expect(problems("[bypass.test]\nprotocol = tcp\nremote_port = 70000\nuid = 1000\n")).toHaveLength(1);
  });
});

describe("cidr parsing", () => {
  test("accepts both families", () => {
    expect(parseCidr("0.0.0.0/0")).toMatchObject({ family: 4, first: 0n, last: 0xffff_ffffn });
    expect(parseCidr("::/0")).toMatchObject({ family: 6, first: 0n });
    expect(parseCidr("2001:db8::/32")).toMatchObject({ family: 6, first: 0x2001_0db8n << 96n });
    expect(parseCidr("::1")).toMatchObject({ family: 6, first: 1n, last: 1n });
  });

  test("rejects malformed addresses", () => {
    for (const text of ["", "/24", "192.0.2.0/", "192.0.2.0/24/1", "1.2.3", "::ffff:192.0.2.1", "2001:db8::/129", "2001:db8:::1", "192.0.2.0/024"]) {
      expect(parseCidr(text), text).toBeUndefined();
    }
  });
});

describe("selection placement", () => {
  test("inbound sections use prerouting", () => {
    expect(selectionsOf({ name: "test", protocol: "tcp", localPort: 22, remotePort: 1024 })).toEqual([
      { bypass: "test", hook: "prerouting", protocol: "tcp", destinationPort: 22, sourcePort: 1024 },
    ]);
  });

  test("uid uses output only", () => {
    expect(selectionsOf({ name: "test", uid: 1000 }).map((selection) => selection.hook)).toEqual(["output"]);
  });

  test("destination uses both hooks", () => {
    const hooks = selectionsOf({ name: "test", destination: ["198.51.100.0/24"] }).map((selection) => selection.hook);
    expect(hooks).toEqual(["prerouting", "output"]);
  });

  test("outgoing remote port is destination", () => {
    const [selection] = selectionsOf({ name: "test", protocol: "tcp", remotePort: 25, uid: 8 });
    expect(selection).toMatchObject({ destinationPort: 25 });
    expect(selection?.sourcePort).toBeUndefined();
  });

  test("missing family gets no rule", () => {
    const selections = selectionsOf({ name: "test", source: ["192.0.2.0/24"], destination: ["2001:db8::/32", "198.51.100.0/24"] });
    expect(selections).toEqual([
      { bypass: "test", hook: "prerouting", family: 4, sources: ["192.0.2.0/24"], destinations: ["198.51.100.0/24"] },
    ]);
  });
});

describe("nftables selector rules", () => {
  test("remote port inbound", () => {
    expect(nftSelections(spec({ name: "test", protocol: "udp", remotePort: 123 }))).toEqual({
      prerouting: [`iifname != { "tun0" } meta l4proto udp th sport 123 ${SET} comment "bypass.test"`],
      output: [],
    });
  });

  test("destination both families", () => {
    const chains = nftSelections(spec({ name: "test", destination: ["198.51.100.0/24", "203.0.113.10", "2001:db8:3::/48"] }));
    expect(chains.prerouting).toEqual([
      `iifname != { "tun0" } ip daddr { 198.51.100.0/24, 203.0.113.10 } ${SET} comment "bypass.test"`,
      `iifname != { "tun0" } ip6 daddr 2001:db8:3::/48 ${SET} comment "bypass.test"`,
    ]);
    expect(chains.output).toEqual([
      `ip daddr { 198.51.100.0/24, 203.0.113.10 } ${SET} comment "bypass.test"`,
      `ip6 daddr 2001:db8:3::/48 ${SET} comment "bypass.test"`,
    ]);
    expect(chains.postrouting).toEqual([]);
  });

  test("source inbound", () => {
    expect(nftSelections(spec({ name: "test", source: ["2001:db8::/32"] })).prerouting).toEqual([
      `iifname != { "tun0" } ip6 saddr 2001:db8::/32 ${SET} comment "bypass.test"`,
    ]);
  });

  test("uid and gid output", () => {
    expect(nftSelections(spec({ name: "test", uid: 65534, gid: 100 }))).toEqual({
      prerouting: [],
      output: [`meta skuid 65534 meta skgid 100 ${SET} comment "bypass.test"`],
      postrouting: [],
    });
  });

  test("interface forwarded traffic", () => {
    expect(nftSelections(spec({ name: "test", interface: "lan0", protocol: "tcp", remotePort: 443 })).prerouting).toEqual([
      `iifname != { "tun0" } iifname "lan0" meta l4proto tcp th dport 443 ${SET} comment "bypass.test"`,
    ]);
  });

  test("service by cgroup path", () => {
    expect(nftSelections(spec({ name: "test", service: "cron.service" })).output).toEqual([
      `socket cgroupv2 level 2 "system.slice/cron.service" ${SET} comment "bypass.test"`,
    ]);
  });

  test("output selection adds masquerade", () => {
    const table = renderNftTable(spec({ name: "test", uid: 65534 }));
    expect(table).toContain("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    expect(table).toContain(
      'oifname != { "tun0" } ct direction original ct mark and 0x2 == 0x2 fib saddr type local fib saddr . oif type != local masquerade',
    );
  });

  test("inbound only adds no nat", () => {
    expect(renderNftTable(spec({ name: "test", protocol: "tcp", localPort: 22 }))).not.toContain("nat");
  });

  test("selections precede mark restore", () => {
    const output = renderNftTable(spec({ name: "test", uid: 1 })).split("\tchain output {")[1]!;
    expect(output.indexOf("meta skuid 1")).toBeLessThan(output.indexOf("meta mark set"));
  });

  test("marks keep foreign bits", () => {
    const table = renderNftTable({ ...spec({ name: "test", uid: 1, destination: ["192.0.2.0/24"] }), mark: { value: 0x100, mask: 0x300 } });
    for (const line of table.split("\n").filter((text) => text.includes("mark set"))) {
      expect(line).toMatch(/mark set (ct|meta) mark and 0xfffffcff or 0x100/);
    }
  });
});

describe("iptables selector rules", () => {
  test("remote port inbound", () => {
    const marking = spec({ name: "test", protocol: "udp", remotePort: 123 });
    expect(iptablesSelections(marking, 4)).toEqual([`-A SPLITROUTE-PRE -p udp -m udp --sport 123 ${CONNMARK}`]);
    expect(iptablesSelections(marking, 6)).toEqual(iptablesSelections(marking, 4));
  });

  test("destination split by family", () => {
    const marking = spec({ name: "test", destination: ["198.51.100.0/24", "203.0.113.10", "2001:db8:3::/48"] });
    expect(iptablesSelections(marking, 4)).toEqual([
      `-A SPLITROUTE-PRE -d 198.51.100.0/24 ${CONNMARK}`,
      `-A SPLITROUTE-PRE -d 203.0.113.10 ${CONNMARK}`,
      `-A SPLITROUTE-OUT -d 198.51.100.0/24 ${CONNMARK}`,
      `-A SPLITROUTE-OUT -d 203.0.113.10 ${CONNMARK}`,
    ]);
    expect(iptablesSelections(marking, 6)).toEqual([`-A SPLITROUTE-PRE -d 2001:db8:3::/48 ${CONNMARK}`, `-A SPLITROUTE-OUT -d 2001:db8:3::/48 ${CONNMARK}`]);
  });

  test("ipv6 source skips ipv4", () => {
    const marking = spec({ name: "test", source: ["2001:db8::/32"] });
    expect(iptablesSelections(marking, 4)).toEqual([]);
    expect(iptablesSelections(marking, 6)).toEqual([`-A SPLITROUTE-PRE -s 2001:db8::/32 ${CONNMARK}`]);
  });

  test("uid and gid owner", () => {
    expect(iptablesSelections(spec({ name: "test", uid: 65534, gid: 100 }), 4)).toEqual([
      `-A SPLITROUTE-OUT -m owner --uid-owner 65534 --gid-owner 100 ${CONNMARK}`,
    ]);
  });

  test("interface with remote port", () => {
    expect(iptablesSelections(spec({ name: "test", interface: "lan0", source: ["192.0.2.128/25"], protocol: "tcp", remotePort: 443 }), 4)).toEqual([
      `-A SPLITROUTE-PRE -i lan0 -s 192.0.2.128/25 -p tcp -m tcp --dport 443 ${CONNMARK}`,
    ]);
  });

  test("service by cgroup path", () => {
    expect(iptablesSelections(spec({ name: "test", service: "cron.service" }), 6)).toEqual([
      `-A SPLITROUTE-OUT -m cgroup --path system.slice/cron.service ${CONNMARK}`,
    ]);
  });

  test("selections precede mark restore", () => {
    const lines = renderIptablesApply(spec({ name: "test", uid: 1 }), NOTHING_OBSERVED, 4).split("\n");
    const selection = lines.findIndex((line) => line.includes("--uid-owner 1"));
    const restore = lines.findIndex((line) => line.startsWith("-A SPLITROUTE-OUT -m connmark"));
    expect(selection).toBeGreaterThan(0);
    expect(selection).toBeLessThan(restore);
  });
});

describe("service selector checks", () => {
  const HYBRID_MOUNTINFO = [
    "30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755",
    "31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate",
    "32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,name=systemd",
  ].join("\n");
  const UNIFIED_MOUNTINFO = "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate";
  const bypass: Bypass[] = [{ name: "torrent", service: "transmission-daemon.service" }];

  test("finds cgroup2 mount point", () => {
    expect(cgroup2Mount(HYBRID_MOUNTINFO)).toBe("/sys/fs/cgroup/unified");
    expect(cgroup2Mount("")).toBeUndefined();
  });

  test("no cgroup2 mount is rejected", async () => {
    const system = new FakeSystem();
    system.files.set("/proc/self/mountinfo", "");
    const [problem, ...rest] = await checkServiceSelectors(system, bypass);
    expect(rest).toEqual([]);
    expect(problem).toContain("bypass.torrent.service: no cgroup v2 hierarchy is mounted in this mount namespace");
    expect(problem).toContain("nsenter --net=/run/netns/NAME");
  });

  test("hybrid layout uses unified mount", async () => {
    const system = new FakeSystem();
    system.files.set("/proc/self/mountinfo", HYBRID_MOUNTINFO);
    system.files.set("/sys/fs/cgroup/unified/system.slice/transmission-daemon.service/cgroup.procs", "1234\n");
    expect(await checkServiceSelectors(system, bypass)).toEqual([]);
  });

  test("nft cgroup path per layout", () => {
    expect(nftCgroupPath("system.slice/cron.service")).toBe("system.slice/cron.service");
    expect(nftCgroupPath("system.slice/cron.service", "/sys/fs/cgroup")).toBe("system.slice/cron.service");
    expect(nftCgroupPath("system.slice/cron.service", "/sys/fs/cgroup/unified")).toBe("unified/system.slice/cron.service");
    expect(nftCgroupPath("system.slice/cron.service", "/run/cgroup2")).toBe("../../../run/cgroup2/system.slice/cron.service");
  });

  test("nft rule on hybrid layout", () => {
    const marking = { ...spec({ name: "test", service: "cron.service" }), cgroupMount: "/sys/fs/cgroup/unified" };
    expect(nftSelections(marking).output).toEqual([`socket cgroupv2 level 2 "unified/system.slice/cron.service" ${SET} comment "bypass.test"`]);
  });

  test("stopped unit is rejected", async () => {
    const system = new FakeSystem();
    system.files.set("/proc/self/mountinfo", UNIFIED_MOUNTINFO);
    expect(await checkServiceSelectors(system, bypass)).toEqual([
      "bypass.torrent.service: cgroup /sys/fs/cgroup/system.slice/transmission-daemon.service not found; start transmission-daemon.service before up, " +
        "and run up again after each restart of the unit, because the firewall keeps the cgroup it found at up",
    ]);
  });

  test("up fails before changing anything", async () => {
    const system = vpnHost();
    const before = system.render();
    const context = testContext(system, testConfig("nftables", { bypass }));
    await expect(up(context, "tun0")).rejects.toThrow(/cannot select traffic by service:\n {2}bypass\.torrent\.service: no cgroup v2 hierarchy is mounted/);
    expect(system.render()).toBe(before);
    expect(await context.store.read()).toBeUndefined();
  });
});

describe("selectors through up and down", () => {
  const bypass: Bypass[] = [
    { name: "ssh", protocol: "tcp", localPort: 22 },
    { name: "nobody", uid: 65534 },
    { name: "office", destination: ["198.51.100.0/24", "2001:db8:3::/48"] },
  ];

  for (const backend of ["nftables", "iptables-nft", "iptables-legacy"] as const) {
    test(`${backend} restores the start`, async () => {
      const system = vpnHost();
      const before = system.render();
      const context = testContext(system, testConfig(backend, { bypass }));
      await up(context, "tun0");
      expect(system.unsupported).toEqual([]);
      const installed = system.render();
      expect(installed).toContain("bypass.nobody");
      expect(installed).toContain("198.51.100.0/24");
      await down(context, "tun0");
      expect(system.render()).toBe(before);
    });
  }

  test("describes sections for status", () => {
    expect(bypass.map(describeBypass)).toEqual(["tcp/22", "uid 65534", "to 198.51.100.0/24 2001:db8:3::/48"]);
  });
});
