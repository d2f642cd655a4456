// The identity splitroute marks everything it creates with. Removal finds
// objects by these values, so each must stay unique to splitroute on a host.

// Name of our nftables table (family inet, so one table covers IPv4 and IPv6).
// Deleting the table removes every chain and rule we added and nothing else.
export const NFT_TABLE = "splitroute";

// Our iptables chains in the mangle table. Docker uses DOCKER*, Kubernetes
// KUBE-*, firewalld its own names; the SPLITROUTE- prefix collides with none.
export const IPT_CHAIN_PREROUTING = "SPLITROUTE-PRE";
export const IPT_CHAIN_OUTPUT = "SPLITROUTE-OUT";

// Our iptables chain in the nat table, reached from POSTROUTING. The source
// NAT for connections selected in OUTPUT lives there because MASQUERADE works
// only in nat POSTROUTING. A chain of our own can be flushed and deleted
// without touching the NAT rules of Docker or the administrator.
export const IPT_CHAIN_POSTROUTING = "SPLITROUTE-POST";

// The comment on the single jump from each built-in chain into ours. Removal
// deletes jumps carrying this comment, never a re-typed copy of the rule.
export const IPT_COMMENT = "splitroute";

// The routing protocol number our copied routes carry (ip route ... proto 83).
// Removal flushes only routes with this number, so a route someone else puts
// into our table survives down. 83 is in neither iproute2's rt_protos list
// nor the numbers routing daemons such as BIRD and FRR use.
export const ROUTE_PROTOCOL = 83;

/** Returns whether a route read back from our table is one we installed. */
export function isOurRoute(route: { protocol?: string }): boolean {
  return route.protocol === String(ROUTE_PROTOCOL);
}

// The state folder. /run is a tmpfs cleared at boot, which is right because
// routes, rules and firewall state do not survive a reboot either. OpenVPN's
// systemd units use PrivateTmp, so /tmp would not be shared with `cleanup`.
export const STATE_DIR = "/run/splitroute";

// Table ids the kernel reserves (0 unspec, 253 default, 254 main, 255 local)
// and wg-quick's range: wg-quick picks table 51820 and upward for its own
// routes and its `down` deletes every rule that points at them.
export const RESERVED_TABLE_IDS = [0, 253, 254, 255] as const;
export const WG_QUICK_FIRST_TABLE = 51820;

// wg-quick marks its own encrypted packets with fwmark 51820 (0xca6c). Our
// mark must never share a bit with it, or WireGuard's packets would be routed
// by our table (and our restore would rewrite their mark).
export const WG_QUICK_MARK = 0xca6c;
