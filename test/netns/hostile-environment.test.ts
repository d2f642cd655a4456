// Integration: the up hook with an environment like the one OpenVPN builds
// from pushed options, plus hostile values. Nothing in it may widen what
// splitroute installs: the state after up must equal the state after up with
// only dev=tun0 set, and down must restore the state from before. Needs root;
// every change happens in a throwaway namespace.

import { existsSync } from "node:fs";
import { chmod, chown, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { findTool } from "../../src/system/tools.js";
import { createTestHost, REPO, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/hostile-environment.test.ts: it ${SKIP_REASON}.`);
}

const UP = join(REPO, "hooks", "up");
const DOWN = join(REPO, "hooks", "down");
// OpenVPN's arguments to up and down: device, tun MTU, link MTU, local
// address, netmask and "init".
const OPENVPN_ARGS = ["tun0", "1500", "1553", "198.18.0.2", "255.255.255.0", "init"];
// The tools splitroute runs. Fakes of these are put first in PATH.
const TOOLS = [
  "ip",
  "nft",
  "sysctl",
  "iptables",
  "ip6tables",
  "iptables-save",
  "ip6tables-save",
  "iptables-restore",
  "ip6tables-restore",
  "iptables-nft",
  "iptables-legacy",
  "iptables-legacy-save",
  "ip6tables-legacy-save",
  "iptables-nft-restore",
  "iptables-legacy-restore",
  "ip6tables-nft-restore",
  "ip6tables-legacy-restore",
  "node",
];

/**
 * Runs a hook in the host namespace with exactly `env`. `ip` is given by
 * absolute path, because `env` may carry a PATH that leads to fakes.
 */
async function runHook(host: TestHost, hook: string, args: readonly string[], env: Record<string, string>) {
  const ip = findTool("ip", {});
  if (ip === undefined) {
    throw new Error("ip not found in the system folders");
  }
  const result = await execa(ip, ["netns", "exec", host.host, hook, ...args], { reject: false, env, extendEnv: false });
  return { exitCode: result.exitCode, stderr: String(result.stderr) };
}

/**
 * Returns variables of the kind an OpenVPN client passes its up script when
 * the server pushes def1 routes, DNS options and setenv-safe values, with
 * documentation addresses. A pushed `setenv-safe NAME value` arrives as
 * OPENVPN_NAME (openvpn(8), OpenVPN 2.6.14).
 */
function pushedEnvironment(marker: string, widerConfig: string, fakeBin: string): Record<string, string> {
  // Each of these creates `marker` if a shell ever evaluates it.
  const touch = `/usr/bin/touch ${marker}`;
  return {
    dev: "tun0",
    dev_type: "tun",
    script_type: "up",
    script_context: "init",
    signal: "UNKNOWN",
    verb: "3",
    daemon: "0",
    daemon_log_redirect: "0",
    daemon_pid: "4242",
    daemon_start_time: "1700000000",
    config: "/etc/openvpn/client/office.conf",
    tun_mtu: "1500",
    link_mtu: "1553",
    proto_1: "udp",
    remote_1: "vpn.example.com",
    remote_port_1: "1194",
    local_port_1: "0",
    trusted_ip: "198.51.100.1",
    trusted_port: "1194",
    untrusted_ip: "198.51.100.1",
    untrusted_port: "1194",
    common_name: "vpn.example.com",
    X509_0_CN: "vpn.example.com",
    tls_serial_0: "1",
    ifconfig_local: "198.18.0.2",
    ifconfig_netmask: "255.255.255.0",
    ifconfig_broadcast: "198.18.0.255",
    ifconfig_ipv6_local: "2001:db8:2::2",
    ifconfig_ipv6_netbits: "64",
    ifconfig_ipv6_remote: "2001:db8:2::1",
    route_vpn_gateway: "198.18.0.1",
    route_net_gateway: "192.0.2.1",
    route_network_1: "0.0.0.0",
    route_netmask_1: "128.0.0.0",
    route_gateway_1: "198.18.0.1",
    route_network_2: "128.0.0.0",
    route_netmask_2: "128.0.0.0",
    route_gateway_2: "198.18.0.1",
    route_ipv6_network_1: "2000::/3",
    route_ipv6_gateway_1: "2001:db8:2::1",
    foreign_option_1: "dhcp-option DNS 203.0.113.53",
    foreign_option_2: "dhcp-option DOMAIN example.com",
    foreign_option_3: "dhcp-option DNS6 2001:db8:3::53",

    // Pushed values that try to inject commands.
    foreign_option_4: `dhcp-option DNS 203.0.113.53; ${touch}`,
    route_network_3: `$(${touch})`,
    route_netmask_3: "255.255.255.255",
    route_gateway_3: `\`${touch}\``,
    X509_1_CN: `'; ${touch}; '\nsplitroute: bypass active for tun9`,

    // setenv-safe values named after what splitroute reads.
    OPENVPN_dev: `tun0; ${touch}`,
    OPENVPN_SPLITROUTE_CONFIG: widerConfig,
    OPENVPN_SPLITROUTE_STATE_DIR: join(marker, ".."),
    OPENVPN_SPLITROUTE_NODE: join(fakeBin, "node"),
    OPENVPN_PATH: fakeBin,
    OPENVPN_NODE_OPTIONS: `--require ${marker}`,

    // Names close to the ones splitroute reads.
    DEV: "evil0",
    Dev: "evil0",
    splitroute_config: widerConfig,
    SPLITROUTE_CONFIG_FILE: widerConfig,
    SPLITROUTE_BACKEND: "iptables-legacy",
    SPLITROUTE_TABLE: "254",
    SPLITROUTE_EXCLUDE: "eth0",
    SPLITROUTE_DEV: "eth0",

    // An administrator's environment: fakes of every tool first in PATH, and
    // another locale.
    PATH: `${fakeBin}:/usr/sbin:/usr/bin:/sbin:/bin`,
    LANG: "de_DE.UTF-8",
    LC_ALL: "tr_TR.UTF-8",
  };
}

