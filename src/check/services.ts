import type { System } from "../system/system.js";
import { lastIniValue, parseSystemdBoolean, readConfFolder, type TextFile } from "./files.js";
import { ok, warning, type Finding } from "./report.js";

// Other software on the host that undoes or blocks the bypass:
// systemd-networkd removing rules and routes it did not create, and
// firewalld's IPv6 reverse-path filter.

// systemd-networkd writes this file while it runs. The folder around it
// exists wherever systemd-networkd is installed, because systemd's
// tmpfiles.d/systemd-network.conf creates it at boot, so it proves nothing.
const NETWORKD_STATE = "/run/systemd/netif/state";

// networkd.conf(5): the main file, then drop-ins from these folders.
const NETWORKD_CONF = "/etc/systemd/networkd.conf";
const NETWORKD_DROPINS = ["/usr/lib/systemd/networkd.conf.d", "/run/systemd/networkd.conf.d", "/etc/systemd/networkd.conf.d"];

/**
 * Checks ManageForeignRoutingPolicyRules and ManageForeignRoutes while
 * systemd-networkd runs. Both default to yes, and then networkd removes
 * rules and routes that its .network files do not list whenever it starts
 * or reconfigures a link, splitroute's among them.
 */
export async function checkNetworkd(system: System): Promise<Finding[]> {
  if ((await system.readText(NETWORKD_STATE)) === undefined) {
    return [ok("systemd-networkd", "systemd-networkd is not running, so it removes no rules or routes")];
  }
  const files = await readNetworkdConf(system);
  const findings: Finding[] = [];
  const settings = [
    { key: "ManageForeignRoutingPolicyRules", objects: "policy rules", removed: "splitroute's rule" },
    { key: "ManageForeignRoutes", objects: "routes", removed: "the copied routes in splitroute's table" },
  ];
  for (const { key, objects, removed } of settings) {
    const setting = lastIniValue(files, "Network", key);
    const enabled = setting === undefined ? true : (parseSystemdBoolean(setting.value) ?? true);
    if (!enabled) {
      findings.push(ok("systemd-networkd", `systemd-networkd keeps foreign ${objects} (${key}=${setting!.value} in ${setting!.path})`));
      continue;
    }
    findings.push(
      warning(
        "systemd-networkd",
        `systemd-networkd runs with ${key}=${setting === undefined ? "yes (the default)" : `${setting.value} in ${setting.path}`}`,
        `networkd removes ${objects} it did not configure when it starts or reconfigures a link, which removes ${removed} while the tunnel is up`,
        `add "[Network]\\n${key}=no" to /etc/systemd/networkd.conf.d/splitroute.conf and run systemctl restart systemd-networkd`,
      ),
    );
  }
  return findings;
}

async function readNetworkdConf(system: System): Promise<TextFile[]> {
  const files: TextFile[] = [];
  const main = await system.readText(NETWORKD_CONF);
  if (main !== undefined) {
    files.push({ path: NETWORKD_CONF, text: main });
  }
  // A drop-in in /etc replaces one of the same name in /run or /usr/lib, and
  // all of them are read in the order of their names.
  const dropins = new Map<string, TextFile>();
  for (const folder of NETWORKD_DROPINS) {
    for (const file of await readConfFolder(system, folder)) {
      dropins.set(file.path.slice(folder.length + 1), file);
    }
  }
  files.push(...[...dropins].sort(([a], [b]) => a.localeCompare(b)).map(([, file]) => file));
  return files;
}

const FIREWALLD_CONF = "/etc/firewalld/firewalld.conf";

/**
 * Checks IPv6_rpfilter in firewalld.conf. With its strict values, firewalld
 * releases that check the reverse path in their raw chain do so before
 * splitroute marks packets. `ruleset` is the nftables ruleset when it was
 * read, and `ruleFound` whether it has such an early filter, which another
 * finding reports.
 */
export async function checkFirewalldConf(system: System, ruleset: string | undefined, ruleFound: boolean): Promise<Finding[]> {
  const text = await system.readText(FIREWALLD_CONF);
  if (text === undefined) {
    return [];
  }
  const match = /^\s*IPv6_rpfilter\s*=\s*(\S+)/m.exec(text);
  // firewalld.conf(5): the default is yes, which is strict.
  const value = match?.[1] ?? "yes";
  const strict = ["yes", "true", "strict"].includes(value.toLowerCase());
  if (!strict) {
    return [ok("firewalld", `firewalld's IPv6 reverse-path filter is ${value} in ${FIREWALLD_CONF}, which lets bypassed connections in`)];
  }
  if (ruleFound) {
    return [];
  }
  if (ruleset?.includes("table inet firewalld {")) {
    return [ok("firewalld", `firewalld runs with IPv6_rpfilter=${value}, and its reverse-path check comes after splitroute marks packets`)];
  }
  return [
    warning(
      "firewalld",
      `${FIREWALLD_CONF} sets IPv6_rpfilter=${value}${match === null ? " (the default)" : ""}`,
      `firewalld is not running now, but once it runs, a release that checks the reverse path in its raw chain drops inbound IPv6 connections that the VPN's routes would answer through the tunnel, before splitroute can mark them`,
      `set IPv6_rpfilter=loose in ${FIREWALLD_CONF} and run firewall-cmd --reload`,
    ),
  ];
}
