import { findMarkedRouteProblems, type MarkedRouteProblem } from "../checks.js";
import type { Config } from "../config/types.js";
import { hasOutputSelections, hex } from "../firewall/marking.js";
import { interfaceExists } from "../observe.js";
import { readFamily, readFamilyForDown, WHOLE_ROUTES } from "../observe-family.js";
import { IPT_CHAIN_POSTROUTING, isOurRoute, NFT_TABLE } from "../owner.js";
import { countRouteChanges } from "../plan/refresh.js";
import { snapshotRoutes } from "../plan/up.js";
import { hasRule, type ObservedRule } from "../rule.js";
import type { Family, Route } from "../snapshot/route.js";
import type { State } from "../state.js";
import type { System } from "../system/system.js";
import type { Context } from "./context.js";
import { findLeftovers } from "./leftovers.js";
import { activeFamilies, readIptablesFamilies } from "./observe-state.js";
import { firewallObjects } from "./status-render.js";

// cli.ts and the tests import the renderer from here.
export { firewallObjects, renderStatus } from "./status-render.js";

/** The status report: the record, and whether the live system still matches it. */
export interface StatusReport {
  installed: boolean;
  stateFile: string;
  state?: State;
  live?: {
    rule: Record<string, boolean>;
    tableRoutes: Record<string, number>;
    /** Whether each recorded tunnel device still exists. */
    tunnels: Record<string, boolean>;
    /**
     * How many routes refresh would change to make the copy match its source
     * table again. Absent when the copy was not compared (see unchecked).
     */
    copyChanges?: Record<string, number>;
    /** Whether the marking exists; absent when it was not read. */
    firewall?: boolean;
    /**
     * Whether the iptables source NAT for connections selected in output
     * exists. Absent with nftables, whose table contains it, when no section
     * selects in output, and when it was not read.
     */
    sourceNat?: boolean;
  };
  /**
   * splitroute's objects found by ownership, as cleanup finds them, when
   * there is no record; absent when there is one.
   */
  leftovers?: string[];
  /** Parts not compared with the live system, and why. */
  unchecked?: string[];
  /** Differences that are expected and need no repair, in words. */
  notes?: string[];
  /** The firewall objects the backend owns, in words. */
  firewall?: string;
  /** Differences between the record and the live system, in words. */
  drift: string[];
  /** The commands that repair the drift, in words; present when there is drift. */
  repair?: string;
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
  const readFirewall = options.readFirewall ?? true;
  const state = await context.store.read();
  if (state === undefined) {
    return statusWithoutRecord(context, readFirewall);
  }
  return statusOfRecord(context, state, readFirewall);
}

// A crash or a deleted state file leaves objects that nothing records, and
// that keep steering marked traffic. Without a record, only the ownership
// marks that cleanup uses can find them.
async function statusWithoutRecord(context: Context, readFirewall: boolean): Promise<StatusReport> {
  const { config, store, system } = context;
  const { found, unchecked } = await findLeftovers(system, config, readFirewall);
  const report: StatusReport = { installed: false, stateFile: store.path, leftovers: found, ...(unchecked.length > 0 ? { unchecked } : {}), drift: [] };
  if (found.length > 0) {
    report.drift.push(
      `splitroute's objects exist without a record in ${store.path} (found by table ${config.table.id} and mark ${hex(config.mark.value)}/${hex(config.mark.mask)} from ${config.source})`,
    );
    // cleanup removes the marking too, which cuts inbound sessions while a
    // tunnel is still up; up for that tunnel takes the objects over instead.
    report.repair = "while a tunnel is up, run splitroute up --dev TUNNEL, which takes them over and writes a new record; otherwise run splitroute cleanup, which removes them";
  }
  return report;
}

/** The commands that repair the drift found so far. */
interface Repairs {
  /** Whether `up` must run again for each remaining tunnel, which rebuilds what is missing. */
  rebuild: boolean;
  /** Whether `refresh` must run, which copies the source table again without a gap. */
  refresh: boolean;
  /** Tunnels whose device is gone, each needing `down`. */
  goneTunnels: string[];
  /** Fixes outside splitroute, in words. */
  manual: string[];
}

/** The differences found so far, what repairs them, and what was not compared. */
interface Findings {
  drift: string[];
  unchecked: string[];
  notes: string[];
  repairs: Repairs;
}

type Live = NonNullable<StatusReport["live"]>;

