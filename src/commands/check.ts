import { findEarlyRpFilters } from "../checks.js";
import { checkBypassTable, checkDefaultRoute, checkTableNames } from "../check/routing.js";
import { checkIptablesMarks, checkNftMarks, noMarkWrites } from "../check/marks.js";
import { checkOpenVpnConfig } from "../check/openvpn.js";
import { error, exitCodeOf, ok, warning, type Finding, type Severity } from "../check/report.js";
import { checkAllRules } from "../check/rules.js";
import { checkInterfaces, checkServices } from "../check/selectors.js";
import { checkFirewalldConf, checkNetworkd } from "../check/services.js";
import type { Config } from "../config/types.js";
import { chooseBackend, type FirewallBackend } from "../firewall/backend.js";
import { iptablesTools } from "../firewall/iptables.js";
import { readTable, readUplinkSysctls } from "../observe.js";
import { snapshotRoutes, uplinkDevices } from "../plan/up.js";
import { planSrcValidMark, type UplinkSysctls } from "../rpfilter.js";
import type { Family } from "../snapshot/route.js";
import type { State } from "../state.js";
import type { System } from "../system/system.js";
import type { Context } from "./context.js";
import { activeFamilies } from "./observe-state.js";

export type { Finding, Severity } from "../check/report.js";

/** The result of `splitroute check`: every finding, and the exit code they add up to. */
export interface CheckReport {
  findings: Finding[];
  counts: Record<Severity, number>;
  /** 0 when every finding is ok, 1 with a warning, 2 with an error. */
  exitCode: 0 | 1 | 2;
}

export interface CheckOptions {
  /** OpenVPN client configuration files to check, from `--openvpn FILE`. */
  openvpn?: readonly string[];
  /**
   * Whether to read nftables and iptables, which needs CAP_NET_ADMIN.
   * Without it, the mark checks are reported as not done, and so is the
   * choice that firewall.backend = auto makes, because it runs nft too.
   * Default true.
   */
  readFirewall?: boolean;
}

// The oldest node that splitroute supports, as package.json and the packages state.
const MINIMUM_NODE: readonly [number, number] = [18, 19];

/**
 * Finds everything on this host that would keep the bypass from working,
 * each with the fix, before anything is installed. Only reads: it runs `ip`
 * show commands, `nft list`, `iptables-save` and reads files and sysctls.
 */
export async function check(context: Context, options: CheckOptions = {}): Promise<CheckReport> {
  const { config, system, store } = context;
  const readFirewall = options.readFirewall ?? true;
  const findings: Finding[] = [];
  const families = await activeFamilies(system);
  const state = await store.read();

  findings.push(...(await checkTools(system, config, readFirewall, state)), checkNode(process.version));
  if (state !== undefined) {
    findings.push(ok("state", `splitroute is already active here for ${state.tunnels.join(", ")}, so its own rule, routes and marking are not reported as conflicts`));
  }

  const names = await checkTableNames(system, config);
  findings.push(...names.findings);
  // An undeclared snapshot.table has its error already, and every read of it fails the same way.
  if (names.snapshotResolves) {
    for (const family of families) {
      findings.push(await checkDefaultRoute(system, config, family));
    }
    findings.push(...(await checkRpFilter(system, config)));
  }
  findings.push(...(await checkAllRules(system, config, families)));
  for (const family of families) {
    findings.push(...(await checkBypassTable(system, config, family, state)));
  }
  findings.push(...(await checkServices(system, config)), ...(await checkInterfaces(system, config)));

  const firewall = readFirewall ? await checkFirewall(system, config, families, findings) : { findings: [notRead()], earlyRpFilter: false };
  findings.push(...firewall.findings);
  findings.push(...(await checkFirewalldConf(system, firewall.ruleset, firewall.earlyRpFilter)));
  findings.push(...(await checkNetworkd(system)));
  for (const path of options.openvpn ?? []) {
    findings.push(...(await checkOpenVpnConfig(system, path)));
  }

  return summarize(findings);
}

/**
 * Builds the report for a configuration file that cannot be loaded, so that
 * `check --json` prints the failure in the shape of every other report.
 * `failure` is the ConfigError that loadConfig threw.
 */
