// The iptables save and restore tools of the fake host, for the mangle
// table only. Each variant (iptables, iptables-nft, iptables-legacy) and
// family has a table of its own.
// NOTE: on a real host `iptables` is usually a link to one of the other two,
// so it shares that variant's rules. The fake keeps the three apart.

import type { CommandResult } from "../../src/system/system.js";
import { ToolFailure, Unsupported, splitWords, succeed } from "./result.js";

const BUILTIN_CHAINS = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
const POLICIES = new Set(["ACCEPT", "DROP"]);
const TARGETS = new Set([
  "ACCEPT",
  "DROP",
  "RETURN",
  "QUEUE",
  "MARK",
  "CONNMARK",
  "CLASSIFY",
  "DSCP",
  "TOS",
  "TTL",
  "HL",
  "TCPMSS",
  "TPROXY",
  "TEE",
  "LOG",
  "NFLOG",
  "NFQUEUE",
  "CHECKSUM",
  "TRACE",
]);
const VARIANTS = ["iptables", "iptables-nft", "iptables-legacy"];

// Dates in the header and footer are fixed so that output is stable.
const SAVED_AT = "Thu Jan  1 00:00:00 1970";

interface Chain {
  /** ACCEPT or DROP for a built-in chain, "-" for a user chain. */
  policy: string;
  /** Rules without the leading `-A CHAIN`, words joined by single spaces. */
  rules: string[];
}

/** The mangle table of one tool, chains by name. */
export type MangleTable = Map<string, Chain>;

/** Returns the names of the fake's save and restore tools, such as "ip6tables-legacy-save". */
export function iptablesToolNames(): string[] {
  return VARIANTS.flatMap((variant) =>
    [variant, variant.replace(/^iptables/, "ip6tables")].flatMap((base) => [`${base}-save`, `${base}-restore`]),
  );
}

function emptyTable(): MangleTable {
  return new Map(BUILTIN_CHAINS.map((name) => [name, { policy: "ACCEPT", rules: [] }]));
}

function copyTable(table: MangleTable): MangleTable {
  return new Map([...table].map(([name, chain]) => [name, { policy: chain.policy, rules: [...chain.rules] }]));
}

export class FakeIptables {
  /** Mangle tables by tool base name, such as "iptables" or "ip6tables-legacy". */
  readonly tables = new Map<string, MangleTable>();
  /**
   * The iptables-nft tools whose mangle table exists as an nftables table.
   * Like the real iptables-nft, a restore creates it and only `nft delete
   * table` removes it again.
   */
  readonly nftTables = new Set<string>();

  constructor() {
    for (const tool of iptablesToolNames()) {
      this.tables.set(baseName(tool), emptyTable());
    }
  }

  handles(tool: string): boolean {
    return iptablesToolNames().includes(tool);
  }

  run(tool: string, args: readonly string[], input: string | undefined): CommandResult {
    const base = baseName(tool);
    if (tool.endsWith("-save")) {
      if (args.length !== 2 || args[0] !== "-t" || args[1] !== "mangle") {
        throw new Unsupported(`${tool} without exactly "-t mangle"`);
      }
      return succeed(renderSave(tool, this.table(base)));
    }
    const noflush = args.length === 1 && args[0] === "--noflush";
    if ((!noflush && args.length > 0) || input === undefined) {
      throw new Unsupported(`${tool} other than "--noflush" or no options, with the rules on stdin`);
    }
    this.tables.set(base, restore(tool, this.table(base), input, noflush));
    if (base.endsWith("-nft")) {
      this.nftTables.add(base);
    }
    return succeed();
  }

