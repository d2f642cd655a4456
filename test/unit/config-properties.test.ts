// Property tests for the configuration loader. Whatever text a file contains,
// loadConfig either returns a configuration inside the documented limits or
// throws one ConfigError that names the file and, for each problem, where it
// is. The limits are written out here instead of imported from src/, so that
// loosening a check there fails these tests.
//
// Runs are seeded: set FC_SEED to the seed that a failure reports to replay it.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import fc from "fast-check";
import { parse } from "ini";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { loadConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/types.js";
import { validateConfig } from "../../src/config/validate.js";
import { ConfigError } from "../../src/errors.js";

const SEED = Number(process.env.FC_SEED ?? 20_240_601);

// The documented limits (README.md, packaging/splitroute.conf). Those of
// snapshot.table come from the message that validate.ts gives for it.
const MAX_TABLE_ID = 51_819;
const RESERVED_TABLE_IDS = [253, 254, 255];
const MAX_PRIORITY = 32_763;
const UINT32_MAX = 0xffff_ffff;
const WG_QUICK_MARK = 0xca6c;
const BACKENDS = ["auto", "nftables", "iptables", "iptables-nft", "iptables-legacy"];
const PROTOCOLS = ["tcp", "udp"];
const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;
const RESERVED_TABLE_NAMES = ["main", "local", "default", "unspec"];
const INTERFACE_GLOB = /^[A-Za-z0-9_.@:+*-]{1,15}$/;
const BYPASS_NAME = /^[A-Za-z0-9_-]{1,32}$/;
// The tables that a copy may not come from: local (255), default (253) and
// unspec (0), by name or by number.
const NON_SOURCE_TABLES = ["local", "default", "unspec", "255", "253", "0"];

const DEFAULT_VALUES: Omit<Config, "source"> = {
  table: { name: "redirect", id: 2, priority: 1000 },
  mark: { value: 0x2, mask: 0x2 },
  snapshot: { exclude: ["tun*", "tap*", "wg*"], table: "main" },
  firewall: { backend: "auto" },
  bypass: [{ name: "ssh", protocol: "tcp", localPort: 22 }],
};

// Names that plain JavaScript objects inherit, and the one the ini package drops.
const PROTOTYPE_NAMES = ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf", "isPrototypeOf"];

// A problem line starts with two spaces and a location: a line number, a
// [section] or a section.key. A raw control character in it could forge a
// line of the hook's log.
const PROBLEM_LINE = /^ {2}(line \d+|\[[^\n]*\]|[A-Za-z0-9_]+\.[^\n]+?): /;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

let directory: string;
let configPath: string;

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), "splitroute-properties-"));
  configPath = join(directory, "splitroute.conf");
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

/** Writes `text` as a root-only-writable file and loads it, as the hooks would. */
function loadText(text: string): Config {
  writeFileSync(configPath, text, { mode: 0o644 });
  return loadConfig(configPath, {});
}

