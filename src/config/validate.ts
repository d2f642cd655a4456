import { z } from "zod";

import { ConfigError } from "../errors.js";
import { describeBypass, hex } from "../firewall/marking.js";
import { RESERVED_TABLE_IDS, WG_QUICK_FIRST_TABLE, WG_QUICK_MARK } from "../owner.js";
import { localAccounts, type AccountDatabase } from "./accounts.js";
import { overlaps, parseCidr, type Cidr } from "./cidr.js";
import { BACKENDS, PROTOCOLS, type Bypass, type Config } from "./types.js";

// Each key has a schema that turns the INI string into a typed value and an
// "allowed" text that the error message quotes. Values arrive as strings,
// except that the ini package turns true/false into booleans.

const UINT32_MAX = 0xffff_ffff;

const unsigned = (min: number, max: number) =>
  z
    .string()
    .regex(/^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/)
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const decimal = (min: number, max: number) =>
  z.string().regex(/^[0-9]{1,10}$/).transform(Number).pipe(z.number().int().min(min).max(max));

// Interface names are at most 15 bytes (IFNAMSIZ - 1). The character set is
// what iproute2 accepts in practice, minus anything a shell or ip -batch
// would split on. `*` is allowed here because exclude entries are globs.
export const INTERFACE_GLOB = /^[A-Za-z0-9_.@:+*-]{1,15}$/;

interface KeySpec {
  schema: z.ZodType<unknown, z.ZodTypeDef, string>;
  allowed: string;
}

const TABLE_KEYS: Record<string, KeySpec> = {
  name: {
    schema: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9_-]{0,30}$/)
      .refine((name) => !["main", "local", "default", "unspec"].includes(name)),
    allowed: "a name of letters, digits, '_' and '-' starting with a letter, other than main, local, default and unspec",
  },
  id: {
    schema: unsigned(1, WG_QUICK_FIRST_TABLE - 1).refine(
      (id) => !(RESERVED_TABLE_IDS as readonly number[]).includes(id),
    ),
    allowed: `an integer from 1 to ${WG_QUICK_FIRST_TABLE - 1} other than 253, 254 and 255 (reserved by the kernel); ${WG_QUICK_FIRST_TABLE} and up belong to wg-quick`,
  },
  priority: {
    // 32764 and 32765 are where wg-quick's rules usually land, 32766 is main.
    schema: decimal(1, 32763),
    allowed: "an integer from 1 to 32763 (below the main table's rule at 32766 and wg-quick's usual 32764-32765)",
  },
};

const MARK_KEYS: Record<string, KeySpec> = {
  value: { schema: unsigned(1, UINT32_MAX), allowed: "a non-zero 32-bit number, such as 0x2" },
  mask: { schema: unsigned(1, UINT32_MAX), allowed: "a non-zero 32-bit number, such as 0x2" },
};

const SNAPSHOT_KEYS: Record<string, KeySpec> = {
  exclude: {
    schema: z
      .string()
      .transform((text) => text.split(/\s+/).filter(Boolean))
      .pipe(z.array(z.string().regex(INTERFACE_GLOB))),
    allowed: "interface names or patterns with '*', separated by spaces, each at most 15 characters of A-Z a-z 0-9 _ . @ : + -",
  },
  table: {
    // Some hosts keep their default route in a table of their own and reach
    // it through a rule; the copy must come from there.
    schema: z
      .string()
      .regex(/^([A-Za-z][A-Za-z0-9_-]{0,30}|[1-9][0-9]{0,9})$/)
      .refine((table) => !["local", "default", "unspec", "253", "255"].includes(table) && (!/^[0-9]+$/.test(table) || Number(table) <= 0xffff_ffff)),
    allowed: "main, a table name declared in /etc/iproute2/rt_tables, or a table number other than 253 (default) and 255 (local)",
  },
};

const FIREWALL_KEYS: Record<string, KeySpec> = {
  backend: { schema: z.enum(BACKENDS), allowed: BACKENDS.join(", ") },
};

