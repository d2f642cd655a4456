// Parsing of `ip route add|append` arguments into the JSON object that
// `ip -d -j route show` (iproute2 6.1) prints for the route, so that the
// project's own parser reads back what was written.

import { isIP } from "node:net";
import { NUMERIC_METRICS as SNAPSHOT_NUMERIC_METRICS } from "../../src/snapshot/route.js";

import { ToolFailure, Unsupported, readUint32 } from "./result.js";

export type Family = 4 | 6;
export type RouteJson = Record<string, unknown>;

const ROUTE_TYPES = new Set([
  "unicast",
  "local",
  "broadcast",
  "anycast",
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
]);
const REJECT_TYPES = new Set(["blackhole", "unreachable", "prohibit", "throw"]);
// RTN_* numbers of the route types, which `ip -N` prints.
const TYPE_NUMBERS = new Map([
  ["unicast", 1],
  ["local", 2],
  ["broadcast", 3],
  ["anycast", 4],
  ["multicast", 5],
  ["blackhole", 6],
  ["unreachable", 7],
  ["prohibit", 8],
  ["throw", 9],
]);

const NUMERIC_METRICS = new Set<string>(SNAPSHOT_NUMERIC_METRICS);
// ip reads these as times: "10ms", "2s", or a bare number of seconds. It
// prints them in milliseconds.
const TIME_METRICS = new Set(["rtt", "rttvar", "rto_min"]);

const TABLE_NAMES: Record<string, number> = { default: 253, main: 254, local: 255 };

// Names that ip 6.1 prints for numbers, from its rt_protos, rt_scopes,
// rt_realms and rt_dsfield files. ip accepts a name or a number and prints
// the name when there is one.
const PROTOCOL_NAMES = new Map([
  [0, "unspec"],
  [1, "redirect"],
  [2, "kernel"],
  [3, "boot"],
  [4, "static"],
  [8, "gated"],
  [9, "ra"],
  [10, "mrt"],
  [11, "zebra"],
  [12, "bird"],
  [13, "dnrouted"],
  [14, "xorp"],
  [15, "ntk"],
  [16, "dhcp"],
  [18, "keepalived"],
  [42, "babel"],
  [99, "openr"],
  [186, "bgp"],
  [187, "isis"],
  [188, "ospf"],
  [189, "rip"],
  [192, "eigrp"],
]);
const SCOPE_NAMES = new Map([
  [0, "global"],
  [200, "site"],
  [253, "link"],
  [254, "host"],
  [255, "nowhere"],
]);
const REALM_NAMES = new Map([[0, "cosmos"]]);
const DSFIELD_NAMES = new Map([
  [0x00, "default"],
  [0x20, "CS1"],
  [0x40, "CS2"],
  [0x60, "CS3"],
  [0x80, "CS4"],
  [0xa0, "CS5"],
  [0xc0, "CS6"],
  [0xe0, "CS7"],
  [0x28, "AF11"],
  [0x30, "AF12"],
  [0x38, "AF13"],
  [0x48, "AF21"],
  [0x50, "AF22"],
  [0x58, "AF23"],
  [0x68, "AF31"],
  [0x70, "AF32"],
  [0x78, "AF33"],
  [0x88, "AF41"],
  [0x90, "AF42"],
  [0x98, "AF43"],
  [0xb8, "EF"],
]);
export const MAIN_TABLE = 254;

/**
 * Reads a table given as `main`, `local`, `default` or a number, as ip accepts
 * it. `label` is the word ip 6.1 puts in its error: `"table"` when adding,
 * `table id` in `route show`.
 */
export function readTableId(text: string, label = '"table"'): number {
  const named = TABLE_NAMES[text];
  const id = named ?? readUint32(text);
  if (id === undefined || id === 0) {
    throw new ToolFailure(1, `Error: argument "${text}" is wrong: ${label} value is invalid\n`);
  }
  return id;
}

export interface RouteAddition {
  table: number;
  route: RouteJson;
}

interface Path {
  gateway?: string | { family: string; host: string };
  dev?: string;
  weight?: number;
  onlink: boolean;
  flow?: RouteJson;
}

/**
 * Parses the words after `ip route add` or `ip route append`. Validation that
 * the kernel does (devices exist, address families match) fails with ip's
 * message. Options the fake does not model raise Unsupported.
 */
