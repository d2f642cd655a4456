import { NFT_TABLE } from "../owner.js";
import { hex, invert, type MarkingSpec } from "./marking.js";

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

  const selections = spec.bypass.map(
    (bypass) =>
      `\t\t${fromOutside}meta l4proto ${bypass.protocol} th dport ${bypass.localPort} ct direction original ${setConnMark} comment "bypass.${bypass.name}"`,
  );
  return [
    `table inet ${NFT_TABLE} {`,
    `\tchain prerouting {`,
    `\t\ttype filter hook prerouting priority mangle; policy accept;`,
    ...selections,
    // The packet mark on inbound packets matters for the reverse-path check
    // (with src_valid_mark=1) and for anything later that matches on it.
    `\t\t${restorePacketMark}`,
    `\t}`,
    `\tchain output {`,
    `\t\ttype route hook output priority mangle; policy accept;`,
    `\t\t${restorePacketMark}`,
    `\t}`,
    `}`,
  ].join("\n");
}

/**
 * Returns an nft script that replaces our table in one transaction: the empty
 * `table` line creates it if missing, so the `delete` never fails, and the
 * kernel applies all three or none.
 */
export function nftReplaceScript(spec: MarkingSpec): string {
  return `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n${renderNftTable(spec)}\n`;
}

/** Returns an nft script that deletes our table, whether or not it exists. */
export function nftRemoveScript(): string {
  return `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n`;
}
