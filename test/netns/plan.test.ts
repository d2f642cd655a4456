// `splitroute plan` against the real kernel: it changes nothing, and the
// script it prints, run by a shell, installs exactly what up installs.
// Needs root.

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/plan.test.ts: it ${SKIP_REASON}.`);
}

describe.skipIf(!isRoot)(`splitroute plan (${SKIP_REASON})`, () => {
  let host: TestHost;
  let before: string;

  beforeAll(async () => {
    host = await createTestHost();
    await host.run(["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1"]);
    before = await host.state();
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("prints up's commands and changes nothing", async () => {
    const plan = await host.splitroute(["plan", "up", "--dev", "tun0"]);
    expect(plan.exitCode, plan.stderr).toBe(0);
    expect(plan.stdout).toContain("ip -4 -batch - <<'EOF'");
    expect(plan.stdout).toContain("nft -f - <<'EOF'");
    expect(plan.stdout).toContain("sysctl -w net.ipv4.conf.eth0.src_valid_mark=1");
    expect(await host.state()).toBe(before);
  });

  it("matches up when run by a shell", async () => {
    const plan = await host.splitroute(["plan", "up", "--dev", "tun0"]);
    await execa("ip", ["netns", "exec", host.host, "sh"], { input: plan.stdout });
    const scripted = await host.state();
    await host.splitroute(["cleanup"]);
    await host.run(["sysctl", "-q", "-w", "net.ipv4.conf.eth0.src_valid_mark=0"]);
    expect(await host.state()).toBe(before);

    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    expect(await host.state()).toBe(scripted);
  });

  it("script refuses another namespace", async () => {
    const plan = await host.splitroute(["plan", "up", "--dev", "tun0"]);
    const peerBefore = await execa("ip", ["netns", "exec", host.peer, "sh", "-c", "ip -6 rule; ip rule; nft list ruleset"]);
    // As when `ip netns exec HOST splitroute plan up | sh` runs the shell outside HOST.
    const elsewhere = await execa("ip", ["netns", "exec", host.peer, "sh"], { input: plan.stdout, reject: false });
    expect(elsewhere.exitCode).toBe(1);
    expect(elsewhere.stderr).toContain("this script was planned for network namespace");
    const peerAfter = await execa("ip", ["netns", "exec", host.peer, "sh", "-c", "ip -6 rule; ip rule; nft list ruleset"]);
    expect(peerAfter.stdout).toBe(peerBefore.stdout);
  });

  it("prints down's commands", async () => {
    const plan = await host.splitroute(["plan", "down", "--dev", "tun0"]);
    expect(plan.stdout).toContain("rule del fwmark 0x2/0x2 lookup 2 priority 1000");
    expect(plan.stdout).toContain("sysctl -w net.ipv4.conf.eth0.src_valid_mark=0");
    expect((await host.splitroute(["down", "--dev", "tun0"])).exitCode).toBe(0);
    expect(await host.state()).toBe(before);
    expect((await host.splitroute(["plan", "down", "--dev", "tun0"])).stdout).toContain("nothing installed");
  });
});

describe.skipIf(!isRoot)(`splitroute explain (${SKIP_REASON})`, () => {
  let host: TestHost;

  beforeAll(async () => {
    host = await createTestHost();
    await host.takeDefaultRoute();
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("follows the kernel before and after up", async () => {
    const flow = ["explain", "tcp", "203.0.113.10:51000", "->", "192.0.2.2:22", "in", "eth0"];
    const before = await host.splitroute(flow);
    expect(before.stdout).toContain("bypass:  not active");
    expect(before.stdout).toContain("replies to 203.0.113.10 use table main: dev tun0");

    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    const after = await host.splitroute(flow);
    expect(after.stdout).toContain("selected by [bypass.ssh] (tcp/22); the connection gets mark 0x2/0x2");
    expect(after.stdout).toContain("use table redirect (2), splitroute's copy: via 192.0.2.1 dev eth0");

    const outgoing = await host.splitroute(["explain", "tcp", "192.0.2.2:40000", "->", "203.0.113.10:443"]);
    expect(outgoing.stdout).toContain("packets to 203.0.113.10 use table main: dev tun0");
    expect((await host.splitroute(["down", "--dev", "tun0"])).exitCode).toBe(0);
  });
});
