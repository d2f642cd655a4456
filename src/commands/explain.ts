import { ConfigError } from "../errors.js";
import { overlaps, parseCidr } from "../config/cidr.js";
import { describeBypass, hex } from "../firewall/marking.js";
import type { Bypass } from "../config/types.js";
import type { Family } from "../snapshot/route.js";
import type { Context } from "./context.js";
import { interfaceExists } from "../observe.js";

/** A flow as the administrator writes it: `tcp 203.0.113.5:51000 -> 192.0.2.10:22 in eth0`. */
export interface Flow {
  protocol: "tcp" | "udp";
  source: { address: string; port: number };
  destination: { address: string; port: number };
  /** The interface an inbound flow arrives on; undefined for locally generated traffic. */
  inbound?: string;
  family: Family;
}

const ENDPOINT = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d{1,5})$/;

/** Parses the words after `explain`; throws a ConfigError naming what is wrong. */
export function parseFlow(words: readonly string[]): Flow {
  const usage = "write the flow as: tcp|udp SOURCE:PORT to DESTINATION:PORT [in IFACE] (or '->' in quotes for 'to'), with IPv6 addresses in brackets";
  const [protocol, source, arrow, destination, keyword, inbound, ...rest] = words;
  if ((protocol !== "tcp" && protocol !== "udp") || (arrow !== "->" && arrow !== "to") || source === undefined || destination === undefined || rest.length > 0) {
    throw new ConfigError(`invalid flow ${JSON.stringify(words.join(" "))}; ${usage}`);
  }
  if (keyword !== undefined && (keyword !== "in" || inbound === undefined || !/^[A-Za-z0-9_.@:+-]{1,15}$/.test(inbound))) {
    throw new ConfigError(`invalid flow ${JSON.stringify(words.join(" "))}; ${usage}`);
  }
  const from = parseEndpoint(source, usage);
  const to = parseEndpoint(destination, usage);
  if (from.family !== to.family) {
    throw new ConfigError(`invalid flow: ${source} and ${destination} are of different address families`);
  }
  return { protocol, source: from, destination: to, inbound, family: from.family };
}

function parseEndpoint(text: string, usage: string): { address: string; port: number; family: Family } {
  const match = ENDPOINT.exec(text);
  const port = Number(match?.[3]);
  if (match === null || port < 1 || port > 65535) {
    throw new ConfigError(`invalid endpoint ${JSON.stringify(text)}; ${usage}`);
  }
  return match[1] !== undefined ? { address: match[1], port, family: 6 } : { address: match[2]!, port, family: 4 };
}

/**
 * Explains what happens to a flow: whether a bypass selects it and which
 * mark it gets, then the kernel's own route lookup (`ip route get`) for where its
 * packets go: the replies of an inbound flow, or the packets of an outgoing one.
 */
