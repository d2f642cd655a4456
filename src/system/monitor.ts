import { execa } from "execa";

import { findTool } from "./tools.js";

/** A running `ip monitor`, stopped by calling stop(). */
export interface Monitor {
  stop(): void;
  /** Settles when the monitor process has exited. */
  exited: Promise<void>;
}

/**
 * Starts `ip -o monitor route` and calls `onLine` for every route change the
 * kernel reports in this network namespace, one line each.
 */
export function monitorRoutes(onLine: (line: string) => void): Monitor {
  const ip = findTool("ip");
  if (ip === undefined) {
    throw new Error("ip: not installed (looked in /usr/sbin, /usr/bin, /sbin, /bin, /usr/local/sbin, /usr/local/bin and PATH)");
  }
  const child = execa(ip, ["-o", "monitor", "route"], { reject: false, buffer: false, stdin: "ignore", env: { LC_ALL: "C" }, extendEnv: false });
  let pending = "";
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    pending += chunk;
    let end: number;
    while ((end = pending.indexOf("\n")) !== -1) {
      onLine(pending.slice(0, end));
      pending = pending.slice(end + 1);
    }
  });
  return {
    stop: () => child.kill("SIGTERM"),
    exited: child.then(() => undefined),
  };
}
