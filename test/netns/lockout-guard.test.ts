// The lockout guard against the real kernel: when the bypass cannot work,
// up warns with the reason and the fix, and status reports it. Needs root.

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/lockout-guard.test.ts: it ${SKIP_REASON}.`);
}

// A reverse-path filter like firewalld's IPv6_rpfilter in its raw chain,
// which runs before splitroute marks packets.
const EARLY_RPFILTER = `table inet early_rpfilter {
	chain raw_PREROUTING {
		type filter hook prerouting priority raw + 10; policy accept;
		meta nfproto ipv6 fib saddr . mark . iif oif missing drop
	}
}
`;

describe.skipIf(!isRoot)(`lockout guard (${SKIP_REASON})`, () => {
  let host: TestHost;
  let before: string;

  beforeAll(async () => {
    host = await createTestHost();
    await host.takeDefaultRoute();
    before = await host.state();
  });

  afterEach(async () => {
    await host.splitroute(["cleanup"]);
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("warns about a rule that takes marked traffic", async () => {
    await host.run(["ip", "rule", "add", "priority", "500", "lookup", "main"]);
    const up = await host.splitroute(["up", "--dev", "tun0"]);
    expect(up.exitCode).toBe(0);
    expect(up.stderr).toContain("warning: the bypass may not work: IPv4 marked traffic to 203.0.113.1 is routed by table 254 via tun0");
    const status = await host.splitroute(["status"]);
    expect(status.exitCode).toBe(1);
    expect(status.stdout).toContain("a rule before priority 1000 takes it");
    await host.splitroute(["down", "--dev", "tun0"]);
    await host.run(["ip", "rule", "del", "priority", "500", "lookup", "main"]);
    expect(await host.state()).toBe(before);
  });

  it("warns about an early IPv6 reverse-path filter", async () => {
    await host.run(["nft", "-f", "-"], EARLY_RPFILTER);
    const up = await host.splitroute(["up", "--dev", "tun0"]);
    expect(up.exitCode).toBe(0);
    expect(up.stderr).toContain("the reverse-path filter in nftables chain raw_PREROUTING (prerouting, priority -290)");
    expect(up.stderr).toContain("IPv6_rpfilter=loose");
    expect((await host.connectInbound(6)).connected).toBe(false);
    await host.splitroute(["down", "--dev", "tun0"]);
    await host.run(["nft", "delete", "table", "inet", "early_rpfilter"]);
    expect(await host.state()).toBe(before);
  });

  it("warns when the copy has no default route", async () => {
    await host.run(["ip", "route", "del", "default"]);
    const up = await host.splitroute(["up", "--dev", "tun0"]);
    expect(up.exitCode).toBe(0);
    expect(up.stderr).toContain("the copied IPv4 table has no default route");
    await host.splitroute(["down", "--dev", "tun0"]);
    await host.run(["ip", "route", "add", "default", "via", "192.0.2.1"]);
    expect(await host.state()).toBe(before);
  });

  it("copies from snapshot.table", async () => {
    // The host keeps its IPv4 default route in table 100, reached by a rule.
    await host.run(["ip", "route", "del", "default"]);
    await host.run(["ip", "route", "add", "default", "via", "192.0.2.1", "table", "100"]);
    await host.run(["ip", "route", "add", "192.0.2.0/24", "dev", "eth0", "table", "100"]);
    await host.run(["ip", "rule", "add", "priority", "32000", "lookup", "100"]);
    const config = join(host.dir, "table.conf");
    await writeFile(config, "[snapshot]\ntable = 100\n", { mode: 0o644 });

    const up = await host.splitroute(["up", "--dev", "tun0", "--config", config]);
    expect(up.exitCode).toBe(0);
    expect(up.stderr).not.toContain("warning");
    expect(await host.connectInbound(4)).toMatchObject({ connected: true });
    expect((await host.splitroute(["down", "--dev", "tun0", "--config", config])).exitCode).toBe(0);

    await host.run(["ip", "rule", "del", "priority", "32000", "lookup", "100"]);
    await host.run(["ip", "route", "flush", "table", "100"]);
    await host.run(["ip", "route", "add", "default", "via", "192.0.2.1"]);
    expect(await host.state()).toBe(before);
  });
});
