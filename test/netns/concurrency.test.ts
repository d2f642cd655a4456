// Concurrency against the real kernel: many hook runs for several tunnels
// at once must serialize, and the result must match each tunnel's last
// command, with one copy of everything. Needs root.

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/concurrency.test.ts: it ${SKIP_REASON}.`);
}

const DEVICES = ["tun0", "tun1", "tun2", "tun3"];
const COMMANDS_PER_DEVICE = 6;

/** A small seeded generator, so a failing sequence can be replayed. */
function random(seed: number): () => number {
  let value = seed;
  return () => {
    value = (value * 1103515245 + 12345) % 2 ** 31;
    return value / 2 ** 31;
  };
}

describe.skipIf(!isRoot)(`concurrent hook runs (${SKIP_REASON})`, () => {
  let host: TestHost;
  let before: string;

  beforeAll(async () => {
    host = await createTestHost();
    for (const device of DEVICES.slice(1)) {
      await host.run(["ip", "tuntap", "add", "dev", device, "mode", "tun"]);
    }
    before = await host.state();
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it.each([1, 2, 3])("ends as the last commands say (seed %i)", async (seed) => {
    const next = random(seed);
    const sequences = DEVICES.map((device) =>
      Array.from({ length: COMMANDS_PER_DEVICE }, () => (next() < 0.6 ? "up" : "down")).map((command) => ({ device, command })),
    );

    // Each device runs its commands in order; the devices run at the same time.
    const results = await Promise.all(
      sequences.map(async (sequence) => {
        const exitCodes: number[] = [];
        for (const { device, command } of sequence) {
          exitCodes.push((await host.splitroute([command, "--dev", device])).exitCode);
        }
        return exitCodes;
      }),
    );
    expect(results.flat()).toEqual(Array(DEVICES.length * COMMANDS_PER_DEVICE).fill(0));

    const expected = sequences.filter((sequence) => sequence.at(-1)!.command === "up").map((sequence) => sequence[0]!.device);
    const status = JSON.parse((await host.splitroute(["status", "--json"])).stdout);
    if (expected.length === 0) {
      expect(status.installed).toBe(false);
    } else {
      expect(status.state.tunnels).toEqual(expected.sort());
      expect(status.drift).toEqual([]);
      for (const family of ["-4", "-6"]) {
        const rules = JSON.parse(await host.run(["ip", family, "-N", "-j", "rule", "show"])) as Array<{ table?: string }>;
        expect(rules.filter((rule) => rule.table === "2")).toHaveLength(1);
      }
      const nft = await host.run(["nft", "list", "tables"]);
      expect(nft.match(/table inet splitroute/g)).toHaveLength(1);
    }

    await Promise.all(DEVICES.map((device) => host.splitroute(["down", "--dev", device])));
    expect(await host.state()).toBe(before);
  });
});