async function statusOfRecord(context: Context, state: State, readFirewall: boolean): Promise<StatusReport> {
  const { store, system } = context;
  const findings: Findings = { drift: [], unchecked: [], notes: [], repairs: { rebuild: false, refresh: false, goneTunnels: [], manual: [] } };
  const live: Live = { rule: {}, tableRoutes: {}, tunnels: {} };
  const families = await activeFamilies(system);

  await checkTunnels(system, state, live, findings);
  await compareRouting(context, state, families, live, findings);
  if (readFirewall) {
    await compareFirewall(system, state, families, live, findings);
  } else {
    findings.unchecked.push(`the ${state.backend} marking: reading it needs root`);
  }
  // Where our own rule is gone, that is the cause, and up installs it again.
  if (Object.values(live.rule).every(Boolean)) {
    await checkMarkedTraffic(system, state, findings);
  }

  const { drift, unchecked, notes, repairs } = findings;
  return {
    installed: true,
    stateFile: store.path,
    state,
    firewall: firewallObjects(state),
    live,
    ...(unchecked.length > 0 ? { unchecked } : {}),
    ...(notes.length > 0 ? { notes } : {}),
    drift,
    ...(drift.length > 0 ? { repair: describeRepair(state, context.config, repairs) } : {}),
  };
}

async function checkTunnels(system: System, state: State, live: Live, findings: Findings): Promise<void> {
  for (const tunnel of state.tunnels) {
    live.tunnels[tunnel] = await interfaceExists(system, tunnel);
    if (!live.tunnels[tunnel]) {
      findings.drift.push(`tunnel ${tunnel} no longer exists; run splitroute down --dev ${tunnel}`);
      findings.repairs.goneTunnels.push(tunnel);
    }
  }
}

/** Compares the rule and our routes with the record, and the copy with its source table as refresh would. */
async function compareRouting(context: Context, state: State, families: readonly Family[], live: Live, findings: Findings): Promise<void> {
  const { config, system } = context;
  const { drift, repairs } = findings;
  // The copy can be compared with its source only under the configuration
  // that made it: another one may copy another table or exclude other devices.
  const comparable = config.source === state.configSource;
  if (!comparable) {
    findings.unchecked.push(`the copy against the table it was copied from: the bypass was installed with ${state.configSource}, and status read ${config.source}`);
  }
  const observed = await observeRouting(system, config, state, families, comparable);
  const desired = observed.copy === undefined ? undefined : snapshotRoutes(config, state.tunnels, observed.copy.main);
  if (desired !== undefined) {
    live.copyChanges = {};
  }

  const rule = { tableId: state.table.id, priority: state.priority, mark: state.mark };
  for (const family of state.families) {
    const hasOurRule = hasRule(observed.rules[family], rule);
    const size = observed.tableSize[family];
    const counts = desired === undefined ? undefined : countRouteChanges(observed.copy!.table[family], desired[family], state.table.id);
    const changes = counts === undefined ? undefined : counts.changed + counts.removed + counts.added;
    // Routes new in main are mostly the VPN's own, added after up: OpenVPN
    // adds its server's route through the uplink after running up. So they
    // are only noted. Changed or vanished routes send replies wrong.
    const stale = counts === undefined ? 0 : counts.changed + counts.removed;
    live.rule[`ipv${family}`] = hasOurRule;
    live.tableRoutes[`ipv${family}`] = size;
    if (live.copyChanges !== undefined && changes !== undefined) {
      live.copyChanges[`ipv${family}`] = changes;
    }

    if (!hasOurRule) {
      drift.push(`the IPv${family} rule at priority ${state.priority} is missing`);
      repairs.rebuild = true;
    }
    if (size !== state.routeCounts[family]) {
      drift.push(`table ${state.table.id} holds ${size} IPv${family} routes; ${state.routeCounts[family]} were installed`);
      // refresh changes nothing, and so records nothing, when the copy
      // already matches its source; only up then corrects the record.
      if (changes !== undefined && changes > 0) {
        repairs.refresh = true;
      } else {
        repairs.rebuild = true;
      }
    } else if (stale > 0) {
      drift.push(
        `the IPv${family} copy differs from ${config.snapshot.table}: ${counts!.changed} route(s) changed and ${counts!.removed} gone there since it was copied; run splitroute refresh`,
      );
      repairs.refresh = true;
    }
    if (counts !== undefined && counts.added > 0) {
      findings.notes.push(
        `${config.snapshot.table} has ${counts.added} IPv${family} route(s) that the copy lacks, such as routes the VPN added after up; splitroute refresh copies them if replies need them`,
      );
    }
  }
}

