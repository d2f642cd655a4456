// The `ip` tool of the fake host: routing tables and policy rules per
// family, shown and changed the way iproute2 6.1 and the kernel do.

import { isIP } from "node:net";

import type { CommandResult } from "../../src/system/system.js";
import { MAIN_TABLE, numericRoute, parseRouteAddition, readPrefix, readTableId, type Family, type RouteJson } from "./ip-route.js";
import { ToolFailure, Unsupported, readUint32, succeed } from "./result.js";

export type RuleJson = Record<string, unknown>;

const LOCAL_TABLE = 255;
const DEFAULT_TABLE = 253;
const ALL_BITS = 0xffff_ffff;

// The rules a new network namespace starts with.
function defaultRules(family: Family): RuleJson[] {
  const rules: RuleJson[] = [
    { priority: 0, src: "all", table: String(LOCAL_TABLE) },
    { priority: 32766, src: "all", table: String(MAIN_TABLE) },
  ];
  if (family === 4) {
    rules.push({ priority: 32767, src: "all", table: String(DEFAULT_TABLE) });
  }
  return rules;
}

interface Options {
  family?: Family;
  details: boolean;
  json: boolean;
  numeric: boolean;
  batch?: string;
}

export class FakeIp {
  /**
   * Routes per family and table id, as `ip -d -j route show` prints them. A
   * table id is present once the table held a route, because the kernel never
   * frees a routing table, and `show` of an absent id fails.
   */
  readonly tables: Record<Family, Map<number, RouteJson[]>> = {
    4: new Map([
      [MAIN_TABLE, []],
      [LOCAL_TABLE, []],
    ]),
    6: new Map([
      [MAIN_TABLE, []],
      [LOCAL_TABLE, []],
    ]),
  };

  /** Policy rules per family in kernel order, as `ip -j -N rule show` prints them. */
  readonly rules: Record<Family, RuleJson[]> = { 4: defaultRules(4), 6: defaultRules(6) };

  constructor(private readonly hasDevice: (name: string) => boolean) {}

  run(args: readonly string[], input: string | undefined): CommandResult {
    const { options, words } = readOptions(args);
    const family = options.family;
    if (family === undefined) {
      throw new Unsupported("ip without -4 or -6");
    }
    if (options.batch === undefined) {
      const stdout = this.execute(family, options, words, false);
      return succeed(stdout);
    }
    if (options.batch !== "-" || words.length > 0 || input === undefined) {
      throw new Unsupported("ip -batch other than `-batch -` with the commands on stdin");
    }
    return this.runBatch(family, options, input);
  }

