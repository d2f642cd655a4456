// Integration: the service selector against the real kernel, in the test
// host of host.ts, whose default routes lead into a tun device that no
// process reads. The test does systemd's part. It creates the unit's cgroup
// system.slice/NAME.service in the cgroup v2 hierarchy and moves its client
// process there. That client's connections must reach the peer
// through the uplink after up, while other processes' connections are still
// lost in the tunnel. Needs root and a mounted cgroup v2 hierarchy.
//
// `ip netns exec` mounts a fresh /sys without the cgroup file systems, so
// splitroute and the client run under `nsenter --net`, which keeps them.

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

import { cgroup2Mount } from "../../src/firewall/marking.js";
import { sleep } from "../../src/lab/processes.js";
import { startListener } from "../../src/lab/probe.js";
import { connectClient, LOST } from "./client.js";
import { ADDRESSES, REPO } from "./host.js";
import { BACKENDS, useSelectorHost, type Defer } from "./selector-setup.js";

const CLI = join(REPO, "dist", "cli.js");
const PEER_PORT = 8080;

const isRoot = process.getuid?.() === 0;
const cgroupRoot = cgroup2Mount(readFileSync("/proc/self/mountinfo", "utf8"));
const SKIP_REASON = "needs root to create network namespaces and a mounted cgroup v2 hierarchy";
if (!isRoot || cgroupRoot === undefined) {
  console.warn(`Skipping test/netns/selectors-service.test.ts: it ${SKIP_REASON}.`);
}

/**
 * Creates the cgroup that systemd would give the unit `name`, and defers its
 * removal. system.slice is removed too if this created it and it is empty.
 */
async function addUnitCgroup(root: string, name: string, defer: Defer): Promise<string> {
  const slice = join(root, "system.slice");
  const createdSlice = (await mkdir(slice, { recursive: true })) !== undefined;
  if (createdSlice) {
    defer(() => removeCgroup(slice, ["ENOTEMPTY", "EBUSY"]));
  }
  const unit = join(slice, name);
  await mkdir(unit);
  defer(() => removeCgroup(unit, []));
  return unit;
}

/**
 * Removes a cgroup directory. rmdir fails with EBUSY while the cgroup has
 * members, so EBUSY is retried for about a second, in case a client that
 * has just exited still counts as one. `tolerated` lists the errors that
 * mean someone else still uses the cgroup, which then stays.
 */
async function removeCgroup(path: string, tolerated: readonly string[]): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await rmdir(path);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "";
      if (tolerated.includes(code)) return;
      if (code !== "EBUSY" || attempt === 10) throw error;
      await sleep(100);
    }
  }
}

describe.skipIf(!isRoot || cgroupRoot === undefined).each(BACKENDS)(`service selector with %s (${SKIP_REASON})`, (backend) => {
  const unitName = `splitroute-test-${randomBytes(4).toString("hex")}.service`;
  let unitCgroup: string;
  const lab = useSelectorHost(backend, `[bypass.unit]\nservice = ${unitName}\n`, async (host, defer) => {
    unitCgroup = await addUnitCgroup(cgroupRoot!, unitName, defer);
    await startListener(
      { label: "peer listener", namespace: host.peer, programPath: join(host.dir, "probe.mjs"), mode: "listen-peer", host: "::", port: PEER_PORT },
      (listener) => defer(() => listener.stop()),
    );
  });

  const nsenter = () => ["nsenter", `--net=/run/netns/${lab.host.host}`] as const;

  /** Runs the splitroute CLI in the host namespace with the cgroup file systems in view. */
  async function splitroute(args: readonly string[]) {
    const [file, ...prefix] = nsenter();
    const result = await execa(file, [...prefix, process.execPath, CLI, ...args], { reject: false, env: {}, extendEnv: false });
    return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  /** Connects from the host to the peer's listener, from inside the unit's cgroup or outside it. */
  function connectToRemote(family: 4 | 6, inUnit: boolean) {
    const key = family === 4 ? "v4" : "v6";
    return connectClient({ enter: nsenter(), host: ADDRESSES.remote[key], port: PEER_PORT, ...(inUnit ? { cgroup: unitCgroup } : {}) });
  }

  it("unit fails without splitroute", async () => {
    const [v4, v6] = await Promise.all([connectToRemote(4, true), connectToRemote(6, true)]);
    expect(v4).toEqual(LOST);
    expect(v6).toEqual(LOST);
  });

  it("up succeeds", async () => {
    const result = await splitroute(["up", "--dev", "tun0", "--config", lab.config]);
    expect(result.stderr).not.toContain("error");
    expect(result.exitCode).toBe(0);
  });

  // The socket took tun0's address from the VPN's routes, and every backend
  // masquerades the selected connection to the uplink's address.
  it("unit reaches peer IPv4", async () => {
    expect(await connectToRemote(4, true)).toEqual({ connected: true, line: ADDRESSES.host.v4 });
  });

  // tun0 has no IPv6 address, so the socket takes the uplink's in every backend.
  it("unit reaches peer IPv6", async () => {
    expect(await connectToRemote(6, true)).toEqual({ connected: true, line: ADDRESSES.host.v6 });
  });

  it("other processes still use tunnel", async () => {
    const [v4, v6] = await Promise.all([connectToRemote(4, false), connectToRemote(6, false)]);
    expect(v4).toEqual(LOST);
    expect(v6).toEqual(LOST);
  });

  it("status matches the record", async () => {
    const result = await splitroute(["status"]);
    expect(result.stdout).toContain("live:      matches the record");
    expect(result.exitCode).toBe(0);
  });

  it("down restores the start", async () => {
    const result = await splitroute(["down", "--dev", "tun0", "--config", lab.config]);
    expect(result.exitCode).toBe(0);
    expect(await lab.host.state()).toBe(lab.before);
    expect(await connectToRemote(4, true)).toEqual(LOST);
  });
});