describe.skipIf(!isRoot)(`hostile hook environment (${SKIP_REASON})`, () => {
  let host: TestHost;
  let before: string;
  let cleanState: string;
  let cleanLog: string;
  let marker: string;
  let fakeBin: string;
  let widerConfig: string;

  beforeAll(async () => {
    host = await createTestHost();
    await host.takeDefaultRoute();
    marker = join(host.dir, "marker");

    // Fakes that record being run and fail. If splitroute ran one in place
    // of the real tool, the marker would exist and up would fail.
    fakeBin = join(host.dir, "fake-bin");
    await mkdir(fakeBin);
    for (const tool of TOOLS) {
      const path = join(fakeBin, tool);
      await writeFile(path, `#!/bin/sh\necho "$0 $*" >> ${marker}\nexit 1\n`);
      await chmod(path, 0o755);
    }

    // A valid root-owned configuration that installs more than the default:
    // another table id, a wider mask and a second bypass.
    widerConfig = join(host.dir, "wider.conf");
    await writeFile(widerConfig, "[table]\nid = 7\n[mark]\nvalue = 0x10\nmask = 0x10\n[bypass.ssh]\nprotocol = tcp\nlocal_port = 22\n[bypass.dns]\nprotocol = udp\nlocal_port = 53\n", {
      mode: 0o644,
    });

    before = await host.state();
    const up = await runHook(host, UP, OPENVPN_ARGS, { dev: "tun0" });
    expect(up.exitCode, up.stderr).toBe(0);
    cleanState = await host.state();
    cleanLog = up.stderr;
    const down = await runHook(host, DOWN, OPENVPN_ARGS, { dev: "tun0" });
    expect(down.exitCode, down.stderr).toBe(0);
    expect(await host.state()).toBe(before);
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("pushed options change nothing", async () => {
    const env = pushedEnvironment(marker, widerConfig, fakeBin);
    const up = await runHook(host, UP, OPENVPN_ARGS, env);
    expect(up.exitCode, up.stderr).toBe(0);
    expect(await host.state()).toBe(cleanState);
    expect(up.stderr).toBe(cleanLog);
    expect((await host.connectInbound(4)).connected).toBe(true);

    const down = await runHook(host, DOWN, OPENVPN_ARGS, { ...env, script_type: "down" });
    expect(down.exitCode, down.stderr).toBe(0);
    expect(await host.state()).toBe(before);
    expect(existsSync(marker), "a pushed value or a fake tool was run").toBe(false);
  });

  it("down-root plugin environment changes nothing", async () => {
    const env = pushedEnvironment(marker, widerConfig, fakeBin);
    expect((await runHook(host, UP, OPENVPN_ARGS, env)).exitCode).toBe(0);
    // The plugin runs down without arguments and with up's environment.
    const down = await runHook(host, DOWN, [], env);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(await host.state()).toBe(before);
    expect(existsSync(marker)).toBe(false);
  });

  it("rejects injected dev variable", async () => {
    const values = [`tun0; /usr/bin/touch ${marker}`, `$(/usr/bin/touch ${marker})`, "tun0\nsplitroute: bypass active for tun0", "../tun0", "tun+", "eth0 tun0"];
    for (const dev of values) {
      const env = { ...pushedEnvironment(marker, widerConfig, fakeBin), dev };
      const up = await runHook(host, UP, OPENVPN_ARGS, env);
      const label = `dev=${JSON.stringify(dev)}`;
      expect(up.exitCode, label).toBe(2);
      expect(up.stderr, label).toContain(`invalid tunnel device ${JSON.stringify(dev)} from the environment variable dev`);
      expect(up.stderr.trim().split("\n"), label).toHaveLength(1);
      expect(await host.state(), label).toBe(before);
    }
    expect(existsSync(marker)).toBe(false);
  });

  it("rejects writable SPLITROUTE_CONFIG", async () => {
    const open = join(host.dir, "open.conf");
    await writeFile(open, "[table]\nid = 7\n[bypass.dns]\nprotocol = udp\nlocal_port = 53\n");
    await chmod(open, 0o666);
    const foreign = join(host.dir, "foreign.conf");
    await writeFile(foreign, "[table]\nid = 7\n", { mode: 0o644 });
    await chown(foreign, 65_534, 65_534);

    for (const [path, detail] of [
      [open, "mode 666"],
      [foreign, "owned by uid 65534"],
    ] as const) {
      const env = { ...pushedEnvironment(marker, widerConfig, fakeBin), SPLITROUTE_CONFIG: path };
      const up = await runHook(host, UP, OPENVPN_ARGS, env);
      expect(up.exitCode, path).toBe(2);
      expect(up.stderr, path).toContain(`refusing configuration file ${path}`);
      expect(up.stderr, path).toContain(detail);
      expect(await host.state(), path).toBe(before);
    }
  });

  it("unknown snapshot table named", async () => {
    const config = join(host.dir, "unknown-table.conf");
    await writeFile(config, "[snapshot]\ntable = nosuchtable\n", { mode: 0o644 });
    const up = await runHook(host, UP, OPENVPN_ARGS, { dev: "tun0", SPLITROUTE_CONFIG: config });
    expect(up.exitCode).toBe(2);
    expect(up.stderr).toContain(`invalid configuration in ${config}: snapshot.table = nosuchtable is not a table name that ip knows`);
    expect(await host.state()).toBe(before);
  });

  // Shows that the comparison above can fail: the documented variable with
  // a wider configuration does change the installed state.
  it("documented variable does widen", async () => {
    const env = { dev: "tun0", SPLITROUTE_CONFIG: widerConfig };
    const up = await runHook(host, UP, OPENVPN_ARGS, env);
    expect(up.exitCode, up.stderr).toBe(0);
    const widened = await host.state();
    expect(widened).not.toBe(cleanState);
    expect(widened).toContain("lookup 7");
    expect(widened).toContain("udp");

    const down = await runHook(host, DOWN, OPENVPN_ARGS, env);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(await host.state()).toBe(before);
  });
});
