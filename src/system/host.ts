import { readFile, writeFile } from "node:fs/promises";
import { execa } from "execa";

import { formatArgv } from "../errors.js";
import type { Logger } from "../log.js";
import type { CommandResult, System } from "./system.js";
import { findTool } from "./tools.js";

/** The real host: tools run through execa with argv arrays, never a shell. */
export class HostSystem implements System {
  private readonly paths = new Map<string, string | undefined>();

  constructor(
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly log?: Logger,
  ) {}

  async run(argv: readonly string[], input?: string): Promise<CommandResult> {
    return this.execute(argv, input);
  }

  async stream(argv: readonly string[], onData: (chunk: string) => void, input?: string): Promise<CommandResult> {
    return this.execute(argv, input, onData);
  }

  private async execute(argv: readonly string[], input: string | undefined, onData?: (chunk: string) => void): Promise<CommandResult> {
    const [tool, ...args] = argv;
    const path = tool === undefined ? undefined : this.resolve(tool);
    if (path === undefined) {
      return { exitCode: 127, stdout: "", stderr: `${tool ?? "(empty command)"}: not installed (looked in /usr/sbin, /usr/bin, /sbin, /bin, /usr/local/sbin, /usr/local/bin and PATH)` };
    }
    const subprocess = execa(path, args, {
      input: input ?? "",
      reject: false,
      // With onData, stdout goes to the caller as it arrives instead of
      // into one string.
      buffer: { stdout: onData === undefined },
      // execa's default of 100 MB is less than ip -j route show prints for a
      // table of a million routes.
      maxBuffer: 1024 * 1024 * 1024,
      stripFinalNewline: false,
      // The C locale keeps tool messages in English, which the error handling
      // matches, and the environment small.
      env: { LC_ALL: "C", PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
      extendEnv: false,
    });
    if (onData !== undefined) {
      subprocess.stdout.setEncoding("utf8");
      subprocess.stdout.on("data", onData);
    }
    const result = await subprocess;
    const exitCode = result.exitCode ?? 1;
    this.log?.debug({ argv, exitCode, durationMs: Math.round(result.durationMs) }, `ran ${formatArgv(argv)}: exit code ${exitCode}`);
    return { exitCode, stdout: onData === undefined ? String(result.stdout ?? "") : "", stderr: String(result.stderr ?? result.message ?? "") };
  }

  hasTool(tool: string): boolean {
    return this.resolve(tool) !== undefined;
  }

  async readSysctl(key: string): Promise<string | undefined> {
    try {
      const value = (await readFile(sysctlPath(key), "utf8")).trim();
      this.log?.debug(`read ${key} = ${value}`);
      return value;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        return undefined;
      }
      throw error;
    }
  }

  async readText(path: string): Promise<string | undefined> {
    try {
      return await readFile(path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        return undefined;
      }
      throw error;
    }
  }

  async writeSysctl(key: string, value: string): Promise<void> {
    await writeFile(sysctlPath(key), value);
  }


  private resolve(tool: string): string | undefined {
    if (!this.paths.has(tool)) {
      this.paths.set(tool, findTool(tool, this.env));
    }
    return this.paths.get(tool);
  }
}

/**
 * Turns "net.ipv4.conf.eth0.rp_filter" into its /proc/sys path. Interface
 * names may contain dots (VLANs such as eth0.100), so callers pass those with
 * "/" in place of the dot, as sysctl(8) expects, and this maps them back.
 */
export function sysctlPath(key: string): string {
  return `/proc/sys/${key.split(".").map((part) => part.replaceAll("/", ".")).join("/")}`;
}

