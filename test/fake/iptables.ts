// The iptables save and restore tools of the fake host, for the mangle and
// nat tables. Each variant (iptables, iptables-nft, iptables-legacy) and
// family has tables of its own.
// NOTE: on a real host `iptables` is usually a link to one of the other two,
// so it shares that variant's rules. The fake keeps the three apart, and
// treats the unsuffixed tools as legacy ones, as splitroute does when
// `iptables --version` does not say nf_tables.

import type { CommandResult } from "../../src/system/system.js";
import { ToolFailure, Unsupported, splitWords, succeed } from "./result.js";

export type TableName = "mangle" | "nat";
export const TABLE_NAMES: readonly TableName[] = ["mangle", "nat"];

const BUILTIN_CHAINS: Record<TableName, readonly string[]> = {
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
};
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
  "MASQUERADE",
  "SNAT",
  "DNAT",
  "REDIRECT",
]);
const NAT_TARGETS = new Set(["MASQUERADE", "SNAT", "DNAT", "REDIRECT"]);
const VARIANTS = ["iptables", "iptables-nft", "iptables-legacy"];

// Dates in the header and footer are fixed so that output is stable.
const SAVED_AT = "Thu Jan  1 00:00:00 1970";

interface Chain {
  /** ACCEPT or DROP for a built-in chain, "-" for a user chain. */
  policy: string;
  /** Rules without the leading `-A CHAIN`, words joined by single spaces. */
  rules: string[];
}

/** One table of one tool, chains by name. */
export type ChainTable = Map<string, Chain>;

/** Returns the names of the fake's save and restore tools, such as "ip6tables-legacy-save". */
export function iptablesToolNames(): string[] {
  return VARIANTS.flatMap((variant) =>
    [variant, variant.replace(/^iptables/, "ip6tables")].flatMap((base) => [`${base}-save`, `${base}-restore`]),
  );
}

function emptyTable(name: TableName): ChainTable {
  return new Map(BUILTIN_CHAINS[name].map((chain) => [chain, { policy: "ACCEPT", rules: [] }]));
}

function copyTable(table: ChainTable): ChainTable {
  return new Map([...table].map(([name, chain]) => [name, { policy: chain.policy, rules: [...chain.rules] }]));
}

function isTableName(name: string | undefined): name is TableName {
  return TABLE_NAMES.includes(name as TableName);
}

export class FakeIptables {
  /** Tables by tool base name, such as "iptables" or "ip6tables-legacy", then by table name. */
  readonly tables = new Map<string, Map<TableName, ChainTable>>();
  /**
   * The iptables-nft tables that exist as nftables tables, as "BASE TABLE"
   * such as "iptables-nft nat", each with its base chains. Like the real
   * iptables-nft, a restore creates the table and each built-in chain that it
   * declares or adds a rule to, and only nft deletes them again.
   */
  readonly nftTables = new Map<string, Set<string>>();
  /**
   * The legacy tables the kernel has created, as "BASE TABLE". Like the real
   * legacy tools, any save or restore of a table creates it, and nothing
   * removes it. The unsuffixed tools count as legacy ones here.
   */
  readonly legacyTables = new Set<string>();

  constructor() {
    for (const tool of iptablesToolNames()) {
      this.tables.set(baseName(tool), new Map(TABLE_NAMES.map((name) => [name, emptyTable(name)])));
    }
  }

  handles(tool: string): boolean {
    return iptablesToolNames().includes(tool);
  }

  run(tool: string, args: readonly string[], input: string | undefined): CommandResult {
    const base = baseName(tool);
    if (tool.endsWith("-save")) {
      const name = args[1];
      if (args.length !== 2 || args[0] !== "-t" || !isTableName(name)) {
        throw new Unsupported(`${tool} without exactly "-t mangle" or "-t nat"`);
      }
      this.noteLegacyTable(base, name);
      return succeed(renderSave(tool, name, this.table(base, name)));
    }
    const noflush = args.length === 1 && args[0] === "--noflush";
    if ((!noflush && args.length > 0) || input === undefined) {
      throw new Unsupported(`${tool} other than "--noflush" or no options, with the rules on stdin`);
    }
    const { commits, failure } = restore(tool, (name) => this.table(base, name), input, noflush);
    // iptables-nft commits the whole input in one transaction, the legacy
    // tools each table at its COMMIT line.
    const applied = base.endsWith("-nft") && failure !== undefined ? [] : commits;
    for (const commit of applied) {
      this.tables.get(base)!.set(commit.name, commit.table);
      if (base.endsWith("-nft")) {
        const key = `${base} ${commit.name}`;
        this.nftTables.set(key, new Set([...(this.nftTables.get(key) ?? []), ...commit.touchedBuiltins]));
      }
    }
    for (const name of commits.map((commit) => commit.name)) {
      this.noteLegacyTable(base, name);
    }
    if (failure !== undefined) {
      throw failure;
    }
    return succeed();
  }

