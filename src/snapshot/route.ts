// The route model that a snapshot of the main table is made of. It contains
// only what `ip route append` can set, so status that the kernel reports
// (linkdown, dead, expires) has no field here.

export type Family = 4 | 6;

/** Route types that a snapshot copies. `nat` is left out because Linux 6.18 rejected `ip route add nat` in testing. */
export const ROUTE_TYPES = [
  "unicast",
  "local",
  "broadcast",
  "anycast",
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
] as const;

export type RouteType = (typeof ROUTE_TYPES)[number];

/** Route types that drop or bounce packets and therefore have no next hop. */
export const REJECT_ROUTE_TYPES: ReadonlySet<RouteType> = new Set([
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
]);

/** One path of a multipath route. */
export interface Nexthop {
  /** Gateway address. An IPv6 gateway on an IPv4 route is rendered as `via inet6`. */
  gateway?: string;
  dev?: string;
  /** Relative share of flows, from 1 to 256, as configured with `weight`. */
  weight?: number;
  onlink?: boolean;
  /** Routing realms as `TO` or `FROM/TO`, by number or by name from rt_realms. */
  realms?: string;
}

/** Route metrics that take a number, under the names that `ip route` uses for them. */
export const NUMERIC_METRICS = [
  "mtu",
  "window",
  "rtt",
  "rttvar",
  "ssthresh",
  "cwnd",
  "advmss",
  "reordering",
  "hoplimit",
  "initcwnd",
  "initrwnd",
  "quickack",
  "rto_min",
  "fastopen_no_cookie",
] as const;

export type NumericMetric = (typeof NUMERIC_METRICS)[number];

/** Metrics that tune a route's TCP and path behavior; `rtt`, `rttvar` and `rto_min` are in milliseconds. */
export type RouteMetrics = Partial<Record<NumericMetric, number>> & {
  /** Congestion control algorithm (`congctl`), such as "cubic" or "bbr". */
  congctl?: string;
  /** Whether `features ecn` is set. */
  ecn?: boolean;
};

/**
 * A route of the main table, reduced to the attributes that a copy needs.
 * A route has either a single path in `gateway`, `dev` and `onlink`, or two
 * or more entries in `nexthops`, never both.
 */
export interface Route {
  family: Family;
  type: RouteType;
  /** Destination prefix, with the default route as "0.0.0.0/0" or "::/0" and host routes as ip prints them. */
  dst: string;
  /** IPv6 source prefix of a source-specific route (`from`). */
  from?: string;
  /** IPv4 TOS selector as ip prints it, for example "0x10". */
  tos?: string;
  gateway?: string;
  dev?: string;
  onlink?: boolean;
  /** Routing protocol by name from rt_protos or by number, such as "kernel", "boot" or "200". */
  protocol?: string;
  /** Scope by name from rt_scopes or by number. */
  scope?: string;
  /** Preferred source address (`src` in `ip route`). */
  prefsrc?: string;
  metric?: number;
  /** IPv6 router preference: "low", "medium" or "high". */
  pref?: string;
  /** Routing realms as `TO` or `FROM/TO`. */
  realms?: string;
  metrics?: RouteMetrics;
  nexthops?: Nexthop[];
}

/** Returns the default route's prefix for a family. */
export function defaultPrefix(family: Family): string {
  return family === 4 ? "0.0.0.0/0" : "::/0";
}

/**
 * Returns a copy of `route` with its paths replaced by `nexthops`. A single remaining
 * path moves into the route's own fields, because the kernel stores a
 * one-path multipath route as a plain route and ip prints it that way.
 */
export function withNexthops(route: Route, nexthops: readonly Nexthop[]): Route {
  const { nexthops: _previous, gateway: _gateway, dev: _dev, onlink: _onlink, ...rest } = route;
  return setNexthops(rest, nexthops);
}

/**
 * Gives `route`, which has no paths yet, the paths `nexthops` in place, the
 * way withNexthops does, and returns it. The parser uses this on the routes
 * it builds, because copying each of them cost more than the rest of parsing.
 */
export function setNexthops(route: Route, nexthops: readonly Nexthop[]): Route {
  if (nexthops.length >= 2) {
    route.nexthops = nexthops.map((nexthop) => ({ ...nexthop }));
    return route;
  }

  const single = nexthops[0];
  if (single === undefined) {
    return route;
  }

  if (single.gateway !== undefined) route.gateway = single.gateway;
  if (single.dev !== undefined) route.dev = single.dev;
  if (single.onlink) route.onlink = true;
  // ip prints the realm of a one-path multipath route as the route's own realm.
  if (single.realms !== undefined) route.realms = single.realms;
  return route;
}
