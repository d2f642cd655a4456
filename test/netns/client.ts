// Runs connect.mjs, the selector tests' client, inside a network namespace.

import { fileURLToPath } from "node:url";
import { execa } from "execa";

import type { ConnectResult } from "../../src/lab/probe.js";

const PROGRAM = fileURLToPath(new URL("connect.mjs", import.meta.url));

/**
 * How long the client waits for the server's first line, in ms. Packets
 * routed into the test host's tun0 are dropped without an error, so a
 * timeout is the only sign that a connection went into the tunnel.
 */
export const CONNECT_TIMEOUT_MS = 2_500;

/**
 * The result of a connection whose packets went into the tunnel. A refused
 * or unreachable connection fails differently, so it does not pass for one.
 */
export const LOST: ConnectResult = { connected: false, reason: `timed out after ${CONNECT_TIMEOUT_MS} ms` };

// Extra time for node to start, on top of the timeout that the client
// enforces itself.
const START_ALLOWANCE_MS = 10_000;

export interface ClientOptions {
  /** The argv prefix that enters the namespace, such as `ip netns exec NAME`. */
  enter: readonly [string, ...string[]];
  host: string;
  port: number;
  localAddress?: string;
  localPort?: number;
  /** A cgroup v2 directory that the client joins before it opens its socket. */
  cgroup?: string;
}

/** Connects from inside a namespace and returns the first line the server sent, or why that failed. */
export async function connectClient(options: ClientOptions): Promise<ConnectResult> {
  const args = [PROGRAM, options.host, String(options.port), String(CONNECT_TIMEOUT_MS)];
  if (options.localAddress !== undefined) args.push("--local-address", options.localAddress);
  if (options.localPort !== undefined) args.push("--local-port", String(options.localPort));
  if (options.cgroup !== undefined) args.push("--cgroup", options.cgroup);

  const [file, ...prefix] = options.enter;
  const result = await execa(file, [...prefix, process.execPath, ...args], { reject: false, stdin: "ignore", timeout: CONNECT_TIMEOUT_MS + START_ALLOWANCE_MS });
  if (result.exitCode === 0) {
    return { connected: true, line: String(result.stdout).trim() };
  }
  const reason = result.timedOut ? "client process timed out" : String(result.stderr).trim() || `client exited with code ${result.exitCode}`;
  return { connected: false, reason };
}
