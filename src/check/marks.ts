import type { Config } from "../config/types.js";
import { iptablesTools, type IptablesVariant } from "../firewall/iptables.js";
import { hex } from "../firewall/marking.js";
import { IPT_CHAIN_OUTPUT, IPT_CHAIN_PREROUTING, IPT_COMMENT, NFT_TABLE } from "../owner.js";
import type { Family } from "../snapshot/route.js";
import type { System } from "../system/system.js";
import { error, ok, warning, type Finding } from "./report.js";

// Finds firewall rules of other software that write the packet mark or the
// conntrack mark inside splitroute's mask. Such a rule either sets
// splitroute's bits on connections it did not select, or clears them on
// connections it did.

const ALL_BITS = 0xffff_ffff;

/** The effect of one mark statement on the bits of a mark. */
export interface MarkWrite {
  /** Bits the statement may change. */
  touched: number;
  /** Bits the statement sets to 1. */
  set: number;
  /** Whether it copies the other mark (packet to conntrack or back) into `touched`. */
  copies: boolean;
}

const OPERATORS: Record<string, "and" | "or" | "xor"> = { "&": "and", and: "and", "|": "or", or: "or", "^": "xor", xor: "xor" };

/**
 * Reads the expression after `meta mark set` or `ct mark set` in nft's
 * output, such as `0x00000002`, `meta mark | 0x00000004` or
 * `mark and 0xfd`. Returns undefined for an expression it cannot read
 * (a map, a hash), which may write any bit.
 */
export function parseNftMarkWrite(target: "meta" | "ct", expression: string): MarkWrite | undefined {
  const words = expression.trim().split(/\s+/);
  const constant = readNumber(words[0]);
  if (constant !== undefined) {
    return { touched: ALL_BITS, set: constant, copies: false };
  }

  let index = 0;
  let source: "meta" | "ct";
  if (words[0] === "ct" && words[1] === "mark") {
    source = "ct";
    index = 2;
  } else if (words[0] === "meta" && words[1] === "mark") {
    source = "meta";
    index = 2;
  } else if (words[0] === "mark") {
    source = "meta";
    index = 1;
  } else {
    return undefined;
  }

  // `keep` is the bits of the source that survive, and `written` the bits set to 1 or flipped.
  let keep = ALL_BITS;
  let written = 0;
  while (index < words.length) {
    const operator = OPERATORS[words[index]!];
    const operand = readNumber(words[index + 1]);
    if (operator === undefined || operand === undefined) {
      break;
    }
    if (operator === "and") {
      keep &= operand;
      written &= operand;
    } else {
      written |= operand;
    }
    index += 2;
  }

  if (source !== target) {
    // A copy from the other mark replaces every bit of this one.
    return { touched: ALL_BITS, set: written >>> 0, copies: true };
  }
  return { touched: (~keep | written) >>> 0, set: written >>> 0, copies: false };
}

function readNumber(word: string | undefined): number | undefined {
  if (word === undefined || !/^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/.test(word)) {
    return undefined;
  }
  const value = Number(word);
  return value <= ALL_BITS ? value : undefined;
}

/** Describes one mark statement's effect on the mask as a finding, or undefined when it leaves the mask alone. */
function judgeWrite(config: Config, where: string, statement: string, write: MarkWrite | undefined): Finding | undefined {
  const { mask } = config.mark;
  const fix = `set mark.value and mark.mask to bits that no other firewall rule writes, or change that rule to keep bits ${hex(mask)}`;
  if (write === undefined) {
    return warning("mark", `${where} writes a mark with "${statement}", which check cannot read`, `it may set or clear splitroute's bits ${hex(mask)}`, fix);
  }
  if ((write.set & mask) !== 0) {
    return error(
      "mark",
      `${where} sets mark bits ${hex(write.set & mask)} inside splitroute's mask ${hex(mask)} with "${statement}"`,
      `connections that splitroute did not select then carry its mark and take the bypass routes`,
      fix,
    );
  }
  if ((write.touched & mask) !== 0) {
    return warning(
      "mark",
      `${where} ${write.copies ? "copies the whole mark" : "clears or replaces mark bits"} ${hex(write.touched & mask)} inside splitroute's mask ${hex(mask)} with "${statement}"`,
      `a connection may lose splitroute's mark after splitroute set it, and its replies then go into the tunnel`,
      fix,
    );
  }
  return undefined;
}

