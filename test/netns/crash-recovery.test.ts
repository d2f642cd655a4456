// Crash recovery against the real kernel: splitroute is killed with SIGKILL
// after each step of up and of down, and the next up, down or cleanup must
// reach a clean, correct state. Needs root.

import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/crash-recovery.test.ts: it ${SKIP_REASON}.`);
}

const BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"] as const;
const RECOVERIES = ["up", "down", "cleanup"] as const;

// bypass.nobody selects in output, so the iptables backends also install
// their nat chain and its jump.
const CONFIG = (backend: string) => `[firewall]
backend = ${backend}

[bypass.ssh]
protocol = tcp
local_port = 22

[bypass.nobody]
uid = nobody
`;

/**
 * Drops empty mangle and nat tables from a state text: nftables blocks such
 * as `table ip mangle` or `table ip6 nat` with no rules, and iptables-save
 * blocks with only built-in chains. Without a state file, cleanup cannot know
 * whether iptables-nft's empty tables existed before, so it leaves them.
 */
function withoutEmptyTables(state: string): string {
  const nft = state.replace(/^table ip6? (?:mangle|nat) \{\n(?:\tchain \w+ \{\n\t\ttype [^\n]+\n\t\}\n\n?)*\}\n/gm, "");
  const iptables = nft.replace(/^\*(?:mangle|nat)\n(?::(?:PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT\n)*COMMIT\n/gm, "");
  return iptables.split("\n").filter((line) => line !== "").join("\n");
}

/** Counts the changes a run logged ("[#] ..." lines). */
function countSteps(stderr: string): number {
  return stderr.split("\n").filter((line) => line.startsWith("splitroute: [#] ")).length;
}

describe.skipIf(!isRoot).each(BACKENDS)(`crash recovery, %s (${SKIP_REASON})`, (backend) => {
  let host: TestHost;
  let config: string;
  let before: string;
  let upSteps: number;
  let downSteps: number;

  const run = (command: string, killAfter?: number) =>
    host.splitroute([command, "--dev", "tun0", "--config", config], killAfter === undefined ? {} : { SPLITROUTE_TEST_KILL_AFTER_STEP: String(killAfter) });

  /** Runs `recovery`, and after an up also checks the bypass works and takes it down again. */
  async function recover(recovery: (typeof RECOVERIES)[number]): Promise<void> {
    const result = await run(recovery);
    expect(result.exitCode, result.stderr).toBe(0);
    if (recovery === "up") {
      expect(await host.connectInbound(4)).toMatchObject({ connected: true });
      const status = await host.splitroute(["status", "--json", "--config", config]);
      expect(JSON.parse(status.stdout).drift).toEqual([]);
      expect((await run("down")).exitCode).toBe(0);
    }
    expect(await host.state()).toBe(before);
  }

  beforeAll(async () => {
    host = await createTestHost();
    config = join(host.dir, "splitroute.conf");
    await writeFile(config, CONFIG(backend), { mode: 0o644 });
    // Strict reverse-path filtering makes up change a sysctl too.
    await host.run(["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1"]);
    await host.takeDefaultRoute();
    before = await host.state();

    const up = await run("up");
    upSteps = countSteps(up.stderr);
    const down = await run("down");
    downSteps = countSteps(down.stderr);
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("counts the steps of up and down", () => {
    console.info(`${backend}: up has ${upSteps} steps (${upSteps + 1} kill points), down has ${downSteps}`);
    expect(upSteps).toBeGreaterThanOrEqual(4);
    expect(downSteps).toBeGreaterThanOrEqual(4);
  });

  it("recovers from up killed at every step", async () => {
    for (let step = 0; step <= upSteps; step += 1) {
      const killed = await run("up", step);
      expect(killed.exitCode, `up killed after step ${step}`).not.toBe(0);
      await recover(RECOVERIES[step % RECOVERIES.length]!);
    }
  });

  it("recovers from down killed at every step", async () => {
    for (let step = 1; step <= downSteps; step += 1) {
      expect((await run("up")).exitCode).toBe(0);
      const killed = await run("down", step);
      expect(killed.exitCode, `down killed after step ${step}`).not.toBe(0);
      await recover(RECOVERIES[step % RECOVERIES.length]!);
    }
  });

  it("cleanup finds objects without a state file", async () => {
    expect((await run("up")).exitCode).toBe(0);
    const status = JSON.parse((await host.splitroute(["status", "--json", "--config", config])).stdout);
    await host.run(["rm", "-f", status.stateFile]);
    const result = await run("cleanup");
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain("no state file");
    // Without the record, the earlier src_valid_mark value is unknown.
    expect(result.stderr).toContain("splitroute: warning: src_valid_mark is 1 on eth0, and cleanup leaves it.");
    expect(result.stderr).toContain("set it back with: sysctl -w net.ipv4.conf.eth0.src_valid_mark=0\n");
    const expected = before.replace("net.ipv4.conf.eth0.src_valid_mark = 0", "net.ipv4.conf.eth0.src_valid_mark = 1");
    expect(await host.state()).not.toContain("SPLITROUTE");
    expect(withoutEmptyTables(await host.state())).toBe(withoutEmptyTables(expected));
    await host.run(["sysctl", "-q", "-w", "net.ipv4.conf.eth0.src_valid_mark=0"]);
  });
});
