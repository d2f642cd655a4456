import { isIPv6 } from "node:net";

/** An address range that validation accepted, as the file wrote it and as numbers. */
export interface Cidr {
  /** The address and prefix length as written, lower-cased; no prefix means one address. */
  text: string;
  family: 4 | 6;
  first: bigint;
  last: bigint;
}

const IPV4 = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/;

/**
 * Parses an IPv4 or IPv6 address with an optional prefix length. Returns
 * undefined for anything else: bits set after the prefix length (usually a
 * typo), an IPv6 zone, and an IPv6 address with a dotted IPv4 tail.
 */
export function parseCidr(text: string): Cidr | undefined {
  const [address = "", prefixText, ...rest] = text.toLowerCase().split("/");
  if (rest.length > 0 || (prefixText !== undefined && !/^(0|[1-9][0-9]{0,2})$/.test(prefixText))) {
    return undefined;
  }
  const parsed = parseIPv4(address) ?? parseIPv6(address);
  if (parsed === undefined) {
    return undefined;
  }
  const bits = parsed.family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (prefix > bits) {
    return undefined;
  }
  const hostBits = (1n << BigInt(bits - prefix)) - 1n;
  if ((parsed.value & hostBits) !== 0n) {
    return undefined;
  }
  return { text: text.toLowerCase(), family: parsed.family, first: parsed.value, last: parsed.value | hostBits };
}

/** Returns whether two ranges share an address. */
export function overlaps(first: Cidr, second: Cidr): boolean {
  return first.family === second.family && first.first <= second.last && second.first <= first.last;
}

function parseIPv4(address: string): { family: 4; value: bigint } | undefined {
  const match = IPV4.exec(address);
  if (match === null) {
    return undefined;
  }
  let value = 0n;
  for (const part of match.slice(1)) {
    const octet = Number(part);
    if (octet > 255) {
      return undefined;
    }
    value = (value << 8n) | BigInt(octet);
  }
  return { family: 4, value };
}

function parseIPv6(address: string): { family: 6; value: bigint } | undefined {
  if (!isIPv6(address) || address.includes(".") || address.includes("%")) {
    return undefined;
  }
  const [head = "", tail] = address.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(missing).fill("0"), ...tailGroups];
  let value = 0n;
  for (const group of groups) {
    value = (value << 16n) | BigInt(Number.parseInt(group, 16));
  }
  return { family: 6, value };
}