  /** Runs `nft list|delete table ip|ip6 mangle` against an iptables-nft table; undefined for any other nft command. */
  runNft(args: readonly string[]): CommandResult | undefined {
    if (args.length !== 4 || args[1] !== "table" || args[3] !== "mangle" || !["ip", "ip6"].includes(args[2]!)) {
      return undefined;
    }
    const base = args[2] === "ip" ? "iptables-nft" : "ip6tables-nft";
    if (!this.nftTables.has(base)) {
      throw new ToolFailure(1, `Error: No such file or directory\n${args.join(" ")}\n`);
    }
    if (args[0] === "list") {
      // NOTE: the fake's table always shows both base chains that splitroute
      // uses; real iptables-nft creates each chain only when a rule needs it.
      return succeed(`table ${args[2]} mangle {\n\tchain PREROUTING {\n\t}\n\tchain OUTPUT {\n\t}\n}\n`);
    }
    if (args[0] === "delete") {
      this.nftTables.delete(base);
      this.tables.set(base, emptyTable());
      return succeed();
    }
    return undefined;
  }

  /** Returns whether a table still has its initial contents: built-in chains only, empty, policy ACCEPT. */
  isPristine(base: string): boolean {
    const table = this.table(base);
    return [...table].every(([name, chain]) => BUILTIN_CHAINS.includes(name) && chain.policy === "ACCEPT" && chain.rules.length === 0);
  }

  table(base: string): MangleTable {
    const table = this.tables.get(base);
    if (table === undefined) {
      throw new Unsupported(`iptables tool ${base}`);
    }
    return table;
  }
}

function baseName(tool: string): string {
  return tool.replace(/-(save|restore)$/, "");
}

