import type { Config } from "../config/types.js";
import type { Logger } from "../log.js";
import type { StateStore } from "../state.js";
import type { System } from "../system/system.js";

/** The dependencies of every command. Tests pass a fake system and a memory store. */
export interface Context {
  system: System;
  config: Config;
  store: StateStore;
  log: Logger;
  /** Waits for exclusive use of this namespace's state; returns the release function. */
  lock: () => Promise<() => Promise<void>>;
}

/** Runs `work` while holding the lock. */
export async function withLock<T>(context: Context, work: () => Promise<T>): Promise<T> {
  const release = await context.lock();
  try {
    return await work();
  } finally {
    await release();
  }
}
