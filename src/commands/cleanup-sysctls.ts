import type { Logger } from "../log.js";
import { readInterfaceNames } from "../observe.js";
import { interfaceKey } from "../rpfilter.js";
import type { System } from "../system/system.js";

/**
 * Warns of each interface whose src_valid_mark is 1, for a cleanup without a
 * state file. up may have set it, but only the record contains the value it
 * replaced, so cleanup leaves it and names the command that clears it.
 */
export async function warnOfUnrecordedSrcValidMark(system: System, log: Logger): Promise<void> {
  const marked: string[] = [];
  for (const name of await readInterfaceNames(system)) {
    if ((await system.readSysctl(interfaceKey(name, "src_valid_mark"))) === "1") {
      marked.push(name);
    }
  }
  if (marked.length > 0) {
    log.warn(srcValidMarkWarning(marked));
  }
}

function srcValidMarkWarning(interfaces: readonly string[]): string {
  const resets = interfaces.map((name) => `${interfaceKey(name, "src_valid_mark")}=0`).join(" ");
  return (
    `src_valid_mark is 1 on ${interfaces.join(", ")}, and cleanup leaves it. ` +
    `splitroute's up sets it on uplinks with strict rp_filter, but without a state file cleanup cannot tell whether splitroute set it. ` +
    `If nothing else needs it, set it back with: sysctl -w ${resets}`
  );
}
