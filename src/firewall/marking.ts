import { posix } from "node:path";

import type { Bypass, Protocol } from "../config/types.js";
import type { System } from "../system/system.js";

/** The selection and mark that both firewall backends render. */
export interface MarkingSpec {
  mark: { value: number; mask: number };
  /** Tunnel devices: connections arriving through them are never selected. */
  tunnels: string[];
  bypass: Bypass[];
  /**
   * Mount point of the cgroup v2 hierarchy, read at up. nft looks a `service`
   * cgroup up relative to /sys/fs/cgroup, so its path is written relative to
   * that. Absent means /sys/fs/cgroup, the unified layout.
   */
  cgroupMount?: string;
}

/** Returns the 32-bit complement of `mask`, to clear only our bits. */
export function invert(mask: number): number {
  return ~mask >>> 0;
}

export function hex(value: number): string {
  return `0x${value.toString(16)}`;
}

/**
 * The hook a selection rule runs in. `prerouting` matches connections that
 * arrive through an interface other than a tunnel, inbound or forwarded.
 * `output` matches connections that processes of this host open, and its
 * chain makes the kernel route a packet again after the mark changes.
 */
export type SelectionHook = "prerouting" | "output";

/**
 * One selection rule, independent of the firewall backend. It matches the
 * original direction of a connection only, so replies to a connection that
 * came in through the tunnel are never selected.
 */
export interface Selection {
  bypass: string;
  hook: SelectionHook;
  /** Set when the rule matches addresses, which exist in one family only. */
  family?: 4 | 6;
  protocol?: Protocol;
  sourcePort?: number;
  destinationPort?: number;
  /** CIDRs of `family`; absent means any source. */
  sources?: string[];
  /** CIDRs of `family`; absent means any destination. */
  destinations?: string[];
  inInterface?: string;
  uid?: number;
  gid?: number;
  /** The unit's cgroup v2 path below the root, such as "system.slice/cron.service". */
  cgroupPath?: string;
}

/** Returns whether a section selects connections opened here or forwarded, rather than inbound ones. */
export function isOutgoing(bypass: Bypass): boolean {
  return [bypass.uid, bypass.gid, bypass.service, bypass.destination, bypass.interface].some((value) => value !== undefined);
}

/** Returns whether a section selects only connections that processes of this host open. */
export function isLocalOnly(bypass: Bypass): boolean {
  return [bypass.uid, bypass.gid, bypass.service].some((value) => value !== undefined);
}

/** Returns the cgroup v2 path of a systemd system unit, as systemd places it. */
export function serviceCgroupPath(service: string): string {
  return `system.slice/${service}`;
}

/** Returns 4 or 6 for a CIDR that validation accepted. */
export function cidrFamily(cidr: string): 4 | 6 {
  return cidr.includes(":") ? 6 : 4;
}

/**
 * Turns one section into the rules that select it. Inbound sections run in
 * prerouting only. Sections with uid, gid or service run in output only.
 * Sections with destination but without interface or source run in both,
 * for connections opened here and for those forwarded from other hosts.
 * Addresses split a rule by family, and a family that lacks addresses for
 * a given address key gets no rule, because a rule without them would
 * select every address.
 */
export function selectionsOf(bypass: Bypass): Selection[] {
  const outgoing = isOutgoing(bypass);
  const hooks: SelectionHook[] = [];
  if (!isLocalOnly(bypass)) {
    hooks.push("prerouting");
  }
  if (isLocalOnly(bypass) || (bypass.destination !== undefined && bypass.source === undefined && bypass.interface === undefined)) {
    hooks.push("output");
  }

  const base: Selection = { bypass: bypass.name, hook: "prerouting" };
  if (bypass.protocol !== undefined) base.protocol = bypass.protocol;
  // The remote end's port is the destination port of a connection this
  // host opens or forwards, and the source port of one that comes in.
  if (outgoing) {
    if (bypass.remotePort !== undefined) base.destinationPort = bypass.remotePort;
  } else {
    if (bypass.localPort !== undefined) base.destinationPort = bypass.localPort;
    if (bypass.remotePort !== undefined) base.sourcePort = bypass.remotePort;
  }
  if (bypass.interface !== undefined) base.inInterface = bypass.interface;
  if (bypass.uid !== undefined) base.uid = bypass.uid;
  if (bypass.gid !== undefined) base.gid = bypass.gid;
  if (bypass.service !== undefined) base.cgroupPath = serviceCgroupPath(bypass.service);

  const addressed = bypass.source !== undefined || bypass.destination !== undefined;
  const variants: Selection[] = [];
  if (!addressed) {
    variants.push(base);
  } else {
    for (const family of [4, 6] as const) {
      const sources = bypass.source?.filter((cidr) => cidrFamily(cidr) === family);
      const destinations = bypass.destination?.filter((cidr) => cidrFamily(cidr) === family);
      if (sources?.length === 0 || destinations?.length === 0) {
        continue;
      }
      variants.push({
        ...base,
        family,
        ...(sources === undefined ? {} : { sources }),
        ...(destinations === undefined ? {} : { destinations }),
      });
    }
  }
  return hooks.flatMap((hook) => variants.map((variant) => ({ ...variant, hook })));
}

