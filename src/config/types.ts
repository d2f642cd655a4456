// The validated configuration every other module works from.

export const BACKENDS = ["auto", "nftables", "iptables", "iptables-nft", "iptables-legacy"] as const;
export type BackendChoice = (typeof BACKENDS)[number];

export const PROTOCOLS = ["tcp", "udp"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** One `[bypass.NAME]` section: connections that arrive on a local port outside the tunnel. */
export interface Bypass {
  name: string;
  protocol: Protocol;
  localPort: number;
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
