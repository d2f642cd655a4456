import { describeBypass, hasOutputSelections, hex } from "../firewall/marking.js";
import { IPT_CHAIN_OUTPUT, IPT_CHAIN_POSTROUTING, IPT_CHAIN_PREROUTING, IPT_COMMENT, NFT_TABLE } from "../owner.js";
import type { State } from "../state.js";
import type { StatusReport } from "./status.js";

/** Renders a status report for a terminal. */
export function renderStatus(report: StatusReport): string {
  if (report.state === undefined) {
    return renderWithoutRecord(report);
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
    // Drift messages contain semicolons, so each gets a line of its own.
    ...(report.drift.length === 0 ? ["live:      matches the record"] : report.drift.map((difference) => `drift:     ${difference}`)),
    ...(report.unchecked ?? []).map((part) => `unchecked: ${part}`),
    ...(report.notes ?? []).map((note) => `note:      ${note}`),
    ...(report.repair === undefined ? [] : [`repair:    ${report.repair}`]),
  ];
  return `${lines.join("\n")}\n`;
}

function renderWithoutRecord(report: StatusReport): string {
  const leftovers = report.leftovers ?? [];
  const lines =
    leftovers.length === 0
      ? ["splitroute: not active in this network namespace"]
      : [
          `state:     ${report.stateFile} does not exist`,
          ...leftovers.map((leftover) => `leftover:  ${leftover}`),
          ...report.drift.map((difference) => `drift:     ${difference}`),
        ];
  lines.push(...(report.unchecked ?? []).map((part) => `unchecked: ${part}`));
  if (report.repair !== undefined) {
    lines.push(`repair:    ${report.repair}`);
  }
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
