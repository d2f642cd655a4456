// Reading the next hops of one route from ip's JSON: the plain `gateway`
// (or `via`) and `dev` fields, a `nexthops` list, or a nexthop object
// (`nhid`) that ip 6.1 prints resolved next to the id.

import {
  invalidField,
  isRecord,
  readAddress,
  readRealms,
  readString,
  readWeight,
  type RouteContext,
} from "./fields.js";
import type { Nexthop } from "./route.js";

// Flags that report state rather than configuration, so `ip route append`
// cannot set them and the copy leaves them out. The kernel sets `dead` on a
// path whose device is administratively down, and `linkdown` on one whose
// device has no carrier.
const STATUS_FLAGS = new Set([
  "dead",
  "linkdown",
  "offload",
  "trap",
  "unresolved",
  "notify",
  "rt_offload",
  "rt_trap",
  "rt_offload_failed",
]);

export interface Flags {
  onlink: boolean;
  dead: boolean;
}

export function readFlags(context: RouteContext, field: string, value: unknown): Flags {
  if (value === undefined) {
    return { onlink: false, dead: false };
  }
  if (!Array.isArray(value)) {
    throw invalidField(context, field, value, "an array of flag names");
  }

  const flags: Flags = { onlink: false, dead: false };
  for (const flag of value) {
    if (flag === "onlink") {
      flags.onlink = true;
    } else if (flag === "dead") {
      flags.dead = true;
    } else if (typeof flag !== "string" || !STATUS_FLAGS.has(flag)) {
      // ip 6.1 prints `pervasive` but cannot set it, so it is rejected here too.
      throw invalidField(context, field, value, "only onlink and status flags such as linkdown or dead");
    }
  }
  return flags;
}

/** Reads `gateway` (same family as the route) or `via` (any family, such as `via inet6` on an IPv4 route). */
export function readGateway(context: RouteContext, entry: Record<string, unknown>, prefix: string): string | undefined {
  if (entry.gateway !== undefined && entry.via !== undefined) {
    throw invalidField(context, `${prefix}via`, entry.via, `no "via" next to "${prefix}gateway"`);
  }
  if (entry.gateway !== undefined) {
    return readAddress(context, `${prefix}gateway`, entry.gateway);
  }
  if (entry.via === undefined) {
    return undefined;
  }

  const via = entry.via;
  const viaFamily = isRecord(via) ? via.family : undefined;
  if (!isRecord(via) || (viaFamily !== "inet" && viaFamily !== "inet6")) {
    throw invalidField(context, `${prefix}via`, via, 'an object with family "inet" or "inet6" and "host"');
  }
  return readAddress(context, `${prefix}via.host`, via.host, viaFamily === "inet" ? 4 : 6);
}

const NEXTHOP_KEYS = new Set(["gateway", "via", "dev", "weight", "flags", "flow"]);

/** A path read from ip's JSON, with the kernel's `dead` status kept so the caller can drop it. */
export interface ParsedNexthop {
  nexthop: Nexthop;
  dead: boolean;
}

export function readNexthopList(context: RouteContext, value: unknown): ParsedNexthop[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw invalidField(context, "nexthops", value, "a non-empty array");
  }
  return value.map((entry, index) => readNexthop(context, entry, `nexthops[${index}].`));
}

function readNexthop(context: RouteContext, entry: unknown, prefix: string): ParsedNexthop {
  if (!isRecord(entry)) {
    throw invalidField(context, prefix.slice(0, -1), entry, "an object");
  }
  rejectUnknownKeys(context, entry, NEXTHOP_KEYS, prefix);

  const nexthop: Nexthop = {};
  const gateway = readGateway(context, entry, prefix);
  if (gateway !== undefined) nexthop.gateway = gateway;
  if (entry.dev !== undefined) nexthop.dev = readString(context, `${prefix}dev`, entry.dev);
  if (entry.weight !== undefined) nexthop.weight = readWeight(context, `${prefix}weight`, entry.weight);
  if (entry.flow !== undefined) nexthop.realms = readRealms(context, `${prefix}flow`, entry.flow);

  const flags = readFlags(context, `${prefix}flags`, entry.flags);
  if (flags.onlink) nexthop.onlink = true;
  return { nexthop, dead: flags.dead };
}

const NH_INFO_KEYS = new Set(["id", "gateway", "dev", "scope", "protocol", "flags", "group", "type", "resilient_args"]);

/**
 * Resolves a route's nexthop object from `nh_info` when ip printed no
 * resolved path beside `nhid`, which happens when the namespace's
 * net.ipv4.nexthop_compat_mode is 0. Only a single nexthop can be resolved
 * this way, because `nh_info` of a group lists member ids but not their
 * gateways or devices.
 */
export function resolveNexthopObject(context: RouteContext, nhid: number, nhInfo: unknown): ParsedNexthop {
  if (!isRecord(nhInfo)) {
    throw invalidField(context, "nh_info", nhInfo, `the description of nexthop object ${nhid}`);
  }
  if (nhInfo.group !== undefined) {
    throw new Error(
      `cannot copy ${context}: it uses nexthop group ${nhid}, and ip printed no gateways or devices for the group's members. ` +
        "Set the sysctl net.ipv4.nexthop_compat_mode to 1 so that route dumps include them, or remove the route from table main.",
    );
  }
  rejectUnknownKeys(context, nhInfo, NH_INFO_KEYS, "nh_info.");

  const resolved = readNexthop(context, { gateway: nhInfo.gateway, dev: nhInfo.dev, flags: nhInfo.flags }, "nh_info.");
  if (resolved.nexthop.dev === undefined) {
    throw invalidField(context, "nh_info.dev", nhInfo.dev, "the device of nexthop object " + nhid);
  }
  return resolved;
}

export function rejectUnknownKeys(
  context: RouteContext,
  entry: Record<string, unknown>,
  known: ReadonlySet<string>,
  prefix = "",
): void {
  for (const key of Object.keys(entry)) {
    if (key === "encap") {
      // ip prints the encapsulation's dst, src and tos as keys of the route
      // itself, so JSON.parse keeps the tunnel endpoint as the route's dst.
      throw new Error(
        `cannot copy ${context}: it has lightweight tunnel encapsulation (encap ${JSON.stringify(entry.encap)}), ` +
          "which splitroute does not copy, and its dst may be the tunnel endpoint rather than the route's destination. " +
          "Find it with `ip route show table main | grep encap` and move it out of table main.",
      );
    }
    if (!known.has(key)) {
      throw new Error(
        `cannot copy ${context}: ip route JSON has the unsupported field "${prefix}${key}" (${JSON.stringify(entry[key])}), ` +
          "which splitroute does not know how to copy. Move the route out of table main, or check whether the iproute2 version prints a new field.",
      );
    }
  }
}
