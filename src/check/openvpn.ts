import type { System } from "../system/system.js";
import { error, ok, warning, type Finding } from "./report.js";

// Checks an OpenVPN client configuration for the settings that keep
// splitroute's hooks from running or from removing the bypass.

/** The directives of an OpenVPN configuration that matter here, by name. */
export type OpenVpnDirectives = Map<string, string[][]>;

/**
 * Reads directives from OpenVPN configuration text: one per line, the name
 * first, and comments start with `#` or `;`. Inline blocks such as `<ca>` are skipped.
 * NOTE: quoting is read only as far as splitting on whitespace, which is
 * enough for the names and numbers checked here.
 */
export function parseOpenVpnConfig(text: string): OpenVpnDirectives {
  const directives: OpenVpnDirectives = new Map();
  let block: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (block !== undefined) {
      if (line === `</${block}>`) {
        block = undefined;
      }
      continue;
    }
    const opening = /^<([A-Za-z0-9-]+)>$/.exec(line);
    if (opening !== null) {
      block = opening[1];
      continue;
    }
    if (line === "" || line.startsWith("#") || line.startsWith(";")) {
      continue;
    }
    const [name, ...args] = line.split(/\s+/);
    const key = name!.replace(/^--/, "").toLowerCase();
    directives.set(key, [...(directives.get(key) ?? []), args]);
  }
  return directives;
}

/** Checks the OpenVPN configuration at `path`. */
export async function checkOpenVpnConfig(system: System, path: string): Promise<Finding[]> {
  const text = await system.readText(path);
  if (text === undefined) {
    return [error("openvpn", `OpenVPN configuration ${path} not found`, `check cannot tell whether its hooks will run`, `give the path of the client configuration to --openvpn`)];
  }
  return judgeOpenVpnConfig(path, parseOpenVpnConfig(text));
}

/** Turns parsed directives into findings, which name the file as `path`. */
export function judgeOpenVpnConfig(path: string, directives: OpenVpnDirectives): Finding[] {
  const findings: Finding[] = [];
  const area = "openvpn";
  const user = directives.get("user")?.at(-1)?.[0];
  const downRootPlugins = (directives.get("plugin") ?? []).filter((args) => /down-root/.test(args[0] ?? ""));
  const downRoot = downRootPlugins.length > 0;

  // OpenVPN's default script-security is 1, which runs only built-in
  // programs such as ip, never a script named in up or down.
  const securityText = directives.get("script-security")?.at(-1)?.[0];
  const security = securityText === undefined ? 1 : Number(securityText);
  if (!(security >= 2)) {
    findings.push(
      error(
        area,
        `${path}: script-security is ${securityText ?? "not set (1)"}`,
        `below 2, OpenVPN refuses to run the up and down hooks, so no bypass is installed`,
        securityText === undefined ? `add "script-security 2" to ${path}` : `change the line "script-security ${securityText}" in ${path} to "script-security 2"`,
      ),
    );
  }

  if (user !== undefined && !downRoot) {
    findings.push(
      error(
        area,
        `${path}: "user ${user}" without the down-root plugin`,
        `OpenVPN runs down as ${user}, which cannot remove the rule, routes and firewall table, so the bypass stays after the tunnel is gone`,
        `run down through the plugin: plugin /usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-down-root.so /usr/lib/splitroute/down (dpkg -L openvpn | grep down-root shows its folder)`,
      ),
    );
  }
  const plainDown = directives.get("down")?.at(-1);
  if (user !== undefined && downRoot && plainDown !== undefined && plainDown.length > 0) {
    const pluginScripts = downRootPlugins.flatMap((args) => (args[1] === undefined ? [] : [unquoted(args[1])]));
    findings.push(judgePlainDown(path, user, plainDown, pluginScripts));
  }
  if (user !== undefined && directives.has("up-restart")) {
    findings.push(
      warning(
        area,
        `${path}: up-restart together with "user ${user}"`,
        `on a restart the down-root plugin fails and OpenVPN exits`,
        `remove up-restart from ${path}`,
      ),
    );
  }
  if (user !== undefined) {
    for (const directive of ["persist-tun", "persist-key"]) {
      if (!directives.has(directive)) {
        findings.push(
          warning(
            area,
            `${path}: "user ${user}" without ${directive}`,
            directive === "persist-tun"
              ? `on a restart OpenVPN closes the tunnel, the plugin removes the bypass, and OpenVPN, no longer root, cannot open the tunnel again`
              : `on a restart OpenVPN, no longer root, cannot read its key again`,
            `add "${directive}" to ${path}`,
          ),
        );
      }
    }
  }
  if (findings.length === 0) {
    findings.push(ok(area, `${path}: the hooks can run${user === undefined ? "" : `, and down runs as root through the down-root plugin`}`));
  }
  return findings;
}

// OpenVPN allows a quoted command, such as "/usr/lib/splitroute/down --config F",
// whose first word the parser here keeps with its opening quote.
function unquoted(word: string): string {
  return word.replace(/^["']|["']$/g, "");
}

/**
 * Judges a plain `down` line in a configuration that drops privileges and
 * loads the down-root plugin. OpenVPN runs that line's script as the
 * unprivileged user, so splitroute's down fails there and must run through
 * the plugin instead.
 */
function judgePlainDown(path: string, user: string, args: readonly string[], pluginScripts: readonly string[]): Finding {
  const line = ["down", ...args].join(" ");
  const script = unquoted(args[0]!);
  if (pluginScripts.includes(script)) {
    return warning(
      "openvpn",
      `${path}: "${line}" beside the down-root plugin, which runs ${script} too`,
      `OpenVPN runs the plain down script as ${user} as well, which cannot remove anything, so it fails with an error in the log, while the plugin runs it as root`,
      `remove the line "${line}" from ${path}, so that down runs only through the plugin, as in splitroute(8)'s down-root example`,
    );
  }
  return warning(
    "openvpn",
    `${path}: "${line}" runs as ${user}`,
    `OpenVPN runs a plain down script after dropping privileges, so a script that needs root fails. Only the plugin's command (${pluginScripts.join(", ") || "none"}) runs as root`,
    `if ${script} is splitroute's down, remove the line "${line}" and run the script through a down-root plugin line instead (plugin .../openvpn-plugin-down-root.so /usr/lib/splitroute/down, as splitroute(8) shows); keep a plain down line only for a script that works without root`,
  );
}