// A list of CIDRs, each of which must parse and none of which may overlap
// another: nft rejects overlapping elements of one set.
const cidrList = z
  .string()
  .transform((text) => text.split(/\s+/).filter(Boolean).map(parseCidr))
  .refine((list): list is Cidr[] => list.length > 0 && list.every((cidr) => cidr !== undefined))
  .refine((list) => list.every((cidr, index) => list.slice(index + 1).every((other) => !overlaps(cidr, other))))
  .transform((list) => list.map((cidr) => cidr.text));

const CIDR_ALLOWED =
  "IPv4 or IPv6 networks such as 192.0.2.0/24 or 2001:db8::/32, or single addresses, separated by spaces; " +
  "no bits set after the prefix length, and no two entries overlapping";

// uid 4294967295 is (uid_t)-1, which the kernel uses for "no user".
const MAX_ID = 0xffff_fffe;
const ACCOUNT_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;

function accountId(lookup: (name: string) => number | undefined) {
  return z.string().transform((text, context) => {
    const id = /^[0-9]{1,10}$/.test(text) ? Number(text) : ACCOUNT_NAME.test(text) ? lookup(text) : undefined;
    if (id === undefined || id > MAX_ID) {
      context.addIssue({ code: z.ZodIssueCode.custom });
      return z.NEVER;
    }
    return id;
  });
}

/** Builds the key specs of [bypass.NAME], in the order the documentation lists them. */
function bypassKeys(accounts: AccountDatabase): Record<string, KeySpec> {
  return {
    protocol: { schema: z.enum(PROTOCOLS), allowed: PROTOCOLS.join(", ") },
    local_port: { schema: decimal(1, 65535), allowed: "a port number from 1 to 65535" },
    remote_port: { schema: decimal(1, 65535), allowed: "a port number from 1 to 65535" },
    source: { schema: cidrList, allowed: CIDR_ALLOWED },
    destination: { schema: cidrList, allowed: CIDR_ALLOWED },
    uid: {
      schema: accountId((name) => accounts.userId(name)),
      allowed: `a user id from 0 to ${MAX_ID}, or a user name listed in /etc/passwd`,
    },
    gid: {
      schema: accountId((name) => accounts.groupId(name)),
      allowed: `a group id from 0 to ${MAX_ID}, or a group name listed in /etc/group`,
    },
    interface: {
      schema: z.string().regex(/^[A-Za-z0-9_.@:-]{1,15}$/),
      allowed: "an interface name of at most 15 characters of A-Z a-z 0-9 _ . @ : -",
    },
    service: {
      // Instances of template units (NAME@INSTANCE.service) live one level
      // deeper, in a slice whose name systemd escapes, so they are left out.
      schema: z.string().regex(/^[A-Za-z0-9_:][A-Za-z0-9_:.-]{0,246}\.service$/),
      allowed: "a systemd unit name ending in .service, such as transmission-daemon.service, made of A-Z a-z 0-9 _ : . - (template instances with @ are not supported)",
    },
  };
}

/** Keys that select connections; a section needs at least one. */
const SELECTOR_KEYS = ["local_port", "remote_port", "source", "destination", "uid", "gid", "interface", "service"];

/** Keys that select connections this host opens or forwards, which local_port cannot describe. */
const OUTGOING_KEYS = ["destination", "uid", "gid", "service", "interface"];

/** Keys that select connections of local processes, which never arrive through an interface. */
const LOCAL_KEYS = ["uid", "gid", "service"];

/** Keys that select connections arriving through an interface. */
const ARRIVING_KEYS = ["source", "interface"];

const SECTIONS: Record<string, Record<string, KeySpec>> = {
  table: TABLE_KEYS,
  mark: MARK_KEYS,
  snapshot: SNAPSHOT_KEYS,
  firewall: FIREWALL_KEYS,
};

const BYPASS_NAME = /^[A-Za-z0-9_-]{1,32}$/;

