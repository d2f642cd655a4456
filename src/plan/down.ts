import type { FirewallBackend } from "../firewall/backend.js";
import { planNftCleanup } from "../firewall/iptables-nft.js";
import { flushOurRoutes } from "./up.js";
import { findOurRules, ruleSelector, type ObservedRule } from "../rule.js";
import type { Family } from "../snapshot/route.js";
import type { SysctlChange } from "../rpfilter.js";
import type { State } from "../state.js";
import { planFirewallApply, planFirewallRemove, type IptablesByFamily } from "./firewall.js";
import type { Step } from "./step.js";

/** The system as observed before `down` (or before a rollback). */
export interface DownObserved {
  families: Family[];
  /** Number of our routes now in the recorded table, per family. */
  tableSize: Record<Family, number>;
  rules: Record<Family, ObservedRule[]>;
  iptables: IptablesByFamily;
  /** Chains of each family's nftables `mangle` table, read only when the state records that iptables-nft created some. */
  mangleChains: Partial<Record<Family, string[]>>;
  /** The same for the nftables `nat` table. */
  natChains: Partial<Record<Family, string[]>>;
  /** Current values of the sysctls that the state records as changed by us. */
  sysctls: Record<string, string | undefined>;
  /**
   * Whether our nft table exists. Only cleanup reads it, to skip the
   * removal where nothing is there; down removes the table it recorded.
   */
  nftTableExists?: boolean;
}

export interface DownPlan {
  steps: Step[];
  /** The state to keep when other tunnels still hold the bypass; undefined when all is removed. */
  remaining: State | undefined;
  /** Things left alone on purpose, for the log. */
  warnings: string[];
}

/**
 * Plans `down` for one tunnel. While other tunnels remain, only the marking
 * changes (the tunnel is no longer excluded); the last tunnel removes all.
 */
export function planDown(state: State, device: string, observed: DownObserved): DownPlan {
  const tunnels = state.tunnels.filter((tunnel) => tunnel !== device);
  if (tunnels.length > 0 && tunnels.length < state.tunnels.length) {
    const remaining = { ...state, tunnels };
    const marking = { mark: state.mark, tunnels, bypass: state.bypass, cgroupMount: state.cgroupMount };
    const steps = planFirewallApply(state.backend as FirewallBackend, marking, families(state, observed), observed.iptables);
    return { steps, remaining, warnings: [] };
  }
  if (tunnels.length > 0) {
    return { steps: [], remaining: state, warnings: [`${device} does not hold the bypass (held by ${state.tunnels.join(", ")}); nothing to do`] };
  }
  return planRemoval(state, observed);
}

/** Plans the removal of everything `state` records, skipping what is already gone. */
export function planRemoval(state: State, observed: DownObserved): DownPlan {
  const steps: Step[] = [];
  const warnings: string[] = [];
  for (const family of families(state, observed)) {
    const lines: string[] = [];
    for (const rule of findOurRules(observed.rules[family], { tableId: state.table.id, mark: state.mark })) {
      lines.push(["rule", "del", ...ruleSelector(rule)].join(" "));
    }
    if (observed.tableSize[family] > 0) {
      lines.push(flushOurRoutes(state.table.id));
    }
    if (lines.length > 0) {
      steps.push({
        kind: "run",
        summary: `removing the IPv${family} rule and table ${state.table.name} (${state.table.id})`,
        argv: ["ip", `-${family}`, "-batch", "-"],
        input: `${lines.join("\n")}\n`,
      });
    }
  }

  if (state.backend !== "nftables" || observed.nftTableExists !== false) {
    steps.push(...planFirewallRemove(state.backend, families(state, observed), observed.iptables));
  }
  steps.push(...planNftCleanup("mangle", state.createdMangle ?? [], observed.mangleChains, observed.iptables));
  steps.push(...planNftCleanup("nat", state.createdNat ?? [], observed.natChains, observed.iptables));

  steps.push(...planSysctlRestore(state.sysctls, observed.sysctls, warnings));
  return { steps, remaining: undefined, warnings };
}

/**
 * Plans putting back the earlier values of sysctls we changed. A value that
 * is no longer the one we set was changed by someone else since, and stays.
 */
export function planSysctlRestore(
  changes: readonly SysctlChange[],
  current: Record<string, string | undefined>,
  warnings: string[],
): Step[] {
  const steps: Step[] = [];
  for (const change of changes) {
    const now = current[change.key];
    if (now === change.value) {
      steps.push({ kind: "sysctl", summary: `restoring ${change.key}`, key: change.key, value: change.previous });
    } else if (now !== undefined && now !== change.previous) {
      warnings.push(`${change.key} is ${now}, not the ${change.value} splitroute set; leaving it as it is`);
    }
  }
  return steps;
}

// IPv6 may have been switched off since up; commands for it would only fail.
function families(state: State, observed: DownObserved): Family[] {
  return state.families.filter((family) => observed.families.includes(family));
}
