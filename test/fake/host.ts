// Ready-made fake hosts and command contexts for the plan and command tests.

import type { Context } from "../../src/commands/context.js";
import type { BackendChoice, Config } from "../../src/config/types.js";
import { DEFAULTS } from "../../src/config/validate.js";
import { createLogger } from "../../src/log.js";
import { MemoryStateStore } from "../../src/state.js";
import { FakeSystem, type FakeSystemOptions } from "./system.js";

/**
 * Builds a laptop with one uplink (eth0, IPv4 and IPv6) while OpenVPN runs
 * on tun0 with its def1 routes, a second tunnel device tun1 without routes,
 * and a WireGuard interface wg0 with a subnet route.
 */
export function vpnHost(options: FakeSystemOptions = {}): FakeSystem {
  const system = new FakeSystem({ interfaces: ["eth0", "tun0", "tun1", "wg0"], ...options });
  system.addRoutes(4, "main", [
    "default via 192.0.2.1 dev eth0 proto dhcp src 192.0.2.10 metric 100",
    "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.10 metric 100",
    "198.51.100.7 via 192.0.2.1 dev eth0",
    "0.0.0.0/1 via 10.8.0.1 dev tun0",
    "128.0.0.0/1 via 10.8.0.1 dev tun0",
    "10.8.0.0/24 dev tun0 proto kernel scope link src 10.8.0.2",
    "10.99.0.0/24 dev wg0 proto kernel scope link src 10.99.0.2",
    "blackhole 203.0.113.0/24",
  ]);
  if (options.ipv6 !== false) {
    system.addRoutes(6, "main", [
      "2001:db8:1::/64 dev eth0 proto kernel metric 256",
      "fe80::/64 dev eth0 proto kernel metric 256",
      "fe80::/64 dev tun0 proto kernel metric 256",
      "2000::/3 dev tun0 metric 1024",
      "default via 2001:db8:1::1 dev eth0 proto ra metric 1024",
    ]);
  }
  return system;
}

/** Returns the built-in defaults with `backend`, as if read from /etc/splitroute/test.conf. */
export function testConfig(backend: BackendChoice, changes: Partial<Omit<Config, "source">> = {}): Config {
  return { ...structuredClone(DEFAULTS), firewall: { backend }, ...changes, source: "/etc/splitroute/test.conf" };
}

/** Builds a command context around `system` with a memory store, a silent logger and a lock that is always free. */
export function testContext(system: FakeSystem, config: Config, store = new MemoryStateStore()): Context & { store: MemoryStateStore } {
  return {
    system,
    config,
    store,
    log: createLogger("text", "silent"),
    lock: async () => async () => {},
  };
}