  /**
   * Runs `nft list|delete table ip|ip6 mangle|nat` or `nft delete chain ip|ip6
   * mangle|nat CHAIN` against an iptables-nft table; undefined for any other
   * nft command.
   */
  runNft(args: readonly string[]): CommandResult | undefined {
    const [verb, kind, family, name, chain] = args;
    const isTable = args.length === 4 && kind === "table" && (verb === "list" || verb === "delete");
    const isChain = args.length === 5 && kind === "chain" && verb === "delete";
    if (!(isTable || isChain) || !isTableName(name) || (family !== "ip" && family !== "ip6")) {
      return undefined;
    }
    const base = family === "ip" ? "iptables-nft" : "ip6tables-nft";
    const key = `${base} ${name}`;
    const baseChains = this.nftTables.get(key);
    if (baseChains === undefined) {
      throw new ToolFailure(1, `Error: No such file or directory\n${args.join(" ")}\n`);
    }
    const table = this.table(base, name);
    if (verb === "list") {
      return succeed(this.renderNftTable(base, name));
    }
    if (isChain) {
      if (!baseChains.has(chain!)) {
        throw new Unsupported(`nft delete chain of the non-base or missing chain ${chain}`);
      }
      // Deleting a chain deletes its rules with it.
      baseChains.delete(chain!);
      table.set(chain!, { policy: "ACCEPT", rules: [] });
      return succeed();
    }
    this.nftTables.delete(key);
    this.tables.get(base)!.set(name, emptyTable(name));
    return succeed();
  }

  /** Renders every iptables-nft table as `nft list ruleset` shows it after nft's own tables. */
  renderNftRuleset(): string {
    return [...this.nftTables.keys()].map((key) => this.renderNftTable(key.split(" ")[0]!, key.split(" ")[1] as TableName)).join("");
  }

  // NOTE: real nft also prints each chain's type, hook and rules.
  private renderNftTable(base: string, name: TableName): string {
    const table = this.table(base, name);
    const baseChains = this.nftTables.get(`${base} ${name}`)!;
    const userChains = [...table.keys()].filter((existing) => !BUILTIN_CHAINS[name].includes(existing)).sort();
    const chains = [...BUILTIN_CHAINS[name].filter((builtin) => baseChains.has(builtin)), ...userChains];
    const family = base.startsWith("ip6") ? "ip6" : "ip";
    return `table ${family} ${name} {\n${chains.map((listed) => `\tchain ${listed} {\n\t}\n`).join("")}}\n`;
  }

  /** Returns the text of /proc/net/ip_tables_names or ip6_tables_names, or undefined for other paths. */
  readProc(path: string): string | undefined {
    const family = { "/proc/net/ip_tables_names": "iptables", "/proc/net/ip6_tables_names": "ip6tables" }[path];
    if (family === undefined) {
      return undefined;
    }
    const names = new Set([...this.legacyTables].filter((key) => key.startsWith(`${family} `) || key.startsWith(`${family}-legacy `)).map((key) => key.split(" ")[1]!));
    return names.size === 0 ? undefined : [...names].sort().map((name) => `${name}\n`).join("");
  }

  /** Returns whether a table still has its initial contents: built-in chains only, empty, policy ACCEPT. */
  isPristine(base: string, name: TableName = "mangle"): boolean {
    const table = this.table(base, name);
    return [...table].every(([chain, contents]) => BUILTIN_CHAINS[name].includes(chain) && contents.policy === "ACCEPT" && contents.rules.length === 0);
  }

  table(base: string, name: TableName = "mangle"): ChainTable {
    const table = this.tables.get(base)?.get(name);
    if (table === undefined) {
      throw new Unsupported(`iptables tool ${base}`);
    }
    return table;
  }

  private noteLegacyTable(base: string, name: TableName): void {
    if (!base.endsWith("-nft")) {
      this.legacyTables.add(`${base} ${name}`);
    }
  }
}

function baseName(tool: string): string {
  return tool.replace(/-(save|restore)$/, "");
}

/** Renders a table the way `iptables-save -t NAME` prints it, user chains sorted by name. */
export function renderSave(tool: string, name: TableName, table: ChainTable, withHeader = true): string {
  const builtins = BUILTIN_CHAINS[name];
  const chains = [...builtins, ...[...table.keys()].filter((chain) => !builtins.includes(chain)).sort()];
  const lines = withHeader ? [`# Generated by ${tool} v1.8.9 on ${SAVED_AT}`] : [];
  lines.push(`*${name}`);
  for (const chain of chains) {
    lines.push(`:${chain} ${table.get(chain)!.policy} [0:0]`);
  }
  for (const chain of chains) {
    for (const rule of table.get(chain)!.rules) {
      lines.push(`-A ${chain} ${rule}`);
    }
  }
  lines.push("COMMIT");
  if (withHeader) {
    lines.push(`# Completed on ${SAVED_AT}`);
  }
  return `${lines.join("\n")}\n`;
}

