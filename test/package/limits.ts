// Task limits as OpenVPN's systemd units set them, for the package tests:
// a pids cgroup with a maximum (what TasksMax= sets), and a count of the
// threads node starts in a hook.

import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

// cgroup v1 mounts the pids controller here. On cgroup v2 the tests use the
// unified hierarchy instead, but only where the pids controller is enabled
// for children of the root cgroup. They never change that setting.
const PIDS_V1 = "/sys/fs/cgroup/pids";
const UNIFIED = "/sys/fs/cgroup";

export interface PidsCgroup {
  readonly dir: string;
  /** Prefixes argv so that the process moves itself into the cgroup, then execs argv. */
  wrap(argv: readonly string[]): string[];
  /** Returns how many forks or clones failed so far because of pids.max (pids.events "max"). */
  failedForks(): Promise<number>;
  /** Removes the cgroup. Every process in it must have exited. */
  remove(): Promise<void>;
}

/** Returns the root of a pids hierarchy this machine offers, or undefined. */
export async function pidsHierarchy(): Promise<string | undefined> {
  if (existsSync(join(PIDS_V1, "cgroup.procs"))) {
    return PIDS_V1;
  }
  const enabled = await readFile(join(UNIFIED, "cgroup.subtree_control"), "utf8").catch(() => "");
  return enabled.split(/\s+/).includes("pids") ? UNIFIED : undefined;
}

/** Creates a child cgroup whose pids.max is `max`: the tasks of every process in it, threads included. */
export async function createPidsCgroup(max: number): Promise<PidsCgroup> {
  const root = await pidsHierarchy();
  if (root === undefined) {
    throw new Error(`no pids cgroup controller: neither ${PIDS_V1} nor pids in ${UNIFIED}/cgroup.subtree_control`);
  }
  const dir = join(root, `splitroute-test-${process.pid}-${randomBytes(3).toString("hex")}`);
  await mkdir(dir);
  try {
    await writeFile(join(dir, "pids.max"), String(max));
  } catch (error) {
    await rmdir(dir);
    throw error;
  }
  return {
    dir,
    wrap: (argv) => ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', dir, ...argv],
    async failedForks() {
      const events = await readFile(join(dir, "pids.events"), "utf8");
      return Number(/^max (\d+)$/m.exec(events)?.[1] ?? Number.NaN);
    },
    async remove() {
      const left = (await readFile(join(dir, "cgroup.procs"), "utf8")).trim();
      if (left !== "") {
        throw new Error(`processes ${left.split("\n").join(", ")} are still in ${dir}; it was not removed`);
      }
      await rmdir(dir);
    },
  };
}

export interface ThreadProbe {
  /** A node command for SPLITROUTE_NODE that records its thread count when the process exits. */
  readonly node: string;
  /** Returns the thread count of each node process run through `node` so far. */
  counts(): Promise<number[]>;
  remove(): Promise<void>;
}

/**
 * Writes a stand-in for node that runs `nodeCommand` with a preloaded module.
 * At exit, after every thread node will start has started, the module
 * appends the Threads line of /proc/self/status to a file.
 */
export async function createThreadProbe(nodeCommand: string): Promise<ThreadProbe> {
  const dir = await mkdtemp(join(tmpdir(), "splitroute-threads-"));
  const counts = join(dir, "counts");
  const preload = join(dir, "count-threads.mjs");
  await writeFile(
    preload,
    [
      'import { appendFileSync, readFileSync } from "node:fs";',
      'process.on("exit", () => {',
      '  const threads = /^Threads:\\s+(\\d+)$/m.exec(readFileSync("/proc/self/status", "utf8"))[1];',
      `  appendFileSync(${JSON.stringify(counts)}, threads + "\\n");`,
      "});",
      "",
    ].join("\n"),
  );
  const node = join(dir, "node");
  await writeFile(node, `#!/bin/sh\nexec ${nodeCommand} --import=${preload} "$@"\n`, { mode: 0o755 });
  return {
    node,
    async counts() {
      const text = await readFile(counts, "utf8").catch(() => "");
      return text.split("\n").filter(Boolean).map(Number);
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
