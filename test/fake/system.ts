// A stateful fake of one network namespace behind the System interface.
// Commands change the fake's routing tables, rules, nftables tables,
// iptables chains and sysctls the way the real tools change the kernel's,
// so a test can run up and down and compare whole states.

import { formatArgv } from "../../src/errors.js";
import type { CommandResult, System } from "../../src/system/system.js";
import { FakeIp, type RuleJson } from "./ip.js";
import type { Family, RouteJson } from "./ip-route.js";
import { FakeIptables, iptablesToolNames, renderSave, TABLE_NAMES } from "./iptables.js";
import { FakeNft, renderTable } from "./nft.js";
import { ToolFailure, Unsupported } from "./result.js";

/** Every tool the fake models. A FakeSystem has them all unless the test passes `tools`. */
export const ALL_TOOLS: readonly string[] = ["ip", "nft", ...iptablesToolNames()];

const INTERFACE_SYSCTLS = ["rp_filter", "src_valid_mark"];

export interface FakeSystemOptions {
  /** Network interfaces besides lo, eth0 by default. */
  interfaces?: string[];
  /** Installed tools, ALL_TOOLS by default. */
  tools?: Iterable<string>;
  /** Whether IPv6 is enabled (net.ipv6.conf.all.disable_ipv6 is 0), true by default. */
  ipv6?: boolean;
}

/** Selects commands to fail. Sysctl writes are offered as ["sysctl", "-w", "KEY=VALUE"]. */
export type CommandPredicate = (argv: readonly string[], input: string | undefined) => boolean;

export class FakeSystem implements System {
  readonly ip: FakeIp;
  readonly nft = new FakeNft();
  readonly iptables = new FakeIptables();
  readonly sysctls = new Map<string, string>();
  readonly interfaces: string[] = [];
  readonly tools: Set<string>;
  /** Every command run and sysctl written, in order. Sysctl writes appear as ["sysctl", "-w", "KEY=VALUE"]. */
  readonly commands: string[][] = [];
  /** Commands that the fake does not model, each with its argv. A test should expect none. */
  readonly unsupported: string[] = [];
  private readonly failures: Array<{ predicate: CommandPredicate; message: string }> = [];

  constructor(options: FakeSystemOptions = {}) {
    this.ip = new FakeIp((name) => this.interfaces.includes(name));
    this.tools = new Set(options.tools ?? ALL_TOOLS);
    this.sysctls.set("net.ipv6.conf.all.disable_ipv6", options.ipv6 === false ? "1" : "0");
    for (const scope of ["all", "default"]) {
      for (const name of INTERFACE_SYSCTLS) {
        this.sysctls.set(`net.ipv4.conf.${scope}.${name}`, "0");
      }
    }
    for (const name of ["lo", ...(options.interfaces ?? ["eth0"])]) {
      this.addInterface(name);
    }
  }

  /** Adds an interface whose sysctls start as the `default` ones, as in the kernel. */
  addInterface(name: string): void {
    if (this.interfaces.includes(name)) {
      throw new Error(`FakeSystem already has interface ${name}`);
    }
    this.interfaces.push(name);
    for (const sysctl of INTERFACE_SYSCTLS) {
      const value = this.sysctls.get(`net.ipv4.conf.default.${sysctl}`)!;
      this.sysctls.set(`net.ipv4.conf.${name.replaceAll(".", "/")}.${sysctl}`, value);
    }
  }

  /**
   * Deletes an interface with its sysctls and, as the kernel does, every
   * route through it. NOTE: a multipath route that has one of its next hops
   * through it is kept whole.
   */
  removeInterface(name: string): void {
    if (!this.interfaces.includes(name)) {
      throw new Error(`FakeSystem has no interface ${name}`);
    }
    this.interfaces.splice(this.interfaces.indexOf(name), 1);
    for (const sysctl of INTERFACE_SYSCTLS) {
      this.sysctls.delete(`net.ipv4.conf.${name.replaceAll(".", "/")}.${sysctl}`);
    }
    for (const family of [4, 6] as const) {
      for (const [table, routes] of this.ip.tables[family]) {
        this.ip.tables[family].set(table, routes.filter((route) => route.dev !== name));
      }
    }
  }

  /**
   * Makes every later command that `predicate` selects fail with exit code 1
   * and `message` on stderr, changing nothing. A selected sysctl write throws.
   */
  failOn(predicate: CommandPredicate, message = "FakeSystem: injected failure"): void {
    this.failures.push({ predicate, message });
  }

  clearFailures(): void {
    this.failures.length = 0;
  }

  async run(argv: readonly string[], input?: string): Promise<CommandResult> {
    this.commands.push([...argv]);
    return this.execute(argv, input);
  }

  /**
   * Runs a command as part of a test's setup, outside the commands log.
   * Throws when it fails, so a broken fixture is noticed at once.
   */
  setUp(argv: readonly string[], input?: string): void {
    const result = this.execute(argv, input);
    if (result.exitCode !== 0) {
      throw new Error(`FakeSystem setup command failed: ${formatArgv(argv)}: exit ${result.exitCode}: ${result.stderr}`);
    }
  }

  /** Adds routes to a table during setup. Each line is what follows `ip route append`. */
  addRoutes(family: Family, table: string | number, routes: readonly string[]): void {
    const input = routes.map((route) => `route append table ${table} ${route}\n`).join("");
    this.setUp(["ip", `-${family}`, "-batch", "-"], input);
  }

  hasTool(tool: string): boolean {
    return this.tools.has(tool);
  }

  /** Files readText returns, by path. */
  readonly files = new Map<string, string>();

