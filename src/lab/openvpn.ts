// Starting and stopping OpenVPN inside a lab namespace.

import { readFile } from "node:fs/promises";
import { inNamespace } from "./namespaces.js";
import { LabProcess, sleep } from "./processes.js";

/** The line OpenVPN logs once it is connected, after the first start and after every restart. */
export const READY_MESSAGE = "Initialization Sequence Completed";
const POLL_INTERVAL_MS = 100;
const DEFAULT_START_TIMEOUT_MS = 30_000;
const LOG_TAIL_LINES = 40;

export interface OpenVpnStartOptions {
  /** Names the instance in errors, such as "OpenVPN client". */
  label: string;
  namespace: string;
  configPath: string;
  logPath: string;
  pidPath: string;
  timeoutMs?: number;
}

/** A running OpenVPN process and the pid it wrote with --writepid. */
export interface OpenVpnInstance {
  process: LabProcess;
  pid: number;
  logPath: string;
}

/**
 * Starts OpenVPN in the foreground as a child of this process and waits until
 * its log contains "Initialization Sequence Completed". The process is passed
 * to `track` as soon as it is spawned, so the caller can stop it even when the
 * start fails. On failure this stops the process and throws with the log tail.
 */
export async function startOpenVpn(options: OpenVpnStartOptions, track: (process: LabProcess) => void): Promise<OpenVpnInstance> {
  // `ip netns exec` execs OpenVPN in place, so the child's pid is OpenVPN's.
  const argv = inNamespace(options.namespace, [
    "openvpn",
    "--config", options.configPath,
    "--log", options.logPath,
    "--writepid", options.pidPath,
  ]);
  const openvpn = LabProcess.start(options.label, argv);
  track(openvpn);

  try {
    await waitForReadyMessage(openvpn, options);
    const pid = await readPidFile(options.pidPath);
    if (pid !== openvpn.pid) {
      throw new Error(`${options.label}: ${options.pidPath} contains pid ${pid}, but the child process is pid ${openvpn.pid}`);
    }
    return { process: openvpn, pid, logPath: options.logPath };
  } catch (error) {
    await openvpn.stop().catch(() => undefined);
    throw error;
  }
}

/**
 * Sends SIGTERM to the pid from --writepid and waits for OpenVPN to exit.
 * OpenVPN runs the `down` script during shutdown and waits for it, so the
 * script has finished when this resolves.
 */
export async function stopOpenVpn(instance: OpenVpnInstance): Promise<void> {
  await instance.process.stop(instance.pid);
}

/**
 * Sends `signal` to the pid from --writepid without waiting. OpenVPN restarts
 * on SIGUSR1 and SIGHUP and exits on SIGTERM and SIGINT.
 */
export function signalOpenVpn(instance: OpenVpnInstance, signal: NodeJS.Signals): void {
  instance.process.signal(signal, instance.pid);
}

/** Sends SIGKILL and waits for the exit. OpenVPN runs no down script then. */
export async function killOpenVpn(instance: OpenVpnInstance): Promise<void> {
  await instance.process.kill(instance.pid);
}

async function waitForReadyMessage(openvpn: LabProcess, options: OpenVpnStartOptions): Promise<void> {
  await waitForLogText(openvpn, options.logPath, READY_MESSAGE, 0, options.timeoutMs ?? DEFAULT_START_TIMEOUT_MS);
}

/**
 * Waits until the log contains `text` at or after character offset
 * `fromOffset` and returns the offset just past its first occurrence there.
 * Throws with the log tail when OpenVPN exits first or `timeoutMs` passes.
 */
export async function waitForLogText(openvpn: LabProcess, logPath: string, text: string, fromOffset: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;

  for (;;) {
    const log = await readLog(logPath);
    const found = log.indexOf(text, fromOffset);
    if (found >= 0) {
      return found + text.length;
    }

    const exit = openvpn.exitStatus;
    if (exit !== undefined) {
      const status = exit.signal ?? `exit code ${exit.exitCode}`;
      const stderr = exit.stderr.trim() === "" ? "" : `\nstderr:\n${exit.stderr.trim()}`;
      throw new Error(`${openvpn.label} exited (${status}) before "${text}".${stderr}\n${formatLogTail(logPath, log)}`);
    }

    if (Date.now() >= deadline) {
      throw new Error(`${openvpn.label} timed out after ${timeoutMs} ms waiting for "${text}".\n${formatLogTail(logPath, log)}`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

/** Returns the log's text, or "" when OpenVPN has not created it yet. */
export async function readLog(logPath: string): Promise<string> {
  try {
    return await readFile(logPath, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return "";
    }
    throw error;
  }
}

function formatLogTail(logPath: string, log: string): string {
  if (log === "") {
    return `${logPath} is empty or missing.`;
  }
  const tail = log.trimEnd().split("\n").slice(-LOG_TAIL_LINES).join("\n");
  return `Last lines of ${logPath}:\n${tail}`;
}

async function readPidFile(pidPath: string): Promise<number> {
  const text = (await readFile(pidPath, "utf8")).trim();
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new Error(`invalid pid ${JSON.stringify(text)} in ${pidPath}`);
  }
  return pid;
}
