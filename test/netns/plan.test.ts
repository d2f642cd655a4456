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
    await execa("ip", ["netns", "exec", host.host, "sh", "-e"], { input: plan.stdout });
    const scripted = await host.state();
    await host.splitroute(["cleanup"]);
    await host.run(["sysctl", "-q", "-w", "net.ipv4.conf.eth0.src_valid_mark=0"]);
    expect(await host.state()).toBe(before);

    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    expect(await host.state()).toBe(scripted);
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