export function parseRouteAddition(family: Family, words: readonly string[], hasDevice: (name: string) => boolean): RouteAddition {
  let index = 0;
  const next = (): string => {
    const word = words[index++];
    if (word === undefined) {
      throw new ToolFailure(1, 'Command line is not complete. Try option "help"\n');
    }
    return word;
  };

  let type = "unicast";
  let dst: string | undefined;
  const route: { [field: string]: unknown } = {};
  const path: Path = { onlink: false };
  const metrics: RouteJson = {};
  const nexthops: Path[] = [];
  let table = MAIN_TABLE;

  // Like ip, the destination is the first word that is not an option, and
  // a route type may come right before it.
  const readDestination = (word: string): void => {
    if (dst !== undefined) {
      throw new ToolFailure(1, `Error: either "to" is duplicate, or "${word}" is a garbage.\n`);
    }
    if (word === "nat") {
      throw new Unsupported("route type nat");
    }
    if (ROUTE_TYPES.has(word)) {
      type = word;
      word = next();
    }
    dst = readPrefix(family, word);
  };

  while (index < words.length) {
    const word = next();
    if (word === "nexthop") {
      nexthops.push(readNexthop(family, words, index, hasDevice));
      while (index < words.length && words[index] !== "nexthop") {
        index++;
      }
      continue;
    }
    if (nexthops.length > 0) {
      throw new ToolFailure(1, `Error: either "to" is duplicate, or "${word}" is a garbage.\n`);
    }
    switch (word) {
      case "to":
        readDestination(next());
        break;
      case "from":
        route.from = readPrefix(family, next());
        break;
      case "tos":
      case "dsfield":
        route.tos = readNamed("tos", next(), DSFIELD_NAMES, 0xff, (value) => `0x${value.toString(16).padStart(2, "0")}`);
        break;
      case "via":
        path.gateway = readGateway(family, next, words[index]);
        break;
      case "dev":
      case "oif":
        path.dev = readDevice(next(), hasDevice);
        break;
      case "onlink":
        path.onlink = true;
        break;
      case "proto":
      case "protocol":
        route.protocol = readNamed("protocol", next(), PROTOCOL_NAMES, 0xff);
        break;
      case "scope":
        route.scope = readNamed("scope", next(), SCOPE_NAMES, 0xff);
        break;
      case "src":
        route.prefsrc = readAddress(family, next());
        break;
      case "metric":
      case "priority":
      case "preference":
        route.metric = readNumber("metric", next());
        break;
      case "pref":
        route.pref = readPreference(family, next());
        break;
      case "realms":
        route.flow = readRealms(next());
        break;
      case "table":
        table = readTableId(next());
        break;
      case "features":
        if (next() !== "ecn") {
          throw new Unsupported(`route features other than ecn in "${words.join(" ")}"`);
        }
        metrics.ecn = null;
        break;
      case "congctl":
        metrics.congestion = next();
        break;
      default:
        if (NUMERIC_METRICS.has(word)) {
          metrics[word] = readMetric(word, next());
        } else if (dst === undefined) {
          readDestination(word);
        } else {
          throw new Unsupported(`route option "${word}" in "${words.join(" ")}"`);
        }
    }
  }
  if (dst === undefined) {
    throw new ToolFailure(1, 'Command line is not complete. Try option "help"\n');
  }

  return { table, route: buildRoute(family, type, dst, route, path, nexthops, metrics) };
}

// Builds the object in the field order of ip 6.1's JSON output.
function buildRoute(
  family: Family,
  type: string,
  dst: string,
  options: RouteJson,
  path: Path,
  nexthops: Path[],
  metrics: RouteJson,
): RouteJson {
  // The kernel stores a multipath route with one path as a plain route.
  const single = nexthops.length === 1 ? nexthops[0]! : path;
  const multipath = nexthops.length >= 2;
  if (!REJECT_TYPES.has(type) && !multipath && single.dev === undefined) {
    throw new Unsupported(`a ${type} route without dev (the kernel would pick the device from the gateway)`);
  }

  const route: RouteJson = { type, dst };
  copyField(options, route, "from");
  copyField(options, route, "tos");
  if (!multipath) {
    if (single.gateway !== undefined) {
      route[typeof single.gateway === "string" ? "gateway" : "via"] = single.gateway;
    }
    if (single.dev !== undefined) {
      route.dev = single.dev;
    } else if (family === 6 && REJECT_TYPES.has(type)) {
      route.dev = "lo";
    }
  }
  route.protocol = options.protocol ?? "boot";
  route.scope = family === 6 ? "global" : (options.scope ?? defaultScope(type, single.gateway !== undefined || multipath));
  copyField(options, route, "prefsrc");
  if (family === 6) {
    // The kernel gives an IPv6 route added without a metric the user metric 1024.
    route.metric = options.metric ?? 1024;
  } else if (options.metric !== undefined && options.metric !== 0) {
    route.metric = options.metric;
  }
  route.flags = !multipath && single.onlink ? ["onlink"] : [];
  if (family === 6) {
    route.pref = options.pref ?? "medium";
  }
  copyField(options, route, "flow");
  if (Object.keys(metrics).length > 0) {
    route.metrics = [metrics];
  }
  if (multipath) {
    route.nexthops = nexthops.map(nexthopJson);
  }
  return route;
}

