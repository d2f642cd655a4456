import { IPT_CHAIN_OUTPUT, IPT_CHAIN_POSTROUTING, IPT_CHAIN_PREROUTING, IPT_COMMENT } from "../owner.js";
import { hasOutputSelections, hex, selectionsOf, type MarkingSpec, type Selection } from "./marking.js";

// The marking lives in two chains of our own in the mangle table, and the
// source NAT for connections selected in OUTPUT in one chain of our own in
// the nat table. Each built-in chain reaches ours through one jump tagged
// with our comment, inserted first so that an earlier ACCEPT in that table
// cannot skip our rules.

/** The tools of one iptables variant for one family. */
export interface IptablesTools {
  save: string;
  restore: string;
}

export type IptablesVariant = "iptables" | "iptables-nft" | "iptables-legacy";

export function iptablesTools(variant: IptablesVariant, family: 4 | 6): IptablesTools {
  const base = family === 4 ? variant : variant.replace(/^iptables/, "ip6tables");
  return { save: `${base}-save`, restore: `${base}-restore` };
}

/** The iptables tables that hold our chains. */
export type IptablesTable = "mangle" | "nat";

/** Our chains and jumps in one table as `iptables-save -t TABLE` shows them, and the chains others use. */
export interface IptablesTableObserved {
  chains: string[];
  /** Our tagged jumps as `-A CHAIN ...` lines, exactly as iptables-save printed them. */
  jumps: string[];
  /** Chains that hold something besides ours: other rules, a policy other than ACCEPT, or other user chains. */
  busyChains: string[];
}

/** Our objects in both tables of one family. */
export interface IptablesObserved {
  mangle: IptablesTableObserved;
  nat: IptablesTableObserved;
}

const NOTHING_IN_TABLE: IptablesTableObserved = { chains: [], jumps: [], busyChains: [] };

/** The observation of a family that has none of our chains or jumps. */
export const NOTHING_OBSERVED: IptablesObserved = { mangle: NOTHING_IN_TABLE, nat: NOTHING_IN_TABLE };

/** Each built-in chain that jumps to one of ours, by table. */
const JUMPS: Record<IptablesTable, ReadonlyArray<[builtin: string, chain: string]>> = {
  mangle: [
    ["PREROUTING", IPT_CHAIN_PREROUTING],
    ["OUTPUT", IPT_CHAIN_OUTPUT],
  ],
  nat: [["POSTROUTING", IPT_CHAIN_POSTROUTING]],
};

/** Reads our chains and tagged jumps from `iptables-save -t TABLE` output. */
export function parseIptablesSave(text: string, table: IptablesTable): IptablesTableObserved {
  const ours = new Set(JUMPS[table].map(([, chain]) => chain));
  const chains: string[] = [];
  const jumps: string[] = [];
  const busy = new Set<string>();
  for (const line of text.split("\n")) {
    const declaration = /^:(\S+) (\S+)/.exec(line);
    if (declaration !== null) {
      const [, chain = "", policy] = declaration;
      if (ours.has(chain)) {
        chains.push(chain);
      } else if (!BUILTIN_CHAINS.has(chain) || policy !== "ACCEPT") {
        busy.add(chain);
      }
    }
    if (line.startsWith("-A ")) {
      const chain = line.split(" ")[1] ?? "";
      if (isTagged(line) && BUILTIN_CHAINS.has(chain)) {
        jumps.push(line.trim());
      } else if (!ours.has(chain)) {
        busy.add(chain);
      }
    }
  }
  return { chains, jumps, busyChains: [...busy].sort() };
}

