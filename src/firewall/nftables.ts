import { NFT_TABLE } from "../owner.js";
import { hasOutputSelections, hex, invert, nftCgroupPath, selectionsOf, type MarkingSpec, type Selection } from "./marking.js";

// One `inet` table of our own contains everything, so it covers IPv4 and IPv6
// and removal is a single `delete table`. Priority mangle (-150) runs before
// the routing decision, and the output chain is of type `route` so that the
// kernel routes a locally generated packet again after we change its mark.

/** Renders our whole table. Every mark operation keeps bits outside the mask. */
export function renderNftTable(spec: MarkingSpec): string {
  const { value, mask } = spec.mark;
  const keep = hex(invert(mask));
  const setConnMark = `ct mark set ct mark and ${keep} or ${hex(value)}`;
  const restorePacketMark = `ct mark and ${hex(mask)} == ${hex(value)} meta mark set meta mark and ${keep} or ${hex(value)}`;
  const fromOutside =
    spec.tunnels.length > 0 ? `iifname != { ${spec.tunnels.map((dev) => `"${dev}"`).join(", ")} } ` : "";

  const selections = spec.bypass.flatMap(selectionsOf);
  const render = (selection: Selection) => `${matchSelection(selection, spec.cgroupMount)}ct direction original ${setConnMark} comment "bypass.${selection.bypass}"`;
  const prerouting = selections.filter((selection) => selection.hook === "prerouting").map((selection) => `\t\t${fromOutside}${render(selection)}`);
  const output = selections.filter((selection) => selection.hook === "output").map((selection) => `\t\t${render(selection)}`);
  return [
    `table inet ${NFT_TABLE} {`,
    `\tchain prerouting {`,
    `\t\ttype filter hook prerouting priority mangle; policy accept;`,
    ...prerouting,
    // The packet mark on inbound packets matters for the reverse-path check
    // (with src_valid_mark=1) and for anything later that matches on it.
    `\t\t${restorePacketMark}`,
    `\t}`,
    `\tchain output {`,
    `\t\ttype route hook output priority mangle; policy accept;`,
    ...output,
    `\t\t${restorePacketMark}`,
    `\t}`,
    ...(hasOutputSelections(spec) ? renderSourceNat(spec) : []),
    `}`,
  ].join("\n");
}

/** Renders the matches of one selection, each followed by a space. */
function matchSelection(selection: Selection, cgroupMount: string | undefined): string {
  const words: string[] = [];
  if (selection.inInterface !== undefined) words.push(`iifname "${selection.inInterface}"`);
  if (selection.protocol !== undefined) words.push(`meta l4proto ${selection.protocol}`);
  if (selection.destinationPort !== undefined) words.push(`th dport ${selection.destinationPort}`);
  if (selection.sourcePort !== undefined) words.push(`th sport ${selection.sourcePort}`);
  const ip = selection.family === 6 ? "ip6" : "ip";
  if (selection.sources !== undefined) words.push(`${ip} saddr ${nftSet(selection.sources)}`);
  if (selection.destinations !== undefined) words.push(`${ip} daddr ${nftSet(selection.destinations)}`);
  if (selection.uid !== undefined) words.push(`meta skuid ${selection.uid}`);
  if (selection.gid !== undefined) words.push(`meta skgid ${selection.gid}`);
  // Level 2 is the depth of "system.slice/NAME.service" below the root of
  // the v2 hierarchy. nft turns the path into the cgroup's id when it loads
  // the rule.
  if (selection.cgroupPath !== undefined) words.push(`socket cgroupv2 level 2 "${nftCgroupPath(selection.cgroupPath, cgroupMount)}"`);
  return words.map((word) => `${word} `).join("");
}

function nftSet(values: readonly string[]): string {
  return values.length === 1 ? values[0]! : `{ ${values.join(", ")} }`;
}

/**
 * Renders the chain that gives connections selected in output the uplink's
 * address. A process's socket picks its source address before the output
 * chain runs, from the VPN's routes, so without this the packet would leave
 * the uplink with the tunnel's address, and no reply would come back. Only
 * connections from a local address that does not belong to the outgoing
 * interface are changed, which leaves forwarded connections to the host's
 * own NAT rules.
 */
function renderSourceNat(spec: MarkingSpec): string[] {
  const { value, mask } = spec.mark;
  const notTunnel = spec.tunnels.length > 0 ? `oifname != { ${spec.tunnels.map((dev) => `"${dev}"`).join(", ")} } ` : "";
  return [
    `\tchain postrouting {`,
    `\t\ttype nat hook postrouting priority srcnat; policy accept;`,
    `\t\t${notTunnel}ct direction original ct mark and ${hex(mask)} == ${hex(value)} fib saddr type local fib saddr . oif type != local masquerade`,
    `\t}`,
  ];
}

/**
 * Returns an nft script that replaces our table in one transaction: the empty
 * `table` line creates it if missing, so the `delete` never fails, and the
 * kernel applies all three or none. Where the caller knows that the table
 * does not exist, the script only creates it: a transaction that deletes a
 * table took 10-16 ms with nft 1.0.6 on Linux 6.18, against about 4 ms for
 * one that only creates.
 */
export function nftReplaceScript(spec: MarkingSpec, tableExists = true): string {
  if (!tableExists) {
    return `${renderNftTable(spec)}\n`;
  }
  return `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n${renderNftTable(spec)}\n`;
}

/** Returns whether `nft list ruleset` output contains our table. */
export function hasNftTable(ruleset: string): boolean {
  return ruleset.split("\n").includes(`table inet ${NFT_TABLE} {`);
}

/** Returns an nft script that deletes our table, whether or not it exists. */
export function nftRemoveScript(): string {
  return `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n`;
}