  /**
   * Returns a file from `files`, else /proc/net/dev listing the fake's
   * interfaces, or the legacy iptables tables that the fake's tools created
   * for /proc/net/ip*_tables_names.
   */
  async readText(path: string): Promise<string | undefined> {
    if (path === "/proc/net/dev" && !this.files.has(path)) {
      return this.renderProcNetDev();
    }
    return this.files.get(path) ?? this.iptables.readProc(path);
  }

  /** Renders /proc/net/dev in the kernel's layout, with every counter 0. */
  private renderProcNetDev(): string {
    const header = [
      "Inter-|   Receive                                                |  Transmit",
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
    ];
    const counters = Array.from({ length: 16 }, () => "0").join(" ");
    const lines = this.interfaces.map((name) => `${name.padStart(6)}: ${counters}`);
    return [...header, ...lines, ""].join("\n");
  }

  /** Lists the names directly inside the folder `path` that `files` has, or undefined when it has none. */
  async listDirectory(path: string): Promise<string[] | undefined> {
    const prefix = `${path.replace(/\/$/, "")}/`;
    const names = new Set<string>();
    for (const file of this.files.keys()) {
      if (file.startsWith(prefix)) {
        names.add(file.slice(prefix.length).split("/")[0]!);
      }
    }
    return names.size === 0 ? undefined : [...names].sort();
  }

  async readSysctl(key: string): Promise<string | undefined> {
    return this.sysctls.get(key);
  }

  async writeSysctl(key: string, value: string): Promise<void> {
    const argv = ["sysctl", "-w", `${key}=${value}`];
    this.commands.push(argv);
    const injected = this.failures.find((failure) => failure.predicate(argv, undefined));
    if (injected !== undefined) {
      throw new Error(injected.message);
    }
    if (!this.sysctls.has(key)) {
      const error = new Error(`ENOENT: no such file or directory, open '/proc/sys/${key.replaceAll(".", "/")}'`);
      throw Object.assign(error, { code: "ENOENT" });
    }
    this.sysctls.set(key, value);
  }


  /** Renders the whole state as sorted text, so that two states compare as strings. */
  render(): string {
    const lines: string[] = [`interfaces: ${[...this.interfaces].sort().join(" ")}`, "sysctls:"];
    for (const key of [...this.sysctls.keys()].sort()) {
      lines.push(`  ${key} = ${this.sysctls.get(key)}`);
    }
    for (const family of [4, 6] as const) {
      lines.push(`ipv${family} rules:`, ...this.ip.rules[family].map((rule) => `  ${renderFields(rule)}`));
      // A table that once held routes stays in the kernel, empty, so only
      // tables with routes are shown.
      const tables = [...this.ip.tables[family]].filter(([, routes]) => routes.length > 0).sort(([a], [b]) => a - b);
      for (const [id, routes] of tables) {
        lines.push(`ipv${family} table ${id}:`, ...routes.map((route) => `  ${renderFields(route)}`).sort());
      }
    }
    for (const [key, body] of [...this.nft.tables].sort(([a], [b]) => a.localeCompare(b))) {
      lines.push(`nft:`, ...indent(renderTable(key, body)));
    }
    for (const [key, chains] of [...this.iptables.nftTables].sort(([a], [b]) => a.localeCompare(b))) {
      const [base, name] = key.split(" ");
      lines.push(`nft: ${base} created its ${name} table, with base chains: ${[...chains].sort().join(" ") || "none"}`);
    }
    for (const base of [...this.iptables.tables.keys()].sort()) {
      const changed = TABLE_NAMES.filter((name) => !this.iptables.isPristine(base, name));
      if (changed.length > 0) {
        lines.push(`${base}:`, ...indent(changed.map((name) => renderSave(`${base}-save`, name, this.iptables.table(base, name), false)).join("")));
      }
    }
    return `${lines.join("\n")}\n`;
  }

  private execute(argv: readonly string[], input: string | undefined): CommandResult {
    const [tool, ...args] = argv;
    if (tool === undefined || !this.tools.has(tool)) {
      return { exitCode: 127, stdout: "", stderr: `${tool ?? "(empty command)"}: not installed\n` };
    }
    const injected = this.failures.find((failure) => failure.predicate(argv, input));
    if (injected !== undefined) {
      return { exitCode: 1, stdout: "", stderr: `${injected.message}\n` };
    }
    try {
      if (tool === "ip") {
        return this.ip.run(args, input);
      }
      if (tool === "nft" && args.join(" ") === "list ruleset") {
        // iptables-nft keeps its tables in nftables, so the ruleset shows them too.
        const own = this.nft.run(args, input);
        return { ...own, stdout: own.stdout + this.iptables.renderNftRuleset() };
      }
      if (tool === "nft") {
        return this.iptables.runNft(args) ?? this.nft.run(args, input);
      }
      if (this.iptables.handles(tool)) {
        return this.iptables.run(tool, args, input);
      }
      throw new Unsupported(`the tool ${tool}`);
    } catch (error) {
      if (error instanceof ToolFailure) {
        return { exitCode: error.exitCode, stdout: "", stderr: error.stderr };
      }
      if (error instanceof Unsupported) {
        const message = `FakeSystem does not model ${error.message}: ${formatArgv(argv)}`;
        this.unsupported.push(message);
        return { exitCode: 127, stdout: "", stderr: `${message}\n` };
      }
      throw error;
    }
  }
}

// Renders a JSON object as `key=value` words in its own field order.
function renderFields(entry: RouteJson | RuleJson): string {
  return Object.entries(entry)
    .map(([key, value]) => `${key}=${typeof value === "string" || typeof value === "number" ? value : JSON.stringify(value)}`)
    .join(" ");
}

function indent(text: string): string[] {
  return text
    .replace(/\n$/, "")
    .split("\n")
    .map((line) => `  ${line}`);
}
