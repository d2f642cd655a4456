import {
  iptablesTools,
  NOTHING_OBSERVED,
  parseIptablesSave,
  type IptablesObserved,
  type IptablesTable,
  type IptablesVariant,
} from "./firewall/iptables.js";
import { interfaceKey, type UplinkSysctls } from "./rpfilter.js";
import type { ObservedRule } from "./rule.js";
import { isRecord } from "./snapshot/fields.js";
import { parseRouteEntry } from "./snapshot/parse.js";
import { readRouteEntries } from "./snapshot/read.js";
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
  const routes: Route[] = [];
  await readRouteEntries(system, ["ip", `-${family}`, "-d", "-N", "-j", "route", "show", "table", String(table)], (entry, index) => {
    const route = parseRouteEntry(entry, index, family);
    if (route !== undefined) {
      routes.push(route);
    }
  });
  return routes;
}

/**
 * Reads the protocol of each route in a table, the only field that
 * distinguishes splitroute's routes from others. On a large copy this costs
 * far less than readTable, because ip prints no details and no route is
 * checked field by field. A table that does not exist yet is empty.
 */
export async function readRouteProtocols(system: System, family: Family, table: number): Promise<Array<Pick<Route, "protocol">>> {
  const argv = ["ip", `-${family}`, "-N", "-j", "route", "show", "table", String(table)];
  const protocols: Array<Pick<Route, "protocol">> = [];
  await readRouteEntries(system, argv, (route) => protocols.push(routeProtocol(route)));
  return protocols;
}

/** Returns the protocol of one route of `ip -j route show` output, as a string. */
export function routeProtocol(route: unknown): Pick<Route, "protocol"> {
  const protocol = isRecord(route) ? route.protocol : undefined;
  return { protocol: protocol === undefined ? undefined : String(protocol) };
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

/**
 * Reads our chains and tagged jumps from the mangle and nat tables of one
 * family. `legacyTables` is whether `backend` keeps its tables in the
 * kernel's x_tables (see usesLegacyTables). Saving a legacy table that does
 * not exist creates it, and nothing removes it again, so a legacy nat table
 * that the kernel does not list is not read, because it cannot contain
 * anything of ours.
 */
export async function readIptables(system: System, backend: IptablesVariant, family: Family, legacyTables: boolean): Promise<IptablesObserved> {
  const mangle = parseIptablesSave(await saveIptablesTable(system, backend, family, "mangle"), "mangle");
  if (legacyTables && !(await readLegacyTableNames(system, family)).includes("nat")) {
    return { mangle, nat: NOTHING_OBSERVED.nat };
  }
  return { mangle, nat: parseIptablesSave(await saveIptablesTable(system, backend, family, "nat"), "nat") };
}

async function saveIptablesTable(system: System, backend: IptablesVariant, family: Family, table: IptablesTable): Promise<string> {
  const argv = [iptablesTools(backend, family).save, "-t", table];
  const result = await system.run(argv);
  if (result.exitCode !== 0) {
    throw new CommandError(argv, result.exitCode, result.stderr);
  }
  return result.stdout;
}

/**
 * Returns whether `backend` keeps its tables in the kernel's legacy x_tables
 * rather than in nftables. The unsuffixed `iptables` is whichever variant the
 * distribution built, and only its version line shows which.
 */
export async function usesLegacyTables(system: System, backend: IptablesVariant): Promise<boolean> {
  if (backend === "iptables") {
    return !(await system.run(["iptables", "--version"])).stdout.includes("nf_tables");
  }
  return backend === "iptables-legacy";
}

/** Returns the names of the legacy iptables tables that exist in this namespace for one family. */
export async function readLegacyTableNames(system: System, family: Family): Promise<string[]> {
  const text = await system.readText(family === 4 ? "/proc/net/ip_tables_names" : "/proc/net/ip6_tables_names");
  return (text ?? "").split("\n").filter((name) => name !== "");
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

/**
 * Lists the network interfaces of this namespace from /proc/net/dev, which
 * names one per line after two header lines, as "NAME: counters". The
 * kernel allows no ":" in an interface name, so the first ":" ends it.
 */
export async function readInterfaceNames(system: System): Promise<string[]> {
  const text = (await system.readText("/proc/net/dev")) ?? "";
  const names: string[] = [];
  for (const line of text.split("\n").slice(2)) {
    const name = line.split(":")[0]!.trim();
    if (name !== "") {
      names.push(name);
    }
  }
  return names;
}
