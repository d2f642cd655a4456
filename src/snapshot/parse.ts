// Parsing of `ip [-6] -d -j route show table main` (checked against
// iproute2 6.1) into Route values that can be replayed into another table.

import {
  invalidField,
  isRecord,
  readAddress,
  readNameOrNumber,
  readPrefix,
  readRealms,
  readString,
  readUint32,
  type RouteContext,
} from "./fields.js";
import {
  readFlags,
  readGateway,
  readNexthopList,
  rejectUnknownKeys,
  resolveNexthopObject,
  type ParsedNexthop,
} from "./nexthops.js";
import { readMetrics } from "./metrics.js";
import { ROUTE_TYPE_BY_NUMBER } from "./names.js";
import {
  REJECT_ROUTE_TYPES,
  ROUTE_TYPES,
  defaultPrefix,
  setNexthops,
  type Family,
  type Route,
  type RouteType,
} from "./route.js";

const ROUTE_KEYS = new Set([
  "type",
  "dst",
  "from",
  "tos",
  "table",
  "gateway",
  "via",
  "dev",
  "protocol",
  "scope",
  "prefsrc",
  "metric",
  "flags",
  "pref",
  "expires",
  "metrics",
  "flow",
  "nhid",
  "nh_info",
  "nexthops",
]);

const IPV6_PREFERENCES = new Set(["low", "medium", "high"]);

/**
 * Parses the output of `ip [-6] -d -j route show table main` into routes of
 * `family`. Output of `ip -N` with numbers in place of names parses too.
 * Without `-d`, ip leaves out `type unicast`, `proto boot` and `scope global`,
 * so the parser treats a missing type as unicast and leaves the other two to
 * `ip route append`'s defaults.
 *
 * Paths that the kernel marks dead are dropped, and so is a route whose every
 * path is dead, because the kernel rejects a new route through a device that
 * is down. Throws an Error naming the route, the field and the value on
 * malformed input, and on routes that a copy cannot reproduce (encapsulation,
 * an unresolved nexthop group, unknown fields or flags).
 */
export function parseRoutes(json: unknown, family: Family): Route[] {
  if (!Array.isArray(json)) {
    throw new Error(
      `invalid ip route JSON: expected an array of routes, got ${describe(json)}. Run ip with -j and parse its whole output.`,
    );
  }

  const routes: Route[] = [];
  json.forEach((entry: unknown, index) => {
    const route = parseRouteEntry(entry, index, family);
    if (route !== undefined) {
      routes.push(route);
    }
  });
  return routes;
}

/**
 * Parses the `index`-th element of that output, as parseRoutes does.
 * Returns undefined for a route whose every path is dead.
 */
export function parseRouteEntry(entry: unknown, index: number, family: Family): Route | undefined {
  if (!isRecord(entry)) {
    throw new Error(`invalid ip route JSON: route ${index} is ${describe(entry)}, expected an object`);
  }
  const dstValue = entry.dst;
  const context: RouteContext = `route ${index} (${typeof dstValue === "string" ? dstValue : "no dst"})`;
  rejectUnknownKeys(context, entry, ROUTE_KEYS);

  // ip 6.1 prints `table` only for `table all`. The caller chose the table,
  // so its value is not checked.
  const route: Route = {
    family,
    type: readType(context, entry.type),
    dst: dstValue === "default" ? defaultPrefix(family) : readPrefix(context, "dst", dstValue, family),
  };

  if (entry.from !== undefined) route.from = readPrefix(context, "from", entry.from, family);
  if (entry.tos !== undefined) route.tos = readString(context, "tos", entry.tos);
  if (entry.protocol !== undefined) route.protocol = readNameOrNumber(context, "protocol", entry.protocol);
  if (entry.scope !== undefined) route.scope = readNameOrNumber(context, "scope", entry.scope);
  if (entry.prefsrc !== undefined) route.prefsrc = readAddress(context, "prefsrc", entry.prefsrc, family);
  if (entry.metric !== undefined) route.metric = readUint32(context, "metric", entry.metric);
  if (entry.pref !== undefined) route.pref = readPreference(context, entry.pref, family);
  if (entry.flow !== undefined) route.realms = readRealms(context, "flow", entry.flow);
  if (entry.metrics !== undefined) route.metrics = readMetrics(context, entry.metrics);

  // The copy leaves out `expires` and is permanent. Main's router-advertised
  // routes get a new expiry with each advertisement, but nothing would
  // refresh the copy's, so an expiring copy would vanish before the original.
  if (entry.expires !== undefined) readUint32(context, "expires", entry.expires);
  if (entry.nhid !== undefined) readUint32(context, "nhid", entry.nhid);

  if (REJECT_ROUTE_TYPES.has(route.type)) {
    return withRejectTarget(context, route, entry);
  }
  return withPaths(context, route, entry);
}

