// OpenVPN 2.6 configuration files for the lab's server and client.

import type { Certificate } from "./certificates.js";
import { LAB_ADDRESSES, TUNNEL_NETWORK } from "./topology.js";

export const OPENVPN_PORT = 1194;

/** Commands the client runs as its `up` and `down` scripts. */
export interface ClientHooks {
  /**
   * Command line for `up`. OpenVPN splits it into words itself (quotes group
   * words) and appends its own arguments: device, MTU, 0, local address,
   * netmask, and "init" or "restart".
   */
  up: string;
  /**
   * Command line for `down`, split the same way. OpenVPN runs it after it
   * closes the tunnel device, and with persist-tun and up-restart also before
   * a restart. Without it, the config has no `down` line, as when a down-root
   * plugin runs the down script.
   */
  down?: string;
}

export interface ClientConfigOptions {
  certificate: Certificate;
  serverFingerprint: string;
  hooks?: ClientHooks;
  /** Extra environment variables for the hooks, written as `setenv NAME VALUE`. */
  setenv?: Readonly<Record<string, string>>;
  /** Lines added verbatim after all others, such as "persist-tun" or "ping-restart 3". */
  extraConfig?: readonly string[];
}

// Settings shared by both ends. disable-dco keeps the classic tun device on
// hosts that have the ovpn-dco module, so routes and scripts behave alike
// everywhere. Logging goes to the file given by --log on the command line.
const COMMON_LINES = ["dev tun", "proto udp4", "disable-dco", "verb 3"];

/** Renders the server's config. `extraConfig` lines, such as "ping 1", are added verbatim after all others. */
export function renderServerConfig(certificate: Certificate, clientFingerprint: string, extraConfig: readonly string[] = []): string {
  return lines([
    "# splitroute test lab: OpenVPN server",
    ...COMMON_LINES,
    `local ${LAB_ADDRESSES.vpnServer.v4}`,
    `port ${OPENVPN_PORT}`,
    "topology subnet",
    `server ${TUNNEL_NETWORK.v4.network} ${TUNNEL_NETWORK.v4.netmask}`,
    `server-ipv6 ${TUNNEL_NETWORK.v6.network}`,
    // def1 routes 0.0.0.0/1 and 128.0.0.0/1 into the tunnel, so the client's
    // own default route stays in place. With "ipv6", OpenVPN 2.6 also routes
    // ::/3, 2000::/4, 3000::/4 and fc00::/7 there, which covers 2001:db8::/32.
    'push "redirect-gateway def1 ipv6"',
    "dh none",
    `cert ${quoteParameter(certificate.certPath)}`,
    `key ${quoteParameter(certificate.keyPath)}`,
    `peer-fingerprint ${clientFingerprint}`,
    ...checkExtraLines(extraConfig),
  ]);
}

export function renderClientConfig(options: ClientConfigOptions): string {
  const config = [
    "# splitroute test lab: OpenVPN client",
    "client",
    ...COMMON_LINES,
    `remote ${LAB_ADDRESSES.vpnServer.v4} ${OPENVPN_PORT}`,
    "nobind",
    `cert ${quoteParameter(options.certificate.certPath)}`,
    `key ${quoteParameter(options.certificate.keyPath)}`,
    `peer-fingerprint ${options.serverFingerprint}`,
    "script-security 2",
  ];

  for (const [name, value] of Object.entries(options.setenv ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new Error(`invalid setenv name ${JSON.stringify(name)}: use letters, digits and underscores, not starting with a digit`);
    }
    config.push(`setenv ${name} ${quoteParameter(value)}`);
  }

  if (options.hooks !== undefined) {
    config.push(`up ${quoteParameter(options.hooks.up)}`);
    if (options.hooks.down !== undefined) {
      config.push(`down ${quoteParameter(options.hooks.down)}`);
    }
  }
  config.push(...checkExtraLines(options.extraConfig ?? []));
  return lines(config);
}

// Each entry must stay one config line, or a stray line break would slip an
// option into the file that the caller never listed.
function checkExtraLines(extraConfig: readonly string[]): readonly string[] {
  for (const line of extraConfig) {
    if (/[\n\r\0]/.test(line)) {
      throw new Error(`invalid extra OpenVPN config line ${JSON.stringify(line)}: it contains a line break or NUL`);
    }
  }
  return extraConfig;
}

/**
 * Quotes one parameter for an OpenVPN config file. OpenVPN treats a backslash
 * inside double quotes as an escape character, so backslashes and double
 * quotes in the value are escaped.
 */
export function quoteParameter(value: string): string {
  if (/[\n\r\0]/.test(value)) {
    throw new Error(`invalid OpenVPN config parameter ${JSON.stringify(value)}: it contains a line break or NUL`);
  }
  return `"${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

function lines(config: readonly string[]): string {
  return `${config.join("\n")}\n`;
}
