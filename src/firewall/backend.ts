import type { BackendChoice } from "../config/types.js";
import type { System } from "../system/system.js";
import { iptablesTools, type IptablesVariant } from "./iptables.js";

export type FirewallBackend = "nftables" | IptablesVariant;

/**
 * Resolves `auto` to a backend that works here: nftables when nft runs,
 * otherwise whichever iptables is installed. An explicit choice must be
 * usable, or the error names the missing tool. `nftRuleset`, when the caller
 * has read it with readNftRuleset, saves running nft once more.
 */
export async function chooseBackend(choice: BackendChoice, system: System, nftRuleset?: string | null): Promise<FirewallBackend> {
  if (choice === "auto") {
    const nftWorks = nftRuleset === undefined ? system.hasTool("nft") && (await system.run(["nft", "list", "tables"])).exitCode === 0 : nftRuleset !== null;
    if (nftWorks) {
      return "nftables";
    }
    if (system.hasTool("iptables-restore")) {
      return "iptables";
    }
    throw new Error("no firewall tool found: install nftables (nft) or iptables, or set firewall.backend");
  }
  const needed = choice === "nftables" ? ["nft"] : [iptablesTools(choice, 4).restore, iptablesTools(choice, 6).restore];
  const missing = needed.filter((tool) => !system.hasTool(tool));
  if (missing.length > 0) {
    throw new Error(`firewall.backend = ${choice} needs ${missing.join(" and ")}, which is not installed`);
  }
  return choice;
}

/**
 * Returns `nft list ruleset` output, or null when nft is not installed or
 * fails (no nf_tables in the kernel, or no root). up reads it once and uses
 * it three times: to resolve `auto`, to learn whether our table exists, and
 * to look for early IPv6 reverse-path filters.
 */
export async function readNftRuleset(system: System): Promise<string | null> {
  if (!system.hasTool("nft")) {
    return null;
  }
  const result = await system.run(["nft", "list", "ruleset"]);
  return result.exitCode === 0 ? result.stdout : null;
}
