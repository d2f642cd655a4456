// `splitroute refresh` against the real kernel: after the uplink's gateway
// changes while the tunnel is up, refresh brings the copy up to date without
// flushing it, and down still restores the start. Needs root.

import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createTestHost, REPO, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/refresh.test.ts: it ${SKIP_REASON}.`);
}

describe.skipIf(!isRoot)(`splitroute refresh (${SKIP_REASON})`, () => {
  let host: TestHost;
  let before: string;

  beforeAll(async () => {
    host = await createTestHost();
    await host.takeDefaultRoute();
    before = await host.state();
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("follows a new gateway without a flush", async () => {
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);

    // DHCP hands out a new gateway: the peer gets a second address for it.
    await host.run(["ip", "netns", "exec", host.peer, "ip", "addr", "add", "192.0.2.254/24", "dev", "eth0"]).catch(() => undefined);
    await host.run(["ip", "route", "replace", "default", "via", "192.0.2.254"]);

    const nothing = await host.splitroute(["refresh", "--verbose"]);
    expect(nothing.exitCode, nothing.stderr).toBe(0);
    expect(nothing.stderr).toContain("route replace 0.0.0.0/0 via 192.0.2.254 dev eth0");
    expect(nothing.stderr).not.toContain("route flush");
    expect(await host.run(["ip", "route", "show", "table", "2", "default"])).toContain("via 192.0.2.254");
    expect(await host.connectInbound(4)).toMatchObject({ connected: true });

    const again = await host.splitroute(["refresh"]);
    expect(again.stderr).toContain("nothing to change");

    expect((await host.splitroute(["down", "--dev", "tun0"])).exitCode).toBe(0);
    await host.run(["ip", "route", "replace", "default", "via", "192.0.2.1"]);
    expect(await host.state()).toBe(before);
  });

  it("drops routes main no longer has", async () => {
    await host.run(["ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.1"]);
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    await host.run(["ip", "route", "del", "198.51.100.0/24"]);
    const result = await host.splitroute(["refresh"]);
    expect(result.stderr).toContain("route del 198.51.100.0/24 via 192.0.2.1 dev eth0");
    expect(await host.run(["ip", "route", "show", "table", "2"])).not.toContain("198.51.100.0/24");
    expect((await host.splitroute(["down", "--dev", "tun0"])).exitCode).toBe(0);
    expect(await host.state()).toBe(before);
  });
});

describe.skipIf(!isRoot)(`splitroute watch (${SKIP_REASON})`, () => {
  let host: TestHost;
  let before: string;

  beforeAll(async () => {
    host = await createTestHost();
    await host.takeDefaultRoute();
    before = await host.state();
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it("refreshes after a gateway change", async () => {
    expect((await host.splitroute(["up", "--dev", "tun0"])).exitCode).toBe(0);
    const watcher = execa("ip", ["netns", "exec", host.host, process.execPath, `${REPO}dist/cli.js`, "watch"], { reject: false });
    try {
      // Give ip monitor a moment to subscribe before the change it must see.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await host.run(["ip", "route", "replace", "default", "via", "192.0.2.254"]);
      await waitFor(async () => (await host.run(["ip", "route", "show", "table", "2", "default"])).includes("via 192.0.2.254"));
    } finally {
      watcher.kill("SIGTERM");
      await watcher;
    }
    expect(String((await watcher).stderr)).toContain("stopped watching route changes");
    expect((await host.splitroute(["down", "--dev", "tun0"])).exitCode).toBe(0);
    await host.run(["ip", "route", "replace", "default", "via", "192.0.2.1"]);
    expect(await host.state()).toBe(before);
  });
});

/** Polls `condition` every 200 ms and fails after 20 s, a bound for a stuck test, not a timing assertion. */
async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if (await condition()) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error("condition not met within 20 s");
}
