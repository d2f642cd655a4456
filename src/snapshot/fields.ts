// Checks for single values in ip's JSON route output. Each check throws an
// Error that names the route, the field and the value it rejected.

import { isIP } from "node:net";

import type { Family } from "./route.js";

/** The route that a field belongs to, for error messages, such as `route 3 (198.18.0.0/24)`. */
export type RouteContext = string;

const MAX_UINT32 = 4_294_967_295;

export function invalidField(context: RouteContext, field: string, value: unknown, expected: string): Error {
  return new Error(
    `invalid ${context} in ip route JSON: field "${field}" is ${JSON.stringify(value) ?? "undefined"}, expected ${expected}`,
  );
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function readString(context: RouteContext, field: string, value: unknown): string {
  if (typeof value !== "string" || value === "") {
    throw invalidField(context, field, value, "a non-empty string");
  }
  return value;
}

/** Reads a name-or-number field such as protocol or scope, which ip prints as a string. */
export function readNameOrNumber(context: RouteContext, field: string, value: unknown): string {
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) {
    return String(value);
  }
  return readString(context, field, value);
}

export function readUint32(context: RouteContext, field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_UINT32) {
    throw invalidField(context, field, value, `an integer from 0 to ${MAX_UINT32}`);
  }
  return value;
}

export function readWeight(context: RouteContext, field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 256) {
    throw invalidField(context, field, value, "an integer from 1 to 256");
  }
  return value;
}

/** Reads an IP address of `family`, or of either family when `family` is undefined, as for gateways. */
export function readAddress(context: RouteContext, field: string, value: unknown, family?: Family): string {
  const version = typeof value === "string" ? isIP(value) : 0;
  if (version === 0 || (family !== undefined && version !== family)) {
    const expected = family === undefined ? "an IP address" : `an IPv${family} address`;
    throw invalidField(context, field, value, expected);
  }
  return value as string;
}

/** Tells whether `value` is `ADDRESS` or `ADDRESS/LENGTH` of the given family. */
export function isPrefix(value: string, family: Family): boolean {
  // indexOf rather than split, because this runs twice for every route copied.
  const slash = value.indexOf("/");
  if (slash === -1) {
    return isIP(value) === family;
  }
  // A second "/" lands in `length`, which the pattern then rejects.
  const length = value.slice(slash + 1);
  return /^[0-9]{1,3}$/.test(length) && Number(length) <= (family === 4 ? 32 : 128) && isIP(value.slice(0, slash)) === family;
}

export function readPrefix(context: RouteContext, field: string, value: unknown, family: Family): string {
  if (typeof value !== "string" || !isPrefix(value, family)) {
    throw invalidField(context, field, value, `an IPv${family} address or prefix`);
  }
  return value;
}

/** Reads ip's `flow` object, printed for `realms`, into the `TO` or `FROM/TO` form that `ip route` accepts. */
export function readRealms(context: RouteContext, field: string, value: unknown): string {
  if (!isRecord(value)) {
    throw invalidField(context, field, value, 'an object with "to" and optionally "from"');
  }
  const to = readNameOrNumber(context, `${field}.to`, value.to);
  if (value.from === undefined) {
    return to;
  }
  return `${readNameOrNumber(context, `${field}.from`, value.from)}/${to}`;
}
