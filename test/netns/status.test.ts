// `splitroute status` against the real kernel: objects left without a
// record, the repair line and whether the command it names really repairs,
// a stale copy, a deleted tunnel and a relative --config. Needs root.

import { chmod, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, REPO, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/status.test.ts: it ${SKIP_REASON}.`);
}

const BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"] as const;
const CLI = join(REPO, "dist", "cli.js");

/** Returns the repair line of status's text output, or undefined without one. */
function repairLine(stdout: string): string | undefined {
  return stdout.split("\n").find((line) => line.startsWith("repair:"));
}

describe.skipIf(!isRoot)(`status (${SKIP_REASON})`, () => {
  let host: TestHost;
  let before: string;

  const status = async (args: string[] = []) => host.splitroute(["status", ...args]);

  /** Runs status in the host namespace as nobody, who cannot read nftables or iptables. */
  async function statusAsNobody() {
    const argv = ["netns", "exec", host.host, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, CLI, "status"];
    const result = await execa("ip", argv, { reject: false, env: {}, extendEnv: false });
    return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  /** Checks that status finds nothing to repair and that the bypass carries an inbound connection. */
  async function expectRepaired(label: string) {
    const result = await status();
    expect(result.stdout, label).toContain("live:      matches the record");
    expect(result.exitCode, label).toBe(0);
    expect(await host.connectInbound(4), label).toMatchObject({ connected: true });
  }

  beforeAll(async () => {
    host = await createTestHost();
    await host.takeDefaultRoute();
    before = await host.state();
  });

  afterEach(async () => {
    await host.splitroute(["cleanup"]);
    await host.run(["ip", "link", "del", "tun1"]).catch(() => undefined);
    expect(await host.state()).toBe(before);
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it.each(BACKENDS)("reports leftovers without a record, %s", async (backend) => {
    const config = join(host.dir, `${backend}.conf`);
    await writeFile(config, `[firewall]\nbackend = ${backend}\n`, { mode: 0o644 });
    expect((await host.splitroute(["up", "--dev", "tun0", "--config", config])).exitCode).toBe(0);
    const { stateFile } = JSON.parse((await status(["--json"])).stdout);
    await rm(stateFile);

    const text = await status();
    expect(text.exitCode).toBe(1);
    expect(text.stdout).toContain("leftover:  IPv4 rule fwmark 0x2/0x2 lookup 2 priority 1000\n");
    expect(text.stdout).toMatch(/^leftover: {2}\d+ IPv4 route\(s\) with protocol 83 in table 2$/m);
    const firewall = {
      nftables: "leftover:  nftables table inet splitroute",
      "iptables-nft": 'leftover:  iptables-nft mangle table: chain(s) SPLITROUTE-OUT, SPLITROUTE-PRE and 2 jump(s) tagged "splitroute"',
      "iptables-legacy": 'leftover:  iptables-legacy mangle table: chain(s) SPLITROUTE-OUT, SPLITROUTE-PRE and 2 jump(s) tagged "splitroute"',
    }[backend];
    expect(text.stdout).toContain(`${firewall}\n`);
    expect(repairLine(text.stdout)).toBe("repair:    while a tunnel is up, run splitroute up --dev TUNNEL, which takes them over and writes a new record; otherwise run splitroute cleanup, which removes them");

    const json = JSON.parse((await status(["--json"])).stdout);
    expect(json).toMatchObject({ installed: false, drift: [expect.stringContaining("without a record")] });
    expect(json.leftovers).toContain("IPv6 rule fwmark 0x2/0x2 lookup 2 priority 1000");

    // Without root, the rule and routes are still found, and the rest is named as unchecked.
    const unprivileged = await statusAsNobody();
    expect(unprivileged.exitCode, unprivileged.stderr).toBe(1);
    expect(unprivileged.stdout).toContain("leftover:  IPv4 rule fwmark 0x2/0x2 lookup 2 priority 1000\n");
    expect(unprivileged.stdout).toContain("unchecked: nftables and iptables objects of splitroute's: reading them needs root\n");

    expect((await host.splitroute(["cleanup"])).exitCode).toBe(0);
    if (backend === "iptables-nft") {
      // Without a record, cleanup cannot know that up created iptables-nft's
      // mangle tables, so it leaves them, empty.
      await host.run(["nft", "delete", "table", "ip", "mangle"]);
      await host.run(["nft", "delete", "table", "ip6", "mangle"]);
    }
    const clean = await status();
    // execa strips the final newline.
    expect(clean.stdout).toBe("splitroute: not active in this network namespace");
    expect(clean.exitCode).toBe(0);
    expect((await statusAsNobody()).exitCode).toBe(0);
  });

  it("up takes leftovers over", async () => {
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    const { stateFile } = JSON.parse((await status(["--json"])).stdout);
    await rm(stateFile);
    expect((await status()).exitCode).toBe(1);

    // The repair line's first choice while the tunnel is up: no moment without the bypass.
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    await expectRepaired("after up took the leftovers over");
  });

  it("up again repairs each breakage", async () => {
    const breakages: Record<string, string[][]> = {
      "flushed table": [["ip", "route", "flush", "table", "2"]],
      "deleted rule": [["ip", "rule", "del", "fwmark", "0x2/0x2", "lookup", "2", "priority", "1000"]],
      "deleted nft table": [["nft", "delete", "table", "inet", "splitroute"]],
      "all three": [
        ["ip", "route", "flush", "table", "2"],
        ["ip", "rule", "del", "fwmark", "0x2/0x2", "lookup", "2", "priority", "1000"],
        ["nft", "delete", "table", "inet", "splitroute"],
      ],
    };
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    for (const [breakage, commands] of Object.entries(breakages)) {
      for (const argv of commands) {
        await host.run(argv);
      }
      const broken = await status();
      expect(broken.exitCode, breakage).toBe(1);
      expect(await host.connectInbound(4), breakage).toMatchObject({ connected: false });

      const up = await host.splitroute(["up", "--dev", "tun0"]);
      expect(up.exitCode, up.stderr).toBe(0);
      await expectRepaired(`up after ${breakage}`);
    }
  });

  it("runs the repair line's command", async () => {
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    const breakages: Array<[breakage: string, argv: string[], repair: string]> = [
      ["flushed table", ["ip", "route", "flush", "table", "2"], "refresh"],
      ["deleted IPv6 route", ["ip", "-6", "route", "del", "default", "table", "2"], "refresh"],
      ["deleted rule", ["ip", "rule", "del", "fwmark", "0x2/0x2", "lookup", "2", "priority", "1000"], "up --dev tun0"],
      ["deleted nft table", ["nft", "delete", "table", "inet", "splitroute"], "up --dev tun0"],
    ];
    for (const [breakage, argv, expected] of breakages) {
      await host.run(argv);
      const broken = await status();
      expect(broken.exitCode, breakage).toBe(1);
      const repair = repairLine(broken.stdout);
      const command = /^repair: {4}run splitroute ([a-z]+(?: --dev tun0)?)(?: again)?, which /.exec(repair ?? "")?.[1];
      expect(command, `${breakage}: ${repair}`).toBe(expected);

      const result = await host.splitroute(command!.split(" "));
      expect(result.exitCode, result.stderr).toBe(0);
      await expectRepaired(`${command} after ${breakage}`);
    }
  });

  it("names the missing route for a flushed table", async () => {
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    await host.run(["ip", "route", "flush", "table", "2"]);
    const result = await status();
    expect(result.stdout).toContain(
      "IPv4 marked traffic to 203.0.113.1 is routed by table 254 via tun0, not by table 2, because table 2 has no route to 203.0.113.1 " +
        "and the lookup falls through to the rule at priority 32766; run splitroute refresh",
    );
    expect(result.stdout).not.toContain("a rule before priority 1000");
  });

  it("reports a stale copy", async () => {
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    await host.run(["ip", "netns", "exec", host.peer, "ip", "addr", "add", "192.0.2.254/24", "dev", "eth0"]).catch(() => undefined);
    await host.run(["ip", "route", "replace", "default", "via", "192.0.2.254"]);
    try {
      const stale = await status();
      expect(stale.exitCode, stale.stdout).toBe(1);
      expect(stale.stdout).toContain("drift:     the IPv4 copy differs from main: 1 route(s) changed and 0 gone there since it was copied; run splitroute refresh\n");
      expect(repairLine(stale.stdout)).toBe("repair:    run splitroute refresh, which copies main into redirect (2) again");
      expect(JSON.parse((await status(["--json"])).stdout).live.copyChanges).toEqual({ ipv4: 1, ipv6: 0 });

      const refresh = await host.splitroute(["refresh"]);
      expect(refresh.exitCode, refresh.stderr).toBe(0);
      const refreshed = await status();
      expect(refreshed.exitCode, refreshed.stdout).toBe(0);
    } finally {
      await host.run(["ip", "route", "replace", "default", "via", "192.0.2.1"]);
    }
  });

  it("reports a deleted tunnel", async () => {
    await host.run(["ip", "tuntap", "add", "dev", "tun1", "mode", "tun"]);
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    expect((await host.splitroute(["up", "--dev", "tun1"])).exitCode).toBe(0);
    await host.run(["ip", "link", "del", "tun1"]);

    const result = await status();
    expect(result.exitCode, result.stdout).toBe(1);
    expect(result.stdout).toContain("drift:     tunnel tun1 no longer exists; run splitroute down --dev tun1\n");
    expect(repairLine(result.stdout)).toBe("repair:    run splitroute down --dev tun1");

    expect((await host.splitroute(["down", "--dev", "tun1"])).exitCode).toBe(0);
    await expectRepaired("down of the deleted tunnel");
  });

  it("prints the absolute config path", async () => {
    await chmod(host.dir, 0o755);
    await writeFile(join(host.dir, "relative.conf"), "[bypass.ssh]\nprotocol = tcp\nlocal_port = 22\n", { mode: 0o644 });
    const run = (args: string[]) => execa("ip", ["netns", "exec", host.host, process.execPath, CLI, ...args], { cwd: host.dir, reject: false, env: {}, extendEnv: false });

    expect((await run(["up", "--dev", "tun0", "--config", "relative.conf"])).exitCode).toBe(0);
    const result = await run(["status", "--config", "relative.conf"]);
    expect(result.stdout).toContain(`config:    ${join(host.dir, "relative.conf")}\n`);
    expect(result.exitCode, String(result.stdout)).toBe(0);
  });
});
