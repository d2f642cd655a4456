import type { Config } from "../config/types.js";
import { hex } from "../firewall/marking.js";
import { readRules } from "../observe.js";
import { WG_QUICK_FIRST_TABLE } from "../owner.js";
import { chooseRulePriority, type ObservedRule } from "../rule.js";
import type { Family } from "../snapshot/route.js";
import type { System } from "../system/system.js";
import { error, warning, type Finding } from "./report.js";
import { unreadable } from "./routing.js";

// Checks of the policy rules of other software against splitroute's rule.
// Each only reads.

const ALL_BITS = "0xffffffff";
const LOCAL_TABLE = "255";

// Fields of `ip -j -N rule show` (iproute2 6.1) that give a rule's action or
// metadata rather than a packet selector. A rule with any other field besides
// `src` (iif, oif, to, tos, uidrange, ipproto, ports, l3mdev) matches only
// some packets.
const NOT_SELECTORS = new Set([
  "priority",
  "src",
  "not",
  "fwmark",
  "fwmask",
  "table",
  "action",
  "goto",
  "unresolved",
  "nop",
  "suppress_prefixlen",
  "suppress_ifgroup",
  "protocol",
  "flow_to",
  "flow_from",
]);

// `ip -N` prints these rule types as their RTN_* numbers from linux/rtnetlink.h.
const RULE_ACTIONS: Record<string, string> = { "6": "blackhole", "7": "unreachable", "8": "prohibit" };

/**
 * Reads the rules of every family and reports those that clash with
 * splitroute's rule, at the priority up would give it: up moves its rule
 * below wg-quick's rules when those sit at or below table.priority.
 */
export async function checkAllRules(system: System, config: Config, families: readonly Family[]): Promise<Finding[]> {
  const findings: Finding[] = [];
  const rules = new Map<Family, ObservedRule[]>();
  for (const family of families) {
    try {
      rules.set(family, await readRules(system, family));
    } catch (failure) {
      findings.push(unreadable("rules", `IPv${family} rules`, failure));
    }
  }

  let priority: number | undefined;
  try {
    priority = chooseRulePriority(config.table.priority, [...rules.values()].flat());
  } catch (failure) {
    // up fails with the same message. Its form is "WHAT; FIX".
    const message = (failure as Error).message;
    const split = message.indexOf("; ");
    findings.push(error("rules", message.slice(0, split), "up places its rule before wg-quick's, and fails when no priority is free there", message.slice(split + 2)));
  }

  for (const [family, observed] of rules) {
    findings.push(...checkRules(config, family, observed, priority));
  }
  return findings;
}

/**
 * Finds policy rules of other software that clash with splitroute's rule:
 * one that takes marked packets before it, one at its priority, one that
 * looks up its table, or one that matches on bits of its mark mask.
 * `priority` is where up would put splitroute's rule (see chooseRulePriority),
 * undefined when up could not place it.
 */
