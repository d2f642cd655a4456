import type { FirewallBackend } from "../firewall/backend.js";
import { iptablesTools, NOTHING_OBSERVED, renderIptablesApply, renderIptablesRemove, type IptablesObserved } from "../firewall/iptables.js";
import type { MarkingSpec } from "../firewall/marking.js";
import { nftRemoveScript, nftReplaceScript } from "../firewall/nftables.js";
import type { Family } from "../snapshot/route.js";
import type { Step } from "./step.js";

/** Our observed iptables objects per family, for the planners (empty with nftables). */
export type IptablesByFamily = Partial<Record<Family, IptablesObserved>>;

/**
 * Plans the firewall steps that install (or replace) our marking.
 * `nftTableExists` is false only where our nft table is known to be absent.
 */
export function planFirewallApply(
  backend: FirewallBackend,
  spec: MarkingSpec,
  families: readonly Family[],
  observed: IptablesByFamily,
  nftTableExists = true,
): Step[] {
  if (backend === "nftables") {
    return [{ kind: "run", summary: "installing nftables marking", argv: ["nft", "-f", "-"], input: nftReplaceScript(spec, nftTableExists) }];
  }
  return families.map((family) => ({
    kind: "run",
    summary: `installing IPv${family} iptables marking`,
    argv: [iptablesTools(backend, family).restore, "--noflush"],
    input: renderIptablesApply(spec, observed[family] ?? NOTHING_OBSERVED, family),
  }));
}

/** Plans the firewall steps that remove everything of ours that was observed. */
export function planFirewallRemove(backend: FirewallBackend, families: readonly Family[], observed: IptablesByFamily): Step[] {
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
  }
  return steps;
}
