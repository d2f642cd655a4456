import { DEFAULT_CONFIG_PATH, type Config } from "../config/types.js";
import { ConfigError } from "../errors.js";
import type { FirewallBackend } from "../firewall/backend.js";
import { isOurRoute, ROUTE_PROTOCOL } from "../owner.js";
import type { CreatedNftObjects } from "../firewall/iptables-nft.js";
import { planSrcValidMark, type UplinkSysctls } from "../rpfilter.js";
import { chooseRulePriority, findOurRules, hasRule, ruleSelector, type ObservedRule, type RuleSpec } from "../rule.js";
import { routeAddArgs, routeDevices } from "../snapshot/render.js";
import { selectRoutes } from "../snapshot/select.js";
import type { Family, Route } from "../snapshot/route.js";
import type { State } from "../state.js";
import { planFirewallApply, type IptablesByFamily } from "./firewall.js";
import type { Step } from "./step.js";

/** The system as observed before `up`. */
export interface UpObserved<Current extends Pick<Route, "protocol"> = Pick<Route, "protocol">> {
  families: Family[];
  main: Record<Family, Route[]>;
  /** Current contents of the table id we are about to fill: each route's protocol, or the whole route where a planner needs it. */
  table: Record<Family, Current[]>;
  rules: Record<Family, ObservedRule[]>;
  iptables: IptablesByFamily;
  uplinks: UplinkSysctls[];
  /** The nftables objects iptables-nft will create for our rules in mangle (none for other backends). */
  missingMangle: CreatedNftObjects[];
  /** The same for nat, read only when this up may be the first to install our nat chain. */
  missingNat?: CreatedNftObjects[];
  /** Mount point of the cgroup v2 hierarchy, read only when a section selects a service. */
  cgroupMount?: string;
  /** Whether our nft table exists; read only with the nftables backend, and absent when unknown. */
  nftTableExists?: boolean;
}

export interface UpInput {
  config: Config;
  device: string;
  backend: FirewallBackend;
  /** State of an earlier `up` with the same table, rule and backend, if any. */
  previous: State | undefined;
  observed: UpObserved;
}

/**
 * Returns the tunnels whose routes must stay out of the snapshot, as exact
 * device names: the new tunnel and every tunnel already holding the bypass.
 */
export function tunnelsAfterUp(device: string, previous: State | undefined): string[] {
  const tunnels = new Set(previous?.tunnels ?? []);
  tunnels.add(device);
  return [...tunnels].sort();
}

/** Picks the routes to copy: main without any tunnel's routes or excluded interfaces. */
export function snapshotRoutes(config: Config, tunnels: readonly string[], main: Record<Family, Route[]>): Record<Family, Route[]> {
  const excluded = [...tunnels, ...config.snapshot.exclude];
  return { 4: selectRoutes(main[4], excluded), 6: selectRoutes(main[6], excluded) };
}

/** Returns the IPv4 uplinks: the devices the copied IPv4 routes leave through. */
export function uplinkDevices(routes: readonly Route[]): string[] {
  const devices = new Set<string>();
  for (const route of routes) {
    for (const device of routeDevices(route)) {
      devices.add(device);
    }
  }
  devices.delete("lo");
  return [...devices].sort();
}

/** Plans `up` for one tunnel and returns the steps with the state they leave. */
export function planUp(input: UpInput): { steps: Step[]; state: State } {
  const { config, device, backend, previous, observed } = input;
  const tunnels = tunnelsAfterUp(device, previous);
  const routes = snapshotRoutes(config, tunnels, observed.main);
  const priority = chooseRulePriority(config.table.priority, [...observed.rules[4], ...observed.rules[6]]);
  const rule = { tableId: config.table.id, priority, mark: config.mark };
  const steps: Step[] = [];

  for (const family of observed.families) {
    checkTableIsOurs(config, family, observed.table[family], previous);

    // Routes and the rule for one family go through `ip -batch`, one
    // process for every MAX_BATCH_LINES lines however large the table is.
    // The lines are rendered as batchSteps takes them, so no more than one
    // batch of them exists as separate strings at a time.
    const lines = batchLines(routes[family], observed.table[family].some(isOurRoute), rule, observed.rules[family]);
    steps.push(...batchSteps(family, lines, `installing IPv${family} routes into table ${config.table.name} (${config.table.id}) and its rule`));
  }

  const marking = { mark: config.mark, tunnels, bypass: config.bypass, cgroupMount: observed.cgroupMount };
  steps.push(...planFirewallApply(backend, marking, observed.families, observed.iptables, observed.nftTableExists ?? true));

  const uplinks = uplinkDevices(routes[4]);
  const newSysctls = planSrcValidMark(observed.uplinks.filter((uplink) => uplinks.includes(uplink.device)));
  for (const change of newSysctls) {
    steps.push({ kind: "sysctl", summary: `allowing the mark in ${change.key.split(".")[3]}'s reverse-path check`, key: change.key, value: change.value });
  }

  const state: State = {
    version: 1,
    tunnels,
    table: { id: config.table.id, name: config.table.name },
    priority,
    configuredPriority: config.table.priority,
    mark: config.mark,
    bypass: config.bypass,
    backend,
    families: observed.families,
    sysctls: [...(previous?.sysctls ?? []), ...newSysctls],
    routeCounts: { 4: routes[4].length, 6: routes[6].length },
    hasDefaultRoute: { 4: routes[4].some(isDefaultRoute), 6: routes[6].some(isDefaultRoute) },
    createdMangle: previous?.createdMangle ?? observed.missingMangle,
    ...createdNat(previous, observed),
    ...(observed.cgroupMount === undefined ? {} : { cgroupMount: observed.cgroupMount }),
    configSource: config.source,
  };
  return { steps, state };
}