function copyField(from: RouteJson, to: RouteJson, field: string): void {
  if (from[field] !== undefined) {
    to[field] = from[field];
  }
}

function nexthopJson(path: Path): RouteJson {
  const json: RouteJson = {};
  if (path.gateway !== undefined) {
    json[typeof path.gateway === "string" ? "gateway" : "via"] = path.gateway;
  }
  if (path.dev !== undefined) {
    json.dev = path.dev;
  }
  json.weight = path.weight ?? 1;
  json.flags = path.onlink ? ["onlink"] : [];
  if (path.flow !== undefined) {
    json.flow = path.flow;
  }
  return json;
}

// iproute2's default scope when none is given: host for local routes, link
// for broadcast, anycast, multicast and unicast routes without a gateway,
// global for everything else.
function defaultScope(type: string, hasGateway: boolean): string {
  if (type === "local") {
    return "host";
  }
  if (type === "broadcast" || type === "anycast" || type === "multicast") {
    return "link";
  }
  if (type === "unicast" && !hasGateway) {
    return "link";
  }
  return "global";
}

function readNexthop(family: Family, words: readonly string[], start: number, hasDevice: (name: string) => boolean): Path {
  const path: Path = { onlink: false };
  let index = start;
  const next = (): string => {
    const word = words[index++];
    if (word === undefined) {
      throw new ToolFailure(1, 'Command line is not complete. Try option "help"\n');
    }
    return word;
  };
  while (index < words.length && words[index] !== "nexthop") {
    const word = next();
    switch (word) {
      case "via":
        path.gateway = readGateway(family, next, words[index]);
        break;
      case "dev":
        path.dev = readDevice(next(), hasDevice);
        break;
      case "weight": {
        const weight = readNumber("weight", next());
        if (weight < 1 || weight > 256) {
          throw new ToolFailure(1, `Error: argument "${weight}" is wrong: "weight" is invalid\n`);
        }
        path.weight = weight;
        break;
      }
      case "onlink":
        path.onlink = true;
        break;
      case "realms":
        path.flow = readRealms(next());
        break;
      default:
        throw new ToolFailure(1, `Error: either "to" is duplicate, or "${word}" is a garbage.\n`);
    }
  }
  return path;
}

function readGateway(family: Family, next: () => string, peek: string | undefined): string | { family: string; host: string } {
  if (peek === "inet" || peek === "inet6") {
    const gatewayFamily = next();
    const host = next();
    if (isIP(host) !== (gatewayFamily === "inet" ? 4 : 6)) {
      throw new ToolFailure(1, `Error: ${gatewayFamily} address is expected rather than "${host}".\n`);
    }
    // ip prints `gateway` when the gateway has the route's family, `via` otherwise.
    return (gatewayFamily === "inet6") === (family === 6) ? host : { family: gatewayFamily, host };
  }
  return readAddress(family, next());
}

function readAddress(family: Family, text: string): string {
  if (isIP(text) !== family) {
    throw new ToolFailure(1, `Error: ${family === 4 ? "inet" : "inet6"} address is expected rather than "${text}".\n`);
  }
  return text;
}

/** Reads a prefix and returns it as ip prints it: "default", a bare host address, or ADDRESS/LENGTH. */
export function readPrefix(family: Family, text: string): string {
  if (text === "default" || text === "all") {
    return "default";
  }
  const [address = "", length, ...extra] = text.split("/");
  const maxLength = family === 4 ? 32 : 128;
  const prefixLength = length === undefined ? maxLength : Number(length);
  const validLength = length === undefined || (/^[0-9]{1,3}$/.test(length) && prefixLength <= maxLength);
  if (isIP(address) !== family || !validLength || extra.length > 0) {
    throw new ToolFailure(1, `Error: ${family === 4 ? "inet" : "inet6"} prefix is expected rather than "${text}".\n`);
  }
  if (family === 4 && hasHostBits(address, prefixLength)) {
    throw new ToolFailure(2, "Error: Invalid prefix for given prefix length.\n");
  }
  if (prefixLength === 0) {
    return "default";
  }
  return prefixLength === maxLength ? address : `${address}/${prefixLength}`;
}