/**
 * Finds mark statements in `nft list ruleset` output, leaving out
 * splitroute's own table and the tables in `skipped` ("FAMILY NAME").
 */
export function findNftMarkWrites(config: Config, ruleset: string, skipped: ReadonlySet<string> = new Set()): Finding[] {
  const findings: Finding[] = [];
  let table = "";
  let chain = "";
  for (const raw of ruleset.split("\n")) {
    const line = raw.trim();
    const tableHeader = /^table (\S+) (\S+) \{/.exec(line);
    if (tableHeader !== null) {
      table = `${tableHeader[1]} ${tableHeader[2]}`;
      continue;
    }
    const chainHeader = /^chain (\S+) \{/.exec(line);
    if (chainHeader !== null) {
      chain = chainHeader[1]!;
      continue;
    }
    if (table === `inet ${NFT_TABLE}` || skipped.has(table)) {
      continue;
    }
    for (const match of line.matchAll(/\b(?:(meta|ct) )?mark set (.+?)(?=\s+(?:counter|comment|accept|drop|return|jump|goto|log|notrack|meta|ct)\b|$)/g)) {
      const target = match[1] === "ct" ? "ct" : "meta";
      const statement = match[0].trim();
      const finding = judgeWrite(config, `nftables table ${table} chain ${chain}`, statement, parseNftMarkWrite(target, match[2]!));
      if (finding !== undefined) {
        findings.push(finding);
      }
    }
  }
  return findings;
}

// The jumps into splitroute's chains carry its comment.
function isTaggedJump(line: string): boolean {
  const words = line.split(/\s+/);
  return words.some((word, index) => word === "--comment" && words[index + 1] === IPT_COMMENT);
}

/**
 * Reads what a MARK or CONNMARK rule from iptables-save does to its mark.
 * iptables-save prints every MARK and CONNMARK value change as
 * `--set-xmark VALUE/MASK`, which computes (mark & ~MASK) ^ VALUE.
 */
export function parseIptablesMarkWrite(line: string): MarkWrite | undefined {
  const xmark = /--set-xmark (\S+)\/(\S+)/.exec(line);
  if (xmark !== null) {
    const value = readNumber(xmark[1]) ?? ALL_BITS;
    const mask = readNumber(xmark[2]) ?? ALL_BITS;
    return { touched: (mask | value) >>> 0, set: value, copies: false };
  }
  if (/--(save|restore)-mark/.test(line)) {
    // --save-mark writes the ctmask bits of the conntrack mark, and
    // --restore-mark the nfmask bits of the packet mark.
    const nfmask = readNumber(/--nfmask (\S+)/.exec(line)?.[1]) ?? ALL_BITS;
    const ctmask = readNumber(/--ctmask (\S+)/.exec(line)?.[1]) ?? ALL_BITS;
    return { touched: line.includes("--save-mark") ? ctmask : nfmask, set: 0, copies: true };
  }
  return undefined;
}

/** Finds MARK and CONNMARK rules in `iptables-save -t mangle` output, leaving out splitroute's chains and jumps. */
export function findIptablesMarkWrites(config: Config, tool: string, saved: string): Finding[] {
  const findings: Finding[] = [];
  for (const raw of saved.split("\n")) {
    const line = raw.trim();
    const chain = /^-A (\S+) /.exec(line)?.[1];
    if (chain === undefined || chain === IPT_CHAIN_PREROUTING || chain === IPT_CHAIN_OUTPUT || isTaggedJump(line)) {
      continue;
    }
    if (!/-j (MARK|CONNMARK)\b/.test(line)) {
      continue;
    }
    const finding = judgeWrite(config, `${tool} mangle chain ${chain}`, line, parseIptablesMarkWrite(line));
    if (finding !== undefined) {
      findings.push(finding);
    }
  }
  return findings;
}

/**
 * Reads the nftables ruleset and reports mark writes in it, except in the
 * tables in `skipped`. The ruleset is undefined when nft is missing or fails.
 */
export async function checkNftMarks(system: System, config: Config, skipped: ReadonlySet<string>): Promise<{ findings: Finding[]; ruleset?: string }> {
  if (!system.hasTool("nft")) {
    return { findings: [] };
  }
  const result = await system.run(["nft", "list", "ruleset"]);
  if (result.exitCode !== 0) {
    return {
      findings: [
        warning("mark", `cannot read the nftables ruleset: ${result.stderr.trim()}`, `check cannot tell whether another table writes splitroute's mark bits`, `run check as root`),
      ],
    };
  }
  return { findings: findNftMarkWrites(config, result.stdout, skipped), ruleset: result.stdout };
}

/**
 * Reads the mangle table of each iptables variant that has one and reports
 * mark writes. Saving a legacy table that does not exist yet would create it
 * in the namespace, and saving an iptables-nft table may create its base
 * chains, so each is read only when it already exists. Also returns the
 * nftables tables read this way, so that the nft check leaves them out
 * instead of reporting each rule twice.
 */
export async function checkIptablesMarks(system: System, config: Config, families: readonly Family[]): Promise<{ findings: Finding[]; nftTables: Set<string> }> {
  const findings: Finding[] = [];
  const nftTables = new Set<string>();
  for (const family of families) {
    for (const variant of await existingMangleVariants(system, family)) {
      if (variant === "iptables-nft") {
        nftTables.add(family === 4 ? "ip mangle" : "ip6 mangle");
      }
      const tool = iptablesTools(variant, family).save;
      const result = await system.run([tool, "-t", "mangle"]);
      if (result.exitCode !== 0) {
        findings.push(
          warning("mark", `cannot read the mangle table with ${tool}: ${result.stderr.trim()}`, `check cannot tell whether an iptables rule writes splitroute's mark bits`, `run check as root`),
        );
        continue;
      }
      findings.push(...findIptablesMarkWrites(config, tool, result.stdout));
    }
  }
  return { findings, nftTables };
}

async function existingMangleVariants(system: System, family: Family): Promise<IptablesVariant[]> {
  const variants: IptablesVariant[] = [];
  const names = await system.readText(family === 4 ? "/proc/net/ip_tables_names" : "/proc/net/ip6_tables_names");
  const legacy = names?.split("\n").includes("mangle") ?? false;
  const nftTable = system.hasTool("nft") && (await system.run(["nft", "list", "table", family === 4 ? "ip" : "ip6", "mangle"])).exitCode === 0;
  if (legacy && system.hasTool(iptablesTools("iptables-legacy", family).save)) {
    variants.push("iptables-legacy");
  }
  if (nftTable && system.hasTool(iptablesTools("iptables-nft", family).save)) {
    variants.push("iptables-nft");
  }
  // Where only the unsuffixed tools exist, they are whichever variant the
  // distribution built, and one of the two tables exists.
  if (variants.length === 0 && (legacy || nftTable) && system.hasTool(iptablesTools("iptables", family).save)) {
    variants.push("iptables");
  }
  return variants;
}

/** Returns an ok finding when no mark writes were found in what was read. */
export function noMarkWrites(config: Config, findings: readonly Finding[]): Finding[] {
  return findings.some((finding) => finding.area === "mark")
    ? []
    : [ok("mark", `no other rule or firewall reads or writes mark bits ${hex(config.mark.mask)}`)];
}

