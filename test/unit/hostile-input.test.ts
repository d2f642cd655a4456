// Malformed and hostile input for the configuration loader, the tunnel
// device name and the route renderer. Each value must be rejected with a
// message that names where it came from and what it was, before anything
// runs. The configuration corpus is in test/fixtures/hostile/.

import { chmodSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from "vitest";

import { main } from "../../src/cli.js";
import { loadConfig } from "../../src/config/load.js";
import { resolveDevice } from "../../src/device.js";
import { ConfigError } from "../../src/errors.js";
import { parseRoutes } from "../../src/snapshot/parse.js";
import { routeAddArgs } from "../../src/snapshot/render.js";

// The loader checks the file with one call and reads it with another. The
// mock lets a test replace the file between the two, as a local user who can
// write the file's folder could. Every other call passes through unchanged.
const fsHooks = vi.hoisted(() => ({ afterStat: undefined as ((path: unknown) => void) | undefined }));

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>();
  const statSync = ((...args: Parameters<typeof actual.statSync>) => {
    const stats = actual.statSync(...args);
    fsHooks.afterStat?.(args[0]);
    return stats;
  }) as typeof actual.statSync;
  const fstatSync = ((...args: Parameters<typeof actual.fstatSync>) => {
    const stats = actual.fstatSync(...args);
    fsHooks.afterStat?.(args[0]);
    return stats;
  }) as typeof actual.fstatSync;
  return { ...actual, statSync, fstatSync, default: { ...actual, statSync, fstatSync } };
});

const isRoot = process.getuid?.() === 0;
const FIXTURES = new URL("../fixtures/hostile/", import.meta.url);
const SEED = Number(process.env.FC_SEED ?? 20_240_601);

let directory: string;

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), "splitroute-hostile-"));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

/**
 * Copies a fixture into a private folder with mode 0644, because as root the
 * loader accepts only files that root owns and only root can write, whoever
 * owns the checkout.
 */
function privateCopy(file: string): string {
  const path = join(directory, file);
  copyFileSync(new URL(file, FIXTURES), path);
  chmodSync(path, 0o644);
  return path;
}

/** Returns the error that loading `path` throws, or fails the test when it loads. */
function loadError(path: string): unknown {
  try {
    loadConfig(path, {});
  } catch (error) {
    return error;
  }
  throw new Error(`expected ${path} to be rejected, but it loaded:\n${readFileSync(path, "utf8")}`);
}

// A problem line starts with two spaces and a location: a line number, a
// [section] or a section.key. Control characters from the file must appear
// escaped, so that no value can start a line of its own in the hook's log.
const PROBLEM_LINE = /^ {2}(line \d+|\[[^\n]*\]|[A-Za-z0-9_]+\.[^\n]+?): /;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

interface CorpusCase {
  file: string;
  /** Text or pattern that locates the bad value in the message: section.key, [section] or line N. */
  location: string | RegExp;
  /** The bad value as the message shows it, usually JSON-quoted. */
  shownValue: string;
}

const long = (character: string, count: number) => character.repeat(count);

