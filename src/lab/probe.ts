// TCP listeners and connectors that run inside a lab namespace. A process can
// only enter a namespace at start, so each probe is a separate `node` process
// started with `ip netns exec`. The program is kept as text and written to the
// lab's temp folder, so it runs the same from dist/ and from vitest's source.

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { inNamespace } from "./namespaces.js";
import { LabProcess } from "./processes.js";

const PROBE_PROGRAM = String.raw`// splitroute lab probe, run by node inside a network namespace.
//   listen-banner HOST PORT BANNER  sends BANNER and CRLF to each client, then echoes its input
//   listen-peer HOST PORT           sends each client its source address, then closes
//   connect HOST PORT TIMEOUT_MS [LOCAL_ADDRESS]
//                                   prints the first line received, or exits 1 on error or timeout
// Listeners print "listening" once they accept connections.
import net from "node:net";

const [mode, host, portText, ...rest] = process.argv.slice(2);
const port = Number(portText);

function fail(reason) {
  process.stderr.write(reason + "\n");
  process.exit(1);
}

function listen(onConnection) {
  const server = net.createServer((socket) => {
    socket.on("error", () => socket.destroy());
    onConnection(socket);
  });
  server.on("error", (error) => fail(error.message));
  server.listen({ host, port, ipv6Only: false }, () => process.stdout.write("listening\n"));
}

// A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
function unmapAddress(address) {
  if (address === undefined) return "unknown";
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

function connect(timeoutMs, localAddress) {
  let done = false;
  let received = "";
  const socket = net.connect({ host, port, localAddress });
  const timer = setTimeout(() => fail("timed out after " + timeoutMs + " ms"), timeoutMs);
  socket.setEncoding("utf8");
  socket.on("data", (chunk) => {
    received += chunk;
    const end = received.indexOf("\n");
    if (done || end === -1) return;
    done = true;
    clearTimeout(timer);
    process.stdout.write(received.slice(0, end).replace(/\r$/, "") + "\n");
    socket.destroy();
  });
  socket.on("end", () => {
    if (!done) fail("connection closed before a full line arrived");
  });
  socket.on("error", (error) => {
    if (!done) fail(error.message);
  });
}

// Keeps one connection open, so a test can check that a session opened
// before a change still carries data after it.
function session(timeoutMs, localAddress) {
  let received = "";
  const socket = net.connect({ host, port, localAddress });
  const timer = setTimeout(() => fail("timed out after " + timeoutMs + " ms"), timeoutMs);
  socket.setEncoding("utf8");
  socket.on("connect", () => clearTimeout(timer));
  socket.on("data", (chunk) => {
    received += chunk;
    let end;
    while ((end = received.indexOf("\n")) !== -1) {
      process.stdout.write(received.slice(0, end).replace(/\r$/, "") + "\n");
      received = received.slice(end + 1);
    }
  });
  socket.on("error", (error) => fail(error.message));
  socket.on("close", () => process.exit(0));
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => socket.write(chunk));
  process.stdin.on("end", () => socket.end());
}

if (mode === "listen-banner") {
  const banner = rest[0];
  listen((socket) => {
    socket.write(banner + "\r\n");
    socket.pipe(socket);
  });
} else if (mode === "listen-peer") {
  listen((socket) => socket.end(unmapAddress(socket.remoteAddress) + "\n"));
} else if (mode === "session") {
  session(Number(rest[0]), rest[1] || undefined);
} else if (mode === "connect") {
  connect(Number(rest[0]), rest[1] || undefined);
} else {
  fail("unknown probe mode: " + mode);
}
`;

// Extra time for `node` to start inside the namespace, on top of the
// connect timeout that the probe enforces itself.
const PROBE_START_ALLOWANCE_MS = 10_000;

/** Writes the probe program into `dir` and returns its path. */
export async function writeProbeProgram(dir: string): Promise<string> {
  const path = join(dir, "probe.mjs");
  await writeFile(path, PROBE_PROGRAM, { mode: 0o644 });
  return path;
}

export type ListenerMode = "listen-banner" | "listen-peer";

export interface ListenerOptions {
  label: string;
  namespace: string;
  programPath: string;
  mode: ListenerMode;
  host: string;
  port: number;
  /** Line sent to each client in listen-banner mode. */
  banner?: string;
  timeoutMs?: number;
}

/**
 * Starts a listener and resolves once it accepts connections. The process is
 * handed to `track` before that, so the caller can stop it even when startup fails.
 */
export async function startListener(options: ListenerOptions, track: (process: LabProcess) => void): Promise<LabProcess> {
  const args = [options.mode, options.host, String(options.port)];
  if (options.mode === "listen-banner") {
    args.push(options.banner ?? "");
  }
  const listener = LabProcess.start(options.label, inNamespace(options.namespace, [process.execPath, options.programPath, ...args]));
  track(listener);

  await waitForReadyLine(listener, options.timeoutMs ?? PROBE_START_ALLOWANCE_MS);
  return listener;
}

