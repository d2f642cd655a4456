import type { Config } from "../config/types.js";
import { hex } from "../firewall/marking.js";
import { readRules, readTable } from "../observe.js";
import { isOurRoute, WG_QUICK_FIRST_TABLE } from "../owner.js";
import { snapshotRoutes } from "../plan/up.js";
import type { ObservedRule } from "../rule.js";
import type { Family } from "../snapshot/route.js";
import type { State } from "../state.js";
import type { System } from "../system/system.js";
import { readTableDeclarations, type TableDeclaration } from "./files.js";
import { error, ok, warning, type Finding } from "./report.js";

// Checks of the routing side: table names, policy rules, the bypass table
// and the table that up copies. Each only reads.

const DECLARE_FILE = "/etc/iproute2/rt_tables.d/splitroute.conf";

/** Checks that table.name is declared for table.id, and that snapshot.table is a table that ip can resolve. */
export async function checkTableNames(system: System, config: Config): Promise<Finding[]> {
  const declarations = await readTableDeclarations(system);
  const { id, name } = config.table;
  const findings: Finding[] = [];
  const byName = declarations.filter((declaration) => declaration.name === name);
  const byId = declarations.filter((declaration) => declaration.id === id && declaration.name !== name);

  if (byName.length === 0) {
    findings.push(
      warning(
        "table name",
        `table name ${name} is not declared in rt_tables or rt_tables.d`,
        `only names are affected: ip rule and ip route print table ${id} by number, and "ip route show table ${name}" fails`,
        `declare it: echo "${id} ${name}" > ${DECLARE_FILE}`,
      ),
    );
  } else if (byName.some((declaration) => declaration.id !== id)) {
    const other = byName.find((declaration) => declaration.id !== id)!;
    findings.push(
      error(
        "table name",
        `table name ${name} is declared as table ${other.id} in ${other.path}, but splitroute uses table ${id}`,
        `the name misleads: "ip route show table ${name}" shows table ${other.id}, not the bypass copy`,
        `set table.name to a name of its own, or declare "${id} ${name}" in place of the line in ${other.path}`,
      ),
    );
  } else {
    findings.push(ok("table name", `table ${id} is declared as ${name} in ${byName[0]!.path}`));
  }
  if (byId.length > 0) {
    findings.push(
      warning(
        "table name",
        `table ${id} is also declared as ${describeDeclarations(byId)}`,
        `ip prints one name for table ${id}, so its output may call the bypass copy by another software's name`,
        `remove that declaration, or set table.id to a table that no other name uses`,
      ),
    );
  }

  const source = config.snapshot.table;
  const numeric = /^[0-9]+$/.test(source);
  if (!numeric && source !== "main" && !declarations.some((declaration) => declaration.name === source)) {
    findings.push(
      error(
        "snapshot",
        `snapshot.table ${source} is not declared in rt_tables or rt_tables.d`,
        `up cannot read the table to copy, and fails`,
        `set snapshot.table to the table's number, or declare its name in /etc/iproute2/rt_tables.d/`,
      ),
    );
  }
  return findings;
}

function describeDeclarations(declarations: readonly TableDeclaration[]): string {
  return declarations.map((declaration) => `${declaration.name} (${declaration.path})`).join(", ");
}

/**
 * Finds policy rules of other software that clash with splitroute's rule:
 * one at its priority, one that looks up its table, or one that matches on
 * bits of its mark mask.
 */
export function checkRules(config: Config, family: Family, rules: readonly ObservedRule[]): Finding[] {
  const { id, priority } = config.table;
  const { value, mask } = config.mark;
  const findings: Finding[] = [];
  for (const rule of rules) {
    if (isSplitrouteRule(rule, config)) {
      continue;
    }
    const shown = describeRule(rule);
    if (rule.priority === priority) {
      findings.push(
        warning(
          "rules",
          `IPv${family} rule "${shown}" already uses priority ${priority}`,
          `the kernel tries rules of one priority in the order they were added, so this rule comes before splitroute's and may take marked traffic`,
          `set table.priority to a free priority below ${priority}, or move that rule`,
        ),
      );
    }
    if (rule.table === String(id)) {
      findings.push(
        error(
          "rules",
          `IPv${family} rule "${shown}" already looks up table ${id}`,
          `splitroute fills table ${id} with its copy of ${config.snapshot.table}, so that rule's traffic would take the bypass routes`,
          `set table.id to a table that no rule uses`,
        ),
      );
    }
    if (rule.fwmark === undefined || isWgQuickRule(rule)) {
      continue;
    }
    const ruleMask = Number(rule.fwmask ?? "0xffffffff");
    const shared = ruleMask & mask;
    if (shared === 0) {
      continue;
    }
    if ((Number(rule.fwmark) & mask) !== 0) {
      findings.push(
        error(
          "mark",
          `IPv${family} rule "${shown}" matches mark bits ${hex(Number(rule.fwmark) & mask)} inside splitroute's mask ${hex(mask)}`,
          `packets that splitroute marks also match that rule, and packets that other software marks match splitroute's rule`,
          `set mark.value and mark.mask to bits that no other rule or firewall uses`,
        ),
      );
    } else {
      findings.push(
        warning(
          "mark",
          `IPv${family} rule "${shown}" reads mark bits ${hex(shared)} of splitroute's mask ${hex(mask)}`,
          `once splitroute sets ${hex(value)}, a connection that rule matched may no longer match it`,
          `set mark.value and mark.mask to bits that the rule does not read`,
        ),
      );
    }
  }
  return findings;
}

