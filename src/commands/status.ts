import { checkMarkedRoute } from "../checks.js";
import { describeBypass, hasOutputSelections, hex } from "../firewall/marking.js";
import { IPT_CHAIN_OUTPUT, IPT_CHAIN_POSTROUTING, IPT_CHAIN_PREROUTING, IPT_COMMENT, isOurRoute, NFT_TABLE } from "../owner.js";
import { hasRule } from "../rule.js";
import type { State } from "../state.js";
import type { Context } from "./context.js";
import { activeFamilies, observeForDown } from "./observe-state.js";
import { readRules, readTable } from "../observe.js";
import type { DownObserved } from "../plan/down.js";
import type { System } from "../system/system.js";

/** The status report: the record, and whether the live system still matches it. */
export interface StatusReport {
  installed: boolean;
  stateFile: string;
  state?: State;
  live?: {
    rule: Record<string, boolean>;
    tableRoutes: Record<string, number>;
    /** Whether the marking exists; absent when it was not read. */
    firewall?: boolean;
    /**
     * Whether the iptables source NAT for connections selected in output
     * exists. Absent with nftables, whose table contains it, when no section
     * selects in output, and when it was not read.
     */
    sourceNat?: boolean;
  };
  /** Parts of the record not compared with the live system, and why. */
  unchecked?: string[];
  /** The firewall objects the backend owns, in words. */
  firewall?: string;
  /** Differences between the record and the live system, in words. */
  drift: string[];
}

export interface StatusOptions {
  /**
   * Whether to read nftables or iptables, which needs CAP_NET_ADMIN. Without
   * it, status compares the rule and the routes only. Default true.
   */
  readFirewall?: boolean;
}

/** Reads the state and checks it against the live system; changes nothing. */
export async function status(context: Context, options: StatusOptions = {}): Promise<StatusReport> {
  const { store, system } = context;
  const readFirewall = options.readFirewall ?? true;
  const state = await store.read();
  if (state === undefined) {
    return { installed: false, stateFile: store.path, drift: [] };
  }
  const observed: Observed = readFirewall ? await observeForDown(system, state) : await observeRouting(system, state);
  const rule = { tableId: state.table.id, priority: state.priority, mark: state.mark };
  const live: NonNullable<StatusReport["live"]> = { rule: {}, tableRoutes: {} };
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
  const unchecked: string[] = [];
  if (!readFirewall) {
    unchecked.push(`the ${state.backend} marking: reading it needs root`);
  } else if (state.backend === "nftables") {
    live.firewall = (await system.run(["nft", "list", "table", "inet", NFT_TABLE])).exitCode === 0;
  } else {
    live.firewall = state.families.every((family) => (observed.iptables?.[family]?.mangle.jumps.length ?? 0) > 0);
    if (hasOutputSelections(state)) {
      live.sourceNat = state.families.every((family) => (observed.iptables?.[family]?.nat.jumps.length ?? 0) > 0);
    }
  }
  if (live.firewall === false) {
    drift.push(`the ${state.backend} marking is missing`);
  }
  if (live.sourceNat === false) {
    drift.push(`the ${state.backend} source NAT (nat chain ${IPT_CHAIN_POSTROUTING} and its jump from POSTROUTING) is missing`);
  }
  // Where our own rule is gone, that is the cause, and up installs it again.
  if (Object.values(live.rule).every(Boolean)) {
    drift.push(...(await checkMarkedRoute(system, state)));
  }
  return { installed: true, stateFile: store.path, state, firewall: firewallObjects(state), live, ...(unchecked.length > 0 ? { unchecked } : {}), drift };
}

type Observed = Pick<DownObserved, "rules" | "tableSize"> & Partial<Pick<DownObserved, "iptables">>;

// Rules and routes can be read without privileges, unlike nftables and
// iptables, so this leaves the firewall out.
async function observeRouting(system: System, state: State): Promise<Observed> {
  const tableSize = { 4: 0, 6: 0 };
  const rules: DownObserved["rules"] = { 4: [], 6: [] };
  for (const family of await activeFamilies(system)) {
    tableSize[family] = (await readTable(system, family, state.table.id)).filter(isOurRoute).length;
    rules[family] = await readRules(system, family);
  }
  return { rules, tableSize };
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
    `marking:   ${state.backend}: ${state.bypass.map((bypass) => `${bypass.name} (${describeBypass(bypass)})`).join(", ")}`,
    `firewall:  ${firewallObjects(state)}`,
    `sysctls:   ${state.sysctls.length === 0 ? "none changed" : state.sysctls.map((change) => `${change.key}=${change.value} (was ${change.previous})`).join(", ")}`,
    `config:    ${state.configSource}`,
    `state:     ${report.stateFile}`,
    report.drift.length === 0 ? "live:      matches the record" : `drift:     ${report.drift.join("; ")}`,
    ...(report.unchecked ?? []).map((part) => `unchecked: ${part}`),
  ];
  return `${lines.join("\n")}\n`;
}

/** Names the firewall objects the backend owns, for status output. */
export function firewallObjects(state: State): string {
  if (state.backend === "nftables") {
    return `nftables table inet ${NFT_TABLE}`;
  }
  const nat = hasOutputSelections(state) ? ` and nat chain ${IPT_CHAIN_POSTROUTING}` : "";
  return `${state.backend} mangle chains ${IPT_CHAIN_PREROUTING} and ${IPT_CHAIN_OUTPUT}${nat}, each reached by one jump tagged "${IPT_COMMENT}"`;
}
