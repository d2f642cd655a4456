import { z } from "zod";

import { ConfigError } from "../errors.js";
import { hex } from "../firewall/marking.js";
import { RESERVED_TABLE_IDS, WG_QUICK_FIRST_TABLE, WG_QUICK_MARK } from "../owner.js";
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

const BYPASS_KEYS: Record<string, KeySpec> = {
  protocol: { schema: z.enum(PROTOCOLS), allowed: PROTOCOLS.join(", ") },
  local_port: { schema: decimal(1, 65535), allowed: "a port number from 1 to 65535" },
};

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
export function validateConfig(parsed: Record<string, unknown>, source: string): Config {
  const problems: string[] = [];
  const config: Config = structuredClone({ ...DEFAULTS, source });
  const bypasses: Bypass[] = [];

  for (const [section, body] of Object.entries(parsed)) {
    if (section === "bypass") {
      readBypassSections(body, problems, bypasses);
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

function readBypassSections(body: unknown, problems: string[], bypasses: Bypass[]): void {
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
      values[key] = readKey(label, BYPASS_KEYS, key, raw, problems);
    }
    for (const required of Object.keys(BYPASS_KEYS)) {
      if (!Object.hasOwn(section, required)) {
        problems.push(`${label}.${required}: missing; allowed: ${BYPASS_KEYS[required]!.allowed}`);
      }
    }
    if (values.protocol !== undefined && values.local_port !== undefined) {
      bypasses.push({ name, protocol: values.protocol as Bypass["protocol"], localPort: values.local_port as number });
    }
  }
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
    const key = `${bypass.protocol}/${bypass.localPort}`;
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
