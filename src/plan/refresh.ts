import type { Config } from "../config/types.js";
import { isOurRoute, ROUTE_PROTOCOL } from "../owner.js";
import { planSrcValidMark } from "../rpfilter.js";
import { routeAddArgs } from "../snapshot/render.js";
import type { Family, Route } from "../snapshot/route.js";
import type { State } from "../state.js";
import type { Step } from "./step.js";
import { snapshotRoutes, uplinkDevices, type UpObserved } from "./up.js";

// A refresh brings the copy up to date with main while the bypass is in use,
// so it never flushes. New and changed routes go in first with `route
// replace`, which swaps a route with the same destination, metric and type
// in place. Only then do routes that main no longer has go out.

/** Identifies a route the way `route replace` matches it. */
function routeKey(route: Route): string {
  return [route.type, route.dst, route.metric ?? 0, route.dev ?? "", route.family === 6 ? (route.gateway ?? "") : ""].join(" ");
}

// IPv4 replaces by destination and metric, whatever the device; IPv6 keeps
// routes on different devices (each interface's fe80::/64) apart.
function replaceKey(route: Route): string {
  return route.family === 4 ? [route.type, route.dst, route.metric ?? 0].join(" ") : routeKey(route);
}

function ours(route: Route): Route {
  return { ...route, protocol: String(ROUTE_PROTOCOL) };
}

/** Plans the batch lines that turn `current` (our routes in the table) into `desired`. */
export function planRouteChanges(current: readonly Route[], desired: readonly Route[], table: number): string[] {
  const { additions, removals } = diffRoutes(current, desired, table);
  return [
    ...additions.map((route) => ["route", "replace", ...routeAddArgs(ours(route), table).slice(2)].join(" ")),
    ...removals.map((route) => ["route", "del", ...routeAddArgs(ours(route), table).slice(2)].join(" ")),
  ];
}

/**
 * Counts what planRouteChanges would do, by kind: routes of `current` that
 * change (same destination and metric, other path or fields) or go, and
 * routes new in `desired`.
 */
export function countRouteChanges(current: readonly Route[], desired: readonly Route[], table: number): { changed: number; removed: number; added: number } {
  const { additions, removals } = diffRoutes(current, desired, table);
  const currentKeys = new Set(current.map(replaceKey));
  const changed = additions.filter((route) => currentKeys.has(replaceKey(route))).length;
  return { changed, removed: removals.length, added: additions.length - changed };
}

function diffRoutes(current: readonly Route[], desired: readonly Route[], table: number): { additions: Route[]; removals: Route[] } {
  const currentLines = new Set(current.map((route) => routeAddArgs(ours(route), table).join(" ")));
  const additions = desired.filter((route) => !currentLines.has(routeAddArgs(ours(route), table).join(" ")));
  const replaced = new Set(additions.map(replaceKey));
  const desiredKeys = new Set(desired.map(routeKey));
  const removals = current.filter((route) => !desiredKeys.has(routeKey(route)) && !replaced.has(replaceKey(route)));
  return { additions, removals };
}

/** Plans `refresh`: the copy follows main again, and new uplinks get src_valid_mark where needed. */
export function planRefresh(state: State, config: Config, observed: UpObserved<Route>): { steps: Step[]; state: State } {
  const routes = snapshotRoutes(config, state.tunnels, observed.main);
  const steps: Step[] = [];
  for (const family of state.families.filter((entry): entry is Family => observed.families.includes(entry))) {
    const lines = planRouteChanges(observed.table[family].filter(isOurRoute), routes[family], state.table.id);
    if (lines.length > 0) {
      steps.push({
        kind: "run",
        summary: `updating the IPv${family} copy in table ${state.table.name} (${state.table.id})`,
        argv: ["ip", `-${family}`, "-batch", "-"],
        input: `${lines.join("\n")}\n`,
      });
    }
  }

  const devices = uplinkDevices(routes[4]);
  const newSysctls = planSrcValidMark(observed.uplinks.filter((uplink) => devices.includes(uplink.device)));
  for (const change of newSysctls) {
    steps.push({ kind: "sysctl", summary: `allowing the mark in ${change.key.split(".")[3]}'s reverse-path check`, key: change.key, value: change.value });
  }

  const isDefault = (route: Route) => (route.dst === "0.0.0.0/0" || route.dst === "::/0") && route.type === "unicast";
  return {
    steps,
    state: {
      ...state,
      sysctls: [...state.sysctls, ...newSysctls],
      routeCounts: { 4: routes[4].length, 6: routes[6].length },
      hasDefaultRoute: { 4: routes[4].some(isDefault), 6: routes[6].some(isDefault) },
    },
  };
}
