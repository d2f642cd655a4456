// splitroute check against the real kernel and tools: each condition set up
// in a throwaway namespace is found, a clean namespace has no errors, and
// check leaves the namespace exactly as it was. Needs root.

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { check, type CheckReport } from "../../src/commands/check.js";
import { inNamespace } from "../../src/lab/namespaces.js";
import { createLogger } from "../../src/log.js";
import { MemoryStateStore } from "../../src/state.js";
import { HostSystem } from "../../src/system/host.js";
import type { CommandResult, System } from "../../src/system/system.js";
import { testConfig } from "../fake/host.js";
import { createTestHost, type TestHost } from "./host.js";

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

  const runCheck = (): Promise<CheckReport> =>
    check({ system, config: testConfig("auto"), store: new MemoryStateStore(), log: createLogger("text", "silent"), lock: async () => async () => {} });
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
});