async function waitForReadyLine(listener: LabProcess, timeoutMs: number): Promise<void> {
  const stdout = listener.subprocess.stdout;
  let output = "";
  let onData: ((chunk: Buffer) => void) | undefined;
  let timer: NodeJS.Timeout | undefined;

  const ready = new Promise<void>((resolve) => {
    onData = (chunk) => {
      output += chunk.toString("utf8");
      if (output.includes("listening\n")) {
        resolve();
      }
    };
    stdout.on("data", onData);
  });
  const exited = listener.exit.then((exit) => {
    const status = exit.signal ?? `exit code ${exit.exitCode}`;
    throw new Error(`${listener.label} exited (${status}) before it was listening: ${exit.stderr.trim()}`);
  });
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${listener.label} was not listening after ${timeoutMs} ms`)), timeoutMs);
  });

  try {
    await Promise.race([ready, exited, timedOut]);
  } finally {
    clearTimeout(timer);
    if (onData !== undefined) {
      stdout.off("data", onData);
    }
    // The race is settled, so a later exit must not surface as an unhandled rejection.
    exited.catch(() => undefined);
  }
}

export interface ConnectOptions {
  namespace: string;
  programPath: string;
  host: string;
  port: number;
  /** Source address to bind. The kernel picks one when omitted. */
  localAddress?: string;
  timeoutMs: number;
}

export type ConnectResult = { connected: true; line: string } | { connected: false; reason: string };

/** Connects from inside a namespace and returns the first line the peer sent, or why that failed. */
export async function connectAndReadLine(options: ConnectOptions): Promise<ConnectResult> {
  const args = ["connect", options.host, String(options.port), String(options.timeoutMs)];
  if (options.localAddress !== undefined) {
    args.push(options.localAddress);
  }
  const [file, ...rest] = inNamespace(options.namespace, [process.execPath, options.programPath, ...args]);
  const result = await execa(file, rest, {
    reject: false,
    stdin: "ignore",
    timeout: options.timeoutMs + PROBE_START_ALLOWANCE_MS,
  });

  if (result.exitCode === 0) {
    return { connected: true, line: result.stdout.trim() };
  }
  return { connected: false, reason: describeProbeFailure(result) };
}

function describeProbeFailure(result: { timedOut: boolean; stderr: string; signal?: string; exitCode?: number }): string {
  if (result.timedOut) {
    return "probe process timed out";
  }
  if (result.stderr.trim() !== "") {
    return result.stderr.trim();
  }
  return result.signal === undefined ? `probe exited with code ${result.exitCode}` : `probe was killed by ${result.signal}`;
}

/** A connection held open by a probe process: lines written are echoed by the client's listener. */
export class ProbeSession {
  private output = "";
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly child: ReturnType<typeof execa>) {
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      this.output += chunk;
      for (const wake of this.waiters) {
        wake();
      }
    });
  }

  /** Opens the session and waits for the first line (the banner); throws when none arrives in `timeoutMs`. */
  static async open(options: ConnectOptions): Promise<{ session: ProbeSession; banner: string }> {
    const args = ["session", options.host, String(options.port), String(options.timeoutMs)];
    if (options.localAddress !== undefined) {
      args.push(options.localAddress);
    }
    const [file, ...rest] = inNamespace(options.namespace, [process.execPath, options.programPath, ...args]);
    const child = execa(file, rest, { reject: false, stdin: "pipe", cleanup: true });
    const session = new ProbeSession(child);
    const banner = await session.nextLine(options.timeoutMs + PROBE_START_ALLOWANCE_MS);
    if (banner === undefined) {
      session.close();
      const result = await child;
      throw new Error(`opening a session to ${options.host} port ${options.port} failed: ${String(result.stderr).trim() || "no banner"}`);
    }
    return { session, banner };
  }

  /** Sends `line` and returns the line that comes back, or undefined if none arrives within `timeoutMs`. */
  async exchange(line: string, timeoutMs: number): Promise<string | undefined> {
    this.child.stdin?.write(`${line}\n`);
    return this.nextLine(timeoutMs);
  }

  /** Ends the connection and the probe process. */
  close(): void {
    this.child.stdin?.end();
    this.child.kill("SIGTERM");
  }

  private async nextLine(timeoutMs: number): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (!this.output.includes("\n")) {
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null) {
        return undefined;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      this.waiters.clear();
    }
    const end = this.output.indexOf("\n");
    const line = this.output.slice(0, end);
    this.output = this.output.slice(end + 1);
    return line;
  }
}
