import { applySteps, crashPoint } from "../apply.js";
import { checkEarlyRpFilter, checkMarkedRoute } from "../checks.js";
import { chooseBackend, readNftRuleset, type FirewallBackend } from "../firewall/backend.js";
import { checkServiceSelectors, describeBypass, hex } from "../firewall/marking.js";
import { planUp } from "../plan/up.js";
import { hasRule } from "../rule.js";
import type { Config } from "../config/types.js";
import type { State } from "../state.js";
import { withLock, type Context } from "./context.js";
import { removeAll } from "./down.js";
import { planSysctlRestore } from "../plan/down.js";
import { observeForUp } from "./observe-state.js";
import { ConfigError } from "../errors.js";
import { interfaceExists, readRules } from "../observe.js";

/**
 * Installs the bypass for `device`, or adds the tunnel to an existing one.
 * Neither OpenVPN nor wg-quick runs `down` after a failed `up`, so a failure
 * removes what this run installed before the error is reported.
 */
export async function up(context: Context, device: string): Promise<void> {
  await withLock(context, async () => {
    const { config, log, system, store } = context;
    if (!(await interfaceExists(system, device))) {
      throw new ConfigError(`tunnel device ${device} does not exist in this network namespace; check --dev or the dev variable`);
    }
    const nftRuleset = await readNftRuleset(system);
    const backend = await chooseBackend(config.firewall.backend, system, nftRuleset);
    const serviceProblems = await checkServiceSelectors(system, config.bypass);
    if (serviceProblems.length > 0) {
      throw new ConfigError(`cannot select traffic by service:\n${serviceProblems.map((problem) => `  ${problem}`).join("\n")}`);
    }
    const previous = await usablePrevious(context, backend);

    const observed = await observeForUp(system, config, device, backend, previous, nftRuleset);
    const { steps, state } = planUp({ config, device, backend, previous, observed });

    // Recorded before the first change, so that a run killed half-way still
    // leaves a record of what may exist.
    await store.write(state);
    crashPoint();
    try {
      await applySteps(system, steps, log);
    } catch (error) {
      const reason = (error as Error).message;
      log.error(reason);
      try {
        await rollBack(context, state, previous);
      } catch (rollbackError) {
        throw new Error(`up for ${device} failed: ${reason}\nrolling back also failed: ${(rollbackError as Error).message}`, {
          cause: error,
        });
      }
      throw new Error(`up for ${device} failed and was rolled back: ${reason}`, { cause: error });
    }
    warnWithoutDefaultRoute(context, state, device);
    for (const problem of [...(await checkMarkedRoute(system, state)), ...(await checkEarlyRpFilter(system, state, nftRuleset))]) {
      log.warn(`the bypass may not work: ${problem}`);
    }
    if (state.priority !== config.table.priority) {
      log.warn(`rule placed at priority ${state.priority} instead of table.priority ${config.table.priority}, so that it comes before wg-quick's rules`);
    }
    log.info(
      `bypass active for ${state.tunnels.join(", ")}: ${state.routeCounts[4]} IPv4 and ${state.routeCounts[6]} IPv6 routes in table ` +
        `${state.table.name} (${state.table.id}), rule priority ${state.priority} fwmark ${hex(state.mark.value)}/${hex(state.mark.mask)}, ` +
        `${state.backend} marking for ${state.bypass.map(describeBypass).join(", ")}`,
    );
  });
}

/**
 * Undoes a failed up. Without an earlier bypass, everything goes. With one,
 * the sysctls this run changed are put back and the bypass is reinstalled for
 * the tunnels that held it, so a failing second tunnel does not cost the first.
 */
async function rollBack(context: Context, state: State, previous: State | undefined): Promise<void> {
  const { config, log, system, store } = context;
  if (previous === undefined) {
    log.warn("up failed; removing what splitroute installed");
    await removeAll(context, state);
    return;
  }
  log.warn(`up failed; restoring the bypass for ${previous.tunnels.join(", ")}`);
  const added = state.sysctls.slice(previous.sysctls.length);
  const current: Record<string, string | undefined> = {};
  for (const change of added) {
    current[change.key] = await system.readSysctl(change.key);
  }
  const warnings: string[] = [];
  await applySteps(system, planSysctlRestore(added, current, warnings), log);
  warnings.forEach((warning) => log.warn(warning));

  const device = previous.tunnels[0]!;
  const observed = await observeForUp(system, config, device, previous.backend, previous);
  await applySteps(system, planUp({ config, device, backend: previous.backend, previous, observed }).steps, log);
  await store.write(previous);
}

/** Returns whether `state` was installed with the table, rule, mark and backend that `config` now requests. */
export function sameIdentity(state: State, config: Config, backend: FirewallBackend): boolean {
  return (
    state.table.id === config.table.id &&
    (state.configuredPriority ?? state.priority) === config.table.priority &&
    state.mark.value === config.mark.value &&
    state.mark.mask === config.mark.mask &&
    state.backend === backend
  );
}

/**
 * Returns the recorded state when it still describes what is installed with
 * today's table, rule and backend. Anything else is removed or forgotten first.
 */
async function usablePrevious(context: Context, backend: FirewallBackend): Promise<State | undefined> {
  const { config, log, store, system } = context;
  const previous = await store.read();
  if (previous === undefined) {
    return undefined;
  }
  if (!sameIdentity(previous, config, backend)) {
    log.info("the configuration changed since the bypass was installed; removing the old bypass first");
    await removeAll(context, previous);
    return undefined;
  }

  // A state file whose rule is gone describes a namespace that no longer
  // exists (its inode number was reused), or someone removed the rule by hand.
  // Either way the bypass no longer works, so it is rebuilt from scratch.
  const rule = { tableId: previous.table.id, priority: previous.priority, mark: previous.mark };
  if (!hasRule(await readRules(system, 4), rule)) {
    log.warn(`state file ${store.path} names tunnels ${previous.tunnels.join(", ")}, but its IPv4 rule is gone; starting afresh`);
    // The sysctls stay in the record: planRemoval puts back only values
    // that still equal what splitroute set.
    await removeAll(context, previous);
    return undefined;
  }
  return previous;
}

// Without a default route in the copy, replies to hosts outside the uplink's
// own subnet find no route in our table and fall through to the VPN's routes.
function warnWithoutDefaultRoute(context: Context, state: State, device: string): void {
  if (!state.hasDefaultRoute?.[4]) {
    context.log.warn(
      `the copied IPv4 table has no default route, so replies to hosts beyond the uplink's subnets still go into the tunnel; check that ${device} is the VPN's device and that main had a default route before it came up`,
    );
  }
}
