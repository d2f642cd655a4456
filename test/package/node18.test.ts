// The packaged bundle under the oldest Node.js the packages accept: Debian
// 12's node 18, fetched with apt-get download and unpacked beside the
// machine's node. The hooks from the .deb, unpacked but not installed, run
// an up/down cycle in a throwaway namespace with it. Needs root for the
// namespaces and the mount namespace, and Debian's package archive.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, type TestHost } from "../netns/host.js";
import { createThreadProbe, type ThreadProbe } from "./limits.js";
import { fetchDebianNode18, node18Unavailable, type DebianNode18 } from "./node18.js";
import { buildPackages, missingTools, type BuiltPackages } from "./packages.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = isRoot ? (missingTools() ?? node18Unavailable()) : "needs root to create network and mount namespaces";
if (SKIP_REASON !== undefined) {
  console.warn(`Skipping test/package/node18.test.ts: ${SKIP_REASON}.`);
}

// OpenVPN's arguments to `up`: device, MTU, 0, local address, netmask, init.
const OPENVPN_ARGS = ["tun0", "1500", "0", "198.18.0.2", "255.255.255.0", "init"];

describe.skipIf(SKIP_REASON !== undefined)(`bundle under Debian 12's node 18${SKIP_REASON === undefined ? "" : ` (${SKIP_REASON})`}`, () => {
  let built: BuiltPackages;
  let unpacked: string;
  let node18: DebianNode18;
  let probe: ThreadProbe;
  let host: TestHost;
  let before: string;

  /** Runs argv from the unpacked package in the host namespace, with node 18 and exactly `env`. */
  async function runInstalled(path: string, args: readonly string[], env: Record<string, string> = {}) {
    const variables = Object.entries({ ...env, SPLITROUTE_NODE: probe.node }).map(([name, value]) => `${name}=${value}`);
    const [file, ...rest] = node18.wrap(["ip", "netns", "exec", host.host, "env", "-i", ...variables, join(unpacked, path), ...args]);
    const result = await execa(file!, rest, { reject: false });
    return { exitCode: result.exitCode, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  beforeAll(async () => {
    built = await buildPackages();
    unpacked = await mkdtemp(join(tmpdir(), "splitroute-unpacked-"));
    await execa("dpkg-deb", ["--extract", built.deb, unpacked]);
    node18 = await fetchDebianNode18();
    probe = await createThreadProbe(node18.node);
    host = await createTestHost();
    before = await host.state();
  }, 180_000);

  afterAll(async () => {
    await host?.destroy();
    await probe?.remove();
    await node18?.remove();
    await built?.remove();
    if (unpacked !== undefined) {
      await rm(unpacked, { recursive: true, force: true });
    }
  });

  it("runs Debian's node 18", async () => {
    const [file, ...args] = node18.wrap([node18.node, "--version"]);
    expect((await execa(file!, args)).stdout).toMatch(/^v18\.(19|[2-9]\d)\./);
  });

  it("completes up, status and down", async () => {
    const up = await runInstalled("usr/lib/splitroute/up", OPENVPN_ARGS, { dev: "tun0", script_type: "up" });
    expect(up.stderr).toContain("bypass active for tun0");
    expect(up.exitCode).toBe(0);
    await host.takeDefaultRoute();
    expect((await host.connectInbound(4)).connected).toBe(true);
    expect((await host.connectInbound(6)).connected).toBe(true);

    const status = await runInstalled("usr/bin/splitroute", ["status", "--json"]);
    expect(status.exitCode).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ installed: true, drift: [], state: { tunnels: ["tun0"] } });

    // As the down-root plugin runs it: no arguments, the environment of up.
    const down = await runInstalled("usr/lib/splitroute/down", [], { dev: "tun0", script_type: "up" });
    expect(down.stderr).toContain("bypass removed");
    expect(down.exitCode).toBe(0);
    expect((await host.connectInbound(4)).connected).toBe(false);
    await host.run(["ip", "route", "del", "0.0.0.0/1"]);
    await host.run(["ip", "route", "del", "128.0.0.0/1"]);
    await host.run(["ip", "-6", "route", "del", "2000::/3"]);
    expect(await host.state()).toBe(before);
  });

  it("keeps node 18 at five threads", async () => {
    // One count per node process: up, status and down.
    expect(await probe.counts()).toEqual([5, 5, 5]);
  });
});
