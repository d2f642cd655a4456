// Long-running child processes of the lab (OpenVPN, TCP listeners). Each one
// is a direct child of this Node process, so the lab can wait for its exit.

import { execa } from "execa";
import { formatArgv } from "../errors.js";

const STOP_TIMEOUT_MS = 15_000;

function spawnChild(argv: readonly string[]) {
  const [file, ...args] = argv;
  if (file === undefined) {
    throw new Error("spawnChild: argv is empty");
  }
  // reject: false makes the promise resolve with the result on any exit, so
  // `exit` below never rejects. cleanup (execa's default) sends SIGTERM to the
  // child if this Node process exits first.
  return execa(file, args, { reject: false, stdin: "ignore", stdout: "pipe", stderr: "pipe", cleanup: true });
}

type Subprocess = ReturnType<typeof spawnChild>;

export interface ProcessExit {
  exitCode: number | undefined;
  signal: string | undefined;
  stderr: string;
}

/** A child process started by the lab, stopped by its pid. */
export class LabProcess {
  readonly exit: Promise<ProcessExit>;
  private exitResult: ProcessExit | undefined;

  private constructor(
    readonly label: string,
    readonly argv: readonly string[],
    readonly subprocess: Subprocess,
  ) {
    this.exit = subprocess.then((result) => {
      this.exitResult = {
        exitCode: result.exitCode,
        signal: result.signal,
        stderr: String(result.stderr ?? ""),
      };
      return this.exitResult;
    });
  }

  /** Starts argv as a child process. `label` names it in error messages. */
  static start(label: string, argv: readonly string[]): LabProcess {
    return new LabProcess(label, argv, spawnChild(argv));
  }

  /** The child's pid. Throws if the child could not be spawned at all. */
  get pid(): number {
    const pid = this.subprocess.pid;
    if (pid === undefined) {
      throw new Error(`${this.label} was not started: spawning ${formatArgv(this.argv)} failed`);
    }
    return pid;
  }

  /** Returns the exit status, or undefined while the process runs. */
  get exitStatus(): ProcessExit | undefined {
    return this.exitResult;
  }

  /**
   * Sends SIGTERM to `pid` (default: the child's own pid) and waits until the
   * child has exited. After `timeoutMs` it sends SIGKILL and throws, because a
   * killed process skipped its shutdown work, such as OpenVPN's down script.
   */
  async stop(pid?: number, timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
    if (this.exitResult !== undefined || this.subprocess.pid === undefined) {
      await this.exit;
      return;
    }
    const target = pid ?? this.pid;
    sendSignal(target, "SIGTERM");

    if (await exitsWithin(this.exit, timeoutMs)) {
      return;
    }
    sendSignal(target, "SIGKILL");
    await this.exit;
    throw new Error(`${this.label} (pid ${target}) did not exit within ${timeoutMs} ms of SIGTERM and was killed with SIGKILL`);
  }

  /**
   * Sends `signal` to `pid` (default: the child's own pid) without waiting.
   * Throws once the child's exit has been seen, so that the signal does not
   * go to a process that reused the pid.
   */
  signal(signal: NodeJS.Signals, pid?: number): void {
    if (this.exitResult !== undefined) {
      throw new Error(`${this.label} has already exited, so ${signal} was not sent`);
    }
    sendSignal(pid ?? this.pid, signal);
  }

  /**
   * Sends SIGKILL to `pid` (default: the child's own pid) and waits until the
   * child has exited. The process gets no chance to clean up, as after a
   * crash or an out-of-memory kill.
   */
  async kill(pid?: number): Promise<ProcessExit> {
    if (this.exitResult === undefined && this.subprocess.pid !== undefined) {
      sendSignal(pid ?? this.pid, "SIGKILL");
    }
    return this.exit;
  }
}

function sendSignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    // ESRCH: the process exited between our check and the signal.
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") {
      throw error;
    }
  }
}

async function exitsWithin(exit: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([exit.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
