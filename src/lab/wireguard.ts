// Starting and stopping wg-quick inside a lab namespace. Where the kernel has
// no WireGuard module, wg-quick falls back to wireguard-go, which forks into
// the background. Its UAPI socket is /var/run/wireguard/IFACE.sock, in a
// folder that all network namespaces share, so every interface name must be
// unique on the host. A second wireguard-go for a name in use exits with
// "UAPI listen error: unix socket in use". `wg` in any namespace lists every
// such socket and talks to whichever daemon owns it.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { findDaemons, stopDaemon, waitForExit, type Daemon } from "./daemons.js";
import { inNamespace, runCommand, runInNamespace } from "./namespaces.js";
import { readLog } from "./openvpn.js";
import { sleep } from "./processes.js";
import type { KeyPair } from "./wireguard-config.js";
import { WIREGUARD_NETWORK } from "./wireguard-config.js";

/** Linux's limit for interface names (IFNAMSIZ minus the terminating NUL). */
const MAX_INTERFACE_NAME_LENGTH = 15;
const WG_QUICK_TIMEOUT_MS = 30_000;
const WG_QUICK_KILL_DELAY_MS = 5_000;
// wireguard-go (0.0.20220316) exits by itself once its link is deleted,
// within 100 ms in the lab. After this long, stopWgQuick sends SIGTERM.
const DAEMON_EXIT_TIMEOUT_MS = 5_000;
const HANDSHAKE_TIMEOUT_MS = 15_000;
const POLL_INTERVAL_MS = 100;
const LOG_TAIL_LINES = 40;
const USERSPACE_IMPLEMENTATION = "wireguard-go";

// The PATH that systemd gives services such as wg-quick@.service. wg-quick
// itself puts the folder of its own script in front of it.
const SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface WgQuickOptions {
  /** Names the instance in errors, such as "WireGuard client". */
  label: string;
  namespace: string;
  interfaceName: string;
  /** The configuration file, named `<interfaceName>.conf` as wg-quick requires. */
  configPath: string;
  /** File that wg-quick's output is appended to, for `up` and `down` alike. */
  logPath: string;
  /** Variables added to wg-quick's environment, which its hooks inherit. */
  env?: Readonly<Record<string, string>>;
}

/** A link brought up by wg-quick, with the wireguard-go daemon behind it when the kernel has no module. */
export interface WireGuardInstance extends WgQuickOptions {
  daemon: Daemon | undefined;
}

/** Returns the client's and server's interface names for a lab whose namespaces share `prefix`. */
export function wireguardInterfaceNames(prefix: string): { client: string; server: string } {
  // "sr-3fa91c" gives "wgc-3fa91c": unique per lab, and matched by the wg*
  // pattern that splitroute excludes when it copies the main table.
  const suffix = prefix.replace(/^sr-/, "");
  const names = { client: `wgc-${suffix}`, server: `wgs-${suffix}` };
  for (const name of Object.values(names)) {
    if (name.length > MAX_INTERFACE_NAME_LENGTH || !/^[A-Za-z0-9_=+.-]+$/.test(name)) {
      throw new Error(`invalid WireGuard interface name ${JSON.stringify(name)}: use at most 15 letters, digits or _=+.-`);
    }
  }
  return names;
}

/** Generates a key pair with `wg genkey` and `wg pubkey` and writes it to `dir` as NAME.key (mode 0600) and NAME.pub. */
export async function generateKeyPair(dir: string, name: string): Promise<KeyPair> {
  const privateKey = (await runCommand(["wg", "genkey"])).trim();
  const publicKey = (await runCommand(["wg", "pubkey"], `${privateKey}\n`)).trim();
  await writeFile(join(dir, `${name}.key`), `${privateKey}\n`, { mode: 0o600 });
  await writeFile(join(dir, `${name}.pub`), `${publicKey}\n`, { mode: 0o644 });
  return { privateKey, publicKey };
}

/**
 * Runs `wg-quick up` and returns the instance with its wireguard-go daemon.
 * When wg-quick fails, this stops any daemon it left behind and throws with
 * the tail of the log. wg-quick itself deletes the link on failure.
 */
export async function startWgQuick(options: WgQuickOptions): Promise<WireGuardInstance> {
  const outcome = await runWgQuick("up", options);
  if (outcome !== undefined) {
    let cleanupFailure = "";
    try {
      await stopInterfaceDaemons(options);
    } catch (error) {
      cleanupFailure = `, and stopping its wireguard-go failed: ${error instanceof Error ? error.message : String(error)}`;
    }
    throw new Error(`${options.label}: wg-quick up ${options.configPath} ${outcome}${cleanupFailure}\n${await formatLogTail(options.logPath)}`);
  }

  const daemons = await findInterfaceDaemons(options);
  if (daemons.length > 1) {
    throw new Error(`${options.label}: found ${daemons.length} wireguard-go processes for ${options.interfaceName}: ${daemons.map((daemon) => daemon.pid).join(", ")}`);
  }
  // No daemon means that the kernel module handled `ip link add type wireguard`.
  return { ...options, daemon: daemons[0] };
}

/**
 * Runs `wg-quick down` and waits until the wireguard-go daemon has exited.
 * The daemon is stopped by its pid when wg-quick fails or the daemon outlives
 * its link, and the error is thrown after that.
 */