function hasHostBits(address: string, prefixLength: number): boolean {
  const value = address.split(".").reduce((sum, octet) => sum * 256 + Number(octet), 0);
  const hostBits = 2 ** (32 - prefixLength);
  return value % hostBits !== 0;
}

function readDevice(name: string, hasDevice: (name: string) => boolean): string {
  if (!hasDevice(name)) {
    throw new ToolFailure(1, `Cannot find device "${name}"\n`);
  }
  return name;
}

function readNumber(field: string, text: string): number {
  const value = readUint32(text);
  if (value === undefined) {
    throw new ToolFailure(1, `Error: argument "${text}" is wrong: "${field}" value is invalid\n`);
  }
  return value;
}

function readMetric(name: string, text: string): number {
  if (!TIME_METRICS.has(name)) {
    return readNumber(name, text);
  }
  const match = /^([0-9]+)(ms|s)?$/.exec(text);
  if (match === null) {
    throw new ToolFailure(1, `Error: argument "${text}" is wrong: "${name}" value is invalid\n`);
  }
  const amount = Number(match[1]);
  return match[2] === "ms" ? amount : amount * 1000;
}

function readPreference(family: Family, text: string): string {
  if (family !== 6 || !["low", "medium", "high"].includes(text)) {
    throw new ToolFailure(1, `Error: argument "${text}" is wrong: "pref" value is invalid\n`);
  }
  return text;
}

function readRealms(text: string): RouteJson {
  const [first, second, ...extra] = text.split("/");
  if (first === undefined || extra.length > 0) {
    throw new ToolFailure(1, `Error: argument "${text}" is wrong: "realms" value is invalid\n`);
  }
  const realm = (part: string): string => readNamed("realms", part, REALM_NAMES, 0xffff);
  return second === undefined ? { to: realm(first) } : { from: realm(first), to: realm(second) };
}

/**
 * Reads a value that ip accepts as a name or a number up to `max`, and
 * returns it as ip prints it: the name when the number has one.
 */
function readNamed(
  field: string,
  text: string,
  names: ReadonlyMap<number, string>,
  max: number,
  formatNumber: (value: number) => string = String,
): string {
  const named = [...names].find(([, name]) => name === text);
  const value = named?.[0] ?? readUint32(text);
  if (value === undefined || value > max) {
    throw new ToolFailure(1, `Error: argument "${text}" is wrong: "${field}" value is invalid\n`);
  }
  return names.get(value) ?? formatNumber(value);
}

/** Returns a stored route as `ip -N` prints it: type, protocol, scope, TOS and realms as numbers. */
export function numericRoute(route: RouteJson): RouteJson {
  const printed: RouteJson = { ...route };
  if (typeof route.type === "string") printed.type = String(TYPE_NUMBERS.get(route.type));
  if (typeof route.protocol === "string") printed.protocol = nameToNumber(route.protocol, PROTOCOL_NAMES);
  if (typeof route.scope === "string") printed.scope = nameToNumber(route.scope, SCOPE_NAMES);
  if (typeof route.tos === "string") {
    const tos = Number(nameToNumber(route.tos, DSFIELD_NAMES));
    printed.tos = `0x${tos.toString(16).padStart(2, "0")}`;
  }
  if (route.flow !== undefined) printed.flow = numericFlow(route.flow as RouteJson);
  if (Array.isArray(route.nexthops)) {
    printed.nexthops = route.nexthops.map((nexthop: RouteJson) =>
      nexthop.flow === undefined ? nexthop : { ...nexthop, flow: numericFlow(nexthop.flow as RouteJson) },
    );
  }
  return printed;
}

function numericFlow(flow: RouteJson): RouteJson {
  const printed: RouteJson = {};
  for (const [key, realm] of Object.entries(flow)) {
    printed[key] = nameToNumber(String(realm), REALM_NAMES);
  }
  return printed;
}

function nameToNumber(text: string, names: ReadonlyMap<number, string>): string {
  const named = [...names].find(([, name]) => name === text);
  return named === undefined ? text : String(named[0]);
}
