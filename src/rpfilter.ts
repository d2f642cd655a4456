// Strict reverse-path filtering (rp_filter=1) checks an inbound packet's
// source against the route back to it. With the VPN's default route, that
// route points into the tunnel and the kernel drops the SYN that arrived on
// the uplink, unless the lookup uses the packet's mark (src_valid_mark=1),
// which makes it find our table. IPv6 has no rp_filter sysctl.

/** The sysctl values of one uplink, as read before any change. */
export interface UplinkSysctls {
  device: string;
  rpFilterAll: string | undefined;
  rpFilter: string | undefined;
  srcValidMarkAll: string | undefined;
  srcValidMark: string | undefined;
}

/** A sysctl we set, with the value to put back on down. */
export interface SysctlChange {
  key: string;
  value: string;
  previous: string;
}

/** Sysctl key for an interface; dots in a name (eth0.100) become "/", as sysctl(8) writes them. */
export function interfaceKey(device: string, name: string): string {
  return `net.ipv4.conf.${device.replaceAll(".", "/")}.${name}`;
}

/**
 * Decides where src_valid_mark must be switched on: uplinks where the
 * effective rp_filter (the higher of `all` and the interface) is strict and
 * neither `all` nor the interface already has src_valid_mark.
 */
export function planSrcValidMark(uplinks: readonly UplinkSysctls[]): SysctlChange[] {
  const changes: SysctlChange[] = [];
  for (const uplink of uplinks) {
    const strict = Math.max(Number(uplink.rpFilterAll ?? 0), Number(uplink.rpFilter ?? 0)) === 1;
    const marked = uplink.srcValidMarkAll === "1" || uplink.srcValidMark === "1";
    if (strict && !marked && uplink.srcValidMark !== undefined) {
      changes.push({ key: interfaceKey(uplink.device, "src_valid_mark"), value: "1", previous: uplink.srcValidMark });
    }
  }
  return changes;
}
