// End to end: wg-quick (with wireguard-go) runs splitroute's hooks as
// PostUp/PostDown. Inbound connections to the client's uplink address must
// work beside wg-quick's own policy routing, alone and together with an
// OpenVPN tunnel, and taking the tunnels down must leave nothing of ours.
// Needs root, wireguard-tools and wireguard-go.

import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { createLab, LAB_ADDRESSES, SPLIT_TUNNEL_ALLOWED_IPS, type Lab } from "../../src/lab/lab.js";
import { clientStatus, HOOKS } from "./support.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces and run wg-quick";
if (!isRoot) {
  console.warn(`Skipping test/e2e/wireguard-hooks.test.ts: it ${SKIP_REASON}.`);
}

const WG_HOOKS = { postUp: [`${HOOKS.up} %i`], postDown: [`${HOOKS.down} %i`] };
const FAMILIES = [4, 6] as const;

// wg-quick switches on net.ipv4.conf.all.src_valid_mark for its own rules
// and never switches it off again; that line is wg-quick's, not ours.
function withoutWgQuickSysctl(state: string): string {
  return state.replace("net.ipv4.conf.all.src_valid_mark = 1", "net.ipv4.conf.all.src_valid_mark = 0");
}

async function ourTableDevices(lab: Lab): Promise<string> {
  const result = await execa("ip", ["-n", lab.names.client, "route", "show", "table", "2"]);
  return String(result.stdout);
}

describe.skipIf(!isRoot)(`wg-quick full tunnel with hooks (${SKIP_REASON})`, () => {
  let lab: Lab;
  let before: string;

  beforeAll(async () => {
    lab = await createLab();
    await lab.startWireGuardServer();
    before = await lab.clientState();
    await lab.startWireGuardClient({ hooks: WG_HOOKS });
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it.each(FAMILIES)("accepts inbound IPv%i on the uplink", async (family) => {
    expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
  });

  it.each(FAMILIES)("sends own IPv%i traffic through WireGuard", async (family) => {
    expect(await lab.outboundSeenAs(family)).toBe(LAB_ADDRESSES.vpnServer[family === 4 ? "v4" : "v6"]);
  });

  it("keeps the rule before wg-quick's", async () => {
    const rules = String((await execa("ip", ["-n", lab.names.client, "rule", "show"])).stdout);
    expect(rules).toMatch(/^1000:\s+from all fwmark 0x2\/0x2 lookup 2/m);
    expect(rules).toMatch(/^32765:\s+not from all fwmark 0xca6c lookup 51820/m);
  });

  it("leaves nothing after wg-quick down", async () => {
    await lab.stopWireGuardClient();
    expect(withoutWgQuickSysctl(await lab.clientState())).toBe(before);
    expect((await clientStatus(lab)).installed).toBe(false);
  });
});

describe.skipIf(!isRoot)(`wg-quick variants with hooks (${SKIP_REASON})`, () => {
  let lab: Lab;
  let before: string;

  beforeAll(async () => {
    lab = await createLab();
    await lab.startWireGuardServer();
    before = await lab.clientState();
  });

  afterEach(async () => {
    await lab.stopWireGuardClient().catch(() => undefined);
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it("split AllowedIPs keep WireGuard routes out", async () => {
    await lab.startWireGuardClient({ allowedIps: SPLIT_TUNNEL_ALLOWED_IPS, hooks: WG_HOOKS });
    expect(await lab.probeInbound(4)).toMatchObject({ connected: true });
    expect(await lab.connectThroughWireGuard(4)).toBe(true);
    expect(await ourTableDevices(lab)).not.toContain(lab.wireguardInterface);
    await lab.stopWireGuardClient();
    expect(withoutWgQuickSysctl(await lab.clientState())).toBe(before);
  });

  it("Table = off comes up and down cleanly", async () => {
    await lab.startWireGuardClient({ table: "off", hooks: WG_HOOKS });
    expect((await clientStatus(lab)).state?.tunnels).toEqual([lab.wireguardInterface]);
    expect(await lab.probeInbound(6)).toMatchObject({ connected: true });
    await lab.stopWireGuardClient();
    expect(withoutWgQuickSysctl(await lab.clientState())).toBe(before);
  });

  it("Table = number comes up and down cleanly", async () => {
    await lab.startWireGuardClient({ table: 100, hooks: WG_HOOKS });
    expect((await clientStatus(lab)).state?.tunnels).toEqual([lab.wireguardInterface]);
    expect(await lab.probeInbound(4)).toMatchObject({ connected: true });
    expect(await ourTableDevices(lab)).not.toContain(lab.wireguardInterface);
    await lab.stopWireGuardClient();
    expect(withoutWgQuickSysctl(await lab.clientState())).toBe(before);
  });

  it("failed PostUp leaves nothing behind", async () => {
    const broken = { postUp: [`${HOOKS.up} --config /nonexistent/splitroute.conf %i`], postDown: [`${HOOKS.down} %i`] };
    await expect(lab.startWireGuardClient({ hooks: broken })).rejects.toThrow();
    expect(withoutWgQuickSysctl(await lab.clientState())).toBe(before);
    expect((await clientStatus(lab)).installed).toBe(false);
  });
});

describe.skipIf(!isRoot)(`OpenVPN and WireGuard together (${SKIP_REASON})`, () => {
  let lab: Lab;
  let before: string;

  beforeAll(async () => {
    lab = await createLab();
    await lab.startVpnServer();
    await lab.startWireGuardServer();
    before = await lab.clientState();
    // OpenVPN first, so our rule exists before wg-quick adds its own rules.
    await lab.startVpnClient({ hooks: HOOKS });
    await lab.startWireGuardClient({ hooks: WG_HOOKS });
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it("shares one bypass for both tunnels", async () => {
    const status = await clientStatus(lab);
    expect(status.state?.tunnels).toEqual(["tun0", lab.wireguardInterface].sort());
    expect(status.drift).toEqual([]);
  });

  it("moves the rule before wg-quick's", async () => {
    const status = await clientStatus(lab);
    expect(status.state?.priority).toBeLessThan(998);
  });

  it.each(FAMILIES)("accepts inbound IPv%i with both up", async (family) => {
    expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
  });

  it("keeps the bypass when WireGuard goes down", async () => {
    await lab.stopWireGuardClient();
    expect((await clientStatus(lab)).state?.tunnels).toEqual(["tun0"]);
    expect(await lab.probeInbound(4)).toMatchObject({ connected: true });
    expect(await lab.probeInbound(6)).toMatchObject({ connected: true });
  });

  it("removes everything with the last tunnel", async () => {
    await lab.stopVpnClient();
    expect(withoutWgQuickSysctl(await lab.clientState())).toBe(before);
    expect((await clientStatus(lab)).installed).toBe(false);
  });
});
