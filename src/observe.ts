import { iptablesTools, parseIptablesSave, type IptablesObserved } from "./firewall/iptables.js";
import type { FirewallBackend } from "./firewall/backend.js";
import { interfaceKey, type UplinkSysctls } from "./rpfilter.js";
import type { ObservedRule } from "./rule.js";
import { isRecord } from "./snapshot/fields.js";
import { parseRoutes } from "./snapshot/parse.js";
import type { Family, Route } from "./snapshot/route.js";
import { CommandError } from "./errors.js";
import type { System } from "./system/system.js";

// Observers only read. Each returns plain data for the planners.

export const FAMILIES: readonly Family[] = [4, 6];

/** Returns whether IPv6 is enabled in this namespace, because without it every `ip -6` command fails. */
export async function hasIpv6(system: System): Promise<boolean> {
  return (await system.readSysctl("net.ipv6.conf.all.disable_ipv6")) === "0";
}

/**
 * Returns whether `device` exists in this namespace. Every interface has an
 * IPv4 configuration folder in /proc/sys, so no extra process is needed.
 */
export async function interfaceExists(system: System, device: string): Promise<boolean> {
  return (await system.readSysctl(interfaceKey(device, "rp_filter"))) !== undefined;
}

/** Reads a routing table as parsed routes; a table that does not exist yet is empty. */
export async function readTable(system: System, family: Family, table: string | number): Promise<Route[]> {
  return parseRoutes(await showRoutes(system, ["ip", `-${family}`, "-d", "-N", "-j", "route", "show", "table", String(table)]), family);
}

/**
 * Reads the protocol of each route in a table, the only field that
 * distinguishes splitroute's routes from others. On a large copy this costs
 * far less than readTable, because ip prints no details and no route is
 * checked field by field. A table that does not exist yet is empty.
 */
export async function readRouteProtocols(system: System, family: Family, table: number): Promise<Array<Pick<Route, "protocol">>> {
  const argv = ["ip", `-${family}`, "-N", "-j", "route", "show", "table", String(table)];
  const routes = await showRoutes(system, argv);
  if (!Array.isArray(routes)) {
    throw new Error(`invalid ip route JSON from ${argv.join(" ")}: expected an array of routes`);
  }
  return routes.map((route: unknown) => {
    const protocol = isRecord(route) ? route.protocol : undefined;
    return { protocol: protocol === undefined ? undefined : String(protocol) };
  });
}

async function showRoutes(system: System, argv: string[]): Promise<unknown> {
  const result = await system.run(argv);
  // Dumping a table that has never held a route fails with "FIB table does
  // not exist". For us that is an empty table.
  if (result.exitCode !== 0 && /FIB table does not exist/.test(result.stderr)) {
    return [];
  }
  if (result.exitCode !== 0) {
    throw new CommandError(argv, result.exitCode, result.stderr);
  }
  return JSON.parse(result.stdout || "[]");
}

/** Reads the policy rules of one family with numeric table ids. */
export async function readRules(system: System, family: Family): Promise<ObservedRule[]> {
  const argv = ["ip", `-${family}`, "-N", "-j", "rule", "show"];
  const result = await system.run(argv);
  if (result.exitCode !== 0) {
    throw new CommandError(argv, result.exitCode, result.stderr);
  }
  return JSON.parse(result.stdout || "[]") as ObservedRule[];
}

/** Reads our chains and tagged jumps from the mangle table of one family. */
export async function readIptables(
  system: System,
  backend: Exclude<FirewallBackend, "nftables">,
  family: Family,
): Promise<IptablesObserved> {
  const argv = [iptablesTools(backend, family).save, "-t", "mangle"];
  const result = await system.run(argv);
  if (result.exitCode !== 0) {
    throw new CommandError(argv, result.exitCode, result.stderr);
  }
  return parseIptablesSave(result.stdout);
}

/** Reads the rp_filter and src_valid_mark sysctls of each uplink. */
export async function readUplinkSysctls(system: System, devices: readonly string[]): Promise<UplinkSysctls[]> {
  const rpFilterAll = await system.readSysctl("net.ipv4.conf.all.rp_filter");
  const srcValidMarkAll = await system.readSysctl("net.ipv4.conf.all.src_valid_mark");
  const uplinks: UplinkSysctls[] = [];
  for (const device of devices) {
    uplinks.push({
      device,
      rpFilterAll,
      srcValidMarkAll,
      rpFilter: await system.readSysctl(interfaceKey(device, "rp_filter")),
      srcValidMark: await system.readSysctl(interfaceKey(device, "src_valid_mark")),
    });
  }
  return uplinks;
}
