// Helpers shared by the end-to-end tests: where the hooks and the CLI are,
// and how to ask splitroute about the lab's client namespace.

import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

import type { Lab } from "../../src/lab/lab.js";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const HOOKS = { up: join(REPO, "hooks", "up"), down: join(REPO, "hooks", "down") };
export const CLI = join(REPO, "dist", "cli.js");

/** The parts of `splitroute status --json` the tests read. */
export interface StatusJson {
  installed: boolean;
  drift: string[];
  state?: { tunnels: string[]; backend: string; priority: number };
}

/** Runs `splitroute status --json` inside the client namespace. It exits 1 on drift, so the exit code is not checked. */
export async function clientStatus(lab: Lab): Promise<StatusJson> {
  const result = await execa("ip", ["netns", "exec", lab.names.client, process.execPath, CLI, "status", "--json"], { reject: false });
  return JSON.parse(String(result.stdout)) as StatusJson;
}

/**
 * Runs `splitroute cleanup` in the client namespace when a failed test left
 * the bypass behind. destroy() deletes the namespace but not splitroute's
 * state file in /run/splitroute, which would otherwise outlive it.
 */
export async function removeLeftoverBypass(lab: Lab): Promise<void> {
  if ((await clientStatus(lab)).installed) {
    await execa("ip", ["netns", "exec", lab.names.client, process.execPath, CLI, "cleanup"]);
  }
}
