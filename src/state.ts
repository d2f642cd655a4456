import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { statSync } from "node:fs";
import { basename, dirname, join } from "node:path";

import type { Bypass } from "./config/types.js";
import type { FirewallBackend } from "./firewall/backend.js";
import type { CreatedNftObjects } from "./firewall/iptables-nft.js";
import { STATE_DIR } from "./owner.js";
import type { SysctlChange } from "./rpfilter.js";

/** Everything splitroute installed in one network namespace; down removes exactly this. */
export interface State {
  version: 1;
  /** Devices of the tunnels that currently hold the bypass. */
  tunnels: string[];
  table: { id: number; name: string };
  /** The rule's priority: the configured one, or lower to come before wg-quick's rules. */
  priority: number;
  configuredPriority?: number;
  mark: { value: number; mask: number };
  bypass: Bypass[];
  backend: FirewallBackend;
  /** Families whose rule and table we installed. */
  families: Array<4 | 6>;
  /** Sysctls we changed and their earlier values, restored on down. */
  sysctls: SysctlChange[];
  routeCounts: { 4: number; 6: number };
  /** Whether the copy has a default route, per family. */
  hasDefaultRoute?: { 4: boolean; 6: boolean };
  /** nftables objects that iptables-nft created in the mangle table for our rules, deleted again on down. */
  createdMangle?: CreatedNftObjects[];
  /**
   * The same for the nat table, recorded by the first up that installs our
   * nat chain. Absent in state files of versions without it, and while no
   * section selects connections in OUTPUT.
   */
  createdNat?: CreatedNftObjects[];
  /** Mount point of the cgroup v2 hierarchy at up, recorded when a section selects a service. */
  cgroupMount?: string;
  /** The configuration file used (or "built-in defaults"), for status output. */
  configSource: string;
}

/**
 * A state file that cannot be read as a record: edited by hand or damaged,
 * since writes replace it whole. cleanup goes on without it.
 */
export class StateFileError extends Error {
  override name = "StateFileError";
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(
      `state file ${path} is unusable: ${reason}; run splitroute cleanup, which removes splitroute's objects without a record ` +
        `(while a tunnel is up, run splitroute up --dev TUNNEL after it)`,
    );
  }
}

/** Reads and writes the state file of the current network namespace. */
export interface StateStore {
  read(): Promise<State | undefined>;
  write(state: State): Promise<void>;
  remove(): Promise<void>;
  readonly path: string;
}

/**
 * Returns the state store for this process's network namespace. /run is
 * shared by every namespace on the host, so the file name carries the
 * namespace's inode number, which is unique among live namespaces.
 */
export function namespaceStateStore(env: NodeJS.ProcessEnv = process.env): StateStore {
  const dir = env.SPLITROUTE_STATE_DIR ?? STATE_DIR;
  return new FileStateStore(join(dir, `netns-${networkNamespaceId()}.json`));
}

/** Returns the inode number of this process's network namespace, unique among live namespaces. */
export function networkNamespaceId(): number {
  return statSync("/proc/self/ns/net").ino;
}

export class FileStateStore implements StateStore {
  constructor(readonly path: string) {}

  async read(): Promise<State | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        return undefined;
      }
      throw error;
    }
    let state: State;
    try {
      state = JSON.parse(text) as State;
    } catch (error) {
      throw new StateFileError(this.path, `invalid JSON (${(error as Error).message})`);
    }
    if (typeof state !== "object" || state === null || !Array.isArray(state.tunnels) || typeof state.table?.id !== "number") {
      throw new StateFileError(this.path, "not a splitroute record");
    }
    if (state.version !== 1) {
      throw new Error(`state file ${this.path} has version ${String(state.version)}; this splitroute reads version 1`);
    }
    return state;
  }

  // Written to a temporary name and renamed, so a crash never leaves half a file.
  async write(state: State): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o755 });
    await this.removeStaleTemporaries();
    const temporary = `${this.path}.${process.pid}.tmp`;
    await writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
    await rename(temporary, this.path);
  }

  async remove(): Promise<void> {
    await this.removeStaleTemporaries();
    await rm(this.path, { force: true });
  }

  /**
   * Deletes temporary files that a run killed between write and rename left
   * beside the record. Writers hold the namespace's lock, so no other run is
   * writing one now.
   */
  private async removeStaleTemporaries(): Promise<void> {
    const prefix = `${basename(this.path)}.`;
    let names: string[];
    try {
      names = await readdir(dirname(this.path));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        return;
      }
      throw error;
    }
    for (const name of names.filter((entry) => entry.startsWith(prefix) && /^\d+\.tmp$/.test(entry.slice(prefix.length)))) {
      await rm(join(dirname(this.path), name), { force: true });
    }
  }
}

/** Keeps state in memory, for tests and dry runs. */
export class MemoryStateStore implements StateStore {
  readonly path = "(memory)";
  constructor(private state: State | undefined = undefined) {}

  async read(): Promise<State | undefined> {
    return this.state === undefined ? undefined : structuredClone(this.state);
  }

  async write(state: State): Promise<void> {
    this.state = structuredClone(state);
  }

  async remove(): Promise<void> {
    this.state = undefined;
  }
}
