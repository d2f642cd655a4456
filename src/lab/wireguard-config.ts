// wg-quick configuration files for the lab's WireGuard server and client.
// The WireGuard tunnel uses its own subnets, 198.18.1.0/24 and fd00:9::/64,
// so it can run beside the OpenVPN tunnel (198.18.0.0/24, fd00:8::/64).

import { LAB_ADDRESSES, type DualStackAddress } from "./topology.js";

export const WIREGUARD_PORT = 51820;

/** Fixed tunnel addresses of both ends. WireGuard assigns nothing, so they are known in advance. */
export const WIREGUARD_ADDRESSES = {
  server: { v4: "198.18.1.1", v6: "fd00:9::1" },
  client: { v4: "198.18.1.2", v6: "fd00:9::2" },
} as const satisfies Record<string, DualStackAddress>;

export const WIREGUARD_NETWORK = { v4: "198.18.1.0/24", v6: "fd00:9::/64" } as const satisfies DualStackAddress;

/** Client AllowedIPs that send all traffic into the tunnel, like a commercial VPN. */
export const FULL_TUNNEL_ALLOWED_IPS = "0.0.0.0/0, ::/0";
/** Client AllowedIPs that cover only the tunnel subnets, so the default route stays on the uplink. */
export const SPLIT_TUNNEL_ALLOWED_IPS = `${WIREGUARD_NETWORK.v4}, ${WIREGUARD_NETWORK.v6}`;

/**
 * The `Table` setting of wg-quick: "auto" adds the AllowedIPs routes to the
 * main table, or to table 51820 with policy rules when they contain a /0.
 * "off" adds no routes. A number adds the routes to that table and no rules.
 */
export type WireGuardTable = "auto" | "off" | number;

/**
 * Command lines that wg-quick runs with bash at each phase of the link. `%i`
 * stands for the interface name. wg-quick runs them in the order given.
 */
export interface WireGuardHooks {
  preUp?: readonly string[];
  postUp?: readonly string[];
  preDown?: readonly string[];
  postDown?: readonly string[];
}

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

export interface ServerConfigOptions {
  server: KeyPair;
  clientPublicKey: string;
}

export interface ClientConfigOptions {
  client: KeyPair;
  serverPublicKey: string;
  allowedIps: string;
  table: WireGuardTable;
  hooks: WireGuardHooks;
}

const V4_PREFIX_LENGTH = 24;
const V6_PREFIX_LENGTH = 64;

// Sent every 25 seconds, and once as soon as the link comes up, so the
// handshake happens at start even when no route leads into the tunnel.
const PERSISTENT_KEEPALIVE_SECONDS = 25;

export function renderServerConfig(options: ServerConfigOptions): string {
  const { server: address } = WIREGUARD_ADDRESSES;
  return lines([
    "# splitroute test lab: WireGuard server",
    "[Interface]",
    `Address = ${address.v4}/${V4_PREFIX_LENGTH}, ${address.v6}/${V6_PREFIX_LENGTH}`,
    `ListenPort = ${WIREGUARD_PORT}`,
    `PrivateKey = ${options.server.privateKey}`,
    "",
    "[Peer]",
    `PublicKey = ${options.clientPublicKey}`,
    `AllowedIPs = ${WIREGUARD_ADDRESSES.client.v4}/32, ${WIREGUARD_ADDRESSES.client.v6}/128`,
  ]);
}

export function renderClientConfig(options: ClientConfigOptions): string {
  const { client: address } = WIREGUARD_ADDRESSES;
  const config = [
    "# splitroute test lab: WireGuard client",
    "[Interface]",
    `PrivateKey = ${options.client.privateKey}`,
    `Address = ${address.v4}/${V4_PREFIX_LENGTH}, ${address.v6}/${V6_PREFIX_LENGTH}`,
    `Table = ${formatTable(options.table)}`,
  ];

  const settings = [
    ["PreUp", options.hooks.preUp],
    ["PostUp", options.hooks.postUp],
    ["PreDown", options.hooks.preDown],
    ["PostDown", options.hooks.postDown],
  ] as const;
  for (const [key, commands] of settings) {
    for (const command of commands ?? []) {
      config.push(`${key} = ${checkValue(key, command)}`);
    }
  }

  config.push(
    "",
    "[Peer]",
    `PublicKey = ${options.serverPublicKey}`,
    `Endpoint = ${LAB_ADDRESSES.vpnServer.v4}:${WIREGUARD_PORT}`,
    `AllowedIPs = ${checkValue("AllowedIPs", options.allowedIps)}`,
    `PersistentKeepalive = ${PERSISTENT_KEEPALIVE_SECONDS}`,
  );
  return lines(config);
}

function formatTable(table: WireGuardTable): string {
  if (typeof table === "number" && !(Number.isInteger(table) && table > 0 && table <= 0xffffffff)) {
    throw new Error(`invalid WireGuard table ${table}: use "auto", "off" or a routing table id from 1 to 4294967295`);
  }
  return String(table);
}

/**
 * Rejects values that wg-quick 1.0.20210914 would change while reading the
 * file: it cuts each line at the first "#", trims spaces at both ends, and
 * reads line by line.
 */
function checkValue(key: string, value: string): string {
  if (/[\n\r\0#]/.test(value)) {
    throw new Error(`invalid ${key} value ${JSON.stringify(value)}: wg-quick cannot read a line break, NUL or "#" in it`);
  }
  if (value.trim() !== value || value === "") {
    throw new Error(`invalid ${key} value ${JSON.stringify(value)}: wg-quick trims spaces at both ends, so use a non-empty value without them`);
  }
  return value;
}

function lines(config: readonly string[]): string {
  return `${config.join("\n")}\n`;
}