const BUILTIN_CHAINS = new Set(["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]);

// iptables-save prints a comment without spaces unquoted and one with spaces
// in double quotes; ours has none, so matching the bare token is exact.
function isTagged(line: string): boolean {
  const tokens = line.trim().split(/\s+/);
  return tokens.some((token, index) => token === "--comment" && tokens[index + 1] === IPT_COMMENT);
}

/**
 * Renders iptables-restore --noflush input that (re)creates our chains with
 * the rules of `spec` and adds the tagged jumps that are missing. Declaring a
 * chain that exists flushes it, so repeating this leaves one copy. The nat
 * chain exists only while some section selects in OUTPUT. Without one, the
 * input deletes the nat chain and jump of ours that `observed` lists.
 */
export function renderIptablesApply(spec: MarkingSpec, observed: IptablesObserved, family: 4 | 6 = 4): string {
  const nat = hasOutputSelections(spec) ? renderSourceNat(spec, observed.nat) : renderTableRemove("nat", observed.nat);
  return [...renderMarking(spec, observed.mangle, family), ...nat, ""].join("\n");
}

/**
 * Renders iptables-restore --noflush input that deletes every tagged jump as
 * iptables-save printed it, then our chains, in both tables. Returns
 * undefined when nothing of ours exists.
 */
export function renderIptablesRemove(observed: IptablesObserved): string | undefined {
  const lines = [...renderTableRemove("mangle", observed.mangle), ...renderTableRemove("nat", observed.nat)];
  return lines.length === 0 ? undefined : [...lines, ""].join("\n");
}

/** Renders the mangle table block that marks the selected connections of one family. */
function renderMarking(spec: MarkingSpec, observed: IptablesTableObserved, family: 4 | 6): string[] {
  const markArgs = markArgsOf(spec);
  const lines = ["*mangle", `:${IPT_CHAIN_PREROUTING} - [0:0]`, `:${IPT_CHAIN_OUTPUT} - [0:0]`];

  for (const tunnel of spec.tunnels) {
    lines.push(`-A ${IPT_CHAIN_PREROUTING} -i ${tunnel} -j RETURN`);
  }
  // A rule that names addresses of the other family has no place in this
  // family's table, because leaving the addresses out would select all.
  const selections = spec.bypass.flatMap(selectionsOf).filter((selection) => selection.family === undefined || selection.family === family);
  for (const selection of selections) {
    const chain = selection.hook === "prerouting" ? IPT_CHAIN_PREROUTING : IPT_CHAIN_OUTPUT;
    // One rule per address pair, as iptables-restore would expand a list.
    for (const source of selection.sources ?? [undefined]) {
      for (const destination of selection.destinations ?? [undefined]) {
        const matches = iptablesMatches(selection, source, destination);
        lines.push(
          `-A ${chain} ${matches}-m conntrack --ctdir ORIGINAL -m comment --comment bypass.${selection.bypass} -j CONNMARK --set-xmark ${markArgs}`,
        );
      }
    }
  }
  for (const chain of [IPT_CHAIN_PREROUTING, IPT_CHAIN_OUTPUT]) {
    lines.push(`-A ${chain} -m connmark --mark ${markArgs} -j MARK --set-xmark ${markArgs}`);
  }
  lines.push(...renderMissingJumps("mangle", observed), "COMMIT");
  return lines;
}

/**
 * Renders the nat table block that gives connections selected in OUTPUT the
 * uplink's address, like the nftables backend's postrouting chain. A
 * process's socket picks its source address from the VPN's routes before
 * OUTPUT marks the connection, so without this the packet would leave the
 * uplink with the tunnel's address, and no reply would come back. Only a
 * local source address that does not belong to the outgoing interface is
 * changed, which leaves forwarded connections to the host's own NAT rules.
 */
function renderSourceNat(spec: MarkingSpec, observed: IptablesTableObserved): string[] {
  const lines = ["*nat", `:${IPT_CHAIN_POSTROUTING} - [0:0]`];
  for (const tunnel of spec.tunnels) {
    lines.push(`-A ${IPT_CHAIN_POSTROUTING} -o ${tunnel} -j RETURN`);
  }
  // --limit-iface-out makes addrtype ask whether the source address belongs
  // to the outgoing interface rather than to the host.
  lines.push(
    `-A ${IPT_CHAIN_POSTROUTING} -m conntrack --ctdir ORIGINAL -m connmark --mark ${markArgsOf(spec)} ` +
      "-m addrtype --src-type LOCAL -m addrtype ! --src-type LOCAL --limit-iface-out -j MASQUERADE",
  );
  lines.push(...renderMissingJumps("nat", observed), "COMMIT");
  return lines;
}

function markArgsOf(spec: MarkingSpec): string {
  return `${hex(spec.mark.value)}/${hex(spec.mark.mask)}`;
}

/** Renders the tagged jumps into our chains of `table` that `observed` lacks. */
function renderMissingJumps(table: IptablesTable, observed: IptablesTableObserved): string[] {
  return JUMPS[table]
    .filter(([builtin]) => !observed.jumps.some((jump) => jump.startsWith(`-A ${builtin} `)))
    .map(([builtin, chain]) => `-I ${builtin} 1 -m comment --comment ${IPT_COMMENT} -j ${chain}`);
}

/** Renders the block that deletes our jumps and chains in one table, or nothing when none exist. */
function renderTableRemove(table: IptablesTable, observed: IptablesTableObserved): string[] {
  if (observed.jumps.length === 0 && observed.chains.length === 0) {
    return [];
  }
  const lines = [`*${table}`];
  for (const jump of observed.jumps) {
    lines.push(jump.replace(/^-A /, "-D "));
  }
  for (const chain of observed.chains) {
    lines.push(`-F ${chain}`, `-X ${chain}`);
  }
  lines.push("COMMIT");
  return lines;
}

/** Renders the matches of one selection with one source and destination, each followed by a space. */
function iptablesMatches(selection: Selection, source: string | undefined, destination: string | undefined): string {
  const words: string[] = [];
  if (selection.inInterface !== undefined) words.push(`-i ${selection.inInterface}`);
  if (source !== undefined) words.push(`-s ${source}`);
  if (destination !== undefined) words.push(`-d ${destination}`);
  if (selection.protocol !== undefined) {
    words.push(`-p ${selection.protocol}`);
    const ports: string[] = [];
    if (selection.sourcePort !== undefined) ports.push(`--sport ${selection.sourcePort}`);
    if (selection.destinationPort !== undefined) ports.push(`--dport ${selection.destinationPort}`);
    if (ports.length > 0) words.push(`-m ${selection.protocol} ${ports.join(" ")}`);
  }
  const owner: string[] = [];
  if (selection.uid !== undefined) owner.push(`--uid-owner ${selection.uid}`);
  if (selection.gid !== undefined) owner.push(`--gid-owner ${selection.gid}`);
  if (owner.length > 0) words.push(`-m owner ${owner.join(" ")}`);
  // The kernel resolves the path against the cgroup v2 hierarchy when the
  // rule is loaded, wherever that hierarchy is mounted.
  if (selection.cgroupPath !== undefined) words.push(`-m cgroup --path ${selection.cgroupPath}`);
  return words.map((word) => `${word} `).join("");
}
