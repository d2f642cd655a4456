import { hex } from "./firewall/marking.js";

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
