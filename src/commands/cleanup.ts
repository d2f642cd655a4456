import { applyAllSteps } from "../apply.js";
import { AggregateFailure } from "../errors.js";
import { readNftRuleset, type FirewallBackend } from "../firewall/backend.js";
import { hasNftTable } from "../firewall/nftables.js";
import { iptablesTools } from "../firewall/iptables.js";
import { planRemoval } from "../plan/down.js";
import { StateFileError, type State } from "../state.js";
import type { System } from "../system/system.js";
import { warnOfUnrecordedSrcValidMark } from "./cleanup-sysctls.js";
import { withLock, type Context } from "./context.js";
import { observeForDown } from "./observe-state.js";

/**
 * Removes everything splitroute owns in this network namespace, whether or
 * not the state file survived: our rules at any priority, our routes in our
 * table, our nftables table and our tagged iptables jumps and chains in every
 * iptables variant. Sysctls are restored only from the state file, because
 * nothing else records their earlier values. Without it, cleanup warns of
 * each interface whose src_valid_mark is 1 and leaves the value.
 */
export async function cleanup(context: Context): Promise<void> {
  await withLock(context, async () => {
    const { config, log, store, system } = context;
    const recorded = await store.read().catch((error: unknown) => {
      if (!(error instanceof StateFileError)) {
        throw error;
      }
      log.warn(`ignoring state file ${error.path}: ${error.reason}; cleanup removes it at the end`);
      return undefined;
    });
    if (recorded === undefined) {
      log.info(`no state file at ${store.path}; looking for splitroute's objects with table ${config.table.id} and mark from ${config.source}`);
      await warnOfUnrecordedSrcValidMark(system, log);
    }
    const base = recorded ?? identityFromConfig(context);

    const failures: Error[] = [];
    let steps = 0;
    for (const backend of await installedBackends(system, base.backend)) {
      const state = { ...base, backend };
      const observed = await observeForDown(system, state);
      if (backend === "nftables") {
        const ruleset = await readNftRuleset(system);
        // Without a readable ruleset the removal runs anyway: its script
        // creates the table before deleting it, so it succeeds either way.
        observed.nftTableExists = ruleset === null ? undefined : hasNftTable(ruleset);
      }
      const plan = planRemoval(state, observed);
      plan.warnings.forEach((warning) => log.warn(warning));
      steps += plan.steps.length;
      failures.push(...(await applyAllSteps(system, plan.steps, log)));
      // Sysctls and nftables objects are restored once, with the first backend.
      base.sysctls = [];
      base.createdMangle = [];
      base.createdNat = [];
    }

    if (failures.length > 0) {
      throw new AggregateFailure(`${failures.length} of ${steps} cleanup step(s) failed; run cleanup again after fixing the cause`, failures);
    }
    await store.remove();
    log.info(steps === 0 ? "nothing of splitroute's found; nothing to do" : `cleanup done: ${steps} step(s) run`);
  });
}

/** Builds a state describing what the configuration would have installed, for a cleanup without a state file. */
function identityFromConfig(context: Context): State {
  const { config } = context;
  return {
    version: 1,
    tunnels: [],
    table: { id: config.table.id, name: config.table.name },
    priority: config.table.priority,
    mark: config.mark,
    bypass: config.bypass,
    backend: "nftables",
    families: [4, 6],
    sysctls: [],
    routeCounts: { 4: 0, 6: 0 },
    configSource: config.source,
  };
}

/**
 * Lists the firewall backends to search: the recorded one first, then every
 * other one installed. Plain `iptables` is a link to one of the two variants,
 * so it is searched only where neither variant's tools exist. A legacy table
 * is only read when the kernel already has it, because reading it with
 * iptables-legacy-save would create it.
 */
export async function installedBackends(system: System, recorded: FirewallBackend): Promise<FirewallBackend[]> {
  const found: FirewallBackend[] = [recorded];
  if (system.hasTool("nft")) {
    found.push("nftables");
  }
  if (system.hasTool(iptablesTools("iptables-nft", 4).save)) {
    found.push("iptables-nft");
  }
  if (system.hasTool(iptablesTools("iptables-legacy", 4).save) && (await legacyMangleLoaded(system))) {
    found.push("iptables-legacy");
  }
  if (!found.includes("iptables-nft") && !found.includes("iptables-legacy") && system.hasTool("iptables-save")) {
    found.push("iptables");
  }
  return [...new Set(found)];
}

async function legacyMangleLoaded(system: System): Promise<boolean> {
  for (const path of ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"]) {
    if ((await system.readText(path))?.split("\n").includes("mangle")) {
      return true;
    }
  }
  return false;
}