const CORPUS: CorpusCase[] = [
  { file: "unknown-key.conf", location: "table.colour", shownValue: "unknown key" },
  { file: "unknown-section.conf", location: "[tables]", shownValue: "unknown section" },
  { file: "key-outside-section.conf", location: "[id]", shownValue: "outside any section" },
  { file: "wrong-type-array.conf", location: "table.id", shownValue: '["5"]' },
  { file: "port-word.conf", location: "bypass.ssh.local_port", shownValue: '"ssh"' },
  { file: "port-float.conf", location: "bypass.ssh.local_port", shownValue: '"22.0"' },
  { file: "port-negative.conf", location: "bypass.ssh.local_port", shownValue: '"-22"' },
  { file: "table-id-254.conf", location: "table.id", shownValue: '"254"' },
  { file: "table-id-255-hex.conf", location: "table.id", shownValue: '"0xff"' },
  { file: "table-id-253-upper-hex.conf", location: "table.id", shownValue: '"0xFD"' },
  { file: "table-id-wg-quick.conf", location: "table.id", shownValue: '"51820"' },
  { file: "table-id-overflow.conf", location: "table.id", shownValue: '"4294967298"' },
  { file: "priority-main-rule.conf", location: "table.priority", shownValue: '"32766"' },
  { file: "name-command-substitution.conf", location: "table.name", shownValue: '"$(reboot)"' },
  { file: "exclude-backticks.conf", location: "snapshot.exclude", shownValue: '"tun* `id`"' },
  { file: "exclude-variable.conf", location: "snapshot.exclude", shownValue: '"$IFS"' },
  { file: "backend-pipe.conf", location: "firewall.backend", shownValue: '"nftables|sh"' },
  { file: "backend-semicolon.conf", location: "firewall.backend", shownValue: '"nftables;reboot"' },
  { file: "port-ampersand.conf", location: "bypass.ssh.local_port", shownValue: '"22&&reboot"' },
  { file: "protocol-redirect.conf", location: "bypass.ssh.protocol", shownValue: '"tcp>/etc/passwd"' },
  { file: "mark-command.conf", location: "mark.value", shownValue: '"0x2$(id)"' },
  { file: "value-with-equals.conf", location: "firewall.backend", shownValue: '"auto=nftables"' },
  { file: "name-newline-escape.conf", location: "table.name", shownValue: JSON.stringify("red\nirect") },
  { file: "id-newline-escape.conf", location: "table.id", shownValue: JSON.stringify("2\n254") },
  { file: "name-nul-byte.conf", location: "table.name", shownValue: JSON.stringify("red\0irect") },
  { file: "name-terminal-escape.conf", location: "table.name", shownValue: JSON.stringify("\x1b[31mred") },
  { file: "key-newline-escape.conf", location: "table.", shownValue: "colour" },
  { file: "long-name.conf", location: "table.name", shownValue: JSON.stringify(long("a", 4096)) },
  { file: "long-exclude.conf", location: "snapshot.exclude", shownValue: JSON.stringify(`tun* ${long("x", 4096)}`) },
  { file: "long-port.conf", location: "bypass.ssh.local_port", shownValue: JSON.stringify(long("2", 4096)) },
  { file: "long-key.conf", location: `table.${long("k", 4096)}`, shownValue: "unknown key" },
  { file: "backend-cyrillic-a.conf", location: "firewall.backend", shownValue: '"nft\u0430bles"' },
  { file: "protocol-cyrillic-es.conf", location: "bypass.ssh.protocol", shownValue: '"t\u0441p"' },
  { file: "port-fullwidth.conf", location: "bypass.ssh.local_port", shownValue: '"\uff12\uff12"' },
  { file: "id-arabic-indic.conf", location: "table.id", shownValue: '"\u0662"' },
  { file: "exclude-fullwidth-zero.conf", location: "snapshot.exclude", shownValue: '"tun\uff10"' },
  { file: "name-zero-width-space.conf", location: "table.name", shownValue: '"redirect\u200b"' },
  { file: "exclude-quoted-space.conf", location: "snapshot.exclude", shownValue: JSON.stringify('tun* "wg 0"') },
  { file: "exclude-single-quote.conf", location: "snapshot.exclude", shownValue: JSON.stringify("tun* wg'0") },
  { file: "exclude-hash.conf", location: "snapshot.exclude", shownValue: '"tun* wg#0"' },
  { file: "exclude-semicolon.conf", location: "snapshot.exclude", shownValue: '"tun0;tun1"' },
  { file: "exclude-comma.conf", location: "snapshot.exclude", shownValue: '"tun0,tun1"' },
  { file: "exclude-path.conf", location: "snapshot.exclude", shownValue: '"../../etc"' },
  { file: "exclude-16-characters.conf", location: "snapshot.exclude", shownValue: '"abcdefghijklmnop"' },
  { file: "snapshot-table-local-number.conf", location: "snapshot.table", shownValue: "255" },
  { file: "snapshot-table-own.conf", location: "snapshot.table", shownValue: "7" },
  { file: "duplicate-key.conf", location: "line 3", shownValue: "table.id" },
  { file: "duplicate-key-quoted.conf", location: "line 3", shownValue: "id" },
  { file: "duplicate-key-lone-cr.conf", location: /line [23]/, shownValue: "table.id" },
  { file: "duplicate-section-quoted.conf", location: /line [34]/, shownValue: "table" },
  { file: "duplicate-section-comment.conf", location: /line [34]/, shownValue: "table" },
  { file: "duplicate-bypass-section.conf", location: "line 6", shownValue: "bypass.ssh.protocol" },
  { file: "section-dotted-table.conf", location: "table.extra", shownValue: "unknown key" },
  { file: "section-dotted-mark.conf", location: "mark.value", shownValue: '{"bits":"0x2"}' },
  { file: "section-dotted-bypass.conf", location: "bypass.ssh.v2", shownValue: "invalid section name" },
  { file: "bypass-name-quote.conf", location: '[bypass.a"b]', shownValue: "invalid section name" },
  { file: "bypass-name-command.conf", location: "[bypass.$(id)]", shownValue: "invalid section name" },
  { file: "byte-order-mark.conf", location: "line 1", shownValue: "table" },
  { file: "crlf-bad-value.conf", location: "table.id", shownValue: '"254"' },
  { file: "prototype-key-constructor.conf", location: "table.constructor", shownValue: "unknown key" },
  { file: "prototype-section-constructor.conf", location: "[constructor]", shownValue: "unknown section" },
  { file: "prototype-section-tostring.conf", location: "[toString]", shownValue: "unknown section" },
  { file: "prototype-bypass-key.conf", location: "bypass.ssh.hasOwnProperty", shownValue: "unknown key" },
  { file: "prototype-section-proto.conf", location: "[__proto__]", shownValue: "unknown section" },
  { file: "prototype-key-proto.conf", location: "table.__proto__", shownValue: "unknown key" },
  { file: "empty-value.conf", location: "table.id", shownValue: '""' },
  { file: "control-characters-line.conf", location: "line 2", shownValue: JSON.stringify("\x01\x02\x03") },
];

