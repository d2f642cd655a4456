// splitroute check against the real kernel and tools: each condition set up
// in a throwaway namespace is found, a clean namespace has no errors, and
// check leaves the namespace exactly as it was. Needs root.

import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { check, type CheckReport } from "../../src/commands/check.js";
import type { Config } from "../../src/config/types.js";
import { inNamespace } from "../../src/lab/namespaces.js";
import { createLogger } from "../../src/log.js";
import { MemoryStateStore } from "../../src/state.js";
import { HostSystem } from "../../src/system/host.js";
import type { CommandResult, System } from "../../src/system/system.js";
import { testConfig } from "../fake/host.js";
import { createTestHost, REPO, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/check.test.ts: it ${SKIP_REASON}.`);
}

/**
 * The host's tools, run inside `namespace` with `ip netns exec`. Sysctls and
 * /proc/net belong to the namespace of the process that reads them, so those
 * are read with cat inside it too. Other files are the host's.
 */
class NamespaceSystem implements System {
  private readonly host = new HostSystem();

  constructor(private readonly namespace: string) {}

  run(argv: readonly string[], input?: string): Promise<CommandResult> {
    return this.host.run(inNamespace(this.namespace, argv), input);
  }

  hasTool(tool: string): boolean {
    return this.host.hasTool(tool);
  }

  async readSysctl(key: string): Promise<string | undefined> {
    return (await this.readText(`/proc/sys/${key.split(".").map((part) => part.replaceAll("/", ".")).join("/")}`))?.trim();
  }

  async readText(path: string): Promise<string | undefined> {
    if (!path.startsWith("/proc/")) {
      return this.host.readText(path);
    }
    const result = await this.run(["cat", path]);
    return result.exitCode === 0 ? result.stdout : undefined;
  }

  async writeSysctl(): Promise<void> {
    throw new Error("check must not write sysctls");
  }
}

// A foreign nftables table that sets splitroute's mark bit 0x2 on web traffic.
const FOREIGN_NFT = `table inet foreign_marks {
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		tcp dport 80 meta mark set meta mark or 0x2
	}
}
`;

describe.skipIf(!isRoot)(`check in a namespace (${SKIP_REASON})`, () => {
  let host: TestHost;
  let system: NamespaceSystem;
  let original: string;

  const runCheck = (config: Config = testConfig("auto")): Promise<CheckReport> =>
    check({ system, config, store: new MemoryStateStore(), log: createLogger("text", "silent"), lock: async () => async () => {} });
  const errors = (report: CheckReport) => report.findings.filter((finding) => finding.severity === "error").map((finding) => finding.what);

  beforeAll(async () => {
    host = await createTestHost();
    system = new NamespaceSystem(host.host);
    original = await host.state();
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("clean namespace has no errors", async () => {
    const report = await runCheck();
    expect(errors(report)).toEqual([]);
    expect(report.findings.filter((finding) => finding.area === "snapshot").map((finding) => finding.what)).toEqual([
      "IPv4 table main has a default route via eth0 to copy",
      "IPv6 table main has a default route via eth0 to copy",
    ]);
    expect(report.findings.some((finding) => finding.what === "no other rule or firewall reads or writes mark bits 0x2")).toBe(true);
    expect(await host.state()).toBe(original);
  });

  it("finds each foreign condition", async () => {
    await host.run(["ip", "rule", "add", "fwmark", "0x2/0x2", "lookup", "100", "priority", "900"]);
    await host.run(["nft", "-f", "-"], FOREIGN_NFT);
    await host.run(["ip", "route", "del", "default"]);
    await host.run(["ip", "route", "add", "10.30.0.0/16", "dev", "eth0", "table", "2"]);
    await host.run(["iptables-nft", "-t", "mangle", "-A", "OUTPUT", "-j", "CONNMARK", "--set-mark", "0x2/0x2"]);
    const before = await host.state();

    const report = await runCheck();
    expect(await host.state()).toBe(before);
    const found = errors(report);
    expect(found).toContain('IPv4 rule "900: from all fwmark 0x2/0x2 lookup 100" matches mark bits 0x2 inside splitroute\'s mask 0x2');
    expect(found).toContain(
      'nftables table inet foreign_marks chain prerouting sets mark bits 0x2 inside splitroute\'s mask 0x2 with "meta mark set meta mark | 0x00000002"',
    );
    expect(found).toContain("IPv4 table main has no default route that up would copy");
    expect(found).toContain("IPv4 table 2 already holds 1 route(s) of other software, such as 10.30.0.0/16 dev eth0");
    expect(found).toContain("iptables-nft-save mangle chain OUTPUT sets mark bits 0x2 inside splitroute's mask 0x2 with \"-A OUTPUT -j CONNMARK --set-xmark 0x2/0x2\"");
    // The CONNMARK rule also shows in nftables as table ip mangle, and is reported once.
    expect(found.filter((what) => what.includes("table ip mangle"))).toEqual([]);
    expect(report.findings.some((finding) => finding.what.startsWith("no other rule or firewall"))).toBe(false);
    expect(report.exitCode).toBe(2);

    await host.run(["ip", "rule", "del", "priority", "900"]);
    await host.run(["nft", "delete", "table", "inet", "foreign_marks"]);
    await host.run(["nft", "delete", "table", "ip", "mangle"]);
    await host.run(["ip", "route", "flush", "table", "2"]);
    await host.run(["ip", "route", "add", "default", "via", "192.0.2.1"]);
    expect(await host.state()).toBe(original);
  });

  it("finds a rule that takes marked traffic", async () => {
    await host.run(["ip", "route", "add", "default", "dev", "tun0", "table", "100"]);
    await host.run(["ip", "rule", "add", "priority", "500", "lookup", "100"]);
    // wg-quick's rules, placed before the configured priority 1000: up would put its rule at 997.
    await host.run(["ip", "rule", "add", "priority", "998", "lookup", "main", "suppress_prefixlength", "0"]);
    await host.run(["ip", "rule", "add", "priority", "999", "not", "fwmark", "0xca6c", "lookup", "51820"]);
    // The kernel agrees that marked traffic takes table 100.
    expect(await host.run(["ip", "-4", "route", "get", "203.0.113.1", "mark", "0x2"])).toContain("dev tun0 table 100");

    const report = await runCheck();
    const before = report.findings.filter((finding) => finding.what.includes("comes before splitroute's rule"));
    expect(before.map((finding) => [finding.severity, finding.what])).toEqual([
      ["error", 'IPv4 rule "500: from all lookup 100" comes before splitroute\'s rule at priority 997 and matches the packets that splitroute marks'],
    ]);
    expect(report.exitCode).toBe(2);

    for (const priority of ["500", "998", "999"]) {
      await host.run(["ip", "rule", "del", "priority", priority]);
    }
    await host.run(["ip", "route", "flush", "table", "100"]);
    expect(await host.state()).toBe(original);
  });

  it("finds selector and table name problems", async () => {
    const config = testConfig("auto", {
      snapshot: { exclude: ["tun*"], table: "nosuchtable" },
      bypass: [
        { name: "lan", interface: "nosuchif0" },
        { name: "uplink", interface: "eth0" },
        { name: "unit", service: "splitroute-check-absent.service" },
      ],
    });
    const report = await runCheck(config);
    const found = errors(report);
    expect(found).toContain("snapshot.table nosuchtable is not declared in rt_tables or rt_tables.d");
    // Without cgroup v2 in this mount namespace, or with it and no such unit, up would fail.
    expect(found.filter((what) => what.startsWith("bypass.unit.service: "))).toHaveLength(1);
    expect(found).toHaveLength(2);
    const interfaces = report.findings.filter((finding) => finding.area === "interface");
    expect(interfaces.map((finding) => [finding.severity, finding.what])).toEqual([
      ["warning", "bypass.lan.interface nosuchif0 does not exist in this network namespace"],
      ["ok", "bypass.uplink.interface eth0 exists"],
    ]);
    expect(await host.state()).toBe(original);
  });

  it("does not guess the backend without root", async () => {
    // A folder that user nobody may read, with an empty state folder and a configuration.
    await chmod(host.dir, 0o755);
    const configPath = join(host.dir, "check.conf");
    await writeFile(configPath, "[firewall]\nbackend = auto\n", { mode: 0o644 });
    const result = await execa(
      "ip",
      ["netns", "exec", host.host, "/usr/sbin/runuser", "-u", "nobody", "--", process.execPath, join(REPO, "dist", "cli.js"), "check", "--json", "--config", configPath],
      { reject: false, env: { SPLITROUTE_STATE_DIR: join(host.dir, "state") }, extendEnv: false },
    );
    const report = JSON.parse(String(result.stdout)) as CheckReport;
    const tools = report.findings.filter((finding) => finding.area === "tools" && finding.what.startsWith("firewall.backend"));
    if (new HostSystem().hasTool("nft")) {
      expect(tools.map((finding) => [finding.severity, finding.what, finding.fix])).toEqual([
        ["warning", "firewall.backend = auto: which backend up would use cannot be decided without root", "run check as root"],
      ]);
    } else {
      // Without nft, auto picks iptables for root and for other users alike.
      expect(tools.map((finding) => finding.what)).toEqual(["firewall.backend = auto uses iptables, and its tools are installed"]);
    }
    expect(await host.state()).toBe(original);
  });
});
