import { ConfigError } from "./errors.js";
import { hex } from "./firewall/marking.js";
import { WG_QUICK_FIRST_TABLE } from "./owner.js";

/** Our policy rule: packets carrying the mark look up the bypass table. */
export interface RuleSpec {
  tableId: number;
  priority: number;
  mark: { value: number; mask: number };
}

/**
 * Builds the selector of our rule, used alike by add and del so that both
 * always name the same rule. The priority is always explicit: without it the
 * kernel picks one relative to the rules present, and removal could miss.
 */
export function ruleSelector(rule: RuleSpec): string[] {
  const { value, mask } = rule.mark;
  return ["fwmark", `${hex(value)}/${hex(mask)}`, "lookup", String(rule.tableId), "priority", String(rule.priority)];
}

/** One entry of `ip -j -N rule show`. */
export interface ObservedRule {
  priority?: number;
  fwmark?: string;
  fwmask?: string;
  table?: string;
  [field: string]: unknown;
}

/** Returns whether `rules` (from `ip -j -N rule show`) contains our rule. */
export function hasRule(rules: readonly ObservedRule[], rule: RuleSpec): boolean {
  return rules.some((entry) => isOurRule(entry, rule));
}

/**
 * Returns our rules at any priority: a run killed after moving the rule, or
 * one with an older configuration, can leave ours at another priority.
 */
export function findOurRules(rules: readonly ObservedRule[], rule: Omit<RuleSpec, "priority">): RuleSpec[] {
  return rules
    .filter((entry) => entry.priority !== undefined && isOurRule(entry, { ...rule, priority: entry.priority }))
    .map((entry) => ({ ...rule, priority: entry.priority! }));
}

// A rule is ours when priority, mark, mask and table all match and it has no
// other selector. Anything else at our priority belongs to someone else.
function isOurRule(entry: ObservedRule, rule: RuleSpec): boolean {
  const known = new Set(["priority", "src", "fwmark", "fwmask", "table"]);
  return (
    entry.priority === rule.priority &&
    entry.src === "all" &&
    Number(entry.fwmark) === rule.mark.value &&
    Number(entry.fwmask ?? "0xffffffff") === rule.mark.mask &&
    entry.table === String(rule.tableId) &&
    Object.keys(entry).every((field) => known.has(field))
  );
}

// wg-quick adds its rules without a priority, and the kernel then places a
// new rule just before the first non-local rule. So when our rule exists
// first, wg-quick's land right before it and would send marked replies into
// the WireGuard tunnel: `not fwmark 51820 lookup 51820` takes everything that
// is not WireGuard's own traffic.
function isWgQuickRule(entry: ObservedRule): boolean {
  return Number(entry.table) >= WG_QUICK_FIRST_TABLE || "suppress_prefixlen" in entry;
}

/**
 * Returns the priority our rule must have to come before wg-quick's rules:
 * the configured one, or one below the lowest wg-quick rule that sits at or
 * below it. Throws when no priority is left below wg-quick's rules.
 */
export function chooseRulePriority(configured: number, rules: readonly ObservedRule[]): number {
  const competing = rules.filter((entry) => isWgQuickRule(entry) && entry.priority !== undefined && entry.priority <= configured);
  if (competing.length === 0) {
    return configured;
  }
  const lowest = Math.min(...competing.map((entry) => entry.priority!));
  if (lowest <= 1) {
    throw new ConfigError(
      `wg-quick's policy rules sit at priority ${lowest}, leaving no priority below them for splitroute's rule; remove rules at priorities below ${configured} or set table.priority lower`,
    );
  }
  return lowest - 1;
}
