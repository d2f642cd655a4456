import { hex } from "../firewall/marking.js";
import { NFT_TABLE } from "../owner.js";
import { hasRule } from "../rule.js";
import type { State } from "../state.js";
import type { Context } from "./context.js";
import { observeForDown } from "./observe-state.js";

/** The status report: the record, and whether the live system still matches it. */
export interface StatusReport {
  installed: boolean;
  stateFile: string;
  state?: State;
  live?: {
    rule: Record<string, boolean>;
    tableRoutes: Record<string, number>;
    firewall: boolean;
  };
  /** Differences between the record and the live system, in words. */
  drift: string[];
}

/** Reads the state and checks it against the live system; changes nothing. */
export async function status(context: Context): Promise<StatusReport> {
  const { store, system } = context;
  const state = await store.read();
  if (state === undefined) {
    return { installed: false, stateFile: store.path, drift: [] };
  }
  const observed = await observeForDown(system, state);
  const rule = { tableId: state.table.id, priority: state.priority, mark: state.mark };
  const live = { rule: {} as Record<string, boolean>, tableRoutes: {} as Record<string, number>, firewall: false };
  const drift: string[] = [];
  for (const family of state.families) {
    live.rule[`ipv${family}`] = hasRule(observed.rules[family], rule);
    live.tableRoutes[`ipv${family}`] = observed.tableSize[family];
    if (!live.rule[`ipv${family}`]) {
      drift.push(`the IPv${family} rule at priority ${state.priority} is missing`);
    }
    if (observed.tableSize[family] !== state.routeCounts[family]) {
      drift.push(`table ${state.table.id} holds ${observed.tableSize[family]} IPv${family} routes; ${state.routeCounts[family]} were installed`);
    }
  }
  if (state.backend === "nftables") {
    live.firewall = (await system.run(["nft", "list", "table", "inet", NFT_TABLE])).exitCode === 0;
  } else {
    live.firewall = state.families.every((family) => (observed.iptables[family]?.jumps.length ?? 0) > 0);
  }
  if (!live.firewall) {
    drift.push(`the ${state.backend} marking is missing`);
  }
  return { installed: true, stateFile: store.path, state, live, drift };
}

/** Renders a status report for a terminal. */
export function renderStatus(report: StatusReport): string {
  if (report.state === undefined) {
    return "splitroute: not active in this network namespace\n";
  }
  const { state, live } = report;
  const lines = [
    `tunnels:   ${state.tunnels.join(", ")}`,
    `table:     ${state.table.name} (${state.table.id}): ${state.families.map((family) => `${live?.tableRoutes[`ipv${family}`] ?? 0} IPv${family}`).join(", ")} routes`,
    `rule:      priority ${state.priority} fwmark ${hex(state.mark.value)}/${hex(state.mark.mask)} lookup ${state.table.id}`,
    `marking:   ${state.backend}: ${state.bypass.map((bypass) => `${bypass.name} (${bypass.protocol}/${bypass.localPort})`).join(", ")}`,
    `sysctls:   ${state.sysctls.length === 0 ? "none changed" : state.sysctls.map((change) => `${change.key}=${change.value} (was ${change.previous})`).join(", ")}`,
    `config:    ${state.configSource}`,
    `state:     ${report.stateFile}`,
    report.drift.length === 0 ? "live:      matches the record" : `drift:     ${report.drift.join("; ")}`,
  ];
  return `${lines.join("\n")}\n`;
}
