import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

import { parse } from "ini";
import { afterEach, beforeEach, describe, expect, test } from "vitest";

import { loadConfig, readFailureMessage } from "../../src/config/load.js";
import { DEFAULT_CONFIG_PATH } from "../../src/config/types.js";
import { DEFAULTS, validateConfig } from "../../src/config/validate.js";
import { ConfigError } from "../../src/errors.js";

const SOURCE = "/etc/x.conf";

function validate(text: string) {
  return validateConfig(parse(text), SOURCE);
}

/** Returns the ConfigError that validating `text` throws. */
function rejection(text: string): ConfigError {
  try {
    validate(text);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected the configuration to be rejected:\n${text}`);
}

/** Returns the problem lines of a ConfigError, which follow its first line. */
function problems(error: Error): string[] {
  const [first, ...rest] = error.message.split("\n");
  expect(first).toBe(`invalid configuration in ${SOURCE}:`);
  return rest;
}

const FULL_FILE = `
[table]
name = bypass
id = 100
priority = 500

[mark]
value = 0x100
mask = 0x300

[snapshot]
exclude = tun* wg* ppp0

[firewall]
backend = iptables-legacy

[bypass.ssh]
protocol = tcp
local_port = 2222

[bypass.dns]
protocol = udp
local_port = 53
`;

describe("validateConfig", () => {
  test("empty file gives defaults", () => {
    expect(validate("")).toEqual({ ...DEFAULTS, source: SOURCE });
  });

  test("defaults are the documented values", () => {
    expect(DEFAULTS).toEqual({
      table: { name: "redirect", id: 2, priority: 1000 },
      mark: { value: 0x2, mask: 0x2 },
      snapshot: { exclude: ["tun*", "tap*", "wg*"], table: "main" },
      firewall: { backend: "auto" },
      bypass: [{ name: "ssh", protocol: "tcp", localPort: 22 }],
    });
  });

  test("full valid file", () => {
    expect(validate(FULL_FILE)).toEqual({
      source: SOURCE,
      table: { name: "bypass", id: 100, priority: 500 },
      mark: { value: 0x100, mask: 0x300 },
      snapshot: { exclude: ["tun*", "wg*", "ppp0"], table: "main" },
      firewall: { backend: "iptables-legacy" },
      bypass: [
        { name: "ssh", protocol: "tcp", localPort: 2222 },
        { name: "dns", protocol: "udp", localPort: 53 },
      ],
    });
  });

  test("partial section keeps other defaults", () => {
    const config = validate("[table]\nid = 7\n");
    expect(config.table).toEqual({ name: "redirect", id: 7, priority: 1000 });
    expect(config.mark).toEqual(DEFAULTS.mark);
    expect(config.bypass).toEqual(DEFAULTS.bypass);
  });

  test("hexadecimal table id accepted", () => {
    expect(validate("[table]\nid = 0x64\n").table.id).toBe(100);
  });

  test("several bypass sections combine", () => {
    const config = validate(
      "[bypass.ssh]\nprotocol = tcp\nlocal_port = 22\n[bypass.web]\nprotocol = tcp\nlocal_port = 443\n[bypass.wg]\nprotocol = udp\nlocal_port = 51820\n",
    );
    expect(config.bypass).toEqual([
      { name: "ssh", protocol: "tcp", localPort: 22 },
      { name: "web", protocol: "tcp", localPort: 443 },
      { name: "wg", protocol: "udp", localPort: 51820 },
    ]);
  });

  test("bypass sections replace default ssh", () => {
    const config = validate("[bypass.web]\nprotocol = tcp\nlocal_port = 443\n");
    expect(config.bypass).toEqual([{ name: "web", protocol: "tcp", localPort: 443 }]);
  });

  // Each case is one mistake. The error must name the file (checked by
  // problems()), the key, the bad value and what is allowed instead.
  const badCases: Array<{ name: string; text: string; key: string; value: string; allowed: string }> = [
    { name: "unknown key", text: "[table]\ncolour = red\n", key: "table.colour", value: "colour", allowed: "name, id, priority" },
    { name: "unknown bypass key", text: "[bypass.ssh]\nprotocol = tcp\nlocal_port = 22\nremote = 1\n", key: "bypass.ssh.remote", value: "remote", allowed: "protocol, local_port" },
    { name: "wrong type boolean", text: "[table]\nid = true\n", key: "table.id", value: '"true"', allowed: "an integer from 1 to 51819" },
    { name: "wrong type array", text: "[table]\nid[] = 5\n", key: "table.id", value: '["5"]', allowed: "an integer from 1 to 51819" },
    { name: "table id text", text: "[table]\nid = two\n", key: "table.id", value: '"two"', allowed: "an integer from 1 to 51819" },
    { name: "table id 0", text: "[table]\nid = 0\n", key: "table.id", value: '"0"', allowed: "an integer from 1 to 51819" },
    { name: "table id 253", text: "[table]\nid = 253\n", key: "table.id", value: '"253"', allowed: "other than 253, 254 and 255" },
    { name: "table id 254", text: "[table]\nid = 254\n", key: "table.id", value: '"254"', allowed: "other than 253, 254 and 255" },
    { name: "table id 255", text: "[table]\nid = 255\n", key: "table.id", value: '"255"', allowed: "other than 253, 254 and 255" },
    { name: "table id 51820", text: "[table]\nid = 51820\n", key: "table.id", value: '"51820"', allowed: "51820 and up belong to wg-quick" },
    { name: "table id 60000", text: "[table]\nid = 60000\n", key: "table.id", value: '"60000"', allowed: "51820 and up belong to wg-quick" },
    { name: "table name main", text: "[table]\nname = main\n", key: "table.name", value: '"main"', allowed: "other than main, local, default and unspec" },
    { name: "priority 0", text: "[table]\npriority = 0\n", key: "table.priority", value: '"0"', allowed: "an integer from 1 to 32763" },
    { name: "priority 40000", text: "[table]\npriority = 40000\n", key: "table.priority", value: '"40000"', allowed: "an integer from 1 to 32763" },
    { name: "priority in hexadecimal", text: "[table]\npriority = 0x10\n", key: "table.priority", value: '"0x10"', allowed: "an integer from 1 to 32763" },
    { name: "mark value 0", text: "[mark]\nvalue = 0\n", key: "mark.value", value: '"0"', allowed: "a non-zero 32-bit number" },
    { name: "mark mask 0", text: "[mark]\nvalue = 0x2\nmask = 0\n", key: "mark.mask", value: '"0"', allowed: "a non-zero 32-bit number" },
    { name: "mark above 32 bits", text: "[mark]\nmask = 0x100000000\n", key: "mark.mask", value: '"0x100000000"', allowed: "a non-zero 32-bit number" },
    { name: "value outside mask", text: "[mark]\nvalue = 0x6\nmask = 0x2\n", key: "mark.value", value: "0x6", allowed: "the value must be inside the mask" },
    { name: "value matching wg-quick mark", text: "[mark]\nvalue = 0x4\nmask = 0x4\n", key: "mark.value", value: "0x4", allowed: "choose bits that are not all set in 0xca6c" },
    { name: "wg-quick mark itself", text: "[mark]\nvalue = 0xca6c\nmask = 0xffffffff\n", key: "mark.value", value: "0xca6c", allowed: "choose bits that are not all set in 0xca6c" },
    { name: "port 0", text: "[bypass.ssh]\nprotocol = tcp\nlocal_port = 0\n", key: "bypass.ssh.local_port", value: '"0"', allowed: "a port number from 1 to 65535" },
    { name: "port 65536", text: "[bypass.ssh]\nprotocol = tcp\nlocal_port = 65536\n", key: "bypass.ssh.local_port", value: '"65536"', allowed: "a port number from 1 to 65535" },
    { name: "port ssh", text: "[bypass.ssh]\nprotocol = tcp\nlocal_port = ssh\n", key: "bypass.ssh.local_port", value: '"ssh"', allowed: "a port number from 1 to 65535" },
    { name: "bad protocol", text: "[bypass.ssh]\nprotocol = sctp\nlocal_port = 22\n", key: "bypass.ssh.protocol", value: '"sctp"', allowed: "tcp, udp" },
    { name: "missing local port", text: "[bypass.ssh]\nprotocol = tcp\n", key: "bypass.ssh.local_port", value: "missing", allowed: "a port number from 1 to 65535" },
    { name: "bad backend", text: "[firewall]\nbackend = pf\n", key: "firewall.backend", value: '"pf"', allowed: "auto, nftables, iptables, iptables-nft, iptables-legacy" },
    { name: "bad exclude pattern", text: "[snapshot]\nexclude = tun* eth0/1\n", key: "snapshot.exclude", value: '"tun* eth0/1"', allowed: "interface names or patterns with '*'" },
    {
      name: "duplicate protocol and port",
      text: "[bypass.ssh]\nprotocol = tcp\nlocal_port = 22\n[bypass.admin]\nprotocol = tcp\nlocal_port = 22\n",
      key: "bypass.admin",
      value: "tcp/22",
      allowed: "already selected by another [bypass.*] section",
    },
  ];

  for (const bad of badCases) {
    test(`rejects ${bad.name}`, () => {
      const lines = problems(rejection(bad.text));
      expect(lines).toHaveLength(1);
      const line = lines[0]!;
      expect(line).toMatch(new RegExp(`^  ${bad.key.replaceAll(".", "\\.")}:`));
      expect(line).toContain(bad.value);
      expect(line).toContain(bad.allowed);
    });
  }

  test("rejects unknown section", () => {
    const lines = problems(rejection("[tables]\nid = 3\n"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("[tables]: unknown section");
    expect(lines[0]).toContain("known sections: table, mark, snapshot, firewall, bypass.NAME");
  });

  test("rejects key outside sections", () => {
    const lines = problems(rejection("id = 3\n"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("[id]: unknown section or a key outside any section");
  });

  test("rejects bypass without name", () => {
    const lines = problems(rejection("[bypass]\nprotocol = tcp\nlocal_port = 22\n"));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((line) => line.includes("[bypass.NAME]"))).toBe(true);
  });

  test("reports every problem at once", () => {
    const lines = problems(rejection("[table]\nid = 0\npriority = 0\n[firewall]\nbackend = pf\n"));
    expect(lines.map((line) => line.trim().split(":")[0])).toEqual(["table.id", "table.priority", "firewall.backend"]);
  });
});

describe("loadConfig", () => {
  let directory: string;

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), "splitroute-config-"));
  });

  afterEach(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  function writeConfig(text: string, mode = 0o644): string {
    const path = join(directory, "splitroute.conf");
    writeFileSync(path, text);
    chmodSync(path, mode);
    return path;
  }

  test("explicit path is read", () => {
    const path = writeConfig(FULL_FILE);
    const config = loadConfig(path, {});
    expect(config.source).toBe(path);
    expect(config.table.id).toBe(100);
  });

  test("relative path made absolute", () => {
    const path = writeConfig("[table]\nid = 9\n");
    const config = loadConfig(relative(process.cwd(), path), {});
    expect(config.source).toBe(path);
    expect(() => loadConfig(relative(process.cwd(), join(directory, "missing.conf")), {})).toThrow(
      `configuration file ${join(directory, "missing.conf")} not found;`,
    );
  });

  test("environment variable names file", () => {
    const path = writeConfig("[table]\nid = 9\n");
    expect(loadConfig(undefined, { SPLITROUTE_CONFIG: path }).table.id).toBe(9);
  });

  test("option wins over environment", () => {
    const path = writeConfig("[table]\nid = 9\n");
    const config = loadConfig(path, { SPLITROUTE_CONFIG: join(directory, "missing.conf") });
    expect(config.source).toBe(path);
    expect(config.table.id).toBe(9);
  });

  test("missing explicit file rejected", () => {
    const path = join(directory, "missing.conf");
    const fallback = `${DEFAULT_CONFIG_PATH} (built-in defaults when that file does not exist)`;
    expect(() => loadConfig(path, {})).toThrow(ConfigError);
    expect(() => loadConfig(path, {})).toThrow(
      new ConfigError(`configuration file ${path} not found; correct the path given with --config, or leave out --config to use ${fallback}`),
    );
    expect(() => loadConfig(undefined, { SPLITROUTE_CONFIG: path })).toThrow(
      new ConfigError(`configuration file ${path} not found; correct SPLITROUTE_CONFIG, or unset it to use ${fallback}`),
    );
  });

  test("missing file names variable fallback", () => {
    const path = join(directory, "missing.conf");
    const named = join(directory, "named.conf");
    expect(() => loadConfig(path, { SPLITROUTE_CONFIG: named })).toThrow(
      new ConfigError(`configuration file ${path} not found; correct the path given with --config, or leave out --config to use ${named}, which SPLITROUTE_CONFIG names`),
    );
  });

  test("missing folder in path rejected", () => {
    const path = writeConfig("[table]\nid = 9\n");
    expect(() => loadConfig(join(path, "x.conf"), {})).toThrow(`configuration file ${join(path, "x.conf")} not found;`);
  });

  test("empty --config rejected", () => {
    expect(() => loadConfig("", {})).toThrow(/^--config is empty; name a configuration file/);
  });

  test("folder rejected in plain words", () => {
    expect(() => loadConfig(directory, {})).toThrow(new ConfigError(`cannot read configuration file ${directory}: it is a directory; name a file`));
  });

  test("permission denied in plain words", () => {
    const denied = Object.assign(new Error("EACCES: permission denied, open '/etc/x.conf'"), { code: "EACCES" });
    expect(readFailureMessage("/etc/x.conf", denied, "--config", DEFAULT_CONFIG_PATH)).toBe(
      "cannot read configuration file /etc/x.conf: permission denied; run splitroute as root, or make the file readable by the user that runs it",
    );
  });

  test.runIf(process.getuid?.() !== 0)("unreadable file rejected", () => {
    const path = writeConfig("[table]\nid = 9\n", 0o000);
    expect(() => loadConfig(path, {})).toThrow(`cannot read configuration file ${path}: permission denied;`);
  });

  test("invalid file names its path", () => {
    const path = writeConfig("[table]\nid = 254\n");
    expect(() => loadConfig(path, {})).toThrow(`invalid configuration in ${path}:\n  table.id: invalid value "254"`);
  });

  test.runIf(!existsSync(DEFAULT_CONFIG_PATH))("missing default file gives defaults", () => {
    expect(loadConfig(undefined, {})).toEqual({ ...DEFAULTS, source: "built-in defaults" });
  });

  describe.runIf(process.getuid?.() === 0)("as root", () => {
    test("rejects world-writable file", () => {
      const path = writeConfig("[table]\nid = 9\n", 0o646);
      expect(() => loadConfig(path, {})).toThrow(`refusing configuration file ${path}: owned by uid 0 with mode 646`);
    });

    test("rejects group-writable file", () => {
      const path = writeConfig("[table]\nid = 9\n", 0o664);
      expect(() => loadConfig(path, {})).toThrow(ConfigError);
      expect(() => loadConfig(path, {})).toThrow("writable by root only");
    });

    test("rejects file of another owner", () => {
      const path = writeConfig("[table]\nid = 9\n", 0o644);
      chownSync(path, 1000, 1000);
      expect(() => loadConfig(path, {})).toThrow(`refusing configuration file ${path}: owned by uid 1000`);
    });

    test("accepts root-owned file mode 0644", () => {
      const path = writeConfig("[table]\nid = 9\n", 0o644);
      expect(loadConfig(path, {}).table.id).toBe(9);
    });
  });
});

describe("shipped configuration file", () => {
  test("equals the built-in defaults", () => {
    const text = readFileSync(new URL("../../packaging/splitroute.conf", import.meta.url), "utf8");
    const { source: _source, ...values } = validateConfig(parse(text), "packaging/splitroute.conf");
    expect(values).toEqual(DEFAULTS);
  });
});

describe("configuration file syntax", () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "splitroute-syntax-"));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function loadText(text: string): () => unknown {
    const path = join(dir, "splitroute.conf");
    writeFileSync(path, text, { mode: 0o644 });
    return () => loadConfig(path, {});
  }

  test("rejects unclosed section header", () => {
    expect(loadText("[table\nid = 3\n")).toThrow(/line 1: invalid section header "\[table"/);
  });

  test("rejects line without equals sign", () => {
    expect(loadText("[table]\nid 3\n")).toThrow(/line 2: invalid line "id 3"; write key = value/);
  });

  test("rejects key set twice", () => {
    expect(loadText("[table]\nid = 2\nid = 3\n")).toThrow(/line 3: table.id is set again \(first on line 2\)/);
  });

  test("accepts comments and blank lines", () => {
    expect(loadText("; comment\n# comment\n\n[table]\nid = 3 ; three\n")).not.toThrow();
  });

  test("rejects comment after section header", () => {
    expect(loadText("[table] ; the table\nid = 3\n")).toThrow(/line 1: invalid section header "\[table\] ; the table"/);
  });

  test("treats empty SPLITROUTE_CONFIG as unset", () => {
    expect(existsSync(DEFAULT_CONFIG_PATH) ? "present" : loadConfig(undefined, { SPLITROUTE_CONFIG: "" }).source).not.toContain("cannot read");
  });
});

describe("snapshot.table", () => {
  test("accepts a name or number", () => {
    expect(validateConfig(parse("[snapshot]\ntable = uplink\n"), "/etc/x.conf").snapshot.table).toBe("uplink");
    expect(validateConfig(parse("[snapshot]\ntable = 100\n"), "/etc/x.conf").snapshot.table).toBe("100");
  });

  test("rejects splitroute's own table", () => {
    expect(() => validateConfig(parse("[snapshot]\ntable = 2\n"), "/etc/x.conf")).toThrow(/snapshot.table: 2 is splitroute's own table/);
  });

  test("rejects an invalid table", () => {
    expect(() => validateConfig(parse("[snapshot]\ntable = local\n"), "/etc/x.conf")).toThrow(/snapshot.table: invalid value "local"/);
  });
});
