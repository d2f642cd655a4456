// Choosing which routes of the main table go into splitroute's table.

import { withNexthops, type Route } from "./route.js";

/** Lists every device the route uses: its own device and those of its paths, without duplicates. */
export function routeDevices(route: Route): string[] {
  // Most routes have one path, and this runs for every route of main.
  if (route.nexthops === undefined) {
    return route.dev === undefined ? [] : [route.dev];
  }
  const devices = new Set<string>();
  if (route.dev !== undefined) {
    devices.add(route.dev);
  }
  for (const nexthop of route.nexthops ?? []) {
    if (nexthop.dev !== undefined) {
      devices.add(nexthop.dev);
    }
  }
  return [...devices];
}

/**
 * Keeps the routes that use none of the excluded devices. `excluded` contains
 * exact device names and glob patterns in which `*` matches any run of
 * characters, including none, and every other character matches itself.
 *
 * A multipath route loses only its paths through excluded devices, so the
 * copy still spreads traffic over the remaining paths with their weights,
 * and it is dropped when no path remains. A route without a device, such as
 * a blackhole route, is always kept.
 */
export function selectRoutes(routes: Route[], excluded: string[]): Route[] {
  const isExcluded = deviceMatcher(excluded);
  const selected: Route[] = [];

  for (const route of routes) {
    if (route.dev !== undefined && isExcluded(route.dev)) {
      continue;
    }
    if (route.nexthops === undefined) {
      selected.push(route);
      continue;
    }

    const remaining = route.nexthops.filter((nexthop) => nexthop.dev === undefined || !isExcluded(nexthop.dev));
    if (remaining.length === route.nexthops.length) {
      selected.push(route);
    } else if (remaining.length > 0) {
      selected.push(withNexthops(route, remaining));
    }
  }
  return selected;
}

function deviceMatcher(excluded: readonly string[]): (device: string) => boolean {
  const names = new Set<string>();
  const patterns: RegExp[] = [];
  for (const entry of excluded) {
    if (entry.includes("*")) {
      patterns.push(globToRegExp(entry));
    } else {
      names.add(entry);
    }
  }
  // A table has many routes but few devices, so each device is matched once.
  const matches = new Map<string, boolean>();
  return (device) => {
    let excluded = matches.get(device);
    if (excluded === undefined) {
      excluded = names.has(device) || patterns.some((pattern) => pattern.test(device));
      matches.set(device, excluded);
    }
    return excluded;
  };
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${escaped.join(".*")}$`, "s");
}
