// The state file on disk: written whole, and no temporary files left behind
// by a run that was killed between writing and renaming.

import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";

import { FileStateStore, StateFileError, type State } from "../../src/state.js";

const STATE: State = {
  version: 1,
  tunnels: ["tun0"],
  table: { id: 2, name: "redirect" },
  priority: 1000,
  mark: { value: 2, mask: 2 },
  bypass: [{ name: "ssh", protocol: "tcp", localPort: 22 }],
  backend: "nftables",
  families: [4, 6],
  sysctls: [],
  routeCounts: { 4: 2, 6: 3 },
  configSource: "built-in defaults",
};

describe("FileStateStore", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "splitroute-state-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("write then read", async () => {
    const store = new FileStateStore(join(dir, "netns-1.json"));
    await store.write(STATE);
    expect(await store.read()).toEqual(STATE);
  });

  test("stale temporaries removed", async () => {
    const store = new FileStateStore(join(dir, "netns-1.json"));
    await writeFile(join(dir, "netns-1.json.9503.tmp"), "{");
    await writeFile(join(dir, "netns-2.json.9504.tmp"), "{");
    await store.write(STATE);
    expect((await readdir(dir)).sort()).toEqual(["netns-1.json", "netns-2.json.9504.tmp"]);

    await writeFile(join(dir, "netns-1.json.9505.tmp"), "{");
    await store.remove();
    expect(await readdir(dir)).toEqual(["netns-2.json.9504.tmp"]);
  });
});

describe("unusable state file", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "splitroute-state-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("broken JSON names file and fix", async () => {
    const path = join(dir, "netns-1.json");
    await writeFile(path, "{broken");
    await expect(new FileStateStore(path).read()).rejects.toThrow(
      new RegExp(`^state file ${path} is unusable: invalid JSON .*; run splitroute cleanup`),
    );
  });

  test("empty file rejected", async () => {
    const path = join(dir, "netns-1.json");
    await writeFile(path, "");
    await expect(new FileStateStore(path).read()).rejects.toBeInstanceOf(StateFileError);
  });

  test("other JSON rejected", async () => {
    const path = join(dir, "netns-1.json");
    await writeFile(path, "[]");
    await expect(new FileStateStore(path).read()).rejects.toThrow("not a splitroute record");
  });

  test("cleanup goes on without it", async () => {
    const { cleanup } = await import("../../src/commands/cleanup.js");
    const { testConfig, testContext, vpnHost } = await import("../fake/host.js");
    const { up } = await import("../../src/commands/up.js");
    const system = vpnHost();
    const before = system.render();
    const path = join(dir, "netns-1.json");
    const store = new FileStateStore(path);
    await up({ ...testContext(system, testConfig("nftables")), store }, "tun0");
    await writeFile(path, "{broken");

    await cleanup({ ...testContext(system, testConfig("nftables")), store });
    expect(system.render()).toBe(before);
    expect(await readdir(dir)).toEqual([]);
  });
});
