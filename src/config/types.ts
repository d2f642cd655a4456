// The validated configuration every other module works from.

export const BACKENDS = ["auto", "nftables", "iptables", "iptables-nft", "iptables-legacy"] as const;
export type BackendChoice = (typeof BACKENDS)[number];

export const PROTOCOLS = ["tcp", "udp"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/**
 * One `[bypass.NAME]` section. Every selector given must match (AND), and a
 * section has at least one besides `protocol`. Addresses are validated CIDRs,
 * and `uid` and `gid` are numbers, names having been resolved at load.
 */
export interface Bypass {
  name: string;
  /** Required with `localPort` or `remotePort`. */
  protocol?: Protocol;
  /** The port on this host that inbound connections arrive on. */
  localPort?: number;
  /** The port at the other end: the client's source port inbound, the server's port outgoing. */
  remotePort?: number;
  /** Inbound or forwarded connections from these networks. */
  source?: string[];
  /** Locally generated or forwarded connections to these networks. */
  destination?: string[];
  /** Locally generated connections of this user. */
  uid?: number;
  /** Locally generated connections of this group. */
  gid?: number;
  /** Connections forwarded from hosts behind this interface. */
  interface?: string;
  /** Locally generated connections of this systemd unit, such as "transmission.service". */
  service?: string;
}

export interface Config {
  /** The file the values came from, or "built-in defaults". */
  source: string;
  table: { name: string; id: number; priority: number };
  mark: { value: number; mask: number };
  /** `table` is the table copied: "main", another name declared in rt_tables, or a number. */
  snapshot: { exclude: string[]; table: string };
  firewall: { backend: BackendChoice };
  bypass: Bypass[];
}

export const DEFAULT_CONFIG_PATH = "/etc/splitroute/splitroute.conf";
