// End to end: a real OpenVPN client in the lab runs splitroute's hooks while
// the server pushes redirect-gateway def1 ipv6. Inbound connections to the
// client's uplink address must work, its own traffic must still use the
// tunnel, and stopping the client must leave its namespace as it was. Needs root.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { CONNECT_TIMEOUT_MS, createLab, LAB_ADDRESSES, type Lab, type ProbeSession } from "../../src/lab/lab.js";
import { clientStatus, HOOKS } from "./support.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces and run OpenVPN";
if (!isRoot) {
  console.warn(`Skipping test/e2e/openvpn-hooks.test.ts: it ${SKIP_REASON}.`);
}

const BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"] as const;

/** Writes a configuration file that selects `backend` and returns its path. */
async function writeConfig(dir: string, backend: string): Promise<string> {
  const path = join(dir, `splitroute-${backend}.conf`);
  await writeFile(path, `[firewall]\nbackend = ${backend}\n`, { mode: 0o644 });
  return path;
}

describe.skipIf(!isRoot).each(BACKENDS)(`OpenVPN client with hooks, %s (${SKIP_REASON})`, (backend) => {
  let lab: Lab;
  let configDir: string;
  let stateBefore: string;
  let earlySession: ProbeSession;

  beforeAll(async () => {
    configDir = await mkdtemp(join(tmpdir(), "splitroute-e2e-"));
    const config = await writeConfig(configDir, backend);
    lab = await createLab();
    await lab.startVpnServer();
    stateBefore = await lab.clientState();
    // Opened before the tunnel comes up, like the administrator's own session.
    earlySession = await lab.openInboundSession(4);
    await lab.startVpnClient({ hooks: HOOKS, setenv: { SPLITROUTE_CONFIG: config } });
  });

  afterAll(async () => {
    await lab?.destroy();
    if (configDir !== undefined) {
      await rm(configDir, { recursive: true, force: true });
    }
  });

  it.each([4, 6] as const)("accepts inbound IPv%i on the uplink", async (family) => {
    expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
  });

  it.each([4, 6] as const)("sends own IPv%i traffic through the tunnel", async (family) => {
    const key = family === 4 ? "v4" : "v6";
    expect(await lab.outboundSeenAs(family)).toBe(LAB_ADDRESSES.vpnServer[key]);
  });

  it.each([4, 6] as const)("keeps port 22 through the tunnel for IPv%i", async (family) => {
    expect(await lab.connectThroughTunnel(family)).toBe(true);
  });

  it("keeps a session opened before up", async () => {
    expect(await earlySession.exchange("still here", CONNECT_TIMEOUT_MS)).toBe("still here");
  });

  it("reports the bypass in status", async () => {
    const report = await clientStatus(lab);
    expect(report.installed).toBe(true);
    expect(report.state?.tunnels).toEqual(["tun0"]);
    expect(report.state?.backend).toBe(backend);
    expect(report.drift).toEqual([]);
  });

  it("restores the client namespace on stop", async () => {
    earlySession.close();
    await lab.stopVpnClient();
    expect(await lab.clientState()).toBe(stateBefore);
    expect((await clientStatus(lab)).installed).toBe(false);
  });
});

describe.skipIf(!isRoot)(`OpenVPN client with hooks under strict rp_filter (${SKIP_REASON})`, () => {
  let lab: Lab;
  let stateBefore: string;

  beforeAll(async () => {
    lab = await createLab({ rpFilter: 1 });
    await lab.startVpnServer();
    stateBefore = await lab.clientState();
    await lab.startVpnClient({ hooks: HOOKS });
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it.each([4, 6] as const)("accepts inbound IPv%i on the uplink", async (family) => {
    expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
  });

  it("sets src_valid_mark on the uplink only", async () => {
    const { stdout } = await execa("ip", ["netns", "exec", lab.names.client, "sysctl", "-n", "net.ipv4.conf.all.src_valid_mark", "net.ipv4.conf.eth0.src_valid_mark"]);
    expect(stdout.split("\n")).toEqual(["0", "1"]);
  });

  it("restores rp_filter state on stop", async () => {
    await lab.stopVpnClient();
    expect(await lab.clientState()).toBe(stateBefore);
  });
});

describe.skipIf(!isRoot)(`OpenVPN client without hooks (${SKIP_REASON})`, () => {
  let lab: Lab;

  beforeAll(async () => {
    lab = await createLab();
    await lab.startVpnServer();
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it("breaks a session opened before the tunnel", async () => {
    const session = await lab.openInboundSession(4);
    expect(await session.exchange("before", CONNECT_TIMEOUT_MS)).toBe("before");
    await lab.startVpnClient();
    expect(await session.exchange("after", CONNECT_TIMEOUT_MS)).toBeUndefined();
    session.close();
    await lab.stopVpnClient();
  });
});
