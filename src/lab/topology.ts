// The lab's network: four namespaces joined by veth pairs. Addresses come
// only from the documentation and benchmarking ranges (192.0.2.0/24,
// 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15, 2001:db8::/32) and unique
// local fd00::/8, none of which is routed on the internet.
//
//   client (eth0) ── (to-client) internet (to-vpn) ── (eth0) vpn
//                                (to-remote)
//                                     │
//                                  (eth0) remote
//
// The kernel here has no dummy interface type, so the remote host is a
// namespace of its own behind the router rather than an address on it.

import { addNamespace, runCommand, setSysctls } from "./namespaces.js";
import { sleep } from "./processes.js";

export interface LabNames {
  /** The host that runs the VPN client and the SSH-like listener on port 22. */
  client: string;
  /** The router between the other three namespaces. */
  internet: string;
  /** The OpenVPN server, which masquerades tunnel traffic out of its uplink. */
  vpn: string;
  /** The administrator's machine, which also runs the web server the client connects to. */
  remote: string;
}

export interface DualStackAddress {
  v4: string;
  v6: string;
}

/** The lab's fixed addresses. Tunnel addresses are assigned by OpenVPN and read at run time. */
export const LAB_ADDRESSES = {
  client: { v4: "192.0.2.2", v6: "2001:db8:1::2" },
  clientGateway: { v4: "192.0.2.1", v6: "2001:db8:1::1" },
  vpnServer: { v4: "198.51.100.2", v6: "2001:db8:2::2" },
  vpnGateway: { v4: "198.51.100.1", v6: "2001:db8:2::1" },
  remote: { v4: "203.0.113.10", v6: "2001:db8:3::10" },
  remoteGateway: { v4: "203.0.113.1", v6: "2001:db8:3::1" },
} as const satisfies Record<string, DualStackAddress>;

export const TUNNEL_NETWORK = {
  v4: { network: "198.18.0.0", netmask: "255.255.255.0", prefix: "198.18.0." },
  v6: { network: "fd00:8::/64", prefix: "fd00:8::" },
} as const;

/** Prefix length of every link in the lab. */
const V4_PREFIX_LENGTH = 24;
const V6_PREFIX_LENGTH = 64;

interface Uplink {
  host: keyof LabNames;
  /** Name of the router's end of the veth pair. The host's end is always eth0. */
  routerSide: string;
  address: DualStackAddress;
  gateway: DualStackAddress;
}

const UPLINKS: readonly Uplink[] = [
  { host: "client", routerSide: "to-client", address: LAB_ADDRESSES.client, gateway: LAB_ADDRESSES.clientGateway },
  { host: "vpn", routerSide: "to-vpn", address: LAB_ADDRESSES.vpnServer, gateway: LAB_ADDRESSES.vpnGateway },
  { host: "remote", routerSide: "to-remote", address: LAB_ADDRESSES.remote, gateway: LAB_ADDRESSES.remoteGateway },
];

/** Derives the four namespace names from a common prefix. */
export function namespaceNames(prefix: string): LabNames {
  return {
    client: `${prefix}-client`,
    internet: `${prefix}-internet`,
    vpn: `${prefix}-vpn`,
    remote: `${prefix}-remote`,
  };
}

/**
 * Creates the namespaces, links, addresses, routes and sysctls. Each namespace
 * name is passed to `created` right after it exists, so the caller can delete
 * it even when a later step fails.
 */
export async function buildNetwork(names: LabNames, clientRpFilter: 0 | 1 | 2, created: (namespace: string) => void): Promise<void> {
  for (const namespace of Object.values(names)) {
    await addNamespace(namespace);
    created(namespace);
    await runCommand(["ip", "-n", namespace, "link", "set", "lo", "up"]);
    // Without duplicate address detection every IPv6 address is usable at
    // once. With it, each link-local address turns valid about a second after
    // its link comes up and adds a route to the local table, so a state
    // snapshot taken right after createLab would differ from a later one.
    await setSysctls(namespace, [
      ["net.ipv6.conf.all.accept_dad", 0],
      ["net.ipv6.conf.default.accept_dad", 0],
    ]);
  }

  for (const uplink of UPLINKS) {
    await addUplink(names, uplink);
  }
  await waitForLinksUp(names);

  await setSysctls(names.internet, [
    ["net.ipv4.ip_forward", 1],
    ["net.ipv6.conf.all.forwarding", 1],
  ]);
  await setSysctls(names.vpn, [
    ["net.ipv4.ip_forward", 1],
    ["net.ipv6.conf.all.forwarding", 1],
  ]);
  await setSysctls(names.remote, [["net.ipv4.ip_forward", 0]]);
  await setClientSysctls(names.client, clientRpFilter);
}

