// A two-namespace test host for integration tests without a VPN: `host` has
// an uplink to `peer` and a tun device standing in for the tunnel. Routing
// 0.0.0.0/1, 128.0.0.0/1 and 2000::/3 into the tun device has the effect of
// OpenVPN's def1 routes: replies that follow them are lost, because no
// process reads the tun device.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

import { addNamespace, deleteNamespace, newNamespacePrefix, runInNamespace } from "../../src/lab/namespaces.js";
import { connectAndReadLine, startListener, writeProbeProgram, type ConnectResult } from "../../src/lab/probe.js";
import type { LabProcess } from "../../src/lab/processes.js";
import { readNamespaceState } from "../../src/lab/state.js";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
const CLI = join(REPO, "dist", "cli.js");

export const ADDRESSES = {
  host: { v4: "192.0.2.2", v6: "2001:db8:1::2" },
  gateway: { v4: "192.0.2.1", v6: "2001:db8:1::1" },
  remote: { v4: "203.0.113.10", v6: "2001:db8:3::10" },
} as const;

export interface TestHost {
  host: string;
  peer: string;
  dir: string;
  /** Runs argv inside the host namespace; throws on a non-zero exit. */
  run(argv: readonly string[], input?: string): Promise<string>;
  /** Runs the splitroute CLI inside the host namespace and returns its exit code and output. */
  splitroute(args: readonly string[], env?: Record<string, string>): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** Routes everything into tun0, as a VPN with def1 would. */
  takeDefaultRoute(): Promise<void>;
  /** Connects from the remote address in `peer` to the host's port 22. */
  connectInbound(family: 4 | 6): Promise<ConnectResult>;
  /** The host's rules, routes, firewall and sysctls as text, with nft counters blanked. */
  state(): Promise<string>;
  destroy(): Promise<void>;
}

/** Builds the two namespaces, the uplink, tun0 and a listener on the host's port 22. */
export async function createTestHost(): Promise<TestHost> {
  const prefix = newNamespacePrefix();
  const host = `${prefix}-host`;
  const peer = `${prefix}-peer`;
  const dir = await mkdtemp(join(tmpdir(), "splitroute-netns-"));
  const processes: LabProcess[] = [];

  const destroy = async () => {
    for (const process of processes) {
      await process.stop().catch(() => undefined);
    }
    await deleteNamespace(host);
    await deleteNamespace(peer);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await addNamespace(host);
    await addNamespace(peer);
    const inHost = (argv: readonly string[], input?: string) => runInNamespace(host, argv, input);
    const inPeer = (argv: readonly string[]) => runInNamespace(peer, argv);

    for (const namespace of [host, peer]) {
      await runInNamespace(namespace, ["sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]);
    }
    await execa("ip", ["link", "add", "eth0", "netns", host, "type", "veth", "peer", "name", "eth0", "netns", peer]);
    await inHost(["ip", "link", "set", "eth0", "up"]);
    await inHost(["ip", "addr", "add", `${ADDRESSES.host.v4}/24`, "dev", "eth0"]);
    await inHost(["ip", "addr", "add", `${ADDRESSES.host.v6}/64`, "dev", "eth0", "nodad"]);
    await inHost(["ip", "route", "add", "default", "via", ADDRESSES.gateway.v4]);
    await inHost(["ip", "-6", "route", "add", "default", "via", ADDRESSES.gateway.v6]);
    await inHost(["ip", "tuntap", "add", "dev", "tun0", "mode", "tun"]);
    await inHost(["ip", "link", "set", "tun0", "up"]);
    await inHost(["ip", "addr", "add", "198.18.0.2/24", "dev", "tun0"]);

    // The peer stands in for a router and a remote host at once. Without
    // arp_announce=2 its ARP requests would carry the remote address, which
    // a host with strict rp_filter rightly ignores once the VPN's routes
    // point that address into the tunnel; a real router asks from its own.
    await inPeer(["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_announce=2"]);
    await inPeer(["ip", "link", "set", "eth0", "up"]);
    await inPeer(["ip", "addr", "add", `${ADDRESSES.gateway.v4}/24`, "dev", "eth0"]);
    await inPeer(["ip", "addr", "add", `${ADDRESSES.gateway.v6}/64`, "dev", "eth0", "nodad"]);
    await inPeer(["ip", "addr", "add", `${ADDRESSES.remote.v4}/32`, "dev", "lo"]);
    await inPeer(["ip", "addr", "add", `${ADDRESSES.remote.v6}/128`, "dev", "lo"]);
    await inPeer(["ip", "route", "add", "default", "via", ADDRESSES.host.v4]);
    await inPeer(["ip", "-6", "route", "add", "default", "via", ADDRESSES.host.v6]);

    const program = await writeProbeProgram(dir);
    await startListener(
      { label: "port 22 listener", namespace: host, programPath: program, mode: "listen-banner", host: "::", port: 22, banner: "SSH-2.0-test" },
      (process) => processes.push(process),
    );

    return {
      host,
      peer,
      dir,
      run: inHost,
      async splitroute(args, env = {}) {
        const result = await execa("ip", ["netns", "exec", host, process.execPath, CLI, ...args], {
          reject: false,
          env: { ...env },
          extendEnv: false,
        });
        return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr) };
      },
      async takeDefaultRoute() {
        await inHost(["ip", "route", "add", "0.0.0.0/1", "dev", "tun0"]);
        await inHost(["ip", "route", "add", "128.0.0.0/1", "dev", "tun0"]);
        await inHost(["ip", "-6", "route", "add", "2000::/3", "dev", "tun0"]);
      },
      connectInbound(family) {
        const key = family === 4 ? "v4" : "v6";
        return connectAndReadLine({
          namespace: peer,
          programPath: program,
          host: ADDRESSES.host[key],
          port: 22,
          localAddress: ADDRESSES.remote[key],
          timeoutMs: 2_500,
        });
      },
      async state() {
        return (await readNamespaceState(host)).replace(/counter packets \d+ bytes \d+/g, "counter");
      },
      destroy,
    };
  } catch (error) {
    await destroy();
    throw error;
  }
}