export const DEFAULTS: Omit<Config, "source"> = {
  table: { name: "redirect", id: 2, priority: 1000 },
  mark: { value: 0x2, mask: 0x2 },
  snapshot: { exclude: ["tun*", "tap*", "wg*"], table: "main" },
  firewall: { backend: "auto" },
  bypass: [{ name: "ssh", protocol: "tcp", localPort: 22 }],
};

/**
 * Validates the object the ini package parsed from `source` and merges it over
 * the defaults. Throws one ConfigError listing every problem found.
 */
export function validateConfig(
  parsed: Record<string, unknown>,
  source: string,
  accounts: AccountDatabase = localAccounts(),
): Config {
  const problems: string[] = [];
  const config: Config = structuredClone({ ...DEFAULTS, source });
  const bypasses: Bypass[] = [];

  for (const [section, body] of Object.entries(parsed)) {
    if (section === "bypass") {
      readBypassSections(body, problems, bypasses, bypassKeys(accounts));
      continue;
    }
    const keys = Object.hasOwn(SECTIONS, section) ? SECTIONS[section] : undefined;
    if (keys === undefined || !isPlainObject(body)) {
      const known = [...Object.keys(SECTIONS), "bypass.NAME"].join(", ");
      problems.push(`[${quote(section)}]: unknown section or a key outside any section; known sections: ${known}`);
      continue;
    }
    const target = (config as unknown as Record<string, Record<string, unknown>>)[section]!;
    for (const [key, raw] of Object.entries(body)) {
      const value = readKey(section, keys, key, raw, problems);
      if (value !== undefined) {
        target[camelCase(key)] = value;
      }
    }
  }

  if (bypasses.length > 0) {
    config.bypass = bypasses;
  }
  checkCombinations(config, problems);

  if (problems.length > 0) {
    const list = problems.map((problem) => `  ${problem}`).join("\n");
    throw new ConfigError(`invalid configuration in ${source}:\n${list}`);
  }
  return config;
}

function readBypassSections(body: unknown, problems: string[], bypasses: Bypass[], keys: Record<string, KeySpec>): void {
  if (!isPlainObject(body)) {
    problems.push("[bypass]: use one [bypass.NAME] section per bypass, for example [bypass.ssh]");
    return;
  }
  for (const [name, section] of Object.entries(body)) {
    const label = `bypass.${quote(name)}`;
    const nested = isPlainObject(section) ? Object.entries(section).find(([, value]) => isPlainObject(value)) : undefined;
    if (!BYPASS_NAME.test(name) || !isPlainObject(section) || nested !== undefined) {
      const shown = nested === undefined ? label : `${label}.${quote(nested[0])}`;
      problems.push(`[${shown}]: invalid section name; use [bypass.NAME] with NAME made of letters, digits, '_' and '-'`);
      continue;
    }
    const values: Record<string, unknown> = {};
    for (const [key, raw] of Object.entries(section)) {
      values[key] = readKey(label, keys, key, raw, problems);
    }
    const before = problems.length;
    checkBypassKeys(label, Object.keys(section), keys, problems);
    const valid = Object.keys(section).every((key) => values[key] !== undefined);
    if (valid && problems.length === before) {
      bypasses.push(toBypass(name, values));
    }
  }
}