function readType(context: RouteContext, value: unknown): RouteType {
  if (value === undefined) {
    return "unicast";
  }
  const type = ROUTE_TYPES.find((name) => name === value) ?? (typeof value === "string" ? ROUTE_TYPE_BY_NUMBER.get(value) : undefined);
  if (type === undefined) {
    throw invalidField(context, "type", value, `one of ${ROUTE_TYPES.join(", ")}`);
  }
  return type;
}

function readPreference(context: RouteContext, value: unknown, family: Family): string {
  if (family !== 6 || typeof value !== "string" || !IPV6_PREFERENCES.has(value)) {
    throw invalidField(context, "pref", value, "low, medium or high on an IPv6 route");
  }
  return value;
}

/**
 * Checks a blackhole, unreachable, prohibit or throw route, which has no
 * path. ip 6.1 prints `dev lo` on the IPv6 ones and on routes through a
 * blackhole nexthop object. The copy leaves it out, because the kernel picks
 * lo by itself and rejects `dev` on an IPv4 route of these types.
 */
function withRejectTarget(context: RouteContext, route: Route, entry: Record<string, unknown>): Route {
  if (entry.dev !== undefined && entry.dev !== "lo") {
    throw invalidField(context, "dev", entry.dev, `"lo" or no device on a ${route.type} route`);
  }
  for (const field of ["gateway", "via", "nexthops"] as const) {
    if (entry[field] !== undefined) {
      throw invalidField(context, field, entry[field], `no ${field} on a ${route.type} route`);
    }
  }
  readFlags(context, "flags", entry.flags);
  return route;
}

function withPaths(context: RouteContext, route: Route, entry: Record<string, unknown>): Route | undefined {
  const paths = readPaths(context, entry);
  const alive = paths.filter((path) => !path.dead).map((path) => path.nexthop);
  if (alive.length === 0) {
    return undefined;
  }
  return setNexthops(route, alive);
}

/**
 * Reads the paths of a route. For a route through a nexthop object, ip 6.1
 * prints the resolved gateway and device or `nexthops` list beside `nhid`,
 * and the copy takes those, so it does not depend on the nexthop object.
 * Only when nothing is resolved does it fall back to `nh_info`.
 */
function readPaths(context: RouteContext, entry: Record<string, unknown>): ParsedNexthop[] {
  const hasSinglePath = entry.gateway !== undefined || entry.via !== undefined || entry.dev !== undefined;

  if (entry.nexthops !== undefined) {
    if (hasSinglePath) {
      throw invalidField(context, "nexthops", entry.nexthops, "no nexthops list next to gateway, via or dev");
    }
    readFlags(context, "flags", entry.flags);
    return readNexthopList(context, entry.nexthops);
  }

  if (!hasSinglePath && typeof entry.nhid === "number") {
    const resolved = resolveNexthopObject(context, entry.nhid, entry.nh_info);
    const routeFlags = readFlags(context, "flags", entry.flags);
    return [{ nexthop: resolved.nexthop, dead: resolved.dead || routeFlags.dead }];
  }

  const single: ParsedNexthop = { nexthop: {}, dead: false };
  const gateway = readGateway(context, entry, "");
  if (gateway !== undefined) single.nexthop.gateway = gateway;
  if (entry.dev !== undefined) single.nexthop.dev = readString(context, "dev", entry.dev);
  const flags = readFlags(context, "flags", entry.flags);
  if (flags.onlink) single.nexthop.onlink = true;
  single.dead = flags.dead;

  if (single.nexthop.dev === undefined) {
    throw invalidField(context, "dev", entry.dev, `a device on a ${String(entry.type ?? "unicast")} route`);
  }
  return [single];
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `${typeof value} ${JSON.stringify(value)}`;
}
