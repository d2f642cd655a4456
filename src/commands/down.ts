import { applyAllSteps } from "../apply.js";
import { AggregateFailure } from "../errors.js";
import { planDown, planRemoval, type DownPlan } from "../plan/down.js";
import type { State } from "../state.js";
import { withLock, type Context } from "./context.js";
import { observeForDown } from "./observe-state.js";

/**
 * Takes the bypass down for `device`. Every removal is tried even after a
 * failure; on failure the state file stays, so a later down can finish.
 */
export async function down(context: Context, device: string): Promise<void> {
  await withLock(context, async () => {
    const state = await context.store.read();
    if (state === undefined) {
      context.log.info(`nothing installed in this network namespace; nothing to do for ${device}`);
      return;
    }
    const observed = await observeForDown(context.system, state);
    await execute(context, planDown(state, device, observed), state);
    if (state.tunnels.length > 1 && state.tunnels.includes(device)) {
      context.log.info(`bypass kept for ${state.tunnels.filter((tunnel) => tunnel !== device).join(", ")}; ${device} removed from it`);
    } else if (state.tunnels.includes(device)) {
      context.log.info(`bypass removed: table ${state.table.name} (${state.table.id}), rule, ${state.backend} marking`);
    }
  });
}

/** Removes everything `state` records. Used by down of the last tunnel and by a failed up. */
export async function removeAll(context: Context, state: State): Promise<void> {
  const observed = await observeForDown(context.system, state);
  await execute(context, planRemoval(state, observed), state);
}

async function execute(context: Context, plan: DownPlan, state: State): Promise<void> {
  for (const warning of plan.warnings) {
    context.log.warn(warning);
  }
  const failures = await applyAllSteps(context.system, plan.steps, context.log);
  if (failures.length > 0) {
    throw new AggregateFailure(
      `${failures.length} of ${plan.steps.length} removal step(s) failed; the state is kept in ${context.store.path} so that running down again can finish`,
      failures,
    );
  }
  if (plan.remaining !== undefined) {
    if (plan.remaining !== state) {
      await context.store.write(plan.remaining);
    }
  } else {
    await context.store.remove();
  }
}