  // Like ip, a batch stops at the first failing line and keeps what the
  // lines before it changed.
  private runBatch(family: Family, options: Options, input: string): CommandResult {
    let stdout = "";
    const lines = input.split("\n");
    for (const [index, line] of lines.entries()) {
      const words = line.replace(/#.*/, "").trim().split(/\s+/).filter(Boolean);
      if (words.length === 0) {
        continue;
      }
      try {
        stdout += this.execute(family, options, words, true);
      } catch (error) {
        if (error instanceof ToolFailure) {
          return { exitCode: 1, stdout, stderr: `${error.stderr}Command failed -:${index + 1}\n` };
        }
        throw error;
      }
    }
    return succeed(stdout);
  }

  private execute(family: Family, options: Options, words: readonly string[], inBatch: boolean): string {
    const [object, verb, ...rest] = words;
    if (object === "route" && (verb === "show" || verb === "list")) {
      return this.showRoutes(family, options, rest);
    }
    if (object === "route" && (verb === "add" || verb === "append")) {
      this.addRoute(family, verb, rest);
      return "";
    }
    if (object === "route" && verb === "get") {
      return this.getRoute(family, rest);
    }
    if (object === "route" && verb === "flush") {
      this.flushRoutes(family, rest);
      return "";
    }
    if (object === "rule" && (verb === "show" || verb === "list") && rest.length === 0) {
      if (!options.json || !options.numeric) {
        throw new Unsupported("ip rule show without -j and -N");
      }
      return `${JSON.stringify(this.rules[family])}\n`;
    }
    if (object === "rule" && (verb === "add" || verb === "del" || verb === "delete")) {
      if (verb === "add") {
        this.addRule(family, readRule(rest, true));
      } else {
        this.deleteRule(family, readRule(rest, false));
      }
      return "";
    }
    throw new Unsupported(`ip ${inBatch ? "batch line" : "command"} "${words.join(" ")}"`);
  }

  /**
   * Answers `route get DST mark M` by walking the rules in order. NOTE: only
   * fwmark selectors (with `not`) are modelled, and a table answers when it
   * holds a default route; the kernel's longest-prefix match is not.
   */
  private getRoute(family: Family, words: readonly string[]): string {
    if (words.length !== 3 || words[1] !== "mark") {
      throw new Unsupported(`ip route get "${words.join(" ")}" (only "route get DST mark M" is modelled)`);
    }
    const mark = Number(words[2]);
    for (const rule of this.rules[family]) {
      const selectors = Object.keys(rule).filter((key) => !["priority", "src", "table", "not", "fwmark", "fwmask"].includes(key));
      if (rule.src !== "all" || selectors.length > 0) {
        continue;
      }
      const matches = rule.fwmark === undefined || (mark & Number(rule.fwmask ?? "0xffffffff")) === Number(rule.fwmark);
      if (matches === ("not" in rule)) {
        continue;
      }
      const table = Number(rule.table);
      const route = (this.tables[family].get(table) ?? []).find((entry) => entry.dst === "default");
      if (route !== undefined) {
        const answer = { dst: words[0], ...(table === 254 ? {} : { table: String(table) }), dev: route.dev };
        return `${JSON.stringify([answer])}\n`;
      }
    }
    throw new ToolFailure(2, "RTNETLINK answers: Network is unreachable\n");
  }

  private showRoutes(family: Family, options: Options, words: readonly string[]): string {
    if (words.length !== 2 || words[0] !== "table" || !options.json) {
      throw new Unsupported(`ip route show "${words.join(" ")}" (only "-j route show table ID" is modelled)`);
    }
    const routes = this.tables[family].get(readTableId(words[1]!, "table id"));
    if (routes === undefined) {
      throw new ToolFailure(2, `Error: ipv${family}: FIB table does not exist.\nDump terminated\n`);
    }
    const detailed = options.details ? routes : routes.map(withoutDefaults);
    const printed = options.numeric ? detailed.map(numericRoute) : detailed;
    return `${JSON.stringify(printed)}\n`;
  }

  private addRoute(family: Family, verb: "add" | "append", words: readonly string[]): void {
    const { table, route } = parseRouteAddition(family, words, this.hasDevice);
    const routes = this.tables[family].get(table) ?? [];
    const clash = routes.some((existing) => (verb === "add" ? sameKey(family, existing, route) : isSame(existing, route)));
    if (clash) {
      throw new ToolFailure(2, "RTNETLINK answers: File exists\n");
    }
    // NOTE: the kernel merges an appended IPv6 gateway route into an existing
    // route of the same destination and metric, making a multipath route.
    // The fake keeps two routes.
    routes.push(route);
    this.tables[family].set(table, routes);
  }

  private flushRoutes(family: Family, words: readonly string[]): void {
    const withProtocol = words.length === 4 && words[2] === "proto";
    if ((words.length !== 2 && !withProtocol) || words[0] !== "table") {
      throw new Unsupported(`ip route flush "${words.join(" ")}" (only "route flush table ID [proto N]" is modelled)`);
    }
    const table = readTableId(words[1]!);
    if (!this.tables[family].has(table)) {
      throw new ToolFailure(2, `Error: ipv${family}: FIB table does not exist.\nFlush terminated\n`);
    }
    const protocol = withProtocol ? words[3] : undefined;
    this.tables[family].set(table, protocol === undefined ? [] : this.tables[family].get(table)!.filter((route) => String(route.protocol) !== protocol));
  }

  private addRule(family: Family, rule: RuleJson): void {
    checkRuleFamily(family, rule);
    const rules = this.rules[family];
    if (rules.some((existing) => JSON.stringify(existing) === JSON.stringify(rule))) {
      throw new ToolFailure(2, "RTNETLINK answers: File exists\n");
    }
    // The kernel inserts a rule after every rule of the same or lower priority.
    const position = rules.findIndex((existing) => Number(existing.priority) > Number(rule.priority));
    rules.splice(position === -1 ? rules.length : position, 0, rule);
  }

  // The kernel deletes the first rule that matches every attribute given.
  // Attributes left out match anything.
  private deleteRule(family: Family, selector: RuleJson): void {
    checkRuleFamily(family, selector);
    const rules = this.rules[family];
    const index = rules.findIndex((rule) => Object.entries(selector).every(([field, value]) => rule[field] === value));
    if (index === -1) {
      throw new ToolFailure(2, "RTNETLINK answers: No such file or directory\n");
    }
    rules.splice(index, 1);
  }
}

function readOptions(args: readonly string[]): { options: Options; words: string[] } {
  const options: Options = { details: false, json: false, numeric: false };
  let index = 0;
  for (; index < args.length && args[index]!.startsWith("-"); index++) {
    const flag = args[index]!;
    if (flag === "-4" || flag === "-6") {
      options.family = flag === "-4" ? 4 : 6;
    } else if (flag === "-d" || flag === "-details") {
      options.details = true;
    } else if (flag === "-j" || flag === "-json") {
      options.json = true;
    } else if (flag === "-N" || flag === "-Numeric") {
      options.numeric = true;
    } else if (flag === "-batch" && index + 1 < args.length) {
      options.batch = args[++index]!;
    } else {
      throw new Unsupported(`ip option ${flag}`);
    }
  }
  return { options, words: args.slice(index) };
}

// Without -d, ip leaves out `type unicast`, `proto boot` and `scope global`.
function withoutDefaults(route: RouteJson): RouteJson {
  const printed = { ...route };
  if (printed.type === "unicast") delete printed.type;
  if (printed.protocol === "boot") delete printed.protocol;
  if (printed.scope === "global") delete printed.scope;
  return printed;
}

// `add` fails when a route with the same destination, TOS (IPv4) or source
// prefix (IPv6) and metric exists.
function sameKey(family: Family, existing: RouteJson, route: RouteJson): boolean {
  const selector = family === 4 ? "tos" : "from";
  return existing.dst === route.dst && existing[selector] === route[selector] && existing.metric === route.metric;
}

// `append` fails only on an exact duplicate.
function isSame(existing: RouteJson, route: RouteJson): boolean {
  return JSON.stringify(existing) === JSON.stringify(route);
}

/**
 * Reads the words of `ip rule add|del` into the JSON that `ip -j -N rule
 * show` prints. For `add`, a missing table means main, as in ip. For `del`,
 * the result holds only the attributes given, which is what the kernel matches.
 */
function readRule(words: readonly string[], adding: boolean): RuleJson {
  const selectors: RuleJson = {};
  let index = 0;
  const next = (): string => {
    const word = words[index++];
    if (word === undefined) {
      throw new ToolFailure(1, 'Command line is not complete. Try option "help"\n');
    }
    return word;
  };
  while (index < words.length) {
    const word = next();
    switch (word) {
      case "from": {
        const prefix = next();
        if (prefix !== "all") {
          Object.assign(selectors, addressAndLength("src", prefix));
        }
        break;
      }
      case "to": {
        const prefix = next();
        if (prefix !== "all") {
          Object.assign(selectors, addressAndLength("dst", prefix));
        }
        break;
      }
      case "fwmark": {
        const [markText, maskText] = next().split("/");
        const mark = readUint32(markText);
        const mask = maskText === undefined ? ALL_BITS : readUint32(maskText);
        if (mark === undefined || mask === undefined) {
          throw new ToolFailure(1, `Error: argument "${words[index - 1]}" is wrong: fwmark value is invalid\n`);
        }
        selectors.fwmark = hex(mark);
        if (mask !== ALL_BITS) {
          selectors.fwmask = hex(mask);
        }
        break;
      }
      case "iif":
      case "oif":
        selectors[word] = next();
        break;
      case "lookup":
      case "table":
        selectors.table = String(readTableId(next()));
        break;
      case "priority":
      case "pref":
      case "preference": {
        const priority = readUint32(next());
        if (priority === undefined) {
          throw new ToolFailure(1, `Error: argument "${words[index - 1]}" is wrong: preference value is invalid\n`);
        }
        selectors.priority = priority;
        break;
      }
      default:
        throw new Unsupported(`ip rule selector "${word}" in "${words.join(" ")}"`);
    }
  }
  if (!adding) {
    return selectors;
  }
  if (selectors.priority === undefined) {
    throw new Unsupported("ip rule add without priority (the kernel would pick one)");
  }
  // Field order of ip 6.1's JSON output.
  const rule: RuleJson = { priority: selectors.priority };
  rule.src = selectors.src ?? "all";
  for (const field of ["srclen", "dst", "dstlen", "fwmark", "fwmask", "iif", "oif"]) {
    if (selectors[field] !== undefined) {
      rule[field] = selectors[field];
    }
  }
  rule.table = selectors.table ?? String(MAIN_TABLE);
  return rule;
}

function addressAndLength(field: "src" | "dst", prefix: string): RuleJson {
  const family = isIP(prefix.split("/")[0] ?? "") === 6 ? 6 : 4;
  const normalized = readPrefix(family, prefix);
  const [address, length] = normalized.split("/");
  const hostLength = family === 4 ? 32 : 128;
  const prefixLength = length === undefined ? hostLength : Number(length);
  return { [field]: address, [`${field}len`]: prefixLength };
}

function checkRuleFamily(family: Family, rule: RuleJson): void {
  for (const field of ["src", "dst"]) {
    const address = rule[field];
    if (typeof address === "string" && address !== "all" && isIP(address) !== family) {
      throw new ToolFailure(1, `Error: ${family === 4 ? "inet" : "inet6"} prefix is expected rather than "${address}".\n`);
    }
  }
}

function hex(value: number): string {
  return `0x${value.toString(16)}`;
}