/** One table while a restore changes it, with the built-in chains that the input declared or added rules to. */
interface WorkingTable {
  name: TableName;
  table: ChainTable;
  touchedBuiltins: Set<string>;
}

/**
 * Applies iptables-restore input to copies of the tables that `current`
 * returns. Returns each table as its COMMIT line left it, in order, and the
 * failure that stopped the input, if any. Like the real tool, a failing line
 * leaves its table as it was. Without --noflush a table starts empty.
 */
function restore(
  tool: string,
  current: (name: TableName) => ChainTable,
  input: string,
  noflush: boolean,
): { commits: WorkingTable[]; failure?: ToolFailure } {
  const commits: WorkingTable[] = [];
  let working: WorkingTable | undefined;
  const lines = input.split("\n");

  try {
    for (const [index, raw] of lines.entries()) {
      const line = raw.trim();
      const fail = (reason: string): never => {
        throw new ToolFailure(1, `${tool}: line ${index + 1} failed: ${reason}\n`);
      };
      if (line === "" || line.startsWith("#")) {
        continue;
      }
      if (line.startsWith("*")) {
        const name = line.slice(1);
        if (!isTableName(name)) {
          throw new Unsupported(`${tool} table ${name}`);
        }
        const committed = [...commits].reverse().find((commit) => commit.name === name)?.table ?? current(name);
        working = { name, table: noflush ? copyTable(committed) : emptyTable(name), touchedBuiltins: new Set() };
        continue;
      }
      if (working === undefined) {
        fail("no table declared with *mangle or *nat before this line");
      }
      if (line === "COMMIT") {
        commits.push(working!);
        working = undefined;
        continue;
      }
      if (line.startsWith(":")) {
        declareChain(working!, line, fail);
        continue;
      }
      applyCommand(tool, working!, splitWords(line), fail);
    }
    if (working !== undefined) {
      throw new ToolFailure(1, `${tool}: COMMIT expected at line ${lines.length + 1}\n`);
    }
  } catch (error) {
    if (error instanceof ToolFailure) {
      return { commits, failure: error };
    }
    throw error;
  }
  return { commits };
}

function declareChain(working: WorkingTable, line: string, fail: (reason: string) => never): void {
  const match = /^:(\S+)\s+(\S+)(\s+\[\d+:\d+\])?$/.exec(line);
  if (match === null) {
    fail(`malformed chain declaration "${line}"`);
  }
  const [, name, policy] = match!;
  if (BUILTIN_CHAINS[working.name].includes(name!)) {
    if (!POLICIES.has(policy!)) {
      fail(`invalid policy "${policy}" for built-in chain ${name}`);
    }
    working.table.get(name!)!.policy = policy!;
    working.touchedBuiltins.add(name!);
    return;
  }
  if (policy !== "-") {
    fail(`a user chain takes "-" as its policy, not "${policy}"`);
  }
  // With --noflush, declaring a user chain that exists flushes it.
  working.table.set(name!, { policy: "-", rules: [] });
}

function applyCommand(tool: string, working: WorkingTable, words: string[], fail: (reason: string) => never): void {
  const { table } = working;
  const builtins = BUILTIN_CHAINS[working.name];
  const [command, chainName, ...rest] = words;
  const chain = chainName === undefined ? undefined : table.get(chainName);
  const needChain = (): Chain => chain ?? fail(`chain ${chainName ?? "(none)"} does not exist`);
  if ((command === "-A" || command === "-I" || command === "-P") && builtins.includes(chainName ?? "")) {
    working.touchedBuiltins.add(chainName!);
  }

  switch (command) {
    case "-A":
      checkTarget(working, rest, fail);
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
      checkTarget(working, spec, fail);
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
      if (builtins.includes(chainName)) {
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
      if (!builtins.includes(chainName ?? "") || !POLICIES.has(rest[0] ?? "")) {
        fail(`invalid policy command "${words.join(" ")}"`);
      }
      needChain().policy = rest[0]!;
      return;
    default:
      throw new Unsupported(`${tool} command "${words.join(" ")}"`);
  }
}

function checkTarget(working: WorkingTable, spec: readonly string[], fail: (reason: string) => never): void {
  for (const [index, word] of spec.entries()) {
    const target = spec[index + 1];
    if ((word === "-j" || word === "-g") && target !== undefined && !TARGETS.has(target) && !working.table.has(target)) {
      fail(`Couldn't load target \`${target}':No such file or directory`);
    }
    // The kernel rejects these targets in any other table when the table is replaced.
    if ((word === "-j" || word === "-g") && NAT_TARGETS.has(target ?? "") && working.name !== "nat") {
      fail(`the ${target} target is only valid in the nat table, not ${working.name}`);
    }
  }
}

function isReferenced(table: ChainTable, chainName: string): boolean {
  return [...table.values()].some((chain) =>
    chain.rules.some((rule) => {
      const words = rule.split(" ");
      return words.some((word, index) => (word === "-j" || word === "-g") && words[index + 1] === chainName);
    }),
  );
}
