import type { Config } from "../config/types.js";
import { findServiceSelectorProblems } from "../firewall/marking.js";
import { interfaceExists } from "../observe.js";
import type { System } from "../system/system.js";
import { error, ok, warning, type Finding } from "./report.js";

// Checks of the [bypass.NAME] selectors that name things on this host: the
// systemd units of `service` and the interfaces of `interface`.

/** Reports the `service` selectors that up would reject, with the reason and fix that up gives. */
export async function checkServices(system: System, config: Config): Promise<Finding[]> {
  const units = config.bypass.flatMap((bypass) => (bypass.service === undefined ? [] : [bypass.service]));
  if (units.length === 0) {
    return [];
  }
  const problems = await findServiceSelectorProblems(system, config.bypass);
  if (problems.length === 0) {
    return [ok("service", `the cgroup of ${units.join(", ")} exists, so up can select the traffic of ${units.length === 1 ? "that unit" : "those units"}`)];
  }
  return problems.map(({ problem, fix }) =>
    error("service", problem, "up looks up the unit's cgroup to select its traffic, and fails without changing anything when it is missing", fix),
  );
}

/**
 * Warns about `interface` selectors that name no interface in this network
 * namespace. Not an error: both firewall backends match the interface by
 * name, so the section works once an interface of that name comes up.
 */
export async function checkInterfaces(system: System, config: Config): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const bypass of config.bypass) {
    const name = bypass.interface;
    if (name === undefined) {
      continue;
    }
    if (await interfaceExists(system, name)) {
      findings.push(ok("interface", `bypass.${bypass.name}.interface ${name} exists`));
      continue;
    }
    findings.push(
      warning(
        "interface",
        `bypass.${bypass.name}.interface ${name} does not exist in this network namespace`,
        `the firewall matches the interface by name, so the section selects nothing until an interface named ${name} appears`,
        `correct bypass.${bypass.name}.interface (ip link lists the interfaces), unless ${name} comes up later`,
      ),
    );
  }
  return findings;
}