export async function stopWgQuick(instance: WireGuardInstance): Promise<void> {
  const outcome = await runWgQuick("down", instance);

  if (instance.daemon !== undefined) {
    // After a failed `down` the link may still exist, and with it the daemon.
    const exited = outcome === undefined && (await waitForExit(instance.daemon, DAEMON_EXIT_TIMEOUT_MS));
    if (!exited) {
      await stopDaemon(instance.daemon, `${instance.label} wireguard-go`);
    }
  }

  if (outcome !== undefined) {
    throw new Error(`${instance.label}: wg-quick down ${instance.configPath} ${outcome}\n${await formatLogTail(instance.logPath)}`);
  }
}

/** Stops every wireguard-go in `namespace` by pid, for the lab's cleanup, and returns one error per daemon that did not stop. */
export async function stopAllDaemons(namespace: string): Promise<Error[]> {
  const failures: Error[] = [];
  for (const daemon of await findDaemons(namespace, USERSPACE_IMPLEMENTATION)) {
    await stopDaemon(daemon, `wireguard-go ${daemon.argv.slice(1).join(" ")} in ${namespace}`).catch((error: unknown) =>
      failures.push(error instanceof Error ? error : new Error(String(error))),
    );
  }
  return failures;
}

/** Waits until the interface reports a completed handshake with its peer. Throws after `timeoutMs`. */
export async function waitForHandshake(instance: WireGuardInstance, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // One line per peer: the public key, a tab, and the handshake time in
    // seconds since the epoch, 0 before the first handshake.
    const output = await runInNamespace(instance.namespace, ["wg", "show", instance.interfaceName, "latest-handshakes"]);
    const times = output.split("\n").map((line) => Number(line.split("\t")[1] ?? "0"));
    if (times.some((time) => time > 0)) {
      return;
    }
    if (Date.now() >= deadline) {
      throw new Error(`${instance.label}: no handshake on ${instance.interfaceName} within ${timeoutMs} ms\n${await formatLogTail(instance.logPath)}`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

const SERVER_NAT_TABLE = "splitroute_lab_wg_nat";

/**
 * Adds the WireGuard server's masquerade rules for both families, so traffic
 * from the tunnel subnets leaves the uplink with the server's own address.
 */
export async function addWireGuardServerNat(vpn: string): Promise<void> {
  const ruleset = [
    `table inet ${SERVER_NAT_TABLE} {`,
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    ip saddr ${WIREGUARD_NETWORK.v4} oifname "eth0" masquerade`,
    `    ip6 saddr ${WIREGUARD_NETWORK.v6} oifname "eth0" masquerade`,
    "  }",
    "}",
    "",
  ].join("\n");
  await runInNamespace(vpn, ["nft", "-f", "-"], ruleset);
}

export async function deleteWireGuardServerNat(vpn: string): Promise<void> {
  await runInNamespace(vpn, ["nft", "delete", "table", "inet", SERVER_NAT_TABLE]);
}

/**
 * Runs wg-quick with its output appended to the log. Returns undefined on
 * success, or how it failed, such as "exited with code 1".
 */
async function runWgQuick(action: "up" | "down", options: WgQuickOptions): Promise<string | undefined> {
  const log = await open(options.logPath, "a", 0o600);
  try {
    await log.write(`# wg-quick ${action} ${options.configPath}\n`);
    const [file, ...args] = inNamespace(options.namespace, ["wg-quick", action, options.configPath]);
    // The output goes to the file's descriptor, not through a pipe. With
    // LOG_LEVEL set, wireguard-go hands its stdout and stderr to the daemon,
    // which would keep a pipe open long after wg-quick exits.
    const child = spawn(file, args, {
      stdio: ["ignore", log.fd, log.fd],
      env: { PATH: SERVICE_PATH, WG_QUICK_USERSPACE_IMPLEMENTATION: USERSPACE_IMPLEMENTATION, ...options.env },
    });
    const exit = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;

    // `ip netns exec` execs wg-quick in place, so the signals reach wg-quick.
    // During `up`, its trap deletes the link on SIGTERM. SIGKILL follows in
    // case a hook keeps it from exiting.
    let timedOut = false;
    const terminateTimer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM");
    }, WG_QUICK_TIMEOUT_MS);
    const killTimer = setTimeout(() => child.kill("SIGKILL"), WG_QUICK_TIMEOUT_MS + WG_QUICK_KILL_DELAY_MS);
    let exitCode: number | null;
    let signal: NodeJS.Signals | null;
    try {
      [exitCode, signal] = await exit;
    } finally {
      clearTimeout(terminateTimer);
      clearTimeout(killTimer);
    }

    if (timedOut) {
      return `timed out after ${WG_QUICK_TIMEOUT_MS} ms`;
    }
    if (signal !== null) {
      return `was killed by ${signal}`;
    }
    return exitCode === 0 ? undefined : `exited with code ${exitCode}`;
  } finally {
    await log.close();
  }
}

async function findInterfaceDaemons(options: WgQuickOptions): Promise<Daemon[]> {
  return findDaemons(options.namespace, USERSPACE_IMPLEMENTATION, (argv) => argv.at(-1) === options.interfaceName);
}

async function stopInterfaceDaemons(options: WgQuickOptions): Promise<void> {
  for (const daemon of await findInterfaceDaemons(options)) {
    await stopDaemon(daemon, `${options.label} wireguard-go`);
  }
}

async function formatLogTail(logPath: string): Promise<string> {
  const log = await readLog(logPath);
  if (log === "") {
    return `${logPath} is empty or missing.`;
  }
  const tail = log.trimEnd().split("\n").slice(-LOG_TAIL_LINES).join("\n");
  return `Last lines of ${logPath}:\n${tail}`;
}
