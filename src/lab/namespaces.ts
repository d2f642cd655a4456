// Commands the lab runs on the host: creating and deleting network namespaces
// and running a command inside one. Every command changes only a namespace the
// lab created, never the root namespace.

import { randomBytes } from "node:crypto";
import { execa } from "execa";
import { CommandError } from "../errors.js";

/** Runs argv without a shell and returns its stdout. Throws CommandError on a non-zero exit. */
export async function runCommand(argv: readonly string[], input?: string): Promise<string> {
  const [file, ...args] = argv;
  if (file === undefined) {
    throw new Error("runCommand: argv is empty");
  }

  const result = await execa(file, args, { reject: false, input, stdin: input === undefined ? "ignore" : "pipe" });
  if (result.exitCode !== 0 || result.failed) {
    const detail = result.stderr || result.stdout || (result.signal === undefined ? "" : `killed by ${result.signal}`);
    throw new CommandError(argv, result.exitCode, detail);
  }
  return result.stdout;
}

/** Returns the argv that runs `argv` inside `namespace`. */
export function inNamespace(namespace: string, argv: readonly string[]): [string, ...string[]] {
  return ["ip", "netns", "exec", namespace, ...argv];
}

/** Runs argv inside `namespace` and returns its stdout. Throws CommandError on a non-zero exit. */
export async function runInNamespace(namespace: string, argv: readonly string[], input?: string): Promise<string> {
  return runCommand(inNamespace(namespace, argv), input);
}

/**
 * Returns a fresh name prefix such as "sr-3fa91c". Namespace names of one lab
 * share it, so a leftover namespace can be traced to its lab.
 */
export function newNamespacePrefix(): string {
  return `sr-${randomBytes(3).toString("hex")}`;
}

export async function listNamespaces(): Promise<string[]> {
  const output = await runCommand(["ip", "netns", "list"]);
  // Each line is "NAME" or "NAME (id: N)".
  return output
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => name !== "");
}

export async function addNamespace(name: string): Promise<void> {
  await runCommand(["ip", "netns", "add", name]);
}

/** Deletes the namespace unless it is already gone. */
export async function deleteNamespace(name: string): Promise<void> {
  const existing = await listNamespaces();
  if (!existing.includes(name)) {
    return;
  }
  await runCommand(["ip", "netns", "delete", name]);
}

/** Writes sysctls inside `namespace` in the given order. Throws if any key is missing or rejected. */
export async function setSysctls(namespace: string, values: ReadonlyArray<readonly [string, string | number]>): Promise<void> {
  const assignments = values.map(([key, value]) => `${key}=${value}`);
  // procps sysctl (4.0) writes every key and exits 1 if any of them failed.
  await runInNamespace(namespace, ["sysctl", "-q", "-w", ...assignments]);
}
