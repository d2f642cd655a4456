// Daemons that a lab command started but that are not children of this Node
// process, such as wireguard-go, which forks into the background and is
// reparented to init or a subreaper. They are found through /proc by their network namespace
// and stopped by pid.

import { readdir, readFile, readlink, stat } from "node:fs/promises";
import { basename } from "node:path";
import { sleep } from "./processes.js";

const POLL_INTERVAL_MS = 50;
const STOP_TIMEOUT_MS = 10_000;
const KILL_TIMEOUT_MS = 5_000;

/** A process found in /proc, identified by pid and start time so that a reused pid is not mistaken for it. */
export interface Daemon {
  pid: number;
  /** Field 22 of /proc/PID/stat: clock ticks after boot at which the process started. */
  startTime: string;
  argv: readonly string[];
}

/**
 * Returns the processes inside the network namespace `namespace` (a name under
 * /run/netns) whose executable is named `program` and that `accept` selects.
 */
export async function findDaemons(namespace: string, program: string, accept: (argv: readonly string[]) => boolean = () => true): Promise<Daemon[]> {
  const namespaceInode = (await stat(`/run/netns/${namespace}`, { bigint: true })).ino;
  const daemons: Daemon[] = [];

  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    const pid = Number(entry);
    // Each read fails with ENOENT when the process has exited meanwhile.
    const [netLink, exeLink, commandLine, startTime] = await Promise.all([
      readlink(`/proc/${pid}/ns/net`).catch(() => ""),
      readlink(`/proc/${pid}/exe`).catch(() => ""),
      readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => ""),
      readStartTime(pid),
    ]);
    if (netLink !== `net:[${namespaceInode}]` || basename(exeLink) !== program || startTime === undefined) {
      continue;
    }
    const argv = commandLine.split("\0").filter((argument) => argument !== "");
    if (accept(argv)) {
      daemons.push({ pid, startTime, argv });
    }
  }
  return daemons;
}

/** Returns whether the daemon has exited: its pid is gone, a zombie, or now belongs to another process. */
export async function hasExited(daemon: Daemon): Promise<boolean> {
  const status = await readStat(daemon.pid);
  if (status === undefined) {
    return true;
  }
  return status.state === "Z" || status.state === "X" || status.startTime !== daemon.startTime;
}

/** Waits up to `timeoutMs` for the daemon to exit and returns whether it did. */
export async function waitForExit(daemon: Daemon, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await hasExited(daemon)) {
      return true;
    }
    if (Date.now() >= deadline) {
      return false;
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

/**
 * Sends SIGTERM and waits for the daemon to exit. After `timeoutMs` it sends
 * SIGKILL and throws, because a killed daemon skipped its own cleanup.
 */
export async function stopDaemon(daemon: Daemon, label: string, timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
  if (await hasExited(daemon)) {
    return;
  }
  signal(daemon.pid, "SIGTERM");
  if (await waitForExit(daemon, timeoutMs)) {
    return;
  }
  // Checked again right before the signal, so a pid reused meanwhile is left alone.
  if (!(await hasExited(daemon))) {
    signal(daemon.pid, "SIGKILL");
  }
  const killed = await waitForExit(daemon, KILL_TIMEOUT_MS);
  const outcome = killed ? "was killed with SIGKILL" : `still runs ${KILL_TIMEOUT_MS} ms after SIGKILL`;
  throw new Error(`${label} (pid ${daemon.pid}) did not exit within ${timeoutMs} ms of SIGTERM and ${outcome}`);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    // ESRCH: the process exited between the check and the signal.
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") {
      throw error;
    }
  }
}

async function readStartTime(pid: number): Promise<string | undefined> {
  return (await readStat(pid))?.startTime;
}

async function readStat(pid: number): Promise<{ state: string; startTime: string } | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name in field 2 is in parentheses and may contain spaces, so
  // the fields are counted from the last ")". Field 3 is the state, field 22
  // the start time.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined) {
    return undefined;
  }
  return { state, startTime };
}