describe("hostile configuration corpus", () => {
  test("corpus lists every fixture", () => {
    const listed = CORPUS.map((entry) => entry.file).sort();
    const files = readdirSync(FIXTURES).filter((file) => file.endsWith(".conf")).sort();
    expect(listed).toEqual(files);
  });

  for (const entry of CORPUS) {
    test(`rejects ${entry.file.replace(/\.conf$/, "")}`, () => {
      const path = privateCopy(entry.file);
      const error = loadError(path);
      expect(error).toBeInstanceOf(ConfigError);

      const [first, ...problems] = (error as Error).message.split("\n");
      expect(first).toBe(`invalid configuration in ${path}:`);
      expect(problems.length).toBeGreaterThan(0);
      for (const problem of problems) {
        expect(problem).toMatch(PROBLEM_LINE);
        expect(problem).not.toMatch(CONTROL_CHARACTER);
      }

      const located = problems.filter((problem) =>
        typeof entry.location === "string" ? problem.includes(entry.location) : entry.location.test(problem),
      );
      const problemList = `the message's problem lines were:\n${problems.join("\n")}`;
      expect(located.length, `no problem line locates ${String(entry.location)}. ${problemList}`).toBeGreaterThan(0);
      expect(
        located.some((problem) => problem.includes(entry.shownValue)),
        `no located line shows ${entry.shownValue}. ${problemList}`,
      ).toBe(true);
    });
  }

  test("CRLF file reads like LF file", () => {
    const text = "[table]\nname = bypass\nid = 100\n\n[bypass.web]\nprotocol = tcp\nlocal_port = 443 ; https\n";
    const unix = join(directory, "unix.conf");
    const windows = join(directory, "windows.conf");
    writeFileSync(unix, text, { mode: 0o644 });
    writeFileSync(windows, text.replaceAll("\n", "\r\n"), { mode: 0o644 });

    const { source: _unixSource, ...fromUnix } = loadConfig(unix, {});
    const { source: _windowsSource, ...fromWindows } = loadConfig(windows, {});
    expect(fromWindows).toEqual(fromUnix);
    expect(fromUnix.table.id).toBe(100);
  });

  describe.runIf(isRoot)("as root", () => {
    afterEach(() => {
      fsHooks.afterStat = undefined;
    });

    // A check by path and a later read by path can see two different files.
    test("replaced file is not read", () => {
      const folder = mkdtempSync(join(directory, "swap-"));
      const path = join(folder, "splitroute.conf");
      writeFileSync(path, "[table]\nid = 3\n", { mode: 0o644 });
      const replacement = join(folder, "replacement.conf");
      writeFileSync(replacement, "[table]\nid = 9\n");
      chmodSync(replacement, 0o666);

      let swapped = false;
      fsHooks.afterStat = () => {
        if (!swapped) {
          swapped = true;
          renameSync(replacement, path);
        }
      };

      let id: number | undefined;
      try {
        id = loadConfig(path, {}).table.id;
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
      }
      expect(swapped).toBe(true);
      expect(id, "loaded the world-writable file that replaced the checked one").not.toBe(9);
    });
  });
});