interface RoutingObserved {
  /** The number of our routes in the recorded table. */
  tableSize: Record<Family, number>;
  rules: Record<Family, ObservedRule[]>;
  /** The source table and our routes in full, read only when the copy is compared. */
  copy?: { main: Record<Family, Route[]>; table: Record<Family, Route[]> };
}

// Rules and routes can be read without privileges, unlike nftables and
// iptables. One ip process per family reads all that status needs.
async function observeRouting(system: System, config: Config, state: State, families: readonly Family[], withCopy: boolean): Promise<RoutingObserved> {
  const observed: RoutingObserved = { tableSize: { 4: 0, 6: 0 }, rules: { 4: [], 6: [] } };
  const copy = { main: { 4: [], 6: [] }, table: { 4: [], 6: [] } } as NonNullable<RoutingObserved["copy"]>;
  for (const family of families) {
    if (withCopy) {
      const reads = await readFamily(system, family, config.snapshot.table, state.table.id, WHOLE_ROUTES);
      copy.main[family] = reads.main;
      copy.table[family] = reads.table.filter(isOurRoute);
      observed.tableSize[family] = copy.table[family].length;
      observed.rules[family] = reads.rules;
    } else {
      const reads = await readFamilyForDown(system, family, state.table.id);
      observed.tableSize[family] = reads.table.filter(isOurRoute).length;
      observed.rules[family] = reads.rules;
    }
  }
  return withCopy ? { ...observed, copy } : observed;
}

async function compareFirewall(system: System, state: State, families: readonly Family[], live: Live, findings: Findings): Promise<void> {
  if (state.backend === "nftables") {
    live.firewall = (await system.run(["nft", "list", "table", "inet", NFT_TABLE])).exitCode === 0;
  } else {
    const iptables = await readIptablesFamilies(system, state.backend, families);
    live.firewall = state.families.every((family) => (iptables[family]?.mangle.jumps.length ?? 0) > 0);
    if (hasOutputSelections(state)) {
      live.sourceNat = state.families.every((family) => (iptables[family]?.nat.jumps.length ?? 0) > 0);
    }
  }
  if (live.firewall === false) {
    findings.drift.push(`the ${state.backend} marking is missing`);
    findings.repairs.rebuild = true;
  }
  if (live.sourceNat === false) {
    findings.drift.push(`the ${state.backend} source NAT (nat chain ${IPT_CHAIN_POSTROUTING} and its jump from POSTROUTING) is missing`);
    findings.repairs.rebuild = true;
  }
}

async function checkMarkedTraffic(system: System, state: State, findings: Findings): Promise<void> {
  for (const problem of await findMarkedRouteProblems(system, state)) {
    findings.drift.push(problem.message);
    if (problem.cause === "missing route") {
      findings.repairs.refresh = true;
    } else {
      findings.repairs.manual.push(manualFix(state, problem));
    }
  }
}

function manualFix(state: State, problem: MarkedRouteProblem): string {
  if (problem.cause === "earlier rule") {
    return `give the rule that takes marked traffic a priority above ${state.priority}, or set table.priority below that rule's priority and run splitroute up again`;
  }
  return `find why marked traffic finds no route with ip -${problem.family} rule show and ip -${problem.family} route show table ${state.table.id}`;
}

/**
 * Words the commands that repair `repairs`. A gone tunnel goes first,
 * because up for it would fail; up rebuilds whatever refresh would fix.
 */
function describeRepair(state: State, config: Config, repairs: Repairs): string {
  const commands = repairs.goneTunnels.map((tunnel) => `splitroute down --dev ${tunnel}`);
  const remaining = state.tunnels.filter((tunnel) => !repairs.goneTunnels.includes(tunnel));
  if (remaining.length > 0 && repairs.rebuild) {
    commands.push(`${remaining.map((tunnel) => `splitroute up --dev ${tunnel}`).join(" and ")} again, which installs the bypass again`);
  } else if (remaining.length > 0 && repairs.refresh) {
    commands.push(`splitroute refresh, which copies ${config.snapshot.table} into ${state.table.name} (${state.table.id}) again`);
  }
  const parts = commands.length > 0 ? [`run ${commands.join(", then ")}`] : [];
  return [...parts, ...new Set(repairs.manual)].join("; ");
}
