import { formatArgv } from "../errors.js";
import { chooseBackend, readNftRuleset } from "../firewall/backend.js";
import { planDown, planRemoval } from "../plan/down.js";
import { renderStep, type Step } from "../plan/step.js";
import { planUp } from "../plan/up.js";
import type { Context } from "./context.js";
import { observeForDown, observeForUp } from "./observe-state.js";
import { sameIdentity } from "./up.js";
import { networkNamespaceId } from "../state.js";

/**
 * Returns, as a shell script, the exact commands and rulesets that `up` or
 * `down` would run for `device` now, without applying any of them. Sysctl
 * writes appear as the equivalent `sysctl -w` commands.
 */
export async function planCommands(context: Context, action: "up" | "down", device: string): Promise<string> {
  const { config, system, store } = context;
  const recorded = await store.read();
  const sections: string[] = [];

  if (action === "down") {
    if (recorded === undefined) {
      return "# nothing installed in this network namespace; down would change nothing\n";
    }
    const plan = planDown(recorded, device, await observeForDown(system, recorded));
    sections.push(...plan.warnings.map((warning) => `# ${warning}`), render(plan.steps));
    return finish(sections);
  }

  const nftRuleset = await readNftRuleset(system);
  const backend = await chooseBackend(config.firewall.backend, system, nftRuleset);
  let previous = recorded;
  if (recorded !== undefined && !sameIdentity(recorded, config, backend)) {
    const removal = planRemoval(recorded, await observeForDown(system, recorded));
    sections.push("# the installed bypass uses another table, rule, mark or backend; up removes it first:", render(removal.steps));
    previous = undefined;
  }
  // After a removal the table is gone whatever the ruleset showed, and a
  // replacing script is right either way.
  const observed = await observeForUp(system, config, device, backend, previous, previous === recorded ? nftRuleset : undefined);
  sections.push(render(planUp({ config, device, backend, previous, observed }).steps));
  return finish(sections);
}

function render(steps: readonly Step[]): string {
  return steps.map((step) => `# ${step.summary}\n${renderStep(step, formatArgv)}`).join("\n");
}

function finish(sections: readonly string[]): string {
  const body = sections.filter((section) => section !== "").join("\n");
  return body === "" ? "# nothing to change\n" : `${guard(networkNamespaceId())}${body}\n`;
}

/**
 * Returns the script's first lines. A plan piped out of `ip netns exec`
 * into a shell outside it would change the host's own namespace, so the
 * script checks that it runs in the namespace it was planned for, and
 * stops at the first failing command.
 */
export function guard(namespace: number): string {
  return [
    `# Planned by splitroute for network namespace ${namespace} (the inode of /proc/self/ns/net).`,
    "set -e",
    `[ "$(stat -L -c %i /proc/self/ns/net)" = "${namespace}" ] || { echo "this script was planned for network namespace ${namespace}; run it there, as in: ip netns exec NAME sh" >&2; exit 1; }`,
    "",
  ].join("\n");
}