// Names that must never reach ip, nft or iptables as a device.
const BAD_DEVICE_NAMES: Array<[label: string, name: string]> = [
  ["16 characters", "tun0123456789abc"],
  ["slash", "tun/0"],
  ["parent directory", ".."],
  ["current directory", "."],
  ["space", "tun 0"],
  ["tab", "tun\t0"],
  ["double quote", 'tun"0'],
  ["single quote", "tun'0"],
  ["command substitution", "$(reboot)"],
  ["backticks", "`id`"],
  ["newline", "tun0\nip rule flush"],
  ["carriage return", "tun0\r"],
  ["NUL byte", "tun0\0"],
  ["semicolon", "tun0;reboot"],
  ["trailing plus", "tun+"],
  ["only plus", "+"],
  ["glob star", "tun*"],
  ["non-ASCII letter", "t\u00fcn0"],
  ["Cyrillic look-alike", "tun\u043e"],
  ["fullwidth digit", "tun\uff10"],
  ["nft set syntax", "{tun0,eth0}"],
  ["iptables negation", "!tun0"],
];

describe("resolveDevice", () => {
  const origins = [
    {
      origin: "--dev",
      resolve: (name: string) => resolveDevice(name, {}, []),
    },
    {
      // A valid argument beside it must not hide a bad dev variable.
      origin: "the environment variable dev",
      resolve: (name: string) => resolveDevice(undefined, { dev: name }, ["tun0"]),
    },
    {
      origin: "the first argument",
      resolve: (name: string) => resolveDevice(undefined, {}, [name]),
    },
  ];

  for (const { origin, resolve } of origins) {
    test(`rejects bad names from ${origin}`, () => {
      for (const [label, name] of BAD_DEVICE_NAMES) {
        let accepted: string | undefined;
        let error: unknown;
        try {
          accepted = resolve(name);
        } catch (caught) {
          error = caught;
        }
        expect(accepted, `${label} was accepted`).toBeUndefined();
        expect(error, label).toBeInstanceOf(ConfigError);
        const message = (error as Error).message;
        expect(message, label).toContain(JSON.stringify(name));
        expect(message, label).toContain(`from ${origin}`);
        expect(message, label).not.toMatch(CONTROL_CHARACTER);
      }
    });
  }

  test("rejects empty option and argument", () => {
    expect(() => resolveDevice("", {}, [])).toThrow('invalid tunnel device "" from --dev');
    expect(() => resolveDevice(undefined, {}, [""])).toThrow('invalid tunnel device "" from the first argument');
  });

  test("empty dev variable means unset", () => {
    expect(resolveDevice(undefined, { dev: "" }, ["wg0"])).toBe("wg0");
    expect(() => resolveDevice(undefined, { dev: "" }, [])).toThrow("no tunnel device given");
  });

  test("accepts fifteen-character names", () => {
    expect(resolveDevice("abcdefghijklmno", {}, [])).toBe("abcdefghijklmno");
    expect(resolveDevice(undefined, { dev: "eth0.100" }, [])).toBe("eth0.100");
    expect(resolveDevice(undefined, {}, ["wg-office_1"])).toBe("wg-office_1");
  });

  test("option wins over hostile variable", () => {
    expect(resolveDevice("tun0", { dev: "tun0; reboot" }, [])).toBe("tun0");
  });

  test("arbitrary names match documented pattern", () => {
    const documented = /^[A-Za-z0-9_.@:+-]{1,15}$/;
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 20 }), fc.constantFrom(...BAD_DEVICE_NAMES.map(([, name]) => name))), (name) => {
        let accepted: string | undefined;
        try {
          accepted = resolveDevice(name, {}, []);
        } catch (error) {
          expect(error).toBeInstanceOf(ConfigError);
          expect((error as Error).message).toContain(JSON.stringify(name));
          return;
        }
        expect(accepted).toBe(name);
        expect(name).toMatch(documented);
        expect(["..", "."]).not.toContain(name);
        expect(name.endsWith("+")).toBe(false);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe("CLI device rejection", () => {
  /** Runs main() with stderr captured; the context factory fails the test if up or down gets that far. */
  async function runMain(args: string[], env: NodeJS.ProcessEnv) {
    const output: string[] = [];
    const write = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      output.push(String(chunk));
      return true;
    });
    let contexts = 0;
    try {
      const exitCode = await main(args, env, () => {
        contexts += 1;
        throw new Error("the command went past device validation");
      });
      return { exitCode, stderr: output.join(""), contexts };
    } finally {
      write.mockRestore();
    }
  }

  const invocations = [
    { origin: "--dev", run: (command: string, name: string) => runMain([command, "--dev", name], {}) },
    { origin: "the environment variable dev", run: (command: string, name: string) => runMain([command], { dev: name }) },
    { origin: "the first argument", run: (command: string, name: string) => runMain([command, name], {}) },
  ];

  for (const { origin, run } of invocations) {
    test(`up and down reject ${origin}`, async () => {
      for (const command of ["up", "down"]) {
        for (const name of ["tun0\nsplitroute: bypass active for tun0", "$(reboot)", "tun+", "tun0123456789abc"]) {
          const result = await run(command, name);
          const label = `${command} with ${JSON.stringify(name)}`;
          expect(result.exitCode, label).toBe(2);
          expect(result.contexts, label).toBe(0);
          expect(result.stderr, label).toContain(`invalid tunnel device ${JSON.stringify(name)} from ${origin}`);
          const lines = result.stderr.split("\n").filter((line) => line !== "");
          expect(lines.every((line) => line.startsWith("splitroute: error: ")), label).toBe(true);
        }
      }
    });
  }
});