export function configurationFailureReport(failure: Error): CheckReport {
  const { message } = failure;
  let fix = "correct each key that the message lists (splitroute.conf(5) describes every key and the values it allows)";
  if (/^configuration file .* not found;|^--config is empty;/.test(message)) {
    fix = "name an existing file with --config or SPLITROUTE_CONFIG, or set neither";
  } else if (message.startsWith("cannot read configuration file")) {
    fix = "name an existing file with --config or SPLITROUTE_CONFIG, and run check as a user that may read it";
  } else if (message.startsWith("refusing configuration file")) {
    fix = "make the file owned by root and writable by root only, as the message shows";
  }
  const why = "up rejects the same file, and check cannot test the other settings without it";
  return summarize([error("configuration", message, why, fix)]);
}

function summarize(findings: Finding[]): CheckReport {
  const counts: Record<Severity, number> = { error: 0, warning: 0, ok: 0 };
  for (const finding of findings) {
    counts[finding.severity]++;
  }
  return { findings, counts, exitCode: exitCodeOf(findings) };
}

/**
 * Reads nftables and iptables for mark writes of other software and for
 * early IPv6 reverse-path filters. `earlier` are the findings so far, whose
 * rule findings decide whether "no other rule uses the mark" is true.
 */
async function checkFirewall(
  system: System,
  config: Config,
  families: readonly Family[],
  earlier: readonly Finding[],
): Promise<{ findings: Finding[]; ruleset?: string; earlyRpFilter: boolean }> {
  const iptables = await checkIptablesMarks(system, config, families);
  const nft = await checkNftMarks(system, config, iptables.nftTables);
  const findings = [...nft.findings, ...iptables.findings];
  findings.push(...noMarkWrites(config, [...earlier, ...findings]));

  const filters = families.includes(6) && nft.ruleset !== undefined ? findEarlyRpFilters(nft.ruleset) : [];
  for (const problem of filters) {
    // Each problem has the form "WHAT, so it drops ...; FIX".
    const split = problem.indexOf("; ");
    findings.push(
      error("firewalld", problem.slice(0, split), "the filter looks up the reverse path without splitroute's mark, so the VPN's routes fail it", problem.slice(split + 2)),
    );
  }
  return { findings, ...(nft.ruleset === undefined ? {} : { ruleset: nft.ruleset }), earlyRpFilter: filters.length > 0 };
}

function notRead(): Finding {
  return warning(
    "mark",
    "the nftables ruleset and the iptables mangle tables were not read",
    "reading them needs root, so check cannot tell whether other rules use splitroute's mark bits",
    "run splitroute check as root",
  );
}

/**
 * Checks for ip and for the tools of the firewall backend that up would use.
 * `canRunNft` is false without root, and then `auto` is resolved only from
 * the record of an installed bypass: nft fails for other users, so
 * chooseBackend would pick iptables where root gets nftables.
 */
async function checkTools(system: System, config: Config, canRunNft: boolean, state: State | undefined): Promise<Finding[]> {
  const findings: Finding[] = [];
  if (system.hasTool("ip")) {
    findings.push(ok("tools", "ip is installed"));
  } else {
    findings.push(error("tools", "ip is not installed", "splitroute copies the table and adds its rule with ip", "install iproute2 (iproute on Fedora and RHEL)"));
  }

  const choice = config.firewall.backend;
  let backend: FirewallBackend;
  let chosen: string;
  let because: string | undefined;
  if (choice === "auto" && !canRunNft && system.hasTool("nft")) {
    if (state === undefined) {
      findings.push(
        warning(
          "tools",
          "firewall.backend = auto: which backend up would use cannot be decided without root",
          "auto picks nftables when nft can list the ruleset, which needs root, and iptables otherwise",
          "run check as root",
        ),
      );
      return findings;
    }
    backend = state.backend;
    chosen = `firewall.backend = auto: the installed bypass uses ${backend}, as its record shows`;
    because = "without root, check cannot run nft to choose, so it reports the backend that up chose";
  } else {
    try {
      backend = await chooseBackend(choice, system);
    } catch (failure) {
      findings.push(
        error(
          "tools",
          (failure as Error).message,
          "splitroute marks the bypassed connections with nftables or iptables",
          choice === "auto" ? "install nftables (or iptables)" : `install the tools for ${choice}, or set firewall.backend = auto`,
        ),
      );
      return findings;
    }
    if (backend === "nftables") {
      chosen = choice === "auto" ? "firewall.backend = auto uses nftables, because nft is installed and works" : "nft is installed for firewall.backend = nftables";
    } else {
      chosen = `firewall.backend = ${choice} uses ${backend}`;
    }
  }

  if (backend === "nftables") {
    findings.push(ok("tools", chosen, because));
    return findings;
  }
  // chooseBackend checks the restore tools, but up and down also read with the save tools.
  const missing = ([4, 6] as const).map((family) => iptablesTools(backend, family).save).filter((tool) => !system.hasTool(tool));
  if (missing.length > 0) {
    findings.push(error("tools", `${missing.join(" and ")} not installed`, `up and down read the mangle and nat tables with them`, `install the ${backend} package that provides them`));
  } else {
    findings.push(ok("tools", `${chosen}, and its tools are installed`, because));
  }
  return findings;
}