/** Returns whether any section runs in the output chain. */
export function hasOutputSelections(spec: Pick<MarkingSpec, "bypass">): boolean {
  return spec.bypass.some((bypass) => selectionsOf(bypass).some((selection) => selection.hook === "output"));
}

/** Describes a section's selectors in one line, for logs, status and error messages. */
export function describeBypass(bypass: Bypass): string {
  const parts: string[] = [];
  if (bypass.protocol !== undefined) {
    parts.push(bypass.localPort === undefined ? bypass.protocol : `${bypass.protocol}/${bypass.localPort}`);
  }
  if (bypass.remotePort !== undefined) parts.push(`remote port ${bypass.remotePort}`);
  if (bypass.source !== undefined) parts.push(`from ${bypass.source.join(" ")}`);
  if (bypass.destination !== undefined) parts.push(`to ${bypass.destination.join(" ")}`);
  if (bypass.interface !== undefined) parts.push(`forwarded from ${bypass.interface}`);
  if (bypass.uid !== undefined) parts.push(`uid ${bypass.uid}`);
  if (bypass.gid !== undefined) parts.push(`gid ${bypass.gid}`);
  if (bypass.service !== undefined) parts.push(`service ${bypass.service}`);
  return parts.join(" ");
}

/** A reason that a `service` selector cannot work here, with its fix. */
export interface ServiceSelectorProblem {
  /** The sections concerned and what is wrong, such as "bypass.torrent.service: cgroup ... not found". */
  problem: string;
  fix: string;
}

/**
 * Returns why a `service` selector cannot work here, one problem per line,
 * or nothing. Both backends resolve the unit's cgroup in the cgroup v2
 * hierarchy when the rule is loaded, so the hierarchy must be mounted and
 * the unit running at `up`.
 */
export async function checkServiceSelectors(system: System, bypasses: readonly Bypass[]): Promise<string[]> {
  return (await findServiceSelectorProblems(system, bypasses)).map(({ problem, fix }) => `${problem}; ${fix}`);
}

/** Finds what checkServiceSelectors reports, with each problem and its fix apart, for `splitroute check`. */
export async function findServiceSelectorProblems(system: System, bypasses: readonly Bypass[]): Promise<ServiceSelectorProblem[]> {
  const services = bypasses.filter((bypass) => bypass.service !== undefined);
  if (services.length === 0) {
    return [];
  }
  const root = cgroup2Mount(await system.readText("/proc/self/mountinfo"));
  if (root === undefined) {
    const names = services.map((bypass) => `bypass.${bypass.name}.service`).join(", ");
    return [
      {
        problem: `${names}: no cgroup v2 hierarchy is mounted in this mount namespace (see /proc/self/mountinfo), so a unit's traffic cannot be selected`,
        fix:
          "mount the cgroup v2 hierarchy, or, in a namespace entered with `ip netns exec` (which mounts a fresh /sys without the cgroup file systems), " +
          "run splitroute with `nsenter --net=/run/netns/NAME` instead",
      },
    ];
  }
  const problems: ServiceSelectorProblem[] = [];
  for (const bypass of services) {
    const path = `${root}/${serviceCgroupPath(bypass.service!)}`;
    if ((await system.readText(`${path}/cgroup.procs`)) === undefined) {
      problems.push({
        problem: `bypass.${bypass.name}.service: cgroup ${path} not found`,
        fix: `start ${bypass.service} before up, and run up again after each restart of the unit, because the firewall keeps the cgroup it found at up`,
      });
    }
  }
  return problems;
}

/**
 * Returns a unit's cgroup path as nft's `socket cgroupv2` expects it. nft
 * (1.0.6) prefixes the path with /sys/fs/cgroup/ and takes the inode number
 * of that directory as the cgroup id. On a hybrid layout the v2 hierarchy
 * sits below that, at /sys/fs/cgroup/unified, so its path starts with
 * "unified/". The id is the same wherever the hierarchy is mounted.
 */
export function nftCgroupPath(cgroupPath: string, mount = "/sys/fs/cgroup"): string {
  const prefix = posix.relative("/sys/fs/cgroup", mount);
  return prefix === "" ? cgroupPath : `${prefix}/${cgroupPath}`;
}

/** Returns the mount point of the cgroup v2 hierarchy from /proc/self/mountinfo text. */
export function cgroup2Mount(mountinfo: string | undefined): string | undefined {
  for (const line of (mountinfo ?? "").split("\n")) {
    const [mountFields = "", fsFields = ""] = line.split(" - ");
    if (fsFields.split(" ")[0] === "cgroup2") {
      return mountFields.split(" ")[4];
    }
  }
  return undefined;
}