export async function explain(context: Context, flow: Flow): Promise<string> {
  const { system, store, config } = context;
  if (flow.inbound !== undefined && !(await interfaceExists(system, flow.inbound))) {
    throw new ConfigError(`interface ${flow.inbound} does not exist in this network namespace; name the interface the flow arrives on (see ip link)`);
  }
  const state = await store.read();
  const mark = state?.mark ?? config.mark;
  const tunnels = state?.tunnels ?? [];
  const lines = [`flow: ${flow.protocol} ${show(flow.source)} -> ${show(flow.destination)}${flow.inbound === undefined ? " (sent by this host)" : ` arriving on ${flow.inbound}`}`];

  const selector = selectingBypass(state?.bypass ?? config.bypass, flow, tunnels);
  if (state === undefined) {
    lines.push("bypass:  not active in this network namespace; no connection is marked");
  } else if (selector === undefined) {
    lines.push(`bypass:  no [bypass.*] section selects it${flow.inbound !== undefined && tunnels.includes(flow.inbound) ? ` (it arrives through the tunnel ${flow.inbound})` : ""}; it keeps the mark it has`);
  } else {
    const condition = selector.condition === undefined ? "" : `, ${selector.condition}`;
    lines.push(`bypass:  selected by [bypass.${selector.bypass.name}] (${describeBypass(selector.bypass)})${condition}; the connection gets mark ${hex(mark.value)}/${hex(mark.mask)}`);
  }

  // For an inbound flow the question is where the replies go: from the local
  // address back to the source, with the mark when the flow is selected.
  const [to, from] = flow.inbound === undefined ? [flow.destination, flow.source] : [flow.source, flow.destination];
  const argv = ["ip", `-${flow.family}`, "-N", "-j", "route", "get", to.address, "from", from.address];
  if (state !== undefined && selector !== undefined) {
    argv.push("mark", hex(mark.value));
  }
  const result = await system.run(argv);
  if (result.exitCode !== 0) {
    // The kernel rejects a "from" address that is not this host's, which is
    // the usual cause for an inbound flow written with another address.
    const hint = flow.inbound === undefined ? "" : `; check that ${from.address} is an address of this host (ip -br address)`;
    lines.push(`route:   ${argv.join(" ")} failed: ${result.stderr.trim()}${hint}`);
    return `${lines.join("\n")}\n`;
  }
  const [route] = JSON.parse(result.stdout || "[]") as Array<{ table?: string; dev?: string; gateway?: string }>;
  const table = route?.table ?? "254";
  const label = table === "254" ? "main" : table === String(state?.table.id) ? `${state?.table.name} (${table}), splitroute's copy` : table;
  const direction = flow.inbound === undefined ? "packets" : "replies";
  lines.push(`route:   ${direction} to ${to.address} use table ${label}: ${route?.gateway === undefined ? "" : `via ${route.gateway} `}dev ${route?.dev ?? "?"}`);
  lines.push(`kernel:  ${argv.join(" ")}`);
  return `${lines.join("\n")}\n`;
}

/**
 * Returns the first section whose selectors all match the flow, and notes
 * the selectors a flow cannot show (the sending user, group or unit), which
 * the output then names as a condition.
 */
function selectingBypass(bypasses: readonly Bypass[], flow: Flow, tunnels: readonly string[]): { bypass: Bypass; condition?: string } | undefined {
  if (flow.inbound !== undefined && tunnels.includes(flow.inbound)) {
    return undefined;
  }
  for (const bypass of bypasses) {
    if (matches(bypass, flow)) {
      const conditions = [
        bypass.uid === undefined ? undefined : `uid ${bypass.uid}`,
        bypass.gid === undefined ? undefined : `gid ${bypass.gid}`,
        bypass.service === undefined ? undefined : `the unit ${bypass.service}`,
      ].filter((condition): condition is string => condition !== undefined);
      return { bypass, condition: conditions.length === 0 ? undefined : `if it is sent by ${conditions.join(" and ")}` };
    }
  }
  return undefined;
}

// The same selectors the firewall renders: inbound sections match flows that
// arrive on an interface, outgoing ones (destination, uid, gid, service)
// flows this host sends, and interface flows forwarded from that interface.
function matches(bypass: Bypass, flow: Flow): boolean {
  const local = bypass.uid !== undefined || bypass.gid !== undefined || bypass.service !== undefined;
  const outgoing = local || (bypass.destination !== undefined && bypass.source === undefined && bypass.interface === undefined);
  if (local && flow.inbound !== undefined) {
    return false;
  }
  if (!outgoing && flow.inbound === undefined) {
    return false;
  }
  if (bypass.interface !== undefined && flow.inbound !== bypass.interface) {
    return false;
  }
  if (bypass.protocol !== undefined && bypass.protocol !== flow.protocol) {
    return false;
  }
  if (bypass.localPort !== undefined && bypass.localPort !== flow.destination.port) {
    return false;
  }
  const remotePort = outgoing || bypass.interface !== undefined ? flow.destination.port : flow.source.port;
  if (bypass.remotePort !== undefined && bypass.remotePort !== remotePort) {
    return false;
  }
  return inRanges(bypass.source, flow.source.address) && inRanges(bypass.destination, flow.destination.address);
}

function inRanges(ranges: readonly string[] | undefined, address: string): boolean {
  if (ranges === undefined) {
    return true;
  }
  const point = parseCidr(address);
  return point !== undefined && ranges.some((range) => {
    const cidr = parseCidr(range);
    return cidr !== undefined && overlaps(cidr, point);
  });
}

function show(endpoint: { address: string; port: number }): string {
  return endpoint.address.includes(":") ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
}