// Checks which keys a section has, not their values, so that one bad value
// gives one message.
function checkBypassKeys(label: string, present: string[], keys: Record<string, KeySpec>, problems: string[]): void {
  const has = (key: string) => present.includes(key);
  if (!SELECTOR_KEYS.some(has)) {
    // The usual section is protocol and local_port, so both are named.
    if (!has("protocol")) {
      problems.push(`${label}.protocol: missing; allowed: ${keys.protocol!.allowed}`);
    }
    problems.push(
      `${label}.local_port: missing; allowed: ${keys.local_port!.allowed}, or instead another selector: ${SELECTOR_KEYS.filter((key) => key !== "local_port").join(", ")}`,
    );
    return;
  }
  if ((has("local_port") || has("remote_port")) && !has("protocol")) {
    problems.push(`${label}.protocol: missing; local_port and remote_port need it; allowed: ${keys.protocol!.allowed}`);
  }
  const outgoing = OUTGOING_KEYS.find(has);
  if (has("local_port") && outgoing !== undefined) {
    problems.push(
      `${label}.local_port: cannot be combined with ${outgoing}; local_port selects inbound connections by the port they arrive on, ` +
        `and ${outgoing} selects connections this host opens or forwards; use remote_port for the port they go to`,
    );
  }
  const local = LOCAL_KEYS.find(has);
  const arriving = ARRIVING_KEYS.find(has);
  if (local !== undefined && arriving !== undefined) {
    problems.push(
      `${label}.${arriving}: cannot be combined with ${local}; ${local} selects connections that processes of this host open, ` +
        `and ${arriving} selects connections that arrive through an interface; use two [bypass.NAME] sections`,
    );
  }
}

function toBypass(name: string, values: Record<string, unknown>): Bypass {
  const bypass: Bypass = { name };
  const copy = <K extends keyof Bypass>(key: K, from: string) => {
    if (values[from] !== undefined) {
      bypass[key] = values[from] as Bypass[K];
    }
  };
  copy("protocol", "protocol");
  copy("localPort", "local_port");
  copy("remotePort", "remote_port");
  copy("source", "source");
  copy("destination", "destination");
  copy("uid", "uid");
  copy("gid", "gid");
  copy("interface", "interface");
  copy("service", "service");
  return bypass;
}

function readKey(
  section: string,
  keys: Record<string, KeySpec>,
  key: string,
  raw: unknown,
  problems: string[],
): unknown {
  const spec = Object.hasOwn(keys, key) ? keys[key] : undefined;
  if (spec === undefined) {
    problems.push(`${section}.${quote(key)}: unknown key; known keys in [${section}]: ${Object.keys(keys).join(", ")}`);
    return undefined;
  }
  const text = typeof raw === "boolean" ? String(raw) : raw;
  const result = typeof text === "string" ? spec.schema.safeParse(text.trim()) : undefined;
  if (result === undefined || !result.success) {
    problems.push(`${section}.${key}: invalid value ${JSON.stringify(text)}; allowed: ${spec.allowed}`);
    return undefined;
  }
  return result.data;
}

function checkCombinations(config: Config, problems: string[]): void {
  const { value, mask } = config.mark;
  if ((value & ~mask) >>> 0 !== 0) {
    problems.push(`mark.value: ${hex(value)} has bits outside mark.mask ${hex(mask)}; the value must be inside the mask`);
  }
  // WireGuard's own packets carry wg-quick's mark; if they matched our rule,
  // the encrypted traffic would be routed by our table.
  if (((WG_QUICK_MARK & mask) >>> 0) === value) {
    problems.push(
      `mark.value: ${hex(value)} with mask ${hex(mask)} matches wg-quick's mark ${hex(WG_QUICK_MARK)}; choose bits that are not all set in ${hex(WG_QUICK_MARK)}`,
    );
  }
  if (config.snapshot.table === String(config.table.id) || config.snapshot.table === config.table.name) {
    problems.push(`snapshot.table: ${config.snapshot.table} is splitroute's own table; copy from main or the table that holds the default route`);
  }
  const seen = new Set<string>();
  for (const bypass of config.bypass) {
    const key = describeBypass(bypass);
    if (seen.has(key)) {
      problems.push(`bypass.${bypass.name}: ${key} is already selected by another [bypass.*] section`);
    }
    seen.add(key);
  }
}

// Names from the file are printed as they are, unless they contain control
// characters: then as a JSON string, so a newline or escape in a name cannot
// forge a log line.
function quote(name: string): string {
  return /^[^\x00-\x1f\x7f-\x9f]+$/u.test(name) ? name : JSON.stringify(name);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function camelCase(key: string): string {
  return key.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
}