function captureError(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

function isTableId(id: number): boolean {
  return Number.isInteger(id) && id >= 1 && id <= MAX_TABLE_ID && !RESERVED_TABLE_IDS.includes(id);
}

function isMarkPair(value: number, mask: number): boolean {
  const inRange = (n: number) => Number.isInteger(n) && n >= 1 && n <= UINT32_MAX;
  return inRange(value) && inRange(mask) && (value & ~mask) >>> 0 === 0 && (WG_QUICK_MARK & mask) >>> 0 !== value;
}

/** Tells whether `table` names a table that a copy may come from, leaving aside splitroute's own. */
function isSourceTable(table: string): boolean {
  const named = /^[A-Za-z][A-Za-z0-9_-]*$/.test(table);
  const numbered = /^[1-9][0-9]*$/.test(table) && Number(table) <= UINT32_MAX;
  return (named || numbered) && !NON_SOURCE_TABLES.includes(table);
}

function isOwnTable(table: string, config: Pick<Config, "table">): boolean {
  return table === config.table.name || table === String(config.table.id);
}

function expectDocumentedLimits(config: Config, source: string): void {
  expect(config.source).toBe(source);
  expect(config.table.name).toMatch(TABLE_NAME);
  expect(RESERVED_TABLE_NAMES).not.toContain(config.table.name);
  expect(isTableId(config.table.id), `table id ${config.table.id}`).toBe(true);
  expect(Number.isInteger(config.table.priority)).toBe(true);
  expect(config.table.priority).toBeGreaterThanOrEqual(1);
  expect(config.table.priority).toBeLessThanOrEqual(MAX_PRIORITY);
  expect(isMarkPair(config.mark.value, config.mark.mask), `mark ${config.mark.value}/${config.mark.mask}`).toBe(true);
  for (const pattern of config.snapshot.exclude) {
    expect(pattern).toMatch(INTERFACE_GLOB);
  }
  expect(isSourceTable(config.snapshot.table), `snapshot table ${JSON.stringify(config.snapshot.table)}`).toBe(true);
  expect(isOwnTable(config.snapshot.table, config), "the copy comes from splitroute's own table").toBe(false);
  expect(BACKENDS).toContain(config.firewall.backend);

  expect(config.bypass.length).toBeGreaterThan(0);
  const selected = new Set<string>();
  for (const bypass of config.bypass) {
    expect(bypass.name).toMatch(BYPASS_NAME);
    expect(PROTOCOLS).toContain(bypass.protocol);
    expect(Number.isInteger(bypass.localPort)).toBe(true);
    expect(bypass.localPort).toBeGreaterThanOrEqual(1);
    expect(bypass.localPort).toBeLessThanOrEqual(65_535);
    selected.add(`${bypass.protocol}/${bypass.localPort}`);
  }
  expect(selected.size, "two bypass sections select the same protocol and port").toBe(config.bypass.length);
}

/** Checks that `error` is one ConfigError naming `source`, with a location on every problem line. */
function expectCleanRejection(error: unknown, source: string): string {
  expect(error).toBeInstanceOf(ConfigError);
  const message = (error as Error).message;
  const [first, ...problems] = message.split("\n");
  expect(first).toBe(`invalid configuration in ${source}:`);
  expect(problems.length).toBeGreaterThan(0);
  for (const problem of problems) {
    expect(problem).toMatch(PROBLEM_LINE);
    expect(problem).not.toMatch(CONTROL_CHARACTER);
  }
  return message;
}

// Text for values. Characters that the ini package reads as quoting,
// escaping or comments are left to the free-form property, because the
// model below compares values as written.
const PLAIN_CHARACTERS = [..."abcxyzABCXYZ0123456789_-.*@:+/$`|&>(){},!~=[]", "\u00e9", "\u0430", "\uff10"];
const plainText = fc.string({ unit: fc.constantFrom(...PLAIN_CHARACTERS), minLength: 1, maxLength: 12 });
const JUNK_NUMBERS = ["two", "$(reboot)", "`id`", "1e3", "+5", "-1", "5.0", "0x", "0xg", "0b101", "\uff12", "\u0662", "22&&reboot", "a|b", "{}", "[]", "true"];

const uint32 = fc.oneof(
  fc.integer({ min: 0, max: UINT32_MAX }),
  fc.integer({ min: 0, max: 0xffff }),
  fc.constantFrom(0, 1, 2, 4, WG_QUICK_MARK, 0x8000_0000, UINT32_MAX, UINT32_MAX + 1),
);

function numberText(n: number, base: "decimal" | "hex"): string {
  return base === "hex" ? `0x${n.toString(16)}` : String(n);
}

describe("loadConfig on arbitrary text", () => {
  const sectionName = fc.oneof(
    fc.constantFrom("table", "mark", "snapshot", "firewall", "bypass", "bypass.ssh", "bypass.web", "bypass.a.b", "table.x", "tables", "bypass.constructor"),
    fc.constantFrom(...PROTOTYPE_NAMES),
    fc.string({ maxLength: 10 }),
    fc.string({ maxLength: 8 }).map((name) => JSON.stringify(name)),
  );
  const keyName = fc.oneof(
    fc.constantFrom("name", "id", "priority", "value", "mask", "exclude", "backend", "protocol", "local_port", "id[]", "colour"),
    fc.constantFrom(...PROTOTYPE_NAMES),
    fc.string({ maxLength: 10 }),
    fc.string({ maxLength: 8 }).map((name) => JSON.stringify(name)),
  );
  const anyValue = fc.oneof(
    fc.constantFrom("2", "0x2", "1000", "tcp", "udp", "22", "tun* wg*", "nftables", "redirect", "254", "0xca6c", ""),
    fc.constantFrom(...JUNK_NUMBERS),
    plainText,
    fc.string({ unit: "binary", maxLength: 16 }),
    fc.string({ unit: "binary", maxLength: 8 }).map((value) => JSON.stringify(value)),
    fc.string({ maxLength: 8 }).map((value) => `'${value}'`),
  );
  const line = fc.oneof(
    sectionName.map((name) => `[${name}]`),
    fc.tuple(keyName, fc.constantFrom(" = ", "=", " =", "\t=\t"), anyValue).map(([key, equals, value]) => `${key}${equals}${value}`),
    fc.constantFrom("", "; comment", "# comment", "   ", "[table] ; header comment"),
    fc.string({ unit: "binary", maxLength: 20 }),
  );
  const configText = fc
    .tuple(fc.array(line, { maxLength: 12 }), fc.constantFrom("\n", "\r\n", "\r"), fc.boolean())
    .map(([lines, lineEnd, byteOrderMark]) => `${byteOrderMark ? "\ufeff" : ""}${lines.join(lineEnd)}${lineEnd}`);

  test("loads within limits or rejects", () => {
    fc.assert(
      fc.property(configText, (text) => {
        let config: Config;
        try {
          config = loadText(text);
        } catch (error) {
          expectCleanRejection(error, configPath);
          return;
        }
        expectDocumentedLimits(config, configPath);
      }),
      { seed: SEED, numRuns: 400 },
    );
  });

  test("validateConfig takes any object", () => {
    const key = fc.oneof(
      fc.constantFrom("table", "mark", "snapshot", "firewall", "bypass", "ssh", "name", "id", "priority", "value", "mask", "exclude", "backend", "protocol", "local_port", "main"),
      fc.constantFrom(...PROTOTYPE_NAMES),
      fc.string({ maxLength: 6 }),
    );
    const parsed = fc.object({
      key,
      maxDepth: 3,
      maxKeys: 5,
      withNullPrototype: true,
      values: [fc.string({ maxLength: 8 }), fc.boolean(), fc.integer(), fc.constant(null), fc.array(fc.string({ maxLength: 4 }), { maxLength: 2 })],
    });
    fc.assert(
      fc.property(parsed, (object) => {
        let config: Config;
        try {
          config = validateConfig(object as Record<string, unknown>, "/etc/splitroute/arbitrary.conf");
        } catch (error) {
          expectCleanRejection(error, "/etc/splitroute/arbitrary.conf");
          return;
        }
        expectDocumentedLimits(config, "/etc/splitroute/arbitrary.conf");
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});

// A model of a configuration file: sections with keys and the text of each
// value. The test works out from the documented rules alone whether the
// file is valid and what its error message must contain.

interface BypassModel {
  name: string;
  keys: Array<[key: string, text: string]>;
}

interface FileModel {
  sections: Array<[section: string, keys: Array<[key: string, text: string]>]>;
  bypasses: BypassModel[];
}

type Interpretation = { valid: true; value: unknown } | { valid: false };

function decimalValue(text: string): number | undefined {
  return /^[0-9]+$/.test(text) ? Number(text) : undefined;
}

function decimalOrHexValue(text: string): number | undefined {
  return /^0x[0-9a-fA-F]+$/.test(text) ? Number(text) : decimalValue(text);
}

function inRange(value: number | undefined, min: number, max: number): Interpretation {
  return value !== undefined && value >= min && value <= max ? { valid: true, value } : { valid: false };
}

/** Applies the documented rule of `section.key` to `text`, or returns undefined for an unknown key. */
function interpret(section: string, key: string, text: string): Interpretation | undefined {
  switch (`${section}.${key}`) {
    case "table.name":
      return TABLE_NAME.test(text) && !RESERVED_TABLE_NAMES.includes(text) ? { valid: true, value: text } : { valid: false };
    case "table.id": {
      const id = decimalOrHexValue(text);
      return id !== undefined && isTableId(id) ? { valid: true, value: id } : { valid: false };
    }
    case "table.priority":
      return inRange(decimalValue(text), 1, MAX_PRIORITY);
    case "mark.value":
    case "mark.mask":
      return inRange(decimalOrHexValue(text), 1, UINT32_MAX);
    case "snapshot.exclude": {
      const patterns = text.split(" ").filter((pattern) => pattern !== "");
      return patterns.every((pattern) => INTERFACE_GLOB.test(pattern)) ? { valid: true, value: patterns } : { valid: false };
    }
    case "snapshot.table":
      return isSourceTable(text) ? { valid: true, value: text } : { valid: false };
    case "firewall.backend":
      return BACKENDS.includes(text) ? { valid: true, value: text } : { valid: false };
    case "bypass.protocol":
      return PROTOCOLS.includes(text) ? { valid: true, value: text } : { valid: false };
    case "bypass.local_port":
      return inRange(decimalValue(text), 1, 65_535);
    default:
      return undefined;
  }
}

/** Returns the configuration the model should load as, or the fragments its error message must contain. */
function expectedOutcome(model: FileModel): { config: Omit<Config, "source"> } | { fragments: string[] } {
  const config = structuredClone(DEFAULT_VALUES) as unknown as Record<string, Record<string, unknown>> & Omit<Config, "source">;
  const fragments: string[] = [];

  for (const [section, keys] of model.sections) {
    for (const [key, text] of keys) {
      const result = interpret(section, key, text);
      if (result === undefined) {
        fragments.push(`${section}.${key}: unknown key`);
      } else if (result.valid) {
        config[section]![key] = result.value;
      } else {
        fragments.push(`${section}.${key}: invalid value ${JSON.stringify(text)}`);
      }
    }
  }

  // The ini package returns sections as object keys, and JavaScript lists
  // integer-like keys first, so [bypass.0] comes before [bypass.a] wherever
  // the two stand in the file.
  const keyOrder = Object.keys(Object.fromEntries(model.bypasses.map((bypass) => [bypass.name, true])));
  const inKeyOrder = keyOrder.map((name) => model.bypasses.find((bypass) => bypass.name === name)!);

  const bypasses: Config["bypass"] = [];
  for (const bypass of inKeyOrder) {
    const label = `bypass.${bypass.name}`;
    if (!BYPASS_NAME.test(bypass.name)) {
      fragments.push(`[${label}]: invalid section name`);
      continue;
    }
    const values: Record<string, unknown> = {};
    for (const [key, text] of bypass.keys) {
      const result = interpret("bypass", key, text);
      if (result === undefined) {
        fragments.push(`${label}.${key}: unknown key`);
      } else if (result.valid) {
        values[key] = result.value;
      } else {
        fragments.push(`${label}.${key}: invalid value ${JSON.stringify(text)}`);
      }
    }
    for (const required of ["protocol", "local_port"]) {
      if (!bypass.keys.some(([key]) => key === required)) {
        fragments.push(`${label}.${required}: missing`);
      }
    }
    if (values.protocol !== undefined && values.local_port !== undefined) {
      bypasses.push({ name: bypass.name, protocol: values.protocol as "tcp" | "udp", localPort: values.local_port as number });
    }
  }
  if (bypasses.length > 0) {
    config.bypass = bypasses;
  }

  if (!isMarkPair(config.mark.value, config.mark.mask)) {
    fragments.push("mark.value: ");
  }
  if (isOwnTable(config.snapshot.table, config)) {
    fragments.push("snapshot.table: ");
  }
  const selected = new Set<string>();
  for (const bypass of config.bypass) {
    const key = `${bypass.protocol}/${bypass.localPort}`;
    if (selected.has(key)) {
      fragments.push(`bypass.${bypass.name}: ${key} is already selected`);
    }
    selected.add(key);
  }

  return fragments.length === 0 ? { config } : { fragments };
}

function renderModel(model: FileModel): string {
  const lines: string[] = [];
  for (const [section, keys] of model.sections) {
    lines.push(`[${section}]`, ...keys.map(([key, text]) => `${key} = ${text}`), "");
  }
  for (const bypass of model.bypasses) {
    lines.push(`[bypass.${bypass.name}]`, ...bypass.keys.map(([key, text]) => `${key} = ${text}`), "");
  }
  return lines.join("\n");
}

describe("loadConfig against a model", () => {
  const often = <T>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<T>) =>
    fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: invalid, weight: 1 });

  const tableId = often(
    fc.tuple(fc.integer({ min: 1, max: MAX_TABLE_ID }), fc.constantFrom("decimal", "hex") as fc.Arbitrary<"decimal" | "hex">).map(([n, base]) => numberText(n, base)),
    fc.oneof(
      fc.tuple(fc.constantFrom(0, 253, 254, 255, 51_820, 65_535, UINT32_MAX), fc.constantFrom("decimal", "hex") as fc.Arbitrary<"decimal" | "hex">).map(([n, base]) => numberText(n, base)),
      fc.constantFrom(...JUNK_NUMBERS),
    ),
  );
  const priority = often(
    fc.integer({ min: 1, max: MAX_PRIORITY }).map(String),
    fc.oneof(fc.constantFrom("0", "32764", "32766", "40000", "0x10"), fc.constantFrom(...JUNK_NUMBERS)),
  );
  const port = often(
    fc.oneof(fc.integer({ min: 1, max: 65_535 }), fc.constantFrom(22, 53, 443)).map(String),
    fc.oneof(fc.constantFrom("0", "65536", "0x16", "ssh"), fc.constantFrom(...JUNK_NUMBERS)),
  );
  // NOTE: the ini package reads an unquoted `null` as null, which every key
  // rejects, so the model leaves that word out rather than assert either way.
  const nonNull = (text: string) => text !== "null";
  const tableName = often(fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,19}$/), plainText).filter(nonNull);
  const glob = often(fc.stringMatching(/^[A-Za-z0-9_.@:+*-]{1,15}$/), plainText).filter(nonNull);
  const exclude = fc.array(glob, { maxLength: 4 }).map((patterns) => patterns.join(" "));
  const backend = often(fc.constantFrom(...BACKENDS), plainText.filter(nonNull));
  const protocol = often(fc.constantFrom(...PROTOCOLS), fc.constantFrom("TCP", "sctp", "t\u0441p", "tcp,udp", "icmp"));
  const sourceTable = often(
    fc.oneof(fc.constant("main"), fc.stringMatching(/^[a-z][a-z0-9_-]{0,10}$/), fc.integer({ min: 1, max: 100_000 }).map(String)),
    fc.constantFrom("local", "default", "unspec", "0", "253", "255", "-1", "0x10", "main table", "4294967296"),
  ).filter(nonNull);
  const unknownKey = fc.constantFrom("colour", "ID", "Name", "table_id", "local-port", "ports");

  // Marks are drawn as a pair so that valid pairs (value inside the mask)
  // come up often enough.
  const markKeys = often(
    fc
      .tuple(uint32, uint32, fc.constantFrom("decimal", "hex") as fc.Arbitrary<"decimal" | "hex">)
      .map(([mask, bits, base]): Array<[string, string]> => {
        const value = (mask & bits) >>> 0 || mask;
        return [
          ["value", numberText(value, base)],
          ["mask", numberText(mask, base)],
        ];
      }),
    fc.tuple(fc.oneof(uint32.map(String), fc.constantFrom(...JUNK_NUMBERS)), uint32.map((n) => numberText(n, "hex"))).map(([value, mask]): Array<[string, string]> => [
      ["value", value],
      ["mask", mask],
    ]),
  );

  /**
   * Picks some of `entries`, each left out once in `leaveOut` draws, and adds
   * an unknown key once in 12 draws, keeping the order.
   */
  const someKeys = (entries: Array<fc.Arbitrary<[string, string]>>, leaveOut = 3) =>
    fc
      .tuple(
        fc.tuple(...entries.map((entry) => fc.option(entry, { freq: leaveOut }))),
        fc.oneof({ arbitrary: fc.constant(null), weight: 11 }, { arbitrary: fc.tuple(unknownKey, plainText), weight: 1 }),
      )
      .map(([chosen, unknown]) => [...chosen.filter((entry): entry is [string, string] => entry !== null), ...(unknown === null ? [] : [unknown])]);

  const sections = fc.tuple(
    someKeys([tableName.map((t): [string, string] => ["name", t]), tableId.map((t): [string, string] => ["id", t]), priority.map((t): [string, string] => ["priority", t])]),
    fc.option(markKeys, { freq: 3 }),
    someKeys([exclude.map((t): [string, string] => ["exclude", t]), sourceTable.map((t): [string, string] => ["table", t])]),
    someKeys([backend.map((t): [string, string] => ["backend", t])]),
  );

  const bypassName = often(
    fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/),
    fc.tuple(fc.stringMatching(/^[a-z]{1,4}$/), fc.constantFrom("$", "!", "~", "\u00e9", "+", "@", " x"), fc.stringMatching(/^[a-z]{1,4}$/)).map((parts) => parts.join("")),
  );
  const bypass = fc.record({
    name: bypassName,
    keys: someKeys([protocol.map((t): [string, string] => ["protocol", t]), port.map((t): [string, string] => ["local_port", t])], 12),
  });

  const model: fc.Arbitrary<FileModel> = fc
    .tuple(sections, fc.uniqueArray(bypass, { selector: (entry) => entry.name, maxLength: 3 }))
    .map(([[table, mark, snapshot, firewall], bypasses]) => {
      const present: FileModel["sections"] = [];
      if (table.length > 0) present.push(["table", table]);
      if (mark !== null) present.push(["mark", mark]);
      if (snapshot.length > 0) present.push(["snapshot", snapshot]);
      if (firewall.length > 0) present.push(["firewall", firewall]);
      return { sections: present, bypasses };
    });

  test("accepts exactly valid files", () => {
    let accepted = 0;
    fc.assert(
      fc.property(model, (file) => {
        const text = renderModel(file);
        const outcome = expectedOutcome(file);
        if ("config" in outcome) {
          accepted += 1;
          expect(loadText(text)).toEqual({ ...outcome.config, source: configPath });
          return;
        }
        const message = expectCleanRejection(captureError(() => loadText(text)), configPath);
        for (const fragment of outcome.fragments) {
          expect(message).toContain(fragment);
        }
      }),
      { seed: SEED, numRuns: 400 },
    );
    // Without enough valid files the first branch would go untested.
    expect(accepted).toBeGreaterThan(20);
  });
});

