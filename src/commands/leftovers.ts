import type { Config } from "../config/types.js";
import { CommandError } from "../errors.js";
import { readNftRuleset } from "../firewall/backend.js";
import { iptablesTools, type IptablesTable, type IptablesVariant } from "../firewall/iptables.js";
import { hasNftTable } from "../firewall/nftables.js";
import { readFamilyForDown } from "../observe-family.js";
import { readIptables, readLegacyTableNames, usesLegacyTables } from "../observe.js";
import { IPT_CHAIN_OUTPUT, IPT_CHAIN_POSTROUTING, IPT_CHAIN_PREROUTING, IPT_COMMENT, isOurRoute, NFT_TABLE, ROUTE_PROTOCOL } from "../owner.js";
import { findOurRules, ruleSelector } from "../rule.js";
import type { Family } from "../snapshot/route.js";
import type { System } from "../system/system.js";
import { installedBackends } from "./cleanup.js";
import { activeFamilies } from "./observe-state.js";

// Finds what splitroute owns in this namespace when the state file is gone.
// It uses the marks of ownership that cleanup removes by: our rule with the
// configured table and mark at any priority, routes with our protocol in the
// configured table, our nft table, and our iptables chains and tagged jumps.

/** splitroute's objects found without a record, and what could not be read. */
export interface Leftovers {
  /** Each object found, in words. */
  found: string[];
  /** Objects not looked for, and why. */
  unchecked: string[];
}

/**
 * Looks for splitroute's objects by ownership and changes nothing. Without
 * `readFirewall` only the rules and routes are read, because reading
 * nftables and iptables needs CAP_NET_ADMIN.
 */
export async function findLeftovers(system: System, config: Config, readFirewall: boolean): Promise<Leftovers> {
  const families = await activeFamilies(system);
  const found = await findRoutingLeftovers(system, config, families);
  if (!readFirewall) {
    return { found, unchecked: ["nftables and iptables objects of splitroute's: reading them needs root"] };
  }
  const unchecked: string[] = [];
  found.push(...(await findFirewallLeftovers(system, families, unchecked)));
  return { found, unchecked };
}

async function findRoutingLeftovers(system: System, config: Config, families: readonly Family[]): Promise<string[]> {
  const found: string[] = [];
  for (const family of families) {
    const { table, rules } = await readFamilyForDown(system, family, config.table.id);
    for (const rule of findOurRules(rules, { tableId: config.table.id, mark: config.mark })) {
      found.push(`IPv${family} rule ${ruleSelector(rule).join(" ")}`);
    }
    const routes = table.filter(isOurRoute).length;
    if (routes > 0) {
      found.push(`${routes} IPv${family} route(s) with protocol ${ROUTE_PROTOCOL} in table ${config.table.id}`);
    }
  }
  return found;
}

// One `nft list ruleset` shows our inet table and, by name, the chains that
// iptables-nft keeps in nftables, so the iptables-save runs, four per
// variant, are needed only where a chain of ours shows up, or where the
// ruleset cannot be read. Legacy tables live outside nftables and are read
// only where the kernel lists them, because saving a legacy table that does
// not exist creates it.
async function findFirewallLeftovers(system: System, families: readonly Family[], unchecked: string[]): Promise<string[]> {
  const found: string[] = [];
  const ruleset = await readNftRuleset(system);
  if (ruleset !== null && hasNftTable(ruleset)) {
    found.push(`nftables table inet ${NFT_TABLE}`);
  }
  for (const backend of await installedBackends(system, "nftables")) {
    if (backend === "nftables") {
      continue;
    }
    try {
      found.push(...(await findIptablesLeftovers(system, backend, families, ruleset)));
    } catch (error) {
      if (!(error instanceof CommandError)) {
        throw error;
      }
      unchecked.push(`${backend} chains of splitroute's: ${error.message}`);
    }
  }
  return found;
}

async function findIptablesLeftovers(system: System, backend: IptablesVariant, families: readonly Family[], ruleset: string | null): Promise<string[]> {
  const legacyTables = await usesLegacyTables(system, backend);
  if (!legacyTables && ruleset !== null && !namesOurChains(ruleset)) {
    return [];
  }
  const found: string[] = [];
  for (const family of families) {
    if (legacyTables && !(await readLegacyTableNames(system, family)).includes("mangle")) {
      continue;
    }
    const observed = await readIptables(system, backend, family, legacyTables);
    for (const table of ["mangle", "nat"] as const satisfies readonly IptablesTable[]) {
      const { chains, jumps } = observed[table];
      if (chains.length > 0 || jumps.length > 0) {
        found.push(`${iptablesTools(backend, family).save.replace(/-save$/, "")} ${table} table: ${describeIptables(chains, jumps)}`);
      }
    }
  }
  return found;
}

function namesOurChains(ruleset: string): boolean {
  return [IPT_CHAIN_PREROUTING, IPT_CHAIN_OUTPUT, IPT_CHAIN_POSTROUTING].some((chain) => ruleset.includes(`chain ${chain} {`));
}

function describeIptables(chains: readonly string[], jumps: readonly string[]): string {
  const parts = [];
  if (chains.length > 0) {
    parts.push(`chain(s) ${chains.join(", ")}`);
  }
  if (jumps.length > 0) {
    parts.push(`${jumps.length} jump(s) tagged "${IPT_COMMENT}"`);
  }
  return parts.join(" and ");
}
