// Control experiment for the namespace lab, without splitroute: the VPN must
// break inbound connections to the client's own address, so that a hooks
// test that passes proves the hooks fixed them. Needs root.

import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLab, LAB_ADDRESSES, type Lab } from "../../src/lab/lab.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces and run OpenVPN";
if (!isRoot) {
  console.warn(`Skipping test/e2e/lab-control.test.ts: it ${SKIP_REASON}.`);
}

const FAMILIES = [4, 6] as const;
const key = (family: 4 | 6) => (family === 4 ? "v4" : "v6");

// Records the arguments and environment OpenVPN passes to a script. OpenVPN
// gives scripts no PATH, hence the absolute paths. The sleep delays the down
// record, so it would be missing if stopVpnClient() returned too early.
const RECORDING_HOOK = `#!/bin/sh
/bin/sleep 0.5
{ echo "args=$*"; /usr/bin/env; } > "$RECORD_DIR/$script_type.env"
`;

function parseEnv(text: string): Map<string, string> {
  const entries = text.split("\n").map((line) => {
    const separator = line.indexOf("=");
    return [line.slice(0, separator), line.slice(separator + 1)] as const;
  });
  return new Map(entries);
}

async function processesMentioning(text: string): Promise<string[]> {
  const matches: string[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    const commandLine = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (commandLine.includes(text)) {
      matches.push(`${entry}: ${commandLine.replaceAll("\0", " ")}`);
    }
  }
  return matches;
}

describe.skipIf(!isRoot)(`namespace lab without hooks (${SKIP_REASON})`, () => {
  let lab: Lab;
  let stateBeforeVpn: string;

  beforeAll(async () => {
    lab = await createLab();
    stateBeforeVpn = await lab.clientState();
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  describe("before the VPN starts", () => {
    it.each(FAMILIES)("inbound SSH connects over IPv%i", async (family) => {
      expect(await lab.connectInbound(family)).toBe(true);
    });

    it.each(FAMILIES)("outbound seen as client over IPv%i", async (family) => {
      expect(await lab.outboundSeenAs(family)).toBe(LAB_ADDRESSES.client[key(family)]);
    });
  });

  describe("with the VPN up", () => {
    beforeAll(async () => {
      await lab.startVpnServer();
      await lab.startVpnClient();
    });

    it.each(FAMILIES)("inbound SSH fails over IPv%i", async (family) => {
      const result = await lab.probeInbound(family);
      expect(result.connected).toBe(false);
      expect(await lab.connectInbound(family)).toBe(false);
    });

    it.each(FAMILIES)("outbound seen as VPN server over IPv%i", async (family) => {
      expect(await lab.outboundSeenAs(family)).toBe(LAB_ADDRESSES.vpnServer[key(family)]);
    });

    it.each(FAMILIES)("tunnel address reachable over IPv%i", async (family) => {
      const tunnelAddress = await lab.clientTunnelAddress(family);
      expect(tunnelAddress).toMatch(family === 4 ? /^198\.18\.0\./ : /^fd00:8::/);
      expect(await lab.connectThroughTunnel(family)).toBe(true);
    });

    it("client routes cover the remote host", async () => {
      const routes4 = await execa("ip", ["-n", lab.names.client, "-4", "route", "get", LAB_ADDRESSES.remote.v4]);
      const routes6 = await execa("ip", ["-n", lab.names.client, "-6", "route", "get", LAB_ADDRESSES.remote.v6]);
      expect(routes4.stdout).toContain("dev tun0");
      expect(routes6.stdout).toContain("dev tun0");
    });
  });

  describe("after the VPN client stops", () => {
    beforeAll(async () => {
      await lab.stopVpnClient();
    });

    it("client state equals state before VPN", async () => {
      expect(await lab.clientState()).toBe(stateBeforeVpn);
    });

    it.each(FAMILIES)("inbound SSH connects again over IPv%i", async (family) => {
      expect(await lab.connectInbound(family)).toBe(true);
    });
  });

  describe("client hooks", () => {
    let recordDir: string;

    beforeAll(async () => {
      recordDir = await mkdtemp(join(tmpdir(), "splitroute-hook-record-"));
      const hookPath = join(recordDir, "record-hook");
      await writeFile(hookPath, RECORDING_HOOK);
      await chmod(hookPath, 0o755);

      await lab.startVpnClient({ hooks: { up: hookPath, down: hookPath }, setenv: { RECORD_DIR: recordDir } });
      await lab.stopVpnClient();
    });

    afterAll(async () => {
      await rm(recordDir, { recursive: true, force: true });
    });

    it("up hook gets dev and setenv", async () => {
      const env = parseEnv(await readFile(join(recordDir, "up.env"), "utf8"));
      expect(env.get("dev")).toBe("tun0");
      expect(env.get("script_type")).toBe("up");
      expect(env.get("RECORD_DIR")).toBe(recordDir);
      expect(env.get("args")).toMatch(/^tun0 /);
    });

    it("stop waits for down hook", async () => {
      const env = parseEnv(await readFile(join(recordDir, "down.env"), "utf8"));
      expect(env.get("dev")).toBe("tun0");
      expect(env.get("script_type")).toBe("down");
    });
  });

  it("destroy removes namespaces and processes", async () => {
    const tempDir = lab.tempDir;
    await lab.destroy();

    const namespaces = (await execa("ip", ["netns", "list"])).stdout;
    for (const name of Object.values(lab.names)) {
      expect(namespaces).not.toContain(name);
    }
    expect(await processesMentioning(tempDir)).toEqual([]);
    await expect(readdir(tempDir)).rejects.toThrow(/ENOENT/);
  });
});