// ip 6.1 keeps about 4 KB for each route that one -batch run adds, until
// it exits: 400 MB for 100,000 routes. So longer inputs are split into runs
// of at most this many lines, about 40 MB each, and every run is a step of
// its own. A run costs one more process, a few milliseconds.
export const MAX_BATCH_LINES = 10_000;

/** Turns batch lines into `ip -batch` steps of at most MAX_BATCH_LINES lines each; none for no lines. */
export function batchSteps(family: Family, lines: Iterable<string>, summary: string): Step[] {
  const inputs: string[] = [];
  let chunk: string[] = [];
  for (const line of lines) {
    chunk.push(line);
    if (chunk.length === MAX_BATCH_LINES) {
      inputs.push(`${chunk.join("\n")}\n`);
      chunk = [];
    }
  }
  if (chunk.length > 0) {
    inputs.push(`${chunk.join("\n")}\n`);
  }
  return inputs.map((input, index) => ({
    kind: "run",
    summary: inputs.length === 1 ? summary : `${summary} (batch ${index + 1} of ${inputs.length})`,
    argv: ["ip", `-${family}`, "-batch", "-"],
    input,
  }));
}

/**
 * Yields `up`'s batch lines for one family: a flush of our earlier copy if
 * one exists, the copy, and the rule where it is missing or must move.
 */
function* batchLines(routes: readonly Route[], flush: boolean, rule: RuleSpec, rules: readonly ObservedRule[]): Generator<string> {
  if (flush) {
    yield flushOurRoutes(rule.tableId);
  }
  for (const route of routes) {
    yield routeAddArgs(route, rule.tableId, String(ROUTE_PROTOCOL)).join(" ");
  }
  // Ours at another priority: moved earlier, or left by a run that was killed.
  for (const stale of findOurRules(rules, rule).filter((found) => found.priority !== rule.priority)) {
    yield ["rule", "del", ...ruleSelector(stale)].join(" ");
  }
  if (!hasRule(rules, rule)) {
    yield ["rule", "add", ...ruleSelector(rule)].join(" ");
  }
}

/** Returns the ip -batch line that removes our routes, and only ours, from `table`. */
export function flushOurRoutes(table: number): string {
  return `route flush table ${table} proto ${ROUTE_PROTOCOL}`;
}

// A table that other software fills is not ours to share: its routes would
// decide where our marked traffic goes. Routes added to it after our up are
// left alone, and survive down.
function checkTableIsOurs(config: Config, family: Family, current: ReadonlyArray<Pick<Route, "protocol">>, previous: State | undefined): void {
  const foreign = current.filter((route) => !isOurRoute(route));
  if (foreign.length > 0 && previous === undefined) {
    throw new ConfigError(
      `table ${config.table.id} already contains ${foreign.length} IPv${family} route(s) that splitroute did not install; ` +
        `set table.id in ${config.source === "built-in defaults" ? DEFAULT_CONFIG_PATH : config.source} to an unused table (see: ip -${family} route show table all)`,
    );
  }
}

// The first up that installs our nat chain records what iptables-nft will
// create for it; later ones keep that record.
function createdNat(previous: State | undefined, observed: UpObserved): Pick<State, "createdNat"> {
  const created = previous?.createdNat ?? observed.missingNat;
  return created === undefined ? {} : { createdNat: created };
}

function isDefaultRoute(route: Route): boolean {
  return (route.dst === "0.0.0.0/0" || route.dst === "::/0") && route.type === "unicast";
}
