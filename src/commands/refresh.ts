import { applySteps } from "../apply.js";
import { checkMarkedRoute } from "../checks.js";
import { planRefresh } from "../plan/refresh.js";
import { withLock, type Context } from "./context.js";
import { observeForRefresh } from "./observe-state.js";

/**
 * Copies main into the bypass table again, for when DHCP changed the gateway
 * or a roam changed the uplink while a tunnel is up. The table is never empty
 * on the way: see planRefresh.
 */
export async function refresh(context: Context): Promise<void> {
  await withLock(context, async () => {
    const { config, log, store, system } = context;
    const state = await store.read();
    if (state === undefined) {
      log.info("nothing installed in this network namespace; nothing to refresh");
      return;
    }
    const observed = await observeForRefresh(system, config, state);
    const { steps, state: refreshed } = planRefresh(state, config, observed);
    if (steps.length === 0) {
      log.info(`table ${state.table.name} (${state.table.id}) already matches ${config.snapshot.table}; nothing to change`);
      return;
    }
    // Recorded first, so the sysctls this run changes are restored on down
    // even if it is killed half-way.
    await store.write(refreshed);
    await applySteps(system, steps, log);
    for (const problem of await checkMarkedRoute(system, refreshed)) {
      log.warn(`the bypass may not work: ${problem}`);
    }
    log.info(`table ${state.table.name} (${state.table.id}) refreshed: ${refreshed.routeCounts[4]} IPv4 and ${refreshed.routeCounts[6]} IPv6 routes`);
  });
}
