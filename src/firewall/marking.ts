import type { Bypass } from "../config/types.js";

/** What the firewall must select and mark; both backends render this. */
export interface MarkingSpec {
  mark: { value: number; mask: number };
  /** Tunnel devices: connections arriving through them are never selected. */
  tunnels: string[];
  bypass: Bypass[];
}

/** Returns the 32-bit complement of `mask`, to clear only our bits. */
export function invert(mask: number): number {
  return ~mask >>> 0;
}

export function hex(value: number): string {
  return `0x${value.toString(16)}`;
}