// A route in ip's JSON output with every field that reaches the batch line
// as text. Each placement puts `value` in one of those fields.
const BASE_ROUTE = { type: "unicast", dst: "192.0.2.0/24", dev: "eth0", protocol: "kernel", scope: "link", prefsrc: "192.0.2.2", flags: [] };

const PLACEMENTS: Record<string, (value: string) => Record<string, unknown>> = {
  dev: (value) => ({ ...BASE_ROUTE, dev: value }),
  protocol: (value) => ({ ...BASE_ROUTE, protocol: value }),
  scope: (value) => ({ ...BASE_ROUTE, scope: value }),
  tos: (value) => ({ ...BASE_ROUTE, tos: value }),
  "flow.to": (value) => ({ ...BASE_ROUTE, flow: { to: value } }),
  "flow.from": (value) => ({ ...BASE_ROUTE, flow: { from: value, to: "1" } }),
  "metrics.congestion": (value) => ({ ...BASE_ROUTE, metrics: [{ congestion: value }] }),
  gateway: (value) => ({ ...BASE_ROUTE, gateway: value }),
  dst: (value) => ({ ...BASE_ROUTE, dst: value }),
  prefsrc: (value) => ({ ...BASE_ROUTE, prefsrc: value }),
  "nexthops[].dev": (value) => {
    const { dev: _dev, ...route } = BASE_ROUTE;
    return {
      ...route,
      nexthops: [
        { gateway: "192.0.2.1", dev: value, weight: 1, flags: [] },
        { gateway: "192.0.2.3", dev: "eth0", weight: 1, flags: [] },
      ],
    };
  },
  "nexthops[].flow": (value) => {
    const { dev: _dev, ...route } = BASE_ROUTE;
    return {
      ...route,
      nexthops: [
        { gateway: "192.0.2.1", dev: "eth0", weight: 1, flow: { to: value }, flags: [] },
        { gateway: "192.0.2.3", dev: "eth0", weight: 1, flags: [] },
      ],
    };
  },
  "nh_info.dev": (value) => {
    const { dev: _dev, ...route } = BASE_ROUTE;
    return { ...route, nhid: 5, nh_info: { id: 5, dev: value, gateway: "192.0.2.1", scope: "link", protocol: "boot", flags: [] } };
  },
};

