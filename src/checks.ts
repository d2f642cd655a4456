import { readNftRuleset } from "./firewall/backend.js";
import { hex } from "./firewall/marking.js";
import { readRules } from "./observe.js";
import type { Family } from "./snapshot/route.js";
import type { State } from "./state.js";
import type { System } from "./system/system.js";

// Checks that the bypass can work once it is installed. Each returns problems
// in words, with the fix, and changes nothing. They are warnings: up has done
// its part, and an administrator who is locked out needs to know why.

// Destinations for asking the kernel where marked traffic goes. A lookup
// sends nothing; any address the copy's default route covers would do.
const PROBE_DESTINATIONS: Record<Family, string> = { 4: "203.0.113.1", 6: "2001:db8::1" };

/** The reason marked traffic misses our table, for callers that act on it. */
export type MarkedRouteCause = "lookup failed" | "earlier rule" | "missing route";

export interface MarkedRouteProblem {
  family: Family;
  cause: MarkedRouteCause;
  /** The problem in words, with the fix. */
  message: string;
}

/**
 * Asks the kernel (`ip route get ... mark`) which table routes marked
 * traffic. Another table means either a rule before ours takes it, or our
 * table has no route for the destination and the lookup falls through to a
 * rule after ours.
 */
export async function checkMarkedRoute(system: System, state: State): Promise<string[]> {
  return (await findMarkedRouteProblems(system, state)).map((problem) => problem.message);
}

/** Does what checkMarkedRoute does, and returns each problem with its cause. */
export async function findMarkedRouteProblems(system: System, state: State): Promise<MarkedRouteProblem[]> {
  const problems: MarkedRouteProblem[] = [];
  for (const family of state.families) {
    if (!state.hasDefaultRoute?.[family]) {
      continue;
    }
    const destination = PROBE_DESTINATIONS[family];
    const argv = ["ip", `-${family}`, "-N", "-j", "route", "get", destination, "mark", hex(state.mark.value)];
    const result = await system.run(argv);
    if (result.exitCode !== 0) {
      problems.push({
        family,
        cause: "lookup failed",
        message: `IPv${family} marked traffic to ${destination} finds no route (${result.stderr.trim()}); check ip -${family} rule show`,
      });
      continue;
    }
    const [route] = JSON.parse(result.stdout || "[]") as Array<{ table?: string; dev?: string }>;
    const table = route?.table ?? "254";
    if (table === String(state.table.id)) {
      continue;
    }
    const routed = `IPv${family} marked traffic to ${destination} is routed by table ${table} via ${route?.dev ?? "nothing"}, not by table ${state.table.id}`;
    const laterRule = await findLaterRule(system, family, table, state.priority);
    if (laterRule === undefined) {
      problems.push({
        family,
        cause: "earlier rule",
        message:
          `${routed}: a rule before priority ${state.priority} takes it (see ip -${family} rule show); ` +
          `give that rule a priority above ${state.priority}, or set table.priority below that rule's priority and run splitroute up again`,
      });
    } else {
      problems.push({
        family,
        cause: "missing route",
        message:
          `${routed}, because table ${state.table.id} has no route to ${destination} and the lookup falls through to the rule at priority ${laterRule}; ` +
          `run splitroute refresh to copy the routes into table ${state.table.id} again, or splitroute up --dev ${state.tunnels[0]} again`,
      });
    }
  }
  return problems;
}

/**
 * Returns the priority of the first rule after `priority` that looks up
 * `table`, or undefined when a rule before it does (so that rule may be the
 * one that took the traffic) or no rule names the table.
 */
async function findLaterRule(system: System, family: Family, table: string, priority: number): Promise<number | undefined> {
  const lookups = (await readRules(system, family)).filter((rule) => rule.table === table && rule.priority !== undefined);
  if (lookups.some((rule) => rule.priority! < priority)) {
    return undefined;
  }
  const later = lookups.map((rule) => rule.priority!).filter((rulePriority) => rulePriority > priority);
  return later.length === 0 ? undefined : Math.min(...later);
}

// nft's names for hook priorities, from nft(8).
const PRIORITY_NAMES: Record<string, number> = { raw: -300, mangle: -150, dstnat: -100, filter: 0, security: 50 };

/**
 * Finds IPv6 reverse-path filters that run in prerouting before our mark is
 * set (priority mangle, -150): firewalld's IPv6_rpfilter in its raw chain, or
 * any other `fib saddr ... missing drop` rule there. They drop the inbound
 * connection before the mark could steer the reverse-path lookup to our table.
 * `nftRuleset` is the ruleset as read before up, when the caller has it: our
 * table adds no such filter, so it serves as well as one read after up.
 */
export async function checkEarlyRpFilter(system: System, state: State, nftRuleset?: string | null): Promise<string[]> {
  if (!state.families.includes(6)) {
    return [];
  }
  const ruleset = nftRuleset === undefined ? await readNftRuleset(system) : nftRuleset;
  return ruleset === null ? [] : findEarlyRpFilters(ruleset);
}

/** Finds the early IPv6 reverse-path filters that checkEarlyRpFilter describes in `nft list ruleset` output. */
export function findEarlyRpFilters(ruleset: string): string[] {
  const problems: string[] = [];
  for (const chain of ruleset.split(/\n(?=\s*chain )/)) {
    const hook = /type filter hook prerouting priority ([a-z]+)?\s*([+-]\s*\d+|-?\d+)?/.exec(chain);
    if (hook === null) {
      continue;
    }
    const base = hook[1] === undefined ? 0 : (PRIORITY_NAMES[hook[1]] ?? 0);
    const priority = base + Number((hook[2] ?? "0").replace(/\s+/g, ""));
    if (priority < PRIORITY_NAMES.mangle! && /fib saddr\b[^\n]*\bmissing drop/.test(chain)) {
      const name = /chain (\S+)/.exec(chain)?.[1] ?? "?";
      problems.push(
        `the reverse-path filter in nftables chain ${name} (prerouting, priority ${priority}) runs before splitroute marks packets, so it drops inbound IPv6 connections to the bypass ports; ` +
          `with firewalld, set IPv6_rpfilter=loose (or no) in /etc/firewalld/firewalld.conf, or use a firewalld that checks in its filter chain`,
      );
    }
  }
  return problems;
}