/** Renders a table the way `iptables-save -t mangle` prints it, user chains sorted by name. */
export function renderSave(tool: string, table: MangleTable, withHeader = true): string {
  const names = [...BUILTIN_CHAINS, ...[...table.keys()].filter((name) => !BUILTIN_CHAINS.includes(name)).sort()];
  const lines = withHeader ? [`# Generated by ${tool} v1.8.9 on ${SAVED_AT}`] : [];
  lines.push("*mangle");
  for (const name of names) {
    lines.push(`:${name} ${table.get(name)!.policy} [0:0]`);
  }
  for (const name of names) {
    for (const rule of table.get(name)!.rules) {
      lines.push(`-A ${name} ${rule}`);
    }
  }
  lines.push("COMMIT");
  if (withHeader) {
    lines.push(`# Completed on ${SAVED_AT}`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * Applies iptables-restore input to a copy of `current` and returns the copy.
 * Like the real tool, a failing line leaves the table as it was. Without
 * --noflush the table starts empty.
 */
function restore(tool: string, current: MangleTable, input: string, noflush: boolean): MangleTable {
  let committed = current;
  let working: MangleTable | undefined;
  const lines = input.split("\n");

  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    const fail = (reason: string): never => {
      throw new ToolFailure(1, `${tool}: line ${index + 1} failed: ${reason}\n`);
    };
    if (line === "" || line.startsWith("#")) {
      continue;
    }
    if (line.startsWith("*")) {
      if (line !== "*mangle") {
        throw new Unsupported(`${tool} table ${line.slice(1)}`);
      }
      working = noflush ? copyTable(committed) : emptyTable();
      continue;
    }
    if (working === undefined) {
      fail("no table declared with *mangle before this line");
    }
    const table = working!;
    if (line === "COMMIT") {
      committed = table;
      working = undefined;
      continue;
    }
    if (line.startsWith(":")) {
      declareChain(table, line, fail);
      continue;
    }
    applyCommand(tool, table, splitWords(line), fail);
  }

  if (working !== undefined) {
    throw new ToolFailure(1, `${tool}: COMMIT expected at line ${lines.length + 1}\n`);
  }
  return committed;
}

function declareChain(table: MangleTable, line: string, fail: (reason: string) => never): void {
  const match = /^:(\S+)\s+(\S+)(\s+\[\d+:\d+\])?$/.exec(line);
  if (match === null) {
    fail(`malformed chain declaration "${line}"`);
  }
  const [, name, policy] = match!;
  if (BUILTIN_CHAINS.includes(name!)) {
    if (!POLICIES.has(policy!)) {
      fail(`invalid policy "${policy}" for built-in chain ${name}`);
    }
    table.get(name!)!.policy = policy!;
    return;
  }
  if (policy !== "-") {
    fail(`a user chain takes "-" as its policy, not "${policy}"`);
  }
  // With --noflush, declaring a user chain that exists flushes it.
  table.set(name!, { policy: "-", rules: [] });
}

function applyCommand(tool: string, table: MangleTable, words: string[], fail: (reason: string) => never): void {
  const [command, chainName, ...rest] = words;
  const chain = chainName === undefined ? undefined : table.get(chainName);
  const needChain = (): Chain => chain ?? fail(`chain ${chainName ?? "(none)"} does not exist`);

  switch (command) {
    case "-A":
      checkTarget(table, rest, fail);
      needChain().rules.push(rest.join(" "));
      return;
    case "-I": {
      const target = needChain();
      const hasPosition = /^[0-9]+$/.test(rest[0] ?? "");
      const position = hasPosition ? Number(rest[0]) : 1;
      const spec = hasPosition ? rest.slice(1) : rest;
      if (position < 1 || position > target.rules.length + 1) {
        fail(`index of insertion ${position} is out of range`);
      }
      checkTarget(table, spec, fail);
      target.rules.splice(position - 1, 0, spec.join(" "));
      return;
    }
    case "-D": {
      const target = needChain();
      const index =
        rest.length === 1 && /^[0-9]+$/.test(rest[0]!) ? Number(rest[0]) - 1 : target.rules.indexOf(rest.join(" "));
      if (index < 0 || index >= target.rules.length) {
        fail(`no rule "${rest.join(" ")}" in chain ${chainName}: Bad rule (does a matching rule exist in that chain?)`);
      }
      target.rules.splice(index, 1);
      return;
    }
    case "-F":
      if (chainName === undefined) {
        for (const existing of table.values()) {
          existing.rules = [];
        }
      } else {
        needChain().rules = [];
      }
      return;
    case "-N":
      if (chainName === undefined || chain !== undefined) {
        fail(`chain ${chainName ?? "(none)"} already exists`);
      }
      table.set(chainName!, { policy: "-", rules: [] });
      return;
    case "-X": {
      if (chainName === undefined) {
        throw new Unsupported(`${tool} -X without a chain name`);
      }
      const target = needChain();
      if (BUILTIN_CHAINS.includes(chainName)) {
        fail(`cannot delete built-in chain ${chainName}`);
      }
      if (target.rules.length > 0) {
        fail(`chain ${chainName} is not empty: Directory not empty`);
      }
      if (isReferenced(table, chainName)) {
        fail(`chain ${chainName} is referenced by a rule: Too many links`);
      }
      table.delete(chainName);
      return;
    }
    case "-P":
      if (!BUILTIN_CHAINS.includes(chainName ?? "") || !POLICIES.has(rest[0] ?? "")) {
        fail(`invalid policy command "${words.join(" ")}"`);
      }
      needChain().policy = rest[0]!;
      return;
    default:
      throw new Unsupported(`${tool} command "${words.join(" ")}"`);
  }
}

function checkTarget(table: MangleTable, spec: readonly string[], fail: (reason: string) => never): void {
  for (const [index, word] of spec.entries()) {
    const target = spec[index + 1];
    if ((word === "-j" || word === "-g") && target !== undefined && !TARGETS.has(target) && !table.has(target)) {
      fail(`Couldn't load target \`${target}':No such file or directory`);
    }
  }
}

function isReferenced(table: MangleTable, chainName: string): boolean {
  return [...table.values()].some((chain) =>
    chain.rules.some((rule) => {
      const words = rule.split(" ");
      return words.some((word, index) => (word === "-j" || word === "-g") && words[index + 1] === chainName);
    }),
  );
}
