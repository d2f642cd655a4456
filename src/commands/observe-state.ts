import { FAMILIES, hasIpv6, readIptables, readUplinkSysctls, usesLegacyTables } from "../observe.js";
import { CommandError, ConfigError } from "../errors.js";
import type { FirewallBackend } from "../firewall/backend.js";
import { PROTOCOLS_ONLY, readFamily, readFamilyForDown, WHOLE_ROUTES, type TableDetail } from "../observe-family.js";
import type { IptablesTable } from "../firewall/iptables.js";
import { cgroup2Mount, hasOutputSelections } from "../firewall/marking.js";
import { hasNftTable } from "../firewall/nftables.js";
import { isOurRoute } from "../owner.js";
import { missingNftObjects, parseNftChains, type CreatedNftObjects } from "../firewall/iptables-nft.js";
import type { IptablesByFamily } from "../plan/firewall.js";
import type { DownObserved } from "../plan/down.js";
import { snapshotRoutes, tunnelsAfterUp, uplinkDevices, type UpObserved } from "../plan/up.js";
import type { Config } from "../config/types.js";
import type { Family, Route } from "../snapshot/route.js";
import type { State } from "../state.js";
import type { System } from "../system/system.js";

/** Families to manage here: IPv4 always, IPv6 when the kernel has it enabled. */
export async function activeFamilies(system: System): Promise<Family[]> {
  return (await hasIpv6(system)) ? [...FAMILIES] : [4];
}

/** Reads our iptables chains and jumps of each family; none with nftables. */
export async function readIptablesFamilies(system: System, backend: FirewallBackend, families: readonly Family[]): Promise<IptablesByFamily> {
  const observed: IptablesByFamily = {};
  if (backend !== "nftables") {
    const legacyTables = await usesLegacyTables(system, backend);
    for (const family of families) {
      observed[family] = await readIptables(system, backend, family, legacyTables);
    }
  }
  return observed;
}

/** Reads what planUp needs. Of our table, only each route's protocol is read. */
export async function observeForUp(
  system: System,
  config: Config,
  device: string,
  backend: FirewallBackend,
  previous: State | undefined,
  nftRuleset?: string | null,
): Promise<UpObserved> {
  const observed = await observeWithTable(system, config, device, backend, previous, PROTOCOLS_ONLY);
  if (backend === "nftables" && typeof nftRuleset === "string") {
    observed.nftTableExists = hasNftTable(nftRuleset);
  }
  return observed;
}

/** Reads what planRefresh needs: what observeForUp reads, and our table's routes in full. */
export async function observeForRefresh(system: System, config: Config, state: State): Promise<UpObserved<Route>> {
  return observeWithTable(system, config, state.tunnels[0]!, state.backend, state, WHOLE_ROUTES);
}

async function observeWithTable<Current extends Pick<Route, "protocol">>(
  system: System,
  config: Config,
  device: string,
  backend: FirewallBackend,
  previous: State | undefined,
  detail: TableDetail<Current>,
): Promise<UpObserved<Current>> {
  const families = await activeFamilies(system);
  const main: UpObserved<Current>["main"] = { 4: [], 6: [] };
  const table: UpObserved<Current>["table"] = { 4: [], 6: [] };
  const rules: UpObserved<Current>["rules"] = { 4: [], 6: [] };
  for (const family of families) {
    const reads = await readFamily(system, family, config.snapshot.table, config.table.id, detail).catch((error: unknown) => {
      throw unknownTableName(error, config) ?? error;
    });
    main[family] = reads.main;
    table[family] = reads.table;
    rules[family] = reads.rules;
  }
  const routes = snapshotRoutes(config, tunnelsAfterUp(device, previous), main);
  return {
    families,
    main,
    table,
    rules,
    iptables: await readIptablesFamilies(system, backend, families),
    uplinks: await readUplinkSysctls(system, uplinkDevices(routes[4])),
    missingMangle: previous === undefined ? await readMissingNftObjects(system, backend, families, "mangle") : [],
    // Recorded once, by the first up that installs our nat chain.
    ...(previous?.createdNat === undefined && hasOutputSelections(config)
      ? { missingNat: await readMissingNftObjects(system, backend, families, "nat") }
      : {}),
    ...(config.bypass.some((bypass) => bypass.service !== undefined) ? { cgroupMount: cgroup2Mount(await system.readText("/proc/self/mountinfo")) } : {}),
  };
}

/**
 * Returns what iptables-nft will create in nftables for our rules in
 * `table`: the table or its base chains, where missing. Other backends
 * create nothing there.
 */
async function readMissingNftObjects(
  system: System,
  backend: FirewallBackend,
  families: readonly Family[],
  table: IptablesTable,
): Promise<CreatedNftObjects[]> {
  if (backend === "nftables" || !system.hasTool("nft") || (await usesLegacyTables(system, backend))) {
    return [];
  }
  const missing: CreatedNftObjects[] = [];
  for (const family of families) {
    missing.push(missingNftObjects(table, family, await readNftChains(system, family, table)));
  }
  return missing;
}

/** Returns the chains of nftables' `ip`/`ip6` table `table`, or undefined when it does not exist. */
async function readNftChains(system: System, family: Family, table: IptablesTable): Promise<string[] | undefined> {
  const result = await system.run(["nft", "list", "table", family === 4 ? "ip" : "ip6", table]);
  return result.exitCode === 0 ? parseNftChains(result.stdout) : undefined;
}

/** Reads what planDown and planRemoval need for `state`. */
export async function observeForDown(system: System, state: State): Promise<DownObserved> {
  const families = await activeFamilies(system);
  const tableSize = { 4: 0, 6: 0 };
  const rules: DownObserved["rules"] = { 4: [], 6: [] };
  for (const family of families) {
    const reads = await readFamilyForDown(system, family, state.table.id);
    tableSize[family] = reads.table.filter(isOurRoute).length;
    rules[family] = reads.rules;
  }
  const sysctls: Record<string, string | undefined> = {};
  for (const change of state.sysctls) {
    sysctls[change.key] = await system.readSysctl(change.key);
  }
  const mangleChains: DownObserved["mangleChains"] = {};
  for (const entry of state.createdMangle ?? []) {
    mangleChains[entry.family] = await readNftChains(system, entry.family, "mangle");
  }
  const natChains: DownObserved["natChains"] = {};
  for (const entry of state.createdNat ?? []) {
    natChains[entry.family] = await readNftChains(system, entry.family, "nat");
  }
  const iptables = await readIptablesFamilies(system, state.backend, families);
  return { families, tableSize, rules, iptables, mangleChains, natChains, sysctls };
}

/**
 * Turns ip's "table id value is invalid" for the snapshot source into a
 * configuration error naming the key. Validation accepts any table name,
 * because the names are declared in /etc/iproute2, which only ip reads.
 */
function unknownTableName(error: unknown, config: Config): ConfigError | undefined {
  if (!(error instanceof CommandError) || !/table id value is invalid/.test(error.message)) {
    return undefined;
  }
  return new ConfigError(
    `invalid configuration in ${config.source}: snapshot.table = ${config.snapshot.table} is not a table name that ip knows; ` +
      `declare it in /etc/iproute2/rt_tables.d/ (as in: echo "ID ${config.snapshot.table}" > /etc/iproute2/rt_tables.d/${config.snapshot.table}.conf) or give the table's number`,
  );
}