export function checkRules(config: Config, family: Family, rules: readonly ObservedRule[], priority: number | undefined): Finding[] {
  const { id } = config.table;
  const { value, mask } = config.mark;
  const ours = priority ?? config.table.priority;
  const findings: Finding[] = [];
  // The kernel adds a rule after the rules of its priority, so a rule at
  // splitroute's priority comes first unless splitroute's rule is older.
  const ourIndex = rules.findIndex((rule) => rule.priority === ours && isSplitrouteRule(rule, config));
  for (const [index, rule] of rules.entries()) {
    if (isSplitrouteRule(rule, config)) {
      continue;
    }
    const shown = describeRule(rule);
    const rulePriority = rule.priority ?? Infinity;
    const comesFirst = rulePriority < ours || (rulePriority === ours && (ourIndex === -1 || index < ourIndex));
    if (priority !== undefined && comesFirst && rule.table !== String(id) && takesMarkedPackets(rule, config, priority)) {
      findings.push(reportRuleBeforeOurs(family, rule, shown, priority));
    } else if (rulePriority === ours) {
      findings.push(
        warning(
          "rules",
          `IPv${family} rule "${shown}" already uses priority ${ours}`,
          `the kernel tries rules of one priority in the order they were added, so this rule comes before splitroute's and may take marked traffic`,
          `set table.priority to a free priority below ${ours}, or move that rule`,
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
    const ruleMask = Number(rule.fwmask ?? ALL_BITS);
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

/**
 * Returns whether `rule` would decide the route of the packets that
 * splitroute marks, had it come before splitroute's rule at `priority`. Its
 * fwmark is tested on a packet with splitroute's bits and no others, which
 * is the mark of most marked packets, since splitroute sets only its bits.
 */
export function takesMarkedPackets(rule: ObservedRule, config: Config, priority: number): boolean {
  if (rule.src !== "all" || !Object.keys(rule).every((field) => NOT_SELECTORS.has(field))) {
    return false;
  }
  // `not` inverts the whole match, so `not fwmark 0xca6c` matches our mark.
  const markMatches = rule.fwmark === undefined || (config.mark.value & Number(rule.fwmask ?? ALL_BITS)) === Number(rule.fwmark);
  if (markMatches === "not" in rule) {
    return false;
  }
  // A suppress_* rule ignores the routes it finds unless they are more
  // specific than its limit (wg-quick's `lookup main suppress_prefixlength 0`
  // ignores default routes), and the local table holds only this host's addresses.
  if ("suppress_prefixlen" in rule || "suppress_ifgroup" in rule || "nop" in rule || rule.table === LOCAL_TABLE) {
    return false;
  }
  // The kernel ignores a goto whose target priority has no rule.
  if (rule.goto !== undefined) {
    return !("unresolved" in rule) && Number(rule.goto) > priority;
  }
  return rule.table !== undefined || rule.action !== undefined;
}

function reportRuleBeforeOurs(family: Family, rule: ObservedRule, shown: string, priority: number): Finding {
  let why: string;
  if (rule.goto !== undefined) {
    why = `the kernel tries rules in priority order, so marked packets jump from that rule to priority ${String(rule.goto)}, past splitroute's rule`;
  } else if (rule.table === undefined) {
    why = `the kernel tries rules in priority order, and that ${actionName(rule)} rule fails the route lookup of marked packets before they reach splitroute's rule`;
  } else {
    why =
      `the kernel tries rules in priority order, so marked packets take the routes of table ${rule.table}, ` +
      `and reach splitroute's rule only when that table has no route to their destination`;
  }
  const rulePriority = rule.priority ?? 0;
  const lower = rulePriority > 1 ? `, or set table.priority to a free priority below ${rulePriority}` : "";
  return error(
    "rules",
    `IPv${family} rule "${shown}" comes before splitroute's rule at priority ${priority} and matches the packets that splitroute marks`,
    why,
    `give that rule a priority above ${priority} (delete it and add it again), so that splitroute's rule comes first${lower}`,
  );
}

function actionName(rule: ObservedRule): string {
  return RULE_ACTIONS[String(rule.action)] ?? String(rule.action);
}

// The rule splitroute installs, at any priority: up may move it below wg-quick's.
function isSplitrouteRule(rule: ObservedRule, config: Config): boolean {
  const known = new Set(["priority", "src", "fwmark", "fwmask", "table"]);
  return (
    rule.src === "all" &&
    Number(rule.fwmark) === config.mark.value &&
    Number(rule.fwmask ?? ALL_BITS) === config.mark.mask &&
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
  for (const field of ["iif", "oif", "ipproto", "sport", "dport"]) {
    if (rule[field] !== undefined) words.push(field, String(rule[field]));
  }
  if (rule.uid_start !== undefined) words.push("uidrange", `${String(rule.uid_start)}-${String(rule.uid_end)}`);
  if (rule.goto !== undefined) {
    words.push("goto", String(rule.goto));
  } else if (rule.action !== undefined) {
    words.push(actionName(rule));
  } else if ("nop" in rule) {
    words.push("nop");
  } else {
    words.push("lookup", rule.table ?? "?");
  }
  if (rule.suppress_prefixlen !== undefined) words.push("suppress_prefixlength", String(rule.suppress_prefixlen));
  if (rule.suppress_ifgroup !== undefined) words.push("suppress_ifgroup", String(rule.suppress_ifgroup));
  return words.join(" ");
}
