import type { BackendChoice } from "../config/types.js";
import type { System } from "../system/system.js";
import { iptablesTools, type IptablesVariant } from "./iptables.js";

export type FirewallBackend = "nftables" | IptablesVariant;

/**
 * Resolves `auto` to a backend that works here: nftables when nft runs,
 * otherwise whichever iptables is installed. An explicit choice must be
 * usable, or the error names the missing tool.
 */
export async function chooseBackend(choice: BackendChoice, system: System): Promise<FirewallBackend> {
  if (choice === "auto") {
    if (system.hasTool("nft") && (await system.run(["nft", "list", "tables"])).exitCode === 0) {
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
