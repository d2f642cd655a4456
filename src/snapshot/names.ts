// Numbers behind the names that ip prints for route types, protocols,
// scopes, realms and TOS values.
//
// Rendering uses numbers because of a bug in iproute2 6.1: its name lookups
// for protocol, scope, realm and dsfield cache the last name, and a numeric
// value on a later batch line overwrites the cached number but not the name.
// In `ip -batch`, lines with `proto boot`, `proto 200`, `proto boot` give
// the third route protocol 200. Numbers never touch the cache.

import type { RouteType } from "./route.js";

/** Route types by their kernel number (RTN_* in linux/rtnetlink.h), which `ip -N` prints. */
export const ROUTE_TYPE_BY_NUMBER: ReadonlyMap<string, RouteType> = new Map([
  ["1", "unicast"],
  ["2", "local"],
  ["3", "broadcast"],
  ["4", "anycast"],
  ["5", "multicast"],
  ["6", "blackhole"],
  ["7", "unreachable"],
  ["8", "prohibit"],
  ["9", "throw"],
]);

// RTPROT_* in linux/rtnetlink.h, under the names of iproute2's rt_protos.
const PROTOCOL_NUMBERS: ReadonlyMap<string, number> = new Map([
  ["unspec", 0],
  ["redirect", 1],
  ["kernel", 2],
  ["boot", 3],
  ["static", 4],
  ["gated", 8],
  ["ra", 9],
  ["mrt", 10],
  ["zebra", 11],
  ["bird", 12],
  ["dnrouted", 13],
  ["xorp", 14],
  ["ntk", 15],
  ["dhcp", 16],
  ["mrouted", 17],
  ["keepalived", 18],
  ["babel", 42],
  ["openr", 99],
  ["bgp", 186],
  ["isis", 187],
  ["ospf", 188],
  ["rip", 189],
  ["eigrp", 192],
]);

// RT_SCOPE_* in linux/rtnetlink.h, under the names of iproute2's rt_scopes.
const SCOPE_NUMBERS: ReadonlyMap<string, number> = new Map([
  ["global", 0],
  ["site", 200],
  ["link", 253],
  ["host", 254],
  ["nowhere", 255],
]);

// iproute2 names realm 0 "cosmos" and has no other built-in realm names.
const REALM_NUMBERS: ReadonlyMap<string, number> = new Map([["cosmos", 0]]);

// The TOS byte of the DSCP names in iproute2's rt_dsfield, which is the
// DSCP value (RFC 2474 class selectors, RFC 2597 AF, RFC 3246 EF) shifted
// left by 2.
const DSFIELD_NUMBERS: ReadonlyMap<string, number> = new Map([
  ["default", 0x00],
  ["CS1", 0x20],
  ["CS2", 0x40],
  ["CS3", 0x60],
  ["CS4", 0x80],
  ["CS5", 0xa0],
  ["CS6", 0xc0],
  ["CS7", 0xe0],
  ["AF11", 0x28],
  ["AF12", 0x30],
  ["AF13", 0x38],
  ["AF21", 0x48],
  ["AF22", 0x50],
  ["AF23", 0x58],
  ["AF31", 0x68],
  ["AF32", 0x70],
  ["AF33", 0x78],
  ["AF41", 0x88],
  ["AF42", 0x90],
  ["AF43", 0x98],
  ["EF", 0xb8],
]);

// NOTE: a name that a host defines in its own rt_protos.d, rt_scopes,
// rt_realms or rt_dsfield passes through as a name. The iproute2 6.1 cache
// bug can still hit it when the same batch also has an unnamed number for
// that field. Reading the table with `ip -N` avoids names entirely.
function toNumber(value: string, numbers: ReadonlyMap<string, number>): string {
  const number = numbers.get(value);
  return number === undefined ? value : String(number);
}

export function protocolNumber(protocol: string): string {
  return toNumber(protocol, PROTOCOL_NUMBERS);
}

export function scopeNumber(scope: string): string {
  return toNumber(scope, SCOPE_NUMBERS);
}

/** Converts realms in the form `TO` or `FROM/TO`, one part at a time. */
export function realmsNumber(realms: string): string {
  return realms
    .split("/")
    .map((realm) => toNumber(realm, REALM_NUMBERS))
    .join("/");
}

export function tosNumber(tos: string): string {
  const number = DSFIELD_NUMBERS.get(tos);
  return number === undefined ? tos : `0x${number.toString(16).padStart(2, "0")}`;
}
