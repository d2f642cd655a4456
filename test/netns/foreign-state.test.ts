// Integration: splitroute against the real ip, nft and iptables in a
// throwaway namespace that already contains other software's rules, routes,
// tables and marks. Everything foreign must be identical after up and down,
// and marking must keep the bits outside splitroute's mask. Needs root.

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/foreign-state.test.ts: it ${SKIP_REASON}.`);
}

const BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"] as const;

// Another program's nftables table: it sets packet mark bit 0x100 and
// conntrack mark bit 0x400 before splitroute's chains run (priority -200),
// and counts packets that still carry those bits together with splitroute's
// 0x2 after every mangle chain has run (priority 0).
const FOREIGN_NFT = `table inet foreign {
	chain early_in {
		type filter hook prerouting priority -200; policy accept;
		meta mark set meta mark or 0x100
		ct mark set ct mark or 0x400
	}
	chain early_out {
		type route hook output priority -200; policy accept;
		meta mark set meta mark or 0x100
	}
	chain late_out {
		type filter hook output priority 0; policy accept;
		tcp sport 22 meta mark and 0x132 == 0x132 counter
		tcp sport 22 ct mark and 0x402 == 0x402 counter
	}
}
`;

// bypass.nobody selects in output, so up also adds the source NAT chain.
const CONFIG = (backend: string) => `[firewall]
backend = ${backend}

[bypass.ssh]
protocol = tcp
local_port = 22

[bypass.nobody]
uid = nobody
`;

async function addForeignState(host: TestHost): Promise<void> {
  const run = host.run;
  await run(["ip", "rule", "add", "priority", "999", "to", "192.0.2.99", "lookup", "main"]);
  await run(["ip", "rule", "add", "priority", "1000", "to", "198.51.100.0/24", "lookup", "100"]);
  await run(["ip", "rule", "add", "priority", "1001", "fwmark", "0x100/0x100", "lookup", "100"]);
  await run(["ip", "-6", "rule", "add", "priority", "1001", "fwmark", "0x100/0x100", "lookup", "100"]);
  await run(["ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.1", "table", "100"]);
  await run(["ip", "-6", "route", "add", "2001:db8:5::/48", "via", "2001:db8:1::1", "table", "100"]);
  await run(["nft", "-f", "-"], FOREIGN_NFT);

  // Docker-style chains in nat and filter, source NAT in nat POSTROUTING of
  // both variants next to splitroute's, and mangle rules setting bits 0x10
  // (iptables-nft) and 0x20 (iptables-legacy) of the packet mark.
  await run(["iptables-nft", "-t", "nat", "-N", "DOCKER"]);
  await run(["iptables-nft", "-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"]);
  for (const tool of ["iptables-nft", "iptables-legacy"]) {
    await run([tool, "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.128/25", "!", "-o", "docker0", "-j", "MASQUERADE"]);
    await run([tool.replace("iptables", "ip6tables"), "-t", "nat", "-A", "POSTROUTING", "-s", "2001:db8:9::/64", "!", "-o", "docker0", "-j", "MASQUERADE"]);
  }
  await run(["iptables-nft", "-t", "filter", "-N", "DOCKER-USER"]);
  await run(["iptables-nft", "-t", "filter", "-A", "FORWARD", "-j", "DOCKER-USER"]);
  await run(["iptables-nft", "-t", "mangle", "-A", "OUTPUT", "-j", "MARK", "--set-xmark", "0x10/0x10"]);
  await run(["ip6tables-nft", "-t", "mangle", "-A", "OUTPUT", "-j", "MARK", "--set-xmark", "0x10/0x10"]);
  await run(["iptables-legacy", "-t", "mangle", "-A", "OUTPUT", "-j", "MARK", "--set-xmark", "0x20/0x20"]);
  await run(["ip6tables-legacy", "-t", "mangle", "-A", "OUTPUT", "-j", "MARK", "--set-xmark", "0x20/0x20"]);
}

/** Returns the packet counts of the foreign late_out counters, in order. */
async function foreignCounters(host: TestHost): Promise<number[]> {
  const text = await host.run(["nft", "list", "chain", "inet", "foreign", "late_out"]);
  return [...text.matchAll(/counter packets (\d+)/g)].map((match) => Number(match[1]));
}

describe.skipIf(!isRoot).each(BACKENDS)(`splitroute among foreign state, %s (${SKIP_REASON})`, (backend) => {
  let host: TestHost;
  let config: string;
  let before: string;

  beforeAll(async () => {
    host = await createTestHost();
    config = join(host.dir, "splitroute.conf");
    await writeFile(config, CONFIG(backend), { mode: 0o644 });
    await addForeignState(host);
    await host.takeDefaultRoute();
    before = await host.state();
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("fails inbound without splitroute", async () => {
    expect((await host.connectInbound(4)).connected).toBe(false);
  });

  it("down without up changes nothing", async () => {
    const result = await host.splitroute(["down", "--dev", "tun0", "--config", config]);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toContain("nothing installed");
    expect(await host.state()).toBe(before);
  });

  it("up twice leaves one copy", async () => {
    expect((await host.splitroute(["up", "--dev", "tun0", "--config", config])).exitCode).toBe(0);
    const once = await host.state();
    expect((await host.splitroute(["up", "--dev", "tun0", "--config", config])).exitCode).toBe(0);
    expect(await host.state()).toBe(once);
  });

  it("puts its nat jump first", async () => {
    const tools = backend === "iptables-legacy" ? ["iptables-legacy-save", "ip6tables-legacy-save"] : ["iptables-nft-save", "ip6tables-nft-save"];
    for (const tool of tools) {
      const postrouting = (await host.run([tool, "-t", "nat"])).split("\n").filter((line) => line.startsWith("-A POSTROUTING "));
      if (backend === "nftables") {
        expect(postrouting.join("\n"), tool).not.toContain("splitroute");
        continue;
      }
      expect(postrouting[0], tool).toBe("-A POSTROUTING -m comment --comment splitroute -j SPLITROUTE-POST");
      expect(postrouting.slice(1).join("\n"), tool).toContain("! -o docker0 -j MASQUERADE");
    }
  });

  it.each([4, 6] as const)("accepts inbound IPv%i", async (family) => {
    expect(await host.connectInbound(family)).toMatchObject({ connected: true, line: "SSH-2.0-test" });
  });

  it("keeps foreign mark bits", async () => {
    const [packetMarks, connectionMarks] = await foreignCounters(host);
    expect(packetMarks).toBeGreaterThan(0);
    expect(connectionMarks).toBeGreaterThan(0);
  });

  it("down restores the start", async () => {
    const result = await host.splitroute(["down", "--dev", "tun0", "--config", config]);
    expect(result.exitCode).toBe(0);
    expect(await host.state()).toBe(before);
  });
});