// The rule splitroute installs, at any priority: up may move it below wg-quick's.
function isSplitrouteRule(rule: ObservedRule, config: Config): boolean {
  const known = new Set(["priority", "src", "fwmark", "fwmask", "table"]);
  return (
    rule.src === "all" &&
    Number(rule.fwmark) === config.mark.value &&
    Number(rule.fwmask ?? "0xffffffff") === config.mark.mask &&
    rule.table === String(config.table.id) &&
    Object.keys(rule).every((field) => known.has(field))
  );
}

// wg-quick matches its own mark 0xca6c exactly, which configuration
// validation keeps apart from splitroute's bits, and up places splitroute's
// rule before wg-quick's.
function isWgQuickRule(rule: ObservedRule): boolean {
  return Number(rule.table) >= WG_QUICK_FIRST_TABLE || "suppress_prefixlen" in rule;
}

/** Renders a rule from `ip -j -N rule show` roughly as `ip rule show` prints it. */
export function describeRule(rule: ObservedRule): string {
  const words = [`${rule.priority ?? "?"}:`];
  if ("not" in rule) words.push("not");
  words.push("from", rule.src === "all" || rule.src === undefined ? "all" : `${String(rule.src)}/${String(rule.srclen ?? "")}`);
  if (rule.dst !== undefined) words.push("to", `${String(rule.dst)}/${String(rule.dstlen ?? "")}`);
  if (rule.fwmark !== undefined) words.push("fwmark", rule.fwmask === undefined ? rule.fwmark : `${rule.fwmark}/${rule.fwmask}`);
  for (const field of ["iif", "oif", "uidrange", "ipproto", "sport", "dport"]) {
    if (rule[field] !== undefined) words.push(field, String(rule[field]));
  }
  words.push("lookup", rule.table ?? "?");
  return words.join(" ");
}

/** Reports the rules of `family`, or that they could not be read. */
export async function checkFamilyRules(system: System, config: Config, family: Family): Promise<Finding[]> {
  try {
    return checkRules(config, family, await readRules(system, family));
  } catch (failure) {
    return [unreadable("rules", `IPv${family} rules`, failure)];
  }
}

/** Finds routes already in the bypass table: another program's, or leftovers of a killed up. */
export async function checkBypassTable(system: System, config: Config, family: Family, state: State | undefined): Promise<Finding[]> {
  const { id } = config.table;
  let routes;
  try {
    routes = await readTable(system, family, id);
  } catch (failure) {
    return [unreadable("table", `IPv${family} table ${id}`, failure)];
  }
  const foreign = routes.filter((route) => !isOurRoute(route));
  const ours = routes.length - foreign.length;
  const findings: Finding[] = [];
  if (foreign.length > 0) {
    findings.push(
      error(
        "table",
        `IPv${family} table ${id} already holds ${foreign.length} route(s) of other software, such as ${foreign[0]!.dst}${foreign[0]!.dev === undefined ? "" : ` dev ${foreign[0]!.dev}`}`,
        `marked replies would also use those routes, and the table is not splitroute's to fill`,
        `set table.id to an empty table (ip -${family} route show table N prints nothing)`,
      ),
    );
  }
  if (ours > 0 && state === undefined) {
    findings.push(
      warning(
        "table",
        `IPv${family} table ${id} holds ${ours} route(s) with splitroute's protocol 83, but no bypass is recorded`,
        `they are leftovers of an up that did not finish; up replaces them, but the table may not match main until then`,
        `run splitroute cleanup`,
      ),
    );
  }
  if (findings.length === 0) {
    findings.push(ok("table", `IPv${family} table ${id} holds no routes of other software`));
  }
  return findings;
}

/** Checks that the table up copies has a default route that up would copy. */
export async function checkDefaultRoute(system: System, config: Config, family: Family): Promise<Finding> {
  const source = config.snapshot.table;
  let routes;
  try {
    routes = await readTable(system, family, source);
  } catch (failure) {
    return unreadable("snapshot", `IPv${family} table ${source}`, failure);
  }
  const copied = snapshotRoutes(config, [], { 4: family === 4 ? routes : [], 6: family === 6 ? routes : [] })[family];
  const route = copied.find((entry) => (entry.dst === "0.0.0.0/0" || entry.dst === "::/0") && entry.type === "unicast");
  if (route !== undefined) {
    return ok("snapshot", `IPv${family} table ${source} has a default route${route.dev === undefined ? "" : ` via ${route.dev}`} to copy`);
  }
  if (family === 6) {
    // Many hosts have no IPv6 uplink at all, which is no fault.
    return ok(
      "snapshot",
      `IPv6 table ${source} has no default route to copy`,
      `inbound IPv6 connections are bypassed only from the uplink's own subnets`,
    );
  }
  return error(
    "snapshot",
    `IPv4 table ${source} has no default route that up would copy`,
    `replies to hosts beyond the uplink's subnets find no route in the copy and go into the tunnel`,
    `set snapshot.table to the table that holds the default route, or run up while the uplink's default route exists` +
      ` (routes through ${config.snapshot.exclude.join(" ")} are never copied)`,
  );
}

function unreadable(area: string, what: string, failure: unknown): Finding {
  return error(area, `cannot read ${what}: ${(failure as Error).message}`, `check cannot tell whether it blocks the bypass`, `run check as root with ip installed`);
}
