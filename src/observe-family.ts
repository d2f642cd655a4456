// Reading a family's tables and rules with one `ip -batch` process in place
// of one process per read. Each process costs 2-4 ms, a good part of a hook
// run with a small table, and ip's batch mode prints one JSON array per
// input line, so the reads of one family share a process.

import { readRouteProtocols, readRules, readTable, routeProtocol } from "./observe.js";
import type { ObservedRule } from "./rule.js";
import { parseRouteEntry } from "./snapshot/parse.js";
import { streamJsonArrays } from "./snapshot/read.js";
import type { Family, Route } from "./snapshot/route.js";
import type { System } from "./system/system.js";

/** How to read our table: each route's protocol only, or whole routes. */
export interface TableDetail<Current> {
  parse(entry: unknown, index: number, family: Family): Current | undefined;
  read(system: System, family: Family, table: number): Promise<Current[]>;
}

export const PROTOCOLS_ONLY: TableDetail<Pick<Route, "protocol">> = {
  parse: routeProtocol,
  read: readRouteProtocols,
};

export const WHOLE_ROUTES: TableDetail<Route> = {
  parse: parseRouteEntry,
  read: readTable,
};

/** The source table, our table and the rules of one family. */
export interface FamilyReads<Current> {
  main: Route[];
  table: Current[];
  rules: ObservedRule[];
}

/**
 * Reads the snapshot source table, our table and the rules of one family in
 * one process. When the batch fails, as it does where ip reports a table that
 * has never held a route as an error, each is read on its own, which treats
 * that table as empty.
 */
export async function readFamily<Current>(
  system: System,
  family: Family,
  source: string | number,
  tableId: number,
  detail: TableDetail<Current>,
): Promise<FamilyReads<Current>> {
  const reads: FamilyReads<Current> = { main: [], table: [], rules: [] };
  const indexes = [0, 0, 0];
  const batch = await readBatch(system, ["ip", `-${family}`, "-d", "-N", "-j", "-batch", "-"], [`route show table ${source}`, `route show table ${tableId}`, "rule show"], (entry, arrayIndex) => {
    const index = indexes[arrayIndex]!;
    indexes[arrayIndex] = index + 1;
    if (arrayIndex === 0) {
      const route = parseRouteEntry(entry, index, family);
      if (route !== undefined) reads.main.push(route);
    } else if (arrayIndex === 1) {
      const current = detail.parse(entry, index, family);
      if (current !== undefined) reads.table.push(current);
    } else {
      reads.rules.push(withoutProtocol(entry as ObservedRule));
    }
  });
  if (batch) {
    return reads;
  }
  return {
    main: await readTable(system, family, source),
    table: await detail.read(system, family, tableId),
    rules: await readRules(system, family),
  };
}

/** Reads the protocols of our table's routes and the rules of one family in one process, as readFamily does. */
export async function readFamilyForDown(system: System, family: Family, tableId: number): Promise<Omit<FamilyReads<Pick<Route, "protocol">>, "main">> {
  const reads: Omit<FamilyReads<Pick<Route, "protocol">>, "main"> = { table: [], rules: [] };
  const batch = await readBatch(system, ["ip", `-${family}`, "-N", "-j", "-batch", "-"], [`route show table ${tableId}`, "rule show"], (entry, arrayIndex) => {
    if (arrayIndex === 0) {
      reads.table.push(PROTOCOLS_ONLY.parse(entry, 0, family)!);
    } else {
      reads.rules.push(entry as ObservedRule);
    }
  });
  if (batch) {
    return reads;
  }
  return { table: await readRouteProtocols(system, family, tableId), rules: await readRules(system, family) };
}

/**
 * Runs the read-only ip `commands` in one batch and hands every element of
 * their output to `onElement`. Returns false when ip fails, when it does not
 * print one array per command, or when the handler throws. The caller then
 * discards what it was handed and reads again, one command at a time, which
 * raises the error where there is one.
 */
async function readBatch(system: System, argv: string[], commands: readonly string[], onElement: (element: unknown, arrayIndex: number) => void): Promise<boolean> {
  const { result, arrays, failure } = await streamJsonArrays(system, argv, `${commands.join("\n")}\n`, onElement);
  return result.exitCode === 0 && failure === undefined && arrays === commands.length;
}

// With -d, ip 6.1 adds each rule's `protocol`, which the plain `rule show`
// that the rule matching was written for leaves out.
function withoutProtocol(rule: ObservedRule): ObservedRule {
  const { protocol: _protocol, ...rest } = rule;
  return rest;
}
