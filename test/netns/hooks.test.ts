// Integration: the hook entry points as OpenVPN and wg-quick start them, in a
// throwaway namespace with the real tools. Needs root.

import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, REPO, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/hooks.test.ts: it ${SKIP_REASON}.`);
}

const UP = join(REPO, "hooks", "up");
const DOWN = join(REPO, "hooks", "down");

/** Runs a hook in the host namespace with exactly `env`: OpenVPN passes no PATH. */
async function runHook(host: TestHost, hook: string, args: string[], env: Record<string, string>) {
  const result = await execa("ip", ["netns", "exec", host.host, hook, ...args], { reject: false, env, extendEnv: false });
  return { exitCode: result.exitCode, stderr: String(result.stderr) };
}

describe.skipIf(!isRoot)(`hook entry points (${SKIP_REASON})`, () => {
  let host: TestHost;
  let before: string;

  beforeAll(async () => {
    host = await createTestHost();
    before = await host.state();
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("up runs with OpenVPN's arguments and no PATH", async () => {
    const env = { dev: "tun0", script_type: "up", SPLITROUTE_LOG_FORMAT: "text" };
    const result = await runHook(host, UP, ["tun0", "1500", "0", "198.18.0.2", "255.255.255.0", "init"], env);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toContain("[#] ip -4 -batch -");
    expect(result.stderr).toContain("bypass active for tun0");
    await host.takeDefaultRoute();
    expect((await host.connectInbound(4)).connected).toBe(true);
  });

  it("down runs like the down-root plugin", async () => {
    // The plugin passes no arguments and the environment captured at up.
    const result = await runHook(host, DOWN, [], { dev: "tun0", script_type: "up" });
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toContain("bypass removed");
    expect((await host.connectInbound(4)).connected).toBe(false);
    await host.run(["ip", "route", "del", "0.0.0.0/1"]);
    await host.run(["ip", "route", "del", "128.0.0.0/1"]);
    await host.run(["ip", "-6", "route", "del", "2000::/3"]);
    expect(await host.state()).toBe(before);
  });

  it("takes the device from wg-quick's argument", async () => {
    expect((await runHook(host, UP, ["tun0"], {})).exitCode).toBe(0);
    expect((await host.splitroute(["status", "--json"])).stdout).toContain('"tun0"');
    expect((await runHook(host, DOWN, ["tun0"], {})).exitCode).toBe(0);
    expect(await host.state()).toBe(before);
  });

  it("logs JSON lines on request", async () => {
    const result = await runHook(host, UP, ["tun0"], { SPLITROUTE_LOG_FORMAT: "json" });
    expect(result.exitCode).toBe(0);
    const events = result.stderr.trim().split("\n").map((line) => JSON.parse(line));
    expect(events.some((event) => String(event.msg).startsWith("[#] nft -f -"))).toBe(true);
    expect((await runHook(host, DOWN, ["tun0"], { SPLITROUTE_LOG_FORMAT: "json" })).exitCode).toBe(0);
    expect(await host.state()).toBe(before);
  });

  it("rejects a bad config before any change", async () => {
    const config = join(host.dir, "bad.conf");
    await writeFile(config, "[table]\nid = 254\n[bypass.ssh]\nprotocol = tcp\nlocal_port = 70000\n", { mode: 0o644 });
    const result = await runHook(host, UP, ["--config", config, "tun0"], {});
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`invalid configuration in ${config}`);
    expect(result.stderr).toContain('table.id: invalid value "254"');
    expect(result.stderr).toContain('bypass.ssh.local_port: invalid value "70000"');
    expect(await host.state()).toBe(before);
  });

  it("rejects a world-writable config", async () => {
    const config = join(host.dir, "open.conf");
    await writeFile(config, "[table]\nid = 3\n");
    await chmod(config, 0o666);
    const result = await runHook(host, UP, ["tun0"], { SPLITROUTE_CONFIG: config });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("chmod go-w");
    expect(await host.state()).toBe(before);
  });

  it("rejects a missing device", async () => {
    const result = await runHook(host, UP, ["tun9"], {});
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("tunnel device tun9 does not exist");
    expect(await host.state()).toBe(before);
  });

  it("down goes on with a broken config", async () => {
    expect((await runHook(host, UP, ["tun0"], {})).exitCode).toBe(0);
    const config = join(host.dir, "broken.conf");
    await writeFile(config, "[table\n", { mode: 0o644 });
    const result = await runHook(host, DOWN, ["tun0"], { SPLITROUTE_CONFIG: config });
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toContain("continuing with the built-in defaults; the record of what was installed, where there is one, still applies");
    expect(await host.state()).toBe(before);
  });

  it("down without root names the fix", async () => {
    expect((await runHook(host, UP, ["tun0"], {})).exitCode).toBe(0);
    const result = await execa("ip", ["netns", "exec", host.host, "/usr/sbin/runuser", "-u", "nobody", "--", DOWN, "tun0"], {
      reject: false,
      env: {},
      extendEnv: false,
    });
    expect(result.exitCode).toBe(1);
    expect(String(result.stderr)).toContain("run it through the down-root plugin (splitroute(8) shows how)");
    expect((await runHook(host, DOWN, ["tun0"], {})).exitCode).toBe(0);
    expect(await host.state()).toBe(before);
  });

  it("serializes hooks of two tunnels", async () => {
    await host.run(["ip", "tuntap", "add", "dev", "tun1", "mode", "tun"]);
    const baseline = await host.state();
    for (let round = 0; round < 3; round += 1) {
      const ups = await Promise.all(["tun0", "tun1", "tun0", "tun1"].map((device) => runHook(host, UP, [device], {})));
      expect(ups.map((result) => result.exitCode)).toEqual([0, 0, 0, 0]);
      const status = JSON.parse((await host.splitroute(["status", "--json"])).stdout);
      expect(status.state.tunnels).toEqual(["tun0", "tun1"]);
      expect(status.drift).toEqual([]);
      const downs = await Promise.all(["tun1", "tun0"].map((device) => runHook(host, DOWN, [device], {})));
      expect(downs.map((result) => result.exitCode)).toEqual([0, 0]);
      expect(await host.state()).toBe(baseline);
    }
    await host.run(["ip", "link", "del", "tun1"]);
  });

  it("rejects a hostile device name", async () => {
    const result = await runHook(host, UP, [], { dev: "tun0; rm -rf /" });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("invalid tunnel device");
    expect(await host.state()).toBe(before);
  });
});
