// Rendering of a Route as the arguments of one `ip -batch` line.

import { isIP } from "node:net";

import { isPrefix } from "./fields.js";
import { metricArgs } from "./metrics.js";
import { protocolNumber, realmsNumber, scopeNumber, tosNumber } from "./names.js";
import { defaultPrefix, type Family, type Nexthop, type Route } from "./route.js";

// Re-exported because callers that render routes also list their devices.
export { routeDevices } from "./select.js";

// ip 6.1 splits a batch line into at most 511 arguments. On a longer line it
// prints "Too many arguments to command" and stops the batch, even with -force.
export const MAX_BATCH_ARGS = 511;

// ip -batch splits words at spaces, tabs, CR and LF, treats a word that
// starts with a quote as quoted, cuts the line at `#`, and joins a line that
// ends in a backslash with the next one. A value with any of these could
// change the command, for example `dev a#b table 100` would add to table main.
const UNSAFE_BATCH_CHARACTERS = /[\s"'#\\\p{Cc}]/u;

/**
 * Builds the arguments of one `ip -batch` line that appends `route` to
 * routing table `table`, such as ["route", "append", "192.0.2.0/24", "dev",
 * "eth0", "proto", "2", "scope", "253", "src", "192.0.2.2", "table", "2"].
 * Every argument is safe to join with single spaces into a batch line.
 * Protocol, scope, realms and TOS are written as numbers where the name is
 * known (see names.ts for the iproute2 bug this avoids).
 *
 * The verb is `append` rather than `add`. Main can contain routes that differ
 * only in device, such as the fe80::/64 route of every IPv6 interface, and
 * `add` rejects the second one with "File exists". `append` still rejects an
 * exact duplicate. `protocol`, when given, replaces the route's own, as a
 * copy marked with splitroute's protocol number needs. Throws an Error on a
 * value that cannot be rendered safely.
 */
export function routeAddArgs(route: Route, table: number, protocol = route.protocol): string[] {
  if (!Number.isInteger(table) || table < 1 || table > 4_294_967_295) {
    throw new Error(`invalid routing table ${table}: expected an integer from 1 to 4294967295`);
  }
  if (route.nexthops !== undefined && (route.gateway !== undefined || route.dev !== undefined)) {
    throw new Error(`invalid route ${route.dst}: it has both nexthops and its own gateway or device`);
  }

  const args = ["route", "append"];
  if (route.type !== "unicast") {
    args.push(route.type);
  }
  // The destination comes first, because ip takes the line's family from
  // the first address it reads and the line has no -4 or -6 option.
  args.push(destinationArg(route));
  if (route.from !== undefined) args.push("from", route.from);
  if (route.tos !== undefined) args.push("tos", tosNumber(route.tos));
  if (route.gateway !== undefined) args.push(...gatewayArgs(route.gateway, route.family));
  if (route.dev !== undefined) args.push("dev", route.dev);
  if (route.onlink) args.push("onlink");
  if (protocol !== undefined) args.push("proto", protocolNumber(protocol));
  if (route.scope !== undefined) args.push("scope", scopeNumber(route.scope));
  if (route.prefsrc !== undefined) args.push("src", route.prefsrc);
  if (route.metric !== undefined) {
    if (!Number.isInteger(route.metric) || route.metric < 0 || route.metric > 4_294_967_295) {
      throw new Error(`invalid route ${route.dst}: metric ${route.metric} is not an integer from 0 to 4294967295`);
    }
    args.push("metric", String(route.metric));
  }
  if (route.pref !== undefined) args.push("pref", route.pref);
  if (route.realms !== undefined) args.push("realms", realmsNumber(route.realms));
  if (route.metrics !== undefined) args.push(...metricArgs(route.metrics));

  // ip reads every argument after the first `nexthop` as part of a path, so
  // the table goes before them.
  args.push("table", String(table));
  for (const nexthop of route.nexthops ?? []) {
    args.push(...nexthopArgs(nexthop, route.family));
  }

  for (const arg of args) {
    checkBatchArg(arg, route.dst);
  }
  if (args.length > MAX_BATCH_ARGS) {
    throw new Error(
      `cannot copy route ${route.dst}: it needs ${args.length} ip -batch arguments, but ip accepts at most ${MAX_BATCH_ARGS} on one line`,
    );
  }
  return args;
}

function destinationArg(route: Route): string {
  // "default" in a batch line without -6 means the IPv4 default route.
  const dst = route.dst === "default" ? defaultPrefix(route.family) : route.dst;
  if (!isPrefix(dst, route.family)) {
    throw new Error(`invalid route ${JSON.stringify(route.dst)}: the destination is not an IPv${route.family} prefix`);
  }
  return dst;
}

function gatewayArgs(gateway: string, family: Family): string[] {
  const gatewayFamily = isIP(gateway);
  if (gatewayFamily === 0) {
    throw new Error(`invalid gateway ${JSON.stringify(gateway)}: expected an IP address`);
  }
  if (gatewayFamily === family) {
    return ["via", gateway];
  }
  return ["via", gatewayFamily === 6 ? "inet6" : "inet", gateway];
}

function nexthopArgs(nexthop: Nexthop, family: Family): string[] {
  const args = ["nexthop"];
  if (nexthop.gateway !== undefined) args.push(...gatewayArgs(nexthop.gateway, family));
  if (nexthop.dev !== undefined) args.push("dev", nexthop.dev);
  if (nexthop.weight !== undefined) {
    if (!Number.isInteger(nexthop.weight) || nexthop.weight < 1 || nexthop.weight > 256) {
      throw new Error(`invalid nexthop weight ${nexthop.weight}: expected an integer from 1 to 256`);
    }
    args.push("weight", String(nexthop.weight));
  }
  if (nexthop.onlink) args.push("onlink");
  if (nexthop.realms !== undefined) args.push("realms", realmsNumber(nexthop.realms));
  return args;
}

function checkBatchArg(arg: string, dst: string): void {
  if (arg === "" || UNSAFE_BATCH_CHARACTERS.test(arg)) {
    throw new Error(
      `cannot render route ${dst} as an ip -batch line: the value ${JSON.stringify(arg)} is empty or contains ` +
        "whitespace, a quote, '#', a backslash or a control character, where ip -batch would split or cut the line",
    );
  }
}
