// End to end: the README's OpenVPN configurations for a client that drops
// privileges (`user nobody`), against a real OpenVPN in the lab. With the
// down-root plugin, down runs as root and removes the bypass. With a plain
// `down` line, down runs as nobody, fails with a message that names the
// plugin, and leaves the bypass for `splitroute down` as root. Needs root.
//
// OpenVPN runs the plain down hook as nobody straight from this checkout, so
// nobody must be able to read hooks/, dist/ and node_modules/.

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createLab, OPENVPN_READY_MESSAGE, type Lab } from "../../src/lab/lab.js";
import { CLI, clientStatus, HOOKS, removeLeftoverBypass } from "./support.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces and run OpenVPN";
if (!isRoot) {
  console.warn(`Skipping test/e2e/openvpn-down-root.test.ts: it ${SKIP_REASON}.`);
}

const FAMILIES = [4, 6] as const;
const DROP_PRIVILEGES = ["user nobody", "group nogroup"];

/**
 * Returns the path of OpenVPN's down-root plugin from the openvpn package's
 * file list, preferring the plugins folder that the README names.
 */
async function findDownRootPlugin(): Promise<string> {
  const result = await execa("dpkg", ["-L", "openvpn"], { reject: false });
  const candidates = result.stdout.split("\n").filter((path) => path.endsWith("/openvpn-plugin-down-root.so"));
  const plugin = candidates.find((path) => path.includes("/plugins/")) ?? candidates[0];
  if (plugin === undefined) {
    throw new Error(`openvpn-plugin-down-root.so not found in the output of 'dpkg -L openvpn' (exit code ${result.exitCode}); install Debian's openvpn package`);
  }
  return plugin;
}

describe.skipIf(!isRoot)(`OpenVPN as nobody with down-root plugin (${SKIP_REASON})`, () => {
  let lab: Lab;
  let stateBefore: string;

  beforeAll(async () => {
    const plugin = await findDownRootPlugin();
    lab = await createLab();
    await lab.startVpnServer();
    stateBefore = await lab.clientState();
    await lab.startVpnClient({
      hooks: { up: HOOKS.up },
      extraConfig: [...DROP_PRIVILEGES, `plugin ${plugin} ${HOOKS.down}`],
    });
  });

  afterAll(async () => {
    if (lab === undefined) {
      return;
    }
    try {
      await removeLeftoverBypass(lab);
    } finally {
      await lab.destroy();
    }
  });

  it("drops privileges after up", async () => {
    const log = await lab.clientLog();
    expect(log).toContain("UID set to nobody");
    expect(log.indexOf("UID set to nobody")).toBeGreaterThan(log.indexOf(`${HOOKS.up} tun0`));
  });

  it.each(FAMILIES)("accepts inbound IPv%i on the uplink", async (family) => {
    expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
  });

  it("reports the bypass in status", async () => {
    const report = await clientStatus(lab);
    expect(report.state?.tunnels).toEqual(["tun0"]);
    expect(report.drift).toEqual([]);
  });

  it("restores the client namespace on stop", async () => {
    await lab.stopVpnClient();
    expect(await lab.clientLog()).toContain("splitroute: bypass removed");
    expect(await lab.clientState()).toBe(stateBefore);
    expect((await clientStatus(lab)).installed).toBe(false);
  });
});

// Without persist-tun and persist-key, OpenVPN 2.6.14 as nobody runs down
// through the plugin on SIGUSR1, then cannot read its certificate and key again and exits. With
// both, it keeps the tunnel device and runs no script, so the bypass stays.
describe.skipIf(!isRoot)(`OpenVPN as nobody restarting with persist-tun (${SKIP_REASON})`, () => {
  let lab: Lab;
  let stateBefore: string;
  let restartLog: string;

  beforeAll(async () => {
    const plugin = await findDownRootPlugin();
    lab = await createLab();
    await lab.startVpnServer();
    stateBefore = await lab.clientState();
    await lab.startVpnClient({
      hooks: { up: HOOKS.up },
      extraConfig: [...DROP_PRIVILEGES, "persist-tun", "persist-key", `plugin ${plugin} ${HOOKS.down}`],
    });

    const offset = await lab.clientLogOffset();
    lab.signalVpnClient("SIGUSR1");
    const ready = await lab.waitForClientLog(OPENVPN_READY_MESSAGE, offset);
    restartLog = (await lab.clientLog()).slice(offset, ready);
  });

  afterAll(async () => {
    if (lab === undefined) {
      return;
    }
    try {
      await removeLeftoverBypass(lab);
    } finally {
      await lab.destroy();
    }
  });

  it("runs no hook on restart", () => {
    expect(restartLog).toContain("Preserving previous TUN/TAP instance: tun0");
    expect(restartLog).not.toContain(`${HOOKS.up} `);
    expect(restartLog).not.toContain("splitroute: bypass removed");
  });

  it.each(FAMILIES)("accepts inbound IPv%i after the restart", async (family) => {
    expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
  });

  it("reports one tunnel without drift", async () => {
    const report = await clientStatus(lab);
    expect(report.state?.tunnels).toEqual(["tun0"]);
    expect(report.drift).toEqual([]);
  });

  it("restores the client namespace on stop", async () => {
    await lab.stopVpnClient();
    expect(await lab.clientState()).toBe(stateBefore);
    expect((await clientStatus(lab)).installed).toBe(false);
  });
});

describe.skipIf(!isRoot)(`OpenVPN as nobody with plain down (${SKIP_REASON})`, () => {
  let lab: Lab;
  let stateBefore: string;
  let logBeforeStop: string;

  beforeAll(async () => {
    lab = await createLab();
    await lab.startVpnServer();
    stateBefore = await lab.clientState();
    await lab.startVpnClient({ hooks: HOOKS, extraConfig: DROP_PRIVILEGES });
    logBeforeStop = await lab.clientLog();
  });

  afterAll(async () => {
    if (lab === undefined) {
      return;
    }
    try {
      await removeLeftoverBypass(lab);
    } finally {
      await lab.destroy();
    }
  });

  it.each(FAMILIES)("accepts inbound IPv%i on the uplink", async (family) => {
    expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
  });

  it("names the plugin when down fails", async () => {
    await lab.stopVpnClient();
    const shutdownLog = (await lab.clientLog()).slice(logBeforeStop.length);
    expect(shutdownLog).toContain(`${HOOKS.down} tun0`);
    expect(shutdownLog).toMatch(/splitroute: error: .*needs root privileges.*down-root plugin/);
    expect(shutdownLog).not.toContain("splitroute: bypass removed");
  });

  it("keeps the bypass after stop", async () => {
    const report = await clientStatus(lab);
    expect(report.installed).toBe(true);
    expect(report.state?.tunnels).toEqual(["tun0"]);
  });

  it("removes the bypass as root", async () => {
    const result = await execa("ip", ["netns", "exec", lab.names.client, process.execPath, CLI, "down", "--dev", "tun0"], { reject: false });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await lab.clientState()).toBe(stateBefore);
    expect((await clientStatus(lab)).installed).toBe(false);
  });
});
