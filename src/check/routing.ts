import type { Config } from "../config/types.js";
import { readTable } from "../observe.js";
import { isOurRoute } from "../owner.js";
import { snapshotRoutes } from "../plan/up.js";
import type { Family } from "../snapshot/route.js";
import type { State } from "../state.js";
import type { System } from "../system/system.js";
import { readTableDeclarations, type TableDeclaration } from "./files.js";
import { error, ok, warning, type Finding } from "./report.js";

// Checks of the routing side: table names, the bypass table and the table
// that up copies. Each only reads. The policy rules are checked in rules.ts.

const DECLARE_FILE = "/etc/iproute2/rt_tables.d/splitroute.conf";

/**
 * Checks that table.name is declared for table.id, and that snapshot.table is
 * a table that ip can resolve. `snapshotResolves` is false when it is a name
 * that no rt_tables file declares, so that ip fails on every read of it.
 */
export async function checkTableNames(system: System, config: Config): Promise<{ findings: Finding[]; snapshotResolves: boolean }> {
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
  const snapshotResolves = numeric || source === "main" || declarations.some((declaration) => declaration.name === source);
  if (!snapshotResolves) {
    findings.push(
      error(
        "snapshot",
        `snapshot.table ${source} is not declared in rt_tables or rt_tables.d`,
        `up cannot read the table to copy, and fails`,
        `set snapshot.table to the table's number, or declare its name in /etc/iproute2/rt_tables.d/`,
      ),
    );
  }
  return { findings, snapshotResolves };
}

function describeDeclarations(declarations: readonly TableDeclaration[]): string {
  return declarations.map((declaration) => `${declaration.name} (${declaration.path})`).join(", ");
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
    // A name declared in a file that this ip does not read fails here, though checkTableNames found it.
    if (/table id value is invalid/.test((failure as Error).message)) {
      return error(
        "snapshot",
        `cannot read IPv${family} table ${source}: ip does not know the table name that snapshot.table gives`,
        `up cannot read the table to copy, and fails`,
        `set snapshot.table to the table's number, or declare its name in /etc/iproute2/rt_tables.d/`,
      );
    }
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

/** Reports a read of ip that failed, which check takes for missing privileges or a missing ip. */
export function unreadable(area: string, what: string, failure: unknown): Finding {
  return error(area, `cannot read ${what}: ${(failure as Error).message}`, `check cannot tell whether it blocks the bypass`, `run check as root with ip installed`);
}
