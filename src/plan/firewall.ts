import type { FirewallBackend } from "../firewall/backend.js";
import { iptablesTools, renderIptablesApply, renderIptablesRemove, type IptablesObserved } from "../firewall/iptables.js";
import type { MarkingSpec } from "../firewall/marking.js";
import { nftRemoveScript, nftReplaceScript } from "../firewall/nftables.js";
import type { Family } from "../snapshot/route.js";
import type { Step } from "./step.js";

/** What the planners need to know of our iptables objects, per family; unused with nftables. */
export type IptablesByFamily = Partial<Record<Family, IptablesObserved>>;

const NOTHING_OBSERVED: IptablesObserved = { chains: [], jumps: [], foreign: false };

/** Plans the firewall steps that install (or replace) our marking. */
export function planFirewallApply(
  backend: FirewallBackend,
  spec: MarkingSpec,
  families: readonly Family[],
  observed: IptablesByFamily,
): Step[] {
  if (backend === "nftables") {
    return [{ kind: "run", summary: "installing nftables marking", argv: ["nft", "-f", "-"], input: nftReplaceScript(spec) }];
  }
  return families.map((family) => ({
    kind: "run",
    summary: `installing IPv${family} iptables marking`,
    argv: [iptablesTools(backend, family).restore, "--noflush"],
    input: renderIptablesApply(spec, observed[family] ?? NOTHING_OBSERVED),
  }));
}

/**
 * Plans the firewall steps that remove everything of ours that was observed.
 * iptables-nft creates the nftables table `ip mangle` (or `ip6 mangle`) on
 * first use; when our up created it and nothing else uses it, it goes too.
 */
export function planFirewallRemove(
  backend: FirewallBackend,
  families: readonly Family[],
  observed: IptablesByFamily,
  createdTables: readonly Family[] = [],
): Step[] {
  if (backend === "nftables") {
    return [{ kind: "run", summary: "removing nftables marking", argv: ["nft", "-f", "-"], input: nftRemoveScript() }];
  }
  const steps: Step[] = [];
  for (const family of families) {
    const input = renderIptablesRemove(observed[family] ?? NOTHING_OBSERVED);
    if (input !== undefined) {
      steps.push({
        kind: "run",
        summary: `removing IPv${family} iptables marking`,
        argv: [iptablesTools(backend, family).restore, "--noflush"],
        input,
      });
    }
    if (createdTables.includes(family) && observed[family] !== undefined && !observed[family].foreign) {
      const table = family === 4 ? "ip" : "ip6";
      steps.push({
        kind: "run",
        summary: `removing the empty ${table} mangle table that iptables-nft created for splitroute`,
        argv: ["nft", "delete", "table", table, "mangle"],
      });
    }
  }
  return steps;
}