// Each of these would split, cut or join an ip -batch line differently from
// the argument list: spaces and other whitespace split, `#` starts a
// comment, quotes group words, a trailing backslash joins the next line.
const HOSTILE_FIELD_VALUES = [
  "eth0 table 100",
  "eth0\ttable",
  "eth0\n",
  "eth0\r",
  "eth0\u000b",
  "a#b",
  "#",
  "a\\",
  "\\",
  '"eth0',
  "'eth0",
  "eth0\u0000",
  "eth0\u007f",
  "eth0\u0085",
  "eth0\u00a0table",
  "eth0\u2028",
  "",
];

/** Parses one crafted route and renders it, so either step may reject it. */
function renderCrafted(entry: Record<string, unknown>): string[][] {
  return parseRoutes(JSON.parse(JSON.stringify([entry])), 4).map((route) => routeAddArgs(route, 2));
}

/**
 * Splits a batch line the way `ip -batch` does for the parts that matter
 * here: text from `#` on is a comment, and words are separated by spaces,
 * tabs, CR and LF.
 */
function splitBatchLine(line: string): string[] {
  const hash = line.indexOf("#");
  const content = hash === -1 ? line : line.slice(0, hash);
  return content.split(/[ \t\r\n]+/).filter((word) => word !== "");
}

describe("crafted ip route JSON", () => {
  test("placements render when benign", () => {
    const addressFields: Record<string, string> = { gateway: "192.0.2.1", dst: "198.51.100.0/24", prefsrc: "192.0.2.2" };
    for (const [field, place] of Object.entries(PLACEMENTS)) {
      const benign = addressFields[field] ?? "5";
      expect(() => renderCrafted(place(benign)), field).not.toThrow();
    }
  });

  for (const [field, place] of Object.entries(PLACEMENTS)) {
    test(`rejects hostile ${field}`, () => {
      for (const value of HOSTILE_FIELD_VALUES) {
        let lines: string[][] | undefined;
        let error: unknown;
        try {
          lines = renderCrafted(place(value));
        } catch (caught) {
          error = caught;
        }
        const label = `${field} = ${JSON.stringify(value)}`;
        expect(lines, `${label} rendered as ${JSON.stringify(lines)}`).toBeUndefined();
        expect(error, label).toBeInstanceOf(Error);
        // The message shows the value escaped, so it also stays on one line.
        expect((error as Error).message, label).toContain(JSON.stringify(value).slice(1, -1));
      }
    });
  }

  test("rendered lines split into arguments", () => {
    const fieldValue = fc.oneof(
      fc.string({ unit: "binary", maxLength: 12 }),
      fc.constantFrom(...HOSTILE_FIELD_VALUES),
      fc.stringMatching(/^[a-z0-9]{1,6}[ #"'\\\t\n][a-z0-9 ]{0,6}$/),
    );
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(PLACEMENTS)), fieldValue, (field, value) => {
        let lines: string[][];
        try {
          lines = renderCrafted(PLACEMENTS[field]!(value));
        } catch {
          return;
        }
        for (const args of lines) {
          const line = args.join(" ");
          expect(splitBatchLine(line)).toEqual(args);
          expect(line).not.toMatch(/["'\\]/);
          expect(line).not.toMatch(CONTROL_CHARACTER);
        }
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });
});
