import { FAMILIES, hasIpv6, readIptables, readRouteProtocols, readRules, readTable, readUplinkSysctls } from "../observe.js";
import type { FirewallBackend } from "../firewall/backend.js";
import { cgroup2Mount } from "../firewall/marking.js";
import { isOurRoute } from "../owner.js";
import { missingMangleObjects, parseNftChains, type CreatedMangleObjects } from "../firewall/iptables-nft.js";
import type { IptablesByFamily } from "../plan/firewall.js";
import type { DownObserved } from "../plan/down.js";
import { snapshotRoutes, tunnelsAfterUp, uplinkDevices, type UpObserved } from "../plan/up.js";
import type { Config } from "../config/types.js";
import type { Family } from "../snapshot/route.js";
import type { State } from "../state.js";
import type { System } from "../system/system.js";

/** Families to manage here: IPv4 always, IPv6 when the kernel has it enabled. */
export async function activeFamilies(system: System): Promise<Family[]> {
  return (await hasIpv6(system)) ? [...FAMILIES] : [4];
}

async function readIptablesFamilies(system: System, backend: FirewallBackend, families: readonly Family[]): Promise<IptablesByFamily> {
  const observed: IptablesByFamily = {};
  if (backend !== "nftables") {
    for (const family of families) {
      observed[family] = await readIptables(system, backend, family);
    }
  }
  return observed;
}

/** Reads what planUp needs. */
export async function observeForUp(
  system: System,
  config: Config,
  device: string,
  backend: FirewallBackend,
  previous: State | undefined,
): Promise<UpObserved> {
  const families = await activeFamilies(system);
  const source = config.snapshot.table;
  const main = { 4: await readTable(system, 4, source), 6: families.includes(6) ? await readTable(system, 6, source) : [] };
  const table = {
    4: await readTable(system, 4, config.table.id),
    6: families.includes(6) ? await readTable(system, 6, config.table.id) : [],
  };
  const rules = { 4: await readRules(system, 4), 6: families.includes(6) ? await readRules(system, 6) : [] };
  const routes = snapshotRoutes(config, tunnelsAfterUp(device, previous), main);
  return {
    families,
    main,
    table,
    rules,
    iptables: await readIptablesFamilies(system, backend, families),
    uplinks: await readUplinkSysctls(system, uplinkDevices(routes[4])),
    missingMangle: previous === undefined ? await readMissingMangle(system, backend, families) : [],
    ...(config.bypass.some((bypass) => bypass.service !== undefined) ? { cgroupMount: cgroup2Mount(await system.readText("/proc/self/mountinfo")) } : {}),
  };
}

/**
 * Returns what iptables-nft will create in nftables for our rules: the
 * `mangle` table or its base chains, where missing. Other backends create
 * nothing there.
 */
async function readMissingMangle(system: System, backend: FirewallBackend, families: readonly Family[]): Promise<CreatedMangleObjects[]> {
  if (backend === "nftables" || backend === "iptables-legacy" || !system.hasTool("nft")) {
    return [];
  }
  if (backend === "iptables") {
    const version = await system.run(["iptables", "--version"]);
    if (!version.stdout.includes("nf_tables")) {
      return [];
    }
  }
  const missing: CreatedMangleObjects[] = [];
  for (const family of families) {
    missing.push(missingMangleObjects(family, await readMangleChains(system, family)));
  }
  return missing;
}

/** Returns the chains of nftables' `ip`/`ip6` mangle table, or undefined when it does not exist. */
async function readMangleChains(system: System, family: Family): Promise<string[] | undefined> {
  const result = await system.run(["nft", "list", "table", family === 4 ? "ip" : "ip6", "mangle"]);
  return result.exitCode === 0 ? parseNftChains(result.stdout) : undefined;
}

/** Reads what planDown and planRemoval need for `state`. */
export async function observeForDown(system: System, state: State): Promise<DownObserved> {
  const families = await activeFamilies(system);
  const tableSize = { 4: 0, 6: 0 };
  const rules: DownObserved["rules"] = { 4: [], 6: [] };
  for (const family of families) {
    tableSize[family] = (await readRouteProtocols(system, family, state.table.id)).filter(isOurRoute).length;
    rules[family] = await readRules(system, family);
  }
  const sysctls: Record<string, string | undefined> = {};
  for (const change of state.sysctls) {
    sysctls[change.key] = await system.readSysctl(change.key);
  }
  const mangleChains: DownObserved["mangleChains"] = {};
  for (const entry of state.createdMangle ?? []) {
    mangleChains[entry.family] = await readMangleChains(system, entry.family);
  }
  return { families, tableSize, rules, iptables: await readIptablesFamilies(system, state.backend, families), mangleChains, sysctls };
}
