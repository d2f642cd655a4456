// The .deb installed on this machine with dpkg: the installed hooks run a
// real OpenVPN client in the namespace lab, with and without dropped
// privileges, and complete up and down under the task limits of OpenVPN's
// systemd units. Then the package is removed (configuration kept) and purged
// (configuration gone), and the filesystem must be as it was before.
// Needs root. Refuses to run where splitroute is installed already.

import { spawnSync } from "node:child_process";
import { lstatSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { CONNECT_TIMEOUT_MS, createLab, LAB_ADDRESSES, type Lab, type ProbeSession } from "../../src/lab/lab.js";
import { createTestHost, type TestHost } from "../netns/host.js";
import { createPidsCgroup, createThreadProbe, pidsHierarchy, type PidsCgroup, type ThreadProbe } from "./limits.js";
import { buildPackages, debConffiles, debEntries, missingTools, type BuiltPackages } from "./packages.js";

const UP = "/usr/lib/splitroute/up";
const DOWN = "/usr/lib/splitroute/down";
const CLI = "/usr/bin/splitroute";
const CONFIG = "/etc/splitroute/splitroute.conf";

// Every path of the package outside shared folders. If one exists before the
// test, splitroute is installed already, and the test must not overwrite it.
const OWN_PATHS = ["/etc/splitroute", "/etc/iproute2/rt_tables.d/splitroute.conf", "/usr/bin/splitroute", "/usr/lib/NetworkManager/dispatcher.d/90-splitroute", "/usr/lib/splitroute", "/usr/share/doc/splitroute"];

// Folders compared before the install and after the purge. dpkg's trigger
// and update folders hold its own short-lived bookkeeping.
const SNAPSHOT_ROOTS = ["/etc", "/usr", "/var/lib", "/opt"];
const SNAPSHOT_IGNORED = /^\/var\/lib\/dpkg\/(triggers|updates)\//;

// The task limit of Debian's openvpn@.service (TasksMax=10) and the process
// limit of openvpn-client@.service (LimitNPROC=10).
const TASK_LIMIT = 10;
// The unit's limit also covers OpenVPN itself, the down-root plugin's helper
// process and the one command splitroute runs at a time, so node may have at
// most this many threads.
const MAX_NODE_THREADS = TASK_LIMIT - 3;

// OpenVPN's arguments to `up`: device, MTU, 0, local address, netmask, init.
const OPENVPN_ARGS = ["tun0", "1500", "0", "198.18.0.2", "255.255.255.0", "init"];

// Several test runs may share this machine. An abstract socket name is held
// until the process that listens on it exits, so one run installs at a time.
const INSTALL_LOCK = "\0splitroute-package-install-test";
const INSTALL_LOCK_TIMEOUT_MS = 240_000;

/** Returns what shows that splitroute is on this machine already, or undefined. */
function existingInstallation(): string | undefined {
  const query = spawnSync("dpkg-query", ["--show", "--showformat=${db:Status-Status}", "splitroute"], { encoding: "utf8" });
  const status = query.status === 0 ? query.stdout.trim() : "not-installed";
  const paths = OWN_PATHS.filter((path) => {
    try {
      lstatSync(path);
      return true;
    } catch {
      return false;
    }
  });
  if (status === "not-installed" && paths.length === 0) {
    return undefined;
  }
  return `splitroute is on this machine already (dpkg status ${status}${paths.length > 0 ? `; ${paths.join(", ")} exist` : ""}); the install test would overwrite it: remove it with dpkg --purge splitroute, or run the test on another machine`;
}

const isRoot = process.getuid?.() === 0;
const installed = isRoot ? existingInstallation() : undefined;
// In CI the machine is fresh, so an installation there is a leftover of an
// earlier run, and the test fails. Elsewhere it may be the user's own, so
// the test is skipped.
const SKIP_REASON = !isRoot
  ? "needs root to install the package and create network namespaces"
  : (missingTools() ?? (installed !== undefined && process.env.CI === undefined ? installed : undefined));
if (SKIP_REASON !== undefined) {
  console.warn(`Skipping test/package/install.test.ts: ${SKIP_REASON}.`);
}

async function acquireInstallLock(): Promise<Server> {
  const deadline = Date.now() + INSTALL_LOCK_TIMEOUT_MS;
  for (;;) {
    const server = createServer();
    const listening = await new Promise<boolean>((resolve, reject) => {
      server.once("error", (error: NodeJS.ErrnoException) => (error.code === "EADDRINUSE" ? resolve(false) : reject(error)));
      server.listen({ path: INSTALL_LOCK }, () => resolve(true));
    });
    if (listening) {
      return server;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${INSTALL_LOCK_TIMEOUT_MS / 1000} s waiting for another run of the install test to finish`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Lists every path below SNAPSHOT_ROOTS on the root filesystem, apart from dpkg's bookkeeping. */
async function snapshotFilesystem(): Promise<Set<string>> {
  const roots = SNAPSHOT_ROOTS.filter((root) => spawnSync("test", ["-d", root]).status === 0);
  const { stdout } = await execa("find", [...roots, "-xdev"], { maxBuffer: 256 * 1024 * 1024 });
  return new Set(stdout.split("\n").filter((path) => path !== "" && !SNAPSHOT_IGNORED.test(path)));
}

async function packageStatus(): Promise<string> {
  const result = await execa("dpkg-query", ["--show", "--showformat=${Status}", "splitroute"], { reject: false });
  return result.exitCode === 0 ? String(result.stdout) : "unknown";
}

/** Runs argv with exactly `env` (OpenVPN passes scripts no PATH) and returns its exit code and output. */
async function runClean(argv: readonly string[], env: Record<string, string> = {}) {
  const [file, ...args] = argv;
  const result = await execa(file!, args, { reject: false, env, extendEnv: false });
  return { exitCode: result.exitCode, signal: result.signal, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** Finds the down-root plugin in the openvpn package's file list. */
async function downRootPlugin(): Promise<string> {
  const { stdout } = await execa("dpkg", ["--listfiles", "openvpn"]);
  const plugin = stdout.split("\n").find((path) => path.endsWith("/plugins/openvpn-plugin-down-root.so"));
  if (plugin === undefined) {
    throw new Error("openvpn-plugin-down-root.so not found in dpkg --listfiles openvpn");
  }
  return plugin;
}

describe.skipIf(SKIP_REASON !== undefined)(`package installed with dpkg${SKIP_REASON === undefined ? "" : ` (${SKIP_REASON})`}`, () => {
  let lock: Server | undefined;
  let built: BuiltPackages;
  let before: Set<string>;
  let runDirExisted: boolean;
  let installedByTest = false;

  beforeAll(async () => {
    lock = await acquireInstallLock();
    const found = existingInstallation();
    if (found !== undefined) {
      throw new Error(`refusing to install: ${found}`);
    }
    built = await buildPackages();
    before = await snapshotFilesystem();
    runDirExisted = spawnSync("test", ["-e", "/run/splitroute"]).status === 0;
    installedByTest = true;
    await execa("dpkg", ["--install", built.deb], { env: { DEBIAN_FRONTEND: "noninteractive" } });
  }, INSTALL_LOCK_TIMEOUT_MS + 120_000);

  afterAll(async () => {
    // Whatever failed, the package goes, so that the machine is left as it was.
    if (installedByTest && (await packageStatus()) !== "unknown") {
      await execa("dpkg", ["--purge", "splitroute"], { reject: false });
    }
    await built?.remove();
    lock?.close();
  });

  it("installs every file of the package", async () => {
    expect(await packageStatus()).toBe("install ok installed");
    for (const entry of await debEntries(built.deb)) {
      const stat = lstatSync(entry.path);
      expect(stat.mode.toString(8), entry.path).toBe(entry.mode);
    }
  });

  it("registers the configuration as conffiles", async () => {
    const { stdout } = await execa("dpkg-query", ["--show", "--showformat=${Conffiles}", "splitroute"]);
    const registered = stdout.trim().split("\n").map((line) => line.trim().split(" ")[0]);
    expect(registered.sort()).toEqual((await debConffiles(built.deb)).sort());
  });

  it("runs splitroute without PATH", async () => {
    const result = await runClean([CLI, "--help"]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("usage: splitroute COMMAND");
  });

  it("declares the table name for ip", async () => {
    const rtTables = await readFile("/etc/iproute2/rt_tables.d/splitroute.conf", "utf8");
    expect(rtTables).toMatch(/^2\tredirect$/m);
  });

  describe("OpenVPN with the installed hooks", () => {
    let lab: Lab;
    let stateBefore: string;
    let earlySession: ProbeSession;

    beforeAll(async () => {
      lab = await createLab();
      await lab.startVpnServer();
      stateBefore = await lab.clientState();
      earlySession = await lab.openInboundSession(4);
      await lab.startVpnClient({ hooks: { up: UP, down: DOWN } });
    });

    afterAll(async () => {
      await lab?.destroy();
    });

    it.each([4, 6] as const)("accepts inbound IPv%i on the uplink", async (family) => {
      expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
    });

    it.each([4, 6] as const)("sends own IPv%i traffic through the tunnel", async (family) => {
      const key = family === 4 ? "v4" : "v6";
      expect(await lab.outboundSeenAs(family)).toBe(LAB_ADDRESSES.vpnServer[key]);
    });

    it("keeps a session opened before up", async () => {
      expect(await earlySession.exchange("still here", CONNECT_TIMEOUT_MS)).toBe("still here");
    });

    it("reports the installed configuration in status", async () => {
      const result = await runClean(["ip", "netns", "exec", lab.names.client, CLI, "status", "--json"]);
      expect(result.exitCode).toBe(0);
      const report = JSON.parse(result.stdout);
      expect(report).toMatchObject({ installed: true, drift: [], state: { tunnels: ["tun0"], configSource: CONFIG } });
      // OpenVPN's systemd units give it a private /tmp, so the record must be in /run.
      expect(report.stateFile).toMatch(/^\/run\/splitroute\/netns-\d+\.json$/);
    });

    it("restores the client namespace on stop", async () => {
      earlySession.close();
      await lab.stopVpnClient();
      expect(await lab.clientLog()).toContain("bypass removed");
      expect(await lab.clientState()).toBe(stateBefore);
    });
  });

  describe("OpenVPN as nobody with the down-root plugin", () => {
    let lab: Lab;
    let stateBefore: string;

    beforeAll(async () => {
      lab = await createLab();
      await lab.startVpnServer();
      stateBefore = await lab.clientState();
      // The lines that README.md and the shipped example give for the installed paths.
      await lab.startVpnClient({
        hooks: { up: UP },
        extraConfig: ["user nobody", "group nogroup", `plugin ${await downRootPlugin()} ${DOWN}`],
      });
    });

    afterAll(async () => {
      await lab?.destroy();
    });

    it("accepts inbound IPv4 on the uplink", async () => {
      expect(await lab.probeInbound(4)).toMatchObject({ connected: true });
    });

    it("removes the bypass through the plugin on stop", async () => {
      await lab.stopVpnClient();
      expect(await lab.clientLog()).toContain("bypass removed");
      expect(await lab.clientState()).toBe(stateBefore);
    });
  });

  describe("hooks under OpenVPN's task limits", () => {
    let host: TestHost;
    let stateBefore: string;
    let cgroup: PidsCgroup;
    let probe: ThreadProbe;

    /** Runs an installed hook in the host namespace inside the cgroup, as OpenVPN would start it. */
    function runHookInCgroup(hook: string, args: readonly string[]) {
      const env = ["dev=tun0", "script_type=up", `SPLITROUTE_NODE=${probe.node}`];
      return runClean(cgroup.wrap(["/usr/bin/ip", "netns", "exec", host.host, "/usr/bin/env", "-i", ...env, hook, ...args]));
    }

    /** Runs argv in the host namespace as nobody under RLIMIT_NPROC = TASK_LIMIT, as with LimitNPROC=10 and `user nobody`. */
    function runAsNobody(argv: readonly string[]) {
      return runClean(["/usr/bin/ip", "netns", "exec", host.host, "/usr/sbin/runuser", "-u", "nobody", "--", "/usr/bin/prlimit", `--nproc=${TASK_LIMIT}`, ...argv]);
    }

    beforeAll(async () => {
      if ((await pidsHierarchy()) === undefined) {
        throw new Error("this machine has no pids cgroup controller to set a task limit with");
      }
      host = await createTestHost();
      stateBefore = await host.state();
      cgroup = await createPidsCgroup(TASK_LIMIT);
      probe = await createThreadProbe("/usr/bin/node");
    });

    afterAll(async () => {
      await host?.destroy();
      await cgroup?.remove();
      await probe?.remove();
    });

    it(`completes up with pids.max ${TASK_LIMIT}`, async () => {
      const result = await runHookInCgroup(UP, OPENVPN_ARGS);
      expect(result.stderr).toContain("bypass active for tun0");
      expect(result.exitCode).toBe(0);
      expect(await cgroup.failedForks()).toBe(0);
      await host.takeDefaultRoute();
      expect((await host.connectInbound(4)).connected).toBe(true);
    });

    it(`runs status as nobody with nproc ${TASK_LIMIT}`, async () => {
      const result = await runAsNobody([CLI, "status"]);
      expect(result.stderr).toBe("");
      expect(result.stdout).toContain("tunnels:   tun0");
      expect(result.stdout).toContain("live:      matches the record");
      expect(result.stdout).toContain("unchecked: the nftables marking: reading it needs root");
      expect(result.exitCode).toBe(0);
    });

    it(`shows node aborting with nproc ${TASK_LIMIT} without the hook's flags`, async () => {
      // What the hooks' flags prevent: node's default 4 V8 workers and 4
      // libuv threads exceed the limit.
      const result = await runAsNobody(["/usr/bin/node", "/usr/lib/splitroute/splitroute.mjs", "status"]);
      expect(result.exitCode).not.toBe(0);
      expect(result.stderr).toMatch(/pthread_create|Resource temporarily unavailable|Aborted/);
    });

    it(`completes down with pids.max ${TASK_LIMIT}`, async () => {
      // As the down-root plugin runs it: no arguments, the environment of up.
      const result = await runHookInCgroup(DOWN, []);
      expect(result.stderr).toContain("bypass removed");
      expect(result.exitCode).toBe(0);
      expect(await cgroup.failedForks()).toBe(0);
      await host.run(["ip", "route", "del", "0.0.0.0/1"]);
      await host.run(["ip", "route", "del", "128.0.0.0/1"]);
      await host.run(["ip", "-6", "route", "del", "2000::/3"]);
      expect(await host.state()).toBe(stateBefore);
    });

    it(`keeps node within ${MAX_NODE_THREADS} threads`, async () => {
      const counts = await probe.counts();
      expect(counts).toHaveLength(2);
      for (const count of counts) {
        expect(count).toBeLessThanOrEqual(MAX_NODE_THREADS);
      }
    });
  });

  it("keeps the configuration on remove", async () => {
    // A changed conffile must survive remove as the administrator left it.
    const changed = `${await readFile(CONFIG, "utf8")}\n# changed by the install test\n`;
    await writeFile(CONFIG, changed);
    await execa("dpkg", ["--remove", "splitroute"]);
    expect(await packageStatus()).toBe("deinstall ok config-files");
    expect(await readFile(CONFIG, "utf8")).toBe(changed);
    // What stays: the conffiles, the folder that contains them, and shared
    // folders that existed before the install, such as /usr/bin. dpkg removes
    // an emptied folder that the install created, such as
    // /usr/lib/NetworkManager on a machine without NetworkManager.
    const conffiles = await debConffiles(built.deb);
    for (const entry of await debEntries(built.deb)) {
      const shared = !entry.path.includes("splitroute") && (entry.path === "/" || before.has(entry.path));
      const expectedToStay = conffiles.includes(entry.path) || entry.path === "/etc/splitroute" || shared;
      expect(spawnSync("test", ["-L", entry.path, "-o", "-e", entry.path]).status === 0, entry.path).toBe(expectedToStay);
    }
  });

  it("purge leaves nothing behind", async () => {
    await execa("dpkg", ["--purge", "splitroute"]);
    installedByTest = false;
    expect(await packageStatus()).toBe("unknown");

    const after = await snapshotFilesystem();
    expect([...after].filter((path) => !before.has(path))).toEqual([]);
    expect([...before].filter((path) => !after.has(path))).toEqual([]);
    if (!runDirExisted) {
      expect(spawnSync("test", ["-e", "/run/splitroute"]).status).not.toBe(0);
    }
  });
});
