// The narrow interface between splitroute and the host. Observers and the
// applier use only this, so tests can put a stateful fake behind it.

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface System {
  /**
   * Runs argv[0] (a tool name such as "ip" or "nft") with the rest as
   * arguments and `input` on stdin. Never throws for a non-zero exit code.
   */
  run(argv: readonly string[], input?: string): Promise<CommandResult>;
  /**
   * Runs argv like run, but hands stdout to `onData` piece by piece as it
   * arrives and returns an empty stdout. For outputs too large to hold
   * twice. Callers fall back to run where an implementation lacks it.
   */
  stream?(argv: readonly string[], onData: (chunk: string) => void, input?: string): Promise<CommandResult>;
  /** Returns whether the tool is installed. */
  hasTool(tool: string): boolean;
  /** Reads a sysctl such as "net.ipv4.conf.eth0.rp_filter"; undefined if it does not exist. */
  readSysctl(key: string): Promise<string | undefined>;
  writeSysctl(key: string, value: string): Promise<void>;
  /** Reads a text file such as /proc/net/ip_tables_names; undefined if it does not exist. */
  readText(path: string): Promise<string | undefined>;
}
