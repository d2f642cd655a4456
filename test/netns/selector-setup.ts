// Setup shared by the selector suites in selectors-more.test.ts and
// selectors-service.test.ts: a test host from host.ts, a configuration with
// one bypass section, whatever the selector needs on top, and the host's
// state before up.

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";

import { createTestHost, type TestHost } from "./host.js";

export const BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"] as const;
export type Backend = (typeof BACKENDS)[number];

/** Registers a cleanup step. afterAll runs the steps in reverse order. */
export type Defer = (step: () => Promise<unknown>) => void;

export interface SelectorHost {
  host: TestHost;
  /** Path of the configuration file, for --config. */
  config: string;
  /** host.state() once setup is complete, before up. */
  before: string;
}

/**
 * Registers the beforeAll and afterAll hooks of one suite, and returns the
 * object that beforeAll fills in. `prepare` runs once the host exists and
 * before the VPN's routes go in. It registers the removal of everything it
 * adds with `defer`, so afterAll removes it even when setup fails halfway.
 */
export function useSelectorHost(
  backend: Backend,
  section: string,
  prepare: (host: TestHost, defer: Defer) => Promise<void>,
): SelectorHost {
  const lab = {} as SelectorHost;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    lab.host = await createTestHost();
    cleanups.push(() => lab.host.destroy());
    lab.config = join(lab.host.dir, "splitroute.conf");
    await writeFile(lab.config, `[firewall]\nbackend = ${backend}\n\n${section}`, { mode: 0o644 });
    await prepare(lab.host, (step) => cleanups.push(step));
    await lab.host.takeDefaultRoute();
    lab.before = await lab.host.state();
  });

  // Every step runs even after one fails, and the failures are reported
  // together, because a leftover namespace or cgroup must not go unnoticed.
  afterAll(async () => {
    const failures: unknown[] = [];
    for (const step of cleanups.reverse()) {
      await step().catch((error: unknown) => failures.push(error));
    }
    if (failures.length > 0) {
      throw new AggregateError(failures, `${failures.length} cleanup step(s) failed`);
    }
  });

  return lab;
}
