// Integration: hooks/nm-dispatcher started as nm-dispatcher starts it, with
// the arguments IFACE ACTION and the environment of
// NetworkManager-dispatcher(8), in a throwaway namespace. NetworkManager
// itself is not run. Needs root.
//
// The kernel here has no WireGuard, so a tun device named wg0 takes its
// place. The script recognizes WireGuard by DEVTYPE=wireguard in the
// device's sysfs uevent file, so the tests bind-mount such a file over the
// tun device's own, in a mount namespace private to the script's run.

import { existsSync } from "node:fs";
import { symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, REPO, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/networkmanager.test.ts: it ${SKIP_REASON}.`);
}

const HOOK = join(REPO, "hooks", "nm-dispatcher");

// By absolute path, because the environment given to the script, and so to
// ip, has an empty PATH.
const IP = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].find((path) => existsSync(path)) ?? "ip";

interface Event {
  iface: string;
  action: string;
  env: Record<string, string>;
}

/**
 * Builds the environment nm-dispatcher gives a script for a device or VPN
 * event. PATH is empty, as in NetworkManager's own dispatcher test data,
 * because nm-dispatcher passes on whatever PATH it has.
 */
function deviceEvent(action: string, device: string, extra: Record<string, string> = {}): Event {
  return {
    iface: device,
    action,
    env: {
      PATH: "",
      NM_DISPATCHER_ACTION: action,
      CONNECTION_UUID: "0b5e2c7a-4d1f-4c55-9a0e-6f1d2b3c4d5e",
      CONNECTION_ID: `test ${device}`,
      CONNECTION_DBUS_PATH: "/org/freedesktop/NetworkManager/Settings/7",
      DEVICE_IFACE: device,
      DEVICE_IP_IFACE: device,
      ...extra,
    },
  };
}

/** Builds a VPN event, in which IFACE is the tunnel and DEVICE_IFACE the uplink that the VPN runs over. */
function vpnEvent(action: string, tunnel: string | undefined): Event {
  const event = deviceEvent(action, "eth0", {
    CONNECTION_ID: "office VPN",
    CONNECTION_FILENAME: "/etc/NetworkManager/system-connections/office.nmconnection",
  });
  if (tunnel !== undefined) {
    event.iface = tunnel;
    event.env.VPN_IP_IFACE = tunnel;
    event.env.VPN_IP4_ADDRESS_0 = "198.18.0.2/24 0.0.0.0";
    event.env.VPN_IP4_NUM_ADDRESSES = "1";
  }
  return event;
}

async function dispatch(host: TestHost, event: Event, script = HOOK) {
  const result = await execa(IP, ["netns", "exec", host.host, script, event.iface, event.action], {
    reject: false,
    env: event.env,
    extendEnv: false,
  });
  return { exitCode: result.exitCode, stderr: String(result.stderr) };
}

/** Runs the script with `device`'s uevent file replaced by one that contains DEVTYPE=wireguard. */
async function dispatchAsWireGuard(host: TestHost, event: Event, device: string) {
  const uevent = join(host.dir, `${device}.uevent`);
  const ifindex = (await host.run(["cat", `/sys/class/net/${device}/ifindex`])).trim();
  await writeFile(uevent, `DEVTYPE=wireguard\nINTERFACE=${device}\nIFINDEX=${ifindex}\n`);
  // unshare keeps the bind mount private to this run. The programs are
  // named by absolute path, because PATH is empty, as nm-dispatcher may pass it.
  const wrapper = '/bin/mount --bind "$0" "$1" && shift && exec "$@"';
  const argv = [
    "netns", "exec", host.host,
    "/usr/bin/unshare", "--mount", "--propagation", "private",
    "/bin/sh", "-c", wrapper, uevent, `/sys/class/net/${device}/uevent`,
    HOOK, event.iface, event.action,
  ];
  const result = await execa(IP, argv, { reject: false, env: event.env, extendEnv: false });
  return { exitCode: result.exitCode, stderr: String(result.stderr) };
}

async function tunnels(host: TestHost): Promise<string[] | undefined> {
  const status = JSON.parse((await host.splitroute(["status", "--json"])).stdout);
  return status.state?.tunnels;
}

/** Actions and devices that must leave the namespace alone. */
function unrelatedEvents(): Event[] {
  return [
    deviceEvent("up", "eth0"),
    deviceEvent("up", "tun0"),
    deviceEvent("down", "eth0"),
    deviceEvent("down", "tun0"),
    deviceEvent("pre-up", "eth0"),
    deviceEvent("pre-down", "eth0"),
    deviceEvent("dhcp4-change", "eth0", { DHCP4_IP_ADDRESS: "192.0.2.2" }),
    deviceEvent("dhcp6-change", "eth0"),
    deviceEvent("reapply", "eth0"),
    deviceEvent("down", "vlan7"),
    { iface: "", action: "connectivity-change", env: { PATH: "", NM_DISPATCHER_ACTION: "connectivity-change", CONNECTIVITY_STATE: "FULL" } },
    { iface: "", action: "dns-change", env: { PATH: "", NM_DISPATCHER_ACTION: "dns-change" } },
    { iface: "none", action: "hostname", env: { PATH: "", NM_DISPATCHER_ACTION: "hostname" } },
    vpnEvent("vpn-pre-up", "tun0"),
    vpnEvent("vpn-pre-down", "tun0"),
  ];
}

async function removeDefaultRoute(host: TestHost): Promise<void> {
  await host.run(["ip", "route", "del", "0.0.0.0/1"]);
  await host.run(["ip", "route", "del", "128.0.0.0/1"]);
  await host.run(["ip", "-6", "route", "del", "2000::/3"]);
}

describe.skipIf(!isRoot)(`NetworkManager dispatcher script (${SKIP_REASON})`, () => {
  let host: TestHost;
  let before: string;

  beforeAll(async () => {
    host = await createTestHost();
    before = await host.state();
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("vpn-up installs the bypass", async () => {
    const result = await dispatch(host, vpnEvent("vpn-up", "tun0"));
    expect(result.stderr).toContain("bypass active for tun0");
    expect(result.exitCode).toBe(0);
    expect(await tunnels(host)).toEqual(["tun0"]);
    await host.takeDefaultRoute();
    expect((await host.connectInbound(4)).connected).toBe(true);
    expect((await host.connectInbound(6)).connected).toBe(true);
  });

  it("ignores other events while active", async () => {
    const active = await host.state();
    for (const event of unrelatedEvents()) {
      const result = await dispatch(host, event);
      expect(result.exitCode, `${event.action} ${event.iface}`).toBe(0);
      expect(result.stderr, `${event.action} ${event.iface}`).toBe("");
    }
    expect(await host.state()).toBe(active);
    expect(await tunnels(host)).toEqual(["tun0"]);
  });

  it("vpn-down restores the starting state", async () => {
    const result = await dispatch(host, vpnEvent("vpn-down", "tun0"));
    expect(result.stderr).toContain("bypass removed");
    expect(result.exitCode).toBe(0);
    expect((await host.connectInbound(4)).connected).toBe(false);
    await removeDefaultRoute(host);
    expect(await host.state()).toBe(before);
  });

  it("ignores other events while inactive", async () => {
    for (const event of unrelatedEvents()) {
      const result = await dispatch(host, event);
      expect(result.exitCode, `${event.action} ${event.iface}`).toBe(0);
      expect(result.stderr, `${event.action} ${event.iface}`).toBe("");
    }
    expect(await host.state()).toBe(before);
  });

  it("rejects a hostile VPN_IP_IFACE", async () => {
    for (const name of ["tun0; rm -rf /", "--config=/etc/passwd", "../../tun0", "tun0\nup"]) {
      const result = await dispatch(host, vpnEvent("vpn-up", name));
      expect(result.exitCode, JSON.stringify(name)).toBe(2);
      expect(result.stderr, JSON.stringify(name)).toContain("invalid tunnel device");
    }
    expect(await host.state()).toBe(before);
  });

  it("rejects a hostile device name", async () => {
    const result = await dispatch(host, deviceEvent("up", "../../../etc"));
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('invalid interface name "../../../etc"');
    expect(await host.state()).toBe(before);
  });

  it("skips a VPN without tunnel device", async () => {
    const result = await dispatch(host, vpnEvent("vpn-up", undefined));
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toContain("office VPN has no tunnel device of its own");
    expect(await host.state()).toBe(before);
  });

  it("passes a failed up's status on", async () => {
    // nm-dispatcher logs the non-zero status as a warning, and NetworkManager does nothing else with it.
    const result = await dispatch(host, vpnEvent("vpn-up", "tun9"));
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("tunnel device tun9 does not exist");
    expect(await host.state()).toBe(before);
  });

  it("runs through an installed symlink", async () => {
    // The packages install /usr/lib/NetworkManager/dispatcher.d/90-splitroute as a link to the script.
    const link = join(host.dir, "90-splitroute");
    await symlink(HOOK, link);
    expect((await dispatch(host, vpnEvent("vpn-up", "tun0"), link)).exitCode).toBe(0);
    expect(await tunnels(host)).toEqual(["tun0"]);
    expect((await dispatch(host, vpnEvent("vpn-down", "tun0"), link)).exitCode).toBe(0);
    expect(await host.state()).toBe(before);
  });

  it("WireGuard up installs the bypass", async () => {
    await host.run(["ip", "tuntap", "add", "dev", "wg0", "mode", "tun"]);
    await host.run(["ip", "link", "set", "wg0", "up"]);
    const result = await dispatchAsWireGuard(host, deviceEvent("up", "wg0"), "wg0");
    expect(result.stderr).toContain("bypass active for wg0");
    expect(result.exitCode).toBe(0);
    expect(await tunnels(host)).toEqual(["wg0"]);
    await host.takeDefaultRoute();
    expect((await host.connectInbound(4)).connected).toBe(true);
  });

  it("down after the device is deleted", async () => {
    // NetworkManager deletes the WireGuard device it created, often before down runs.
    await host.run(["ip", "link", "del", "wg0"]);
    const result = await dispatch(host, deviceEvent("down", "wg0"));
    expect(result.stderr).toContain("bypass removed");
    expect(result.exitCode).toBe(0);
    await removeDefaultRoute(host);
    expect(await host.state()).toBe(before);
  });

  it("down while the device remains", async () => {
    await host.run(["ip", "tuntap", "add", "dev", "wg0", "mode", "tun"]);
    const baseline = await host.state();
    expect((await dispatchAsWireGuard(host, deviceEvent("up", "wg0"), "wg0")).exitCode).toBe(0);
    expect(await tunnels(host)).toEqual(["wg0"]);
    const result = await dispatchAsWireGuard(host, deviceEvent("down", "wg0"), "wg0");
    expect(result.stderr).toContain("bypass removed");
    expect(result.exitCode).toBe(0);
    expect(await host.state()).toBe(baseline);
  });

  it("leaves external WireGuard devices alone", async () => {
    // NetworkManager marks a device that wg-quick created as external, and wg-quick's own hooks handle it.
    const baseline = await host.state();
    const result = await dispatchAsWireGuard(host, deviceEvent("up", "wg0", { CONNECTION_EXTERNAL: "1" }), "wg0");
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toBe("");
    expect(await host.state()).toBe(baseline);
    await host.run(["ip", "link", "del", "wg0"]);
    expect(await host.state()).toBe(before);
  });

  it("keeps the VPN when WireGuard goes", async () => {
    expect((await dispatch(host, vpnEvent("vpn-up", "tun0"))).exitCode).toBe(0);
    await host.run(["ip", "tuntap", "add", "dev", "wg0", "mode", "tun"]);
    expect((await dispatchAsWireGuard(host, deviceEvent("up", "wg0"), "wg0")).exitCode).toBe(0);
    expect(await tunnels(host)).toEqual(["tun0", "wg0"]);
    await host.run(["ip", "link", "del", "wg0"]);
    expect((await dispatch(host, deviceEvent("down", "wg0"))).exitCode).toBe(0);
    expect(await tunnels(host)).toEqual(["tun0"]);
    expect((await dispatch(host, vpnEvent("vpn-down", "tun0"))).exitCode).toBe(0);
    expect(await host.state()).toBe(before);
  });
});