async function addUplink(names: LabNames, uplink: Uplink): Promise<void> {
  const host = names[uplink.host];
  const router = names.internet;

  // Created inside the host namespace with the peer placed straight into the
  // router's, so no interface ever appears in the root namespace.
  await runCommand(["ip", "-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", uplink.routerSide, "netns", router]);

  await addAddresses(host, "eth0", uplink.address);
  await addAddresses(router, uplink.routerSide, uplink.gateway);
  await runCommand(["ip", "-n", host, "link", "set", "eth0", "up"]);
  await runCommand(["ip", "-n", router, "link", "set", uplink.routerSide, "up"]);

  await runCommand(["ip", "-n", host, "-4", "route", "add", "default", "via", uplink.gateway.v4, "dev", "eth0"]);
  await runCommand(["ip", "-n", host, "-6", "route", "add", "default", "via", uplink.gateway.v6, "dev", "eth0"]);
}

// Measured on a 6.18 kernel: one veth end reported operstate DOWN for about
// 0.8 s after both ends were set up. A SYN sent in that time was lost, and the
// first connection took an extra second for the retransmission.
const LINK_UP_TIMEOUT_MS = 10_000;
const LINK_POLL_INTERVAL_MS = 50;

/**
 * Waits until every link except lo reports operstate UP in all namespaces.
 * The kernel sets operstate in its linkwatch work, which net/core/link_watch.c
 * limits to one run per second, so "ip link set up" returns before that.
 */
async function waitForLinksUp(names: LabNames): Promise<void> {
  const deadline = Date.now() + LINK_UP_TIMEOUT_MS;
  for (;;) {
    const notUp: string[] = [];
    for (const namespace of Object.values(names)) {
      const links = JSON.parse(await runCommand(["ip", "-j", "-n", namespace, "link", "show"])) as Array<{ ifname: string; operstate: string }>;
      for (const link of links) {
        if (link.ifname !== "lo" && link.operstate !== "UP") {
          notUp.push(`${namespace}/${link.ifname} (${link.operstate})`);
        }
      }
    }
    if (notUp.length === 0) {
      return;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${LINK_UP_TIMEOUT_MS} ms waiting for links to come up: ${notUp.join(", ")}`);
    }
    await sleep(LINK_POLL_INTERVAL_MS);
  }
}

async function addAddresses(namespace: string, device: string, address: DualStackAddress): Promise<void> {
  await runCommand(["ip", "-n", namespace, "-4", "address", "add", `${address.v4}/${V4_PREFIX_LENGTH}`, "dev", device]);
  await runCommand(["ip", "-n", namespace, "-6", "address", "add", `${address.v6}/${V6_PREFIX_LENGTH}`, "dev", device]);
}

/**
 * Sets the client's sysctls to fixed values. A new namespace copies its IPv4
 * settings from the root namespace, so without this the lab would behave
 * differently on a host with rp_filter=1 or forwarding on.
 */
async function setClientSysctls(client: string, rpFilter: 0 | 1 | 2): Promise<void> {
  // The kernel applies max(all, interface) for rp_filter, so every level is
  // set. tun0, created later by OpenVPN, copies the "default" values.
  const levels = ["all", "default", "lo", "eth0"];
  await setSysctls(client, [
    ["net.ipv4.ip_forward", 0],
    ...levels.map((level) => [`net.ipv4.conf.${level}.rp_filter`, rpFilter] as const),
    ...levels.map((level) => [`net.ipv4.conf.${level}.src_valid_mark`, 0] as const),
  ]);
}

/**
 * Adds the VPN server's masquerade rules for IPv4 and IPv6. Traffic from the
 * tunnel subnets leaves the uplink with the server's own source address, as
 * on a commercial VPN, so the remote host gets no packet from a tunnel address.
 */
export async function addVpnServerNat(vpn: string): Promise<void> {
  const ruleset = [
    "table inet splitroute_lab_nat {",
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    ip saddr ${TUNNEL_NETWORK.v4.network}/${V4_PREFIX_LENGTH} oifname "eth0" masquerade`,
    `    ip6 saddr ${TUNNEL_NETWORK.v6.network} oifname "eth0" masquerade`,
    "  }",
    "}",
    "",
  ].join("\n");
  await runCommand(["ip", "netns", "exec", vpn, "nft", "-f", "-"], ruleset);
}
