// Throwaway network namespaces for the benchmark. Every command runs inside
// a namespace created here, so the root namespace's links, routes, rules,
// firewall and sysctls stay untouched. Only documentation and benchmarking
// addresses appear: the uplink is 192.0.2.0/24 and 2001:db8:1::/64, the
// tunnel 198.51.100.0/24, and the N routes are /32s out of 198.18.0.0/15
// (RFC 2544) and /64s out of 2001:db8:8000::/33. No packet is sent.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";

export const UPLINK = {
  host: { v4: "192.0.2.2", v6: "2001:db8:1::2" },
  gateway: { v4: "192.0.2.1", v6: "2001:db8:1::1" },
};

// 198.18.0.0/15 contains 131,072 addresses, so an IPv4 route count above that
// would run out of prefixes.
export const MAX_IPV4_ROUTES = 131_072;
const IPV4_BASE = (198 << 24) | (18 << 16);

function run(argv, input) {
  return execFileSync(argv[0], argv.slice(1), { input, encoding: "utf8", stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
}

function inNamespace(namespace, argv, input) {
  return run(["ip", "netns", "exec", namespace, ...argv], input);
}

/** Returns the i-th IPv4 /32 of 198.18.0.0/15. */
export function ipv4Route(index) {
  const address = (IPV4_BASE + index) >>> 0;
  return `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}/32`;
}

/** Returns the i-th IPv6 /64 of 2001:db8:8000::/33. */
export function ipv6Route(index) {
  return `2001:db8:${(0x8000 + (index >>> 16)).toString(16)}:${(index & 0xffff).toString(16)}::/64`;
}

/**
 * Splits `count` routes into families: all IPv4 for "ipv4", and for "mixed"
 * the larger half IPv4 and the rest IPv6.
 */
export function routeCounts(count, mix) {
  const ipv4 = mix === "mixed" ? Math.ceil(count / 2) : count;
  if (ipv4 > MAX_IPV4_ROUTES) {
    throw new Error(`${ipv4} IPv4 routes do not fit into 198.18.0.0/15 (at most ${MAX_IPV4_ROUTES})`);
  }
  return { 4: ipv4, 6: count - ipv4 };
}

/** Returns `ip -batch` lines that add the benchmark routes, each followed by `suffix`. */
export function routeLines(counts, suffix = "") {
  const lines = [];
  for (let index = 0; index < counts[4]; index += 1) {
    lines.push(`route add ${ipv4Route(index)} via ${UPLINK.gateway.v4}${suffix}`);
  }
  for (let index = 0; index < counts[6]; index += 1) {
    lines.push(`route add ${ipv6Route(index)} via ${UPLINK.gateway.v6}${suffix}`);
  }
  return lines;
}

/**
 * Creates a host namespace with an uplink (eth0, a veth whose other end sits
 * in a gateway namespace), a default route per family and a tun0 device, as
 * a VPN client has it before OpenVPN adds its routes. Returns the namespace
 * names and a delete function that is safe to call more than once.
 */
export function createLab() {
  const prefix = `srbench-${randomBytes(3).toString("hex")}`;
  const lab = { host: `${prefix}-host`, gateway: `${prefix}-gw`, created: [] };
  lab.delete = () => {
    for (const namespace of lab.created.splice(0).reverse()) {
      try {
        run(["ip", "netns", "delete", namespace]);
      } catch (error) {
        process.stderr.write(`bench: could not delete network namespace ${namespace}: ${error.message}\n`);
      }
    }
  };

  try {
    for (const namespace of [lab.host, lab.gateway]) {
      run(["ip", "netns", "add", namespace]);
      lab.created.push(namespace);
      inNamespace(namespace, ["sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]);
      inNamespace(namespace, ["ip", "link", "set", "lo", "up"]);
    }
    // Created from inside the host namespace, so the veth pair never exists in the root namespace.
    inNamespace(lab.host, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", lab.gateway]);
    const host = [
      "link set eth0 up",
      `addr add ${UPLINK.host.v4}/24 dev eth0`,
      `addr add ${UPLINK.host.v6}/64 dev eth0 nodad`,
      `route add default via ${UPLINK.gateway.v4}`,
      `route add default via ${UPLINK.gateway.v6}`,
      "tuntap add dev tun0 mode tun",
      "link set tun0 up",
      "addr add 198.51.100.2/24 dev tun0",
    ];
    inNamespace(lab.host, ["ip", "-batch", "-"], `${host.join("\n")}\n`);
    const gateway = ["link set eth0 up", `addr add ${UPLINK.gateway.v4}/24 dev eth0`, `addr add ${UPLINK.gateway.v6}/64 dev eth0 nodad`];
    inNamespace(lab.gateway, ["ip", "-batch", "-"], `${gateway.join("\n")}\n`);
  } catch (error) {
    lab.delete();
    throw error;
  }
  return lab;
}

/** Adds the benchmark routes to the host namespace's main table with one `ip -batch`. */
export function loadRoutes(lab, counts, batchFile) {
  writeFileSync(batchFile, `${routeLines(counts).join("\n")}\n`);
  inNamespace(lab.host, ["ip", "-batch", batchFile]);
}