/** Compares a node version such as "v20.11.1" with the oldest supported one. */
export function checkNode(version: string): Finding {
  const [major = 0, minor = 0] = version.replace(/^v/, "").split(".").map(Number);
  const [needMajor, needMinor] = MINIMUM_NODE;
  if (major > needMajor || (major === needMajor && minor >= needMinor)) {
    return ok("tools", `node ${version} (${needMajor}.${needMinor} or later is needed)`);
  }
  return error("tools", `node ${version} is older than ${needMajor}.${needMinor}`, "splitroute uses features of node 18.19", "install node 18.19 or later, or name another node in SPLITROUTE_NODE");
}

/**
 * Reports what rp_filter does on each uplink that up would find, and what
 * up will change for it. None of it blocks the bypass.
 */
async function checkRpFilter(system: System, config: Config): Promise<Finding[]> {
  let routes;
  try {
    routes = await readTable(system, 4, config.snapshot.table);
  } catch {
    // The default route finding reports the unreadable table.
    return [];
  }
  const uplinks = await readUplinkSysctls(system, uplinkDevices(snapshotRoutes(config, [], { 4: routes, 6: [] })[4]));
  return uplinks.map(describeRpFilter);
}

function describeRpFilter(uplink: UplinkSysctls): Finding {
  const { device } = uplink;
  const effective = Math.max(Number(uplink.rpFilterAll ?? 0), Number(uplink.rpFilter ?? 0));
  const [change] = planSrcValidMark([uplink]);
  if (change !== undefined) {
    return ok(
      "rp_filter",
      `strict rp_filter on ${device}: up sets ${change.key}=1 and down puts back ${change.previous}`,
      "with src_valid_mark the kernel's reverse-path check uses splitroute's mark and finds the bypass table",
    );
  }
  if (effective === 1) {
    return ok("rp_filter", `strict rp_filter on ${device} with src_valid_mark already 1, so the reverse-path check uses splitroute's mark`);
  }
  if (effective === 2) {
    return ok("rp_filter", `loose rp_filter on ${device}, which accepts inbound packets whose source any route reaches`);
  }
  return ok("rp_filter", `rp_filter is off on ${device}`);
}

const LABELS: Record<Severity, string> = { error: "error  ", warning: "warning", ok: "ok     " };

/** Renders a check report for a terminal: errors first, then warnings, then what is fine. */
export function renderCheck(report: CheckReport): string {
  const order: Severity[] = ["error", "warning", "ok"];
  const lines: string[] = [];
  for (const severity of order) {
    for (const finding of report.findings.filter((entry) => entry.severity === severity)) {
      lines.push(`${LABELS[severity]}  ${finding.area}: ${finding.what}`);
      if (finding.why !== undefined) {
        lines.push(`${" ".repeat(9)}why: ${finding.why}`);
      }
      if (finding.fix !== undefined) {
        lines.push(`${" ".repeat(9)}fix: ${finding.fix}`);
      }
    }
  }
  const { counts } = report;
  lines.push("", `${plural(counts.error, "error")}, ${plural(counts.warning, "warning")}, ${counts.ok} ok`);
  return `${lines.join("\n")}\n`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