describe("configuration round trip", () => {
  const validName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,19}$/).filter((name) => !RESERVED_TABLE_NAMES.includes(name) && name !== "null");
  const validMark = fc
    .tuple(uint32.filter((mask) => mask >= 1 && mask <= UINT32_MAX), uint32)
    .map(([mask, bits]) => ({ value: (mask & bits) >>> 0 || mask, mask }))
    .filter(({ value, mask }) => isMarkPair(value, mask));
  const validConfig: fc.Arbitrary<Omit<Config, "source">> = fc.record({
    table: fc.record({
      name: validName,
      id: fc.integer({ min: 1, max: MAX_TABLE_ID }).filter(isTableId),
      priority: fc.integer({ min: 1, max: MAX_PRIORITY }),
    }),
    mark: validMark,
    snapshot: fc.record({
      exclude: fc.array(fc.stringMatching(/^[A-Za-z0-9_.@:+*-]{1,15}$/).filter((glob) => glob !== "null"), { maxLength: 5 }),
      table: fc.oneof(fc.constant("main"), fc.stringMatching(/^[a-z][a-z0-9_-]{0,10}$/), fc.integer({ min: 1, max: 100_000 }).map(String)).filter((table) => isSourceTable(table) && table !== "null"),
    }),
    firewall: fc.record({ backend: fc.constantFrom(...(BACKENDS as Array<Config["firewall"]["backend"]>)) }),
    bypass: fc.uniqueArray(
      fc.record({
        name: fc.stringMatching(/^[A-Za-z0-9_-]{1,16}$/),
        protocol: fc.constantFrom(...(PROTOCOLS as Array<"tcp" | "udp">)),
        localPort: fc.integer({ min: 1, max: 65_535 }),
      }),
      { minLength: 1, maxLength: 4, selector: (entry) => entry.name },
    ).filter((list) => new Set(list.map((entry) => `${entry.protocol}/${entry.localPort}`)).size === list.length),
  }).filter((config) => !isOwnTable(config.snapshot.table, config));

  const style = fc.record({
    base: fc.constantFrom("decimal", "hex") as fc.Arbitrary<"decimal" | "hex">,
    equals: fc.constantFrom(" = ", "=", "  =  ", "\t=\t"),
    comment: fc.constantFrom("", " ; set by hand", " # see README"),
    lineEnd: fc.constantFrom("\n", "\r\n"),
    blankLines: fc.boolean(),
    sectionOrder: fc.shuffledSubarray(["table", "mark", "snapshot", "firewall", "bypass"], { minLength: 5, maxLength: 5 }),
    omitDefaults: fc.boolean(),
  });

  type Style = typeof style extends fc.Arbitrary<infer T> ? T : never;

  /** Renders `config` as a configuration file in the given style. */
  function renderConfig(config: Omit<Config, "source">, format: Style): string {
    const lines: string[] = [];
    const keyLine = (key: string, value: string) => `${key}${format.equals}${value}${format.comment}`;
    const keep = (value: unknown, fallback: unknown) => !format.omitDefaults || JSON.stringify(value) !== JSON.stringify(fallback);
    const sectionLines: Record<string, string[]> = {
      table: [
        ...(keep(config.table.name, DEFAULT_VALUES.table.name) ? [keyLine("name", config.table.name)] : []),
        ...(keep(config.table.id, DEFAULT_VALUES.table.id) ? [keyLine("id", numberText(config.table.id, format.base))] : []),
        ...(keep(config.table.priority, DEFAULT_VALUES.table.priority) ? [keyLine("priority", String(config.table.priority))] : []),
      ],
      mark: [keyLine("value", numberText(config.mark.value, format.base)), keyLine("mask", numberText(config.mark.mask, format.base))],
      snapshot: [
        ...(keep(config.snapshot.exclude, DEFAULT_VALUES.snapshot.exclude) ? [keyLine("exclude", config.snapshot.exclude.join(" "))] : []),
        ...(keep(config.snapshot.table, DEFAULT_VALUES.snapshot.table) ? [keyLine("table", config.snapshot.table)] : []),
      ],
      firewall: keep(config.firewall.backend, DEFAULT_VALUES.firewall.backend) ? [keyLine("backend", config.firewall.backend)] : [],
    };
    for (const section of format.sectionOrder) {
      if (section === "bypass") {
        for (const bypass of config.bypass) {
          lines.push(`[bypass.${bypass.name}]`, keyLine("protocol", bypass.protocol!), keyLine("local_port", String(bypass.localPort)));
          if (format.blankLines) lines.push("");
        }
        continue;
      }
      lines.push(`[${section}]`, ...sectionLines[section]!);
      if (format.blankLines) lines.push("");
    }
    return `${lines.join(format.lineEnd)}${format.lineEnd}`;
  }

  // The ini package returns [bypass.0] ahead of [bypass.a] wherever it is in
  // the file (see expectedOutcome). Each bypass selects its own protocol and
  // port, so the order does not change which packets are marked, and the
  // comparison sorts by name.
  const byName = (config: Omit<Config, "source">) => ({
    ...config,
    bypass: [...config.bypass].sort((first, second) => first.name.localeCompare(second.name)),
  });

  test("rendered config loads back", () => {
    fc.assert(
      fc.property(validConfig, style, (config, format) => {
        const { source, ...loaded } = loadText(renderConfig(config, format));
        expect(source).toBe(configPath);
        expect(byName(loaded)).toEqual(byName(config));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe("numeric limits", () => {
  function accepts(text: string): boolean {
    try {
      validateConfig(parse(text), "/etc/splitroute/limits.conf");
      return true;
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return false;
    }
  }

  test("mark pairs follow documented rule", () => {
    const pair = fc.oneof(
      fc.tuple(uint32, uint32),
      fc.tuple(uint32, uint32).map(([mask, bits]) => [(mask & bits) >>> 0, mask] as [number, number]),
    );
    fc.assert(
      fc.property(pair, fc.constantFrom("decimal", "hex") as fc.Arbitrary<"decimal" | "hex">, ([value, mask], base) => {
        const text = `[mark]\nvalue = ${numberText(value, base)}\nmask = ${numberText(mask, base)}\n`;
        expect(accepts(text), text).toBe(isMarkPair(value, mask));
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  test("ids, priorities and ports in range", () => {
    const cases = fc.oneof(
      fc.tuple(fc.constant("table id"), fc.integer({ min: 0, max: 70_000 }), fc.constantFrom("decimal", "hex") as fc.Arbitrary<"decimal" | "hex">),
      fc.tuple(fc.constant("priority"), fc.integer({ min: 0, max: 40_000 }), fc.constant("decimal" as const)),
      fc.tuple(fc.constant("port"), fc.integer({ min: 0, max: 70_000 }), fc.constant("decimal" as const)),
    );
    fc.assert(
      fc.property(cases, ([kind, n, base]) => {
        const text = numberText(n, base);
        switch (kind) {
          case "table id": {
            expect(accepts(`[table]\nid = ${text}\n`), text).toBe(isTableId(n));
            break;
          }
          case "priority": {
            const documented = n >= 1 && n <= MAX_PRIORITY;
            expect(accepts(`[table]\npriority = ${text}\n`), text).toBe(documented);
            break;
          }
          case "port": {
            const documented = n >= 1 && n <= 65_535;
            expect(accepts(`[bypass.p]\nprotocol = udp\nlocal_port = ${text}\n`), text).toBe(documented);
            break;
          }
        }
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });
});
