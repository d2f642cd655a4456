import type { Family } from "../snapshot/route.js";
import type { Step } from "../plan/step.js";
import type { IptablesObserved, IptablesTable } from "./iptables.js";

// iptables-nft keeps each iptables table as the nftables table of the same
// name, such as `ip mangle` or `ip6 nat`, and creates it, and each built-in
// chain it touches, on first use. Those objects outlive our rules, so down
// would leave an empty table or base chain behind that was not there before
// up. We record what was missing before up and delete it on down if nothing
// else has come to use it.

/** The built-in chains our jumps live in, by table. */
const OUR_BASE_CHAINS: Record<IptablesTable, readonly string[]> = {
  mangle: ["PREROUTING", "OUTPUT"],
  nat: ["POSTROUTING"],
};

/** The parts of one family's `mangle` or `nat` table that did not exist before our first up. */
export interface CreatedNftObjects {
  family: Family;
  /** The whole table was missing. */
  table: boolean;
  /** Base chains that were missing from a table that existed. */
  chains: string[];
}

/** Returns the chain names in `nft list table` output. */
export function parseNftChains(text: string): string[] {
  return [...text.matchAll(/^\s*chain (\S+) \{/gm)].map((match) => match[1]!);
}

/** Returns what our up will create in `table`, given the chains that exist now (undefined: no table). */
export function missingNftObjects(table: IptablesTable, family: Family, existing: readonly string[] | undefined): CreatedNftObjects {
  if (existing === undefined) {
    return { family, table: true, chains: [] };
  }
  return { family, table: false, chains: OUR_BASE_CHAINS[table].filter((chain) => !existing.includes(chain)) };
}

/**
 * Plans deleting the `table` table or base chains our up created, once our
 * rules are gone, unless other rules now live there. `existing` lists the
 * chains of each family's table now (undefined when the table is gone
 * already).
 */
export function planNftCleanup(
  table: IptablesTable,
  created: readonly CreatedNftObjects[],
  existing: Partial<Record<Family, string[]>>,
  observed: Partial<Record<Family, IptablesObserved>>,
): Step[] {
  const steps: Step[] = [];
  for (const entry of created) {
    const chains = existing[entry.family];
    const busy = observed[entry.family]?.[table].busyChains;
    if (chains === undefined || busy === undefined) {
      continue;
    }
    const family = entry.family === 4 ? "ip" : "ip6";
    const summary = `removing what iptables-nft created in the ${family} ${table} table for splitroute`;
    if (entry.table && busy.length === 0) {
      steps.push({ kind: "run", summary, argv: ["nft", "delete", "table", family, table] });
      continue;
    }
    for (const chain of entry.chains) {
      if (chains.includes(chain) && !busy.includes(chain)) {
        steps.push({ kind: "run", summary, argv: ["nft", "delete", "chain", family, table, chain] });
      }
    }
  }
  return steps;
}
