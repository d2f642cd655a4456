import { readFileSync } from "node:fs";

import { applySteps } from "../../src/apply.js";
import { createLogger } from "../../src/log.js";
import { describe, expect, test } from "vitest";

import { observeForDown, observeForUp } from "../../src/commands/observe-state.js";
import { ConfigError } from "../../src/errors.js";
import { readRules, readTable } from "../../src/observe.js";
import { planDown, planRemoval } from "../../src/plan/down.js";
import { planUp } from "../../src/plan/up.js";
import { parseRoutes } from "../../src/snapshot/parse.js";
import { routeAddArgs } from "../../src/snapshot/render.js";
import type { Family } from "../../src/snapshot/route.js";
import type { State } from "../../src/state.js";
import { testConfig, vpnHost } from "../fake/host.js";
import { FakeSystem } from "../fake/system.js";

const FIXTURES = new URL("../fixtures/routes/", import.meta.url);

function fixture(name: string): unknown {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), "utf8"));
}

function batch(family: Family, lines: readonly string[]): [string[], string] {
  return [["ip", `-${family}`, "-batch", "-"], `${lines.join("\n")}\n`];
}

function installedState(changes: Partial<State> = {}): State {
  return {
    version: 1,
    tunnels: ["tun0"],
    table: { id: 2, name: "redirect" },
    priority: 1000,
    mark: { value: 0x2, mask: 0x2 },
    bypass: [{ name: "ssh", protocol: "tcp", localPort: 22 }],
    backend: "nftables",
    families: [4, 6],
    sysctls: [],
    routeCounts: { 4: 0, 6: 0 },
    configSource: "/etc/splitroute/test.conf",
    ...changes,
  };
}

describe("FakeSystem routes", () => {
  // Copying main into another table must give back the same routes when
  // read again, or the fake (or the snapshot code) disagrees with ip.
  const cases: Array<[string, Family]> = [
    ["ipv4-main.json", 4],
    ["ipv6-main.json", 6],
    ["ipv4-main-numeric.json", 4],
    ["ipv6-main-numeric.json", 6],
  ];
  for (const [name, family] of cases) {
    test(`round trip of ${name}`, async () => {
      const system = new FakeSystem({ interfaces: ["d0", "d1", "d3", "va", "d0p", "d1p", "d3p"] });
      const routes = parseRoutes(fixture(name), family);
      const lines = routes.map((route) => routeAddArgs(route, 100).join(" "));

      const result = await system.run(...batch(family, lines));
      expect(result.stderr).toBe("");
      expect(result.exitCode).toBe(0);
      // Read back in the form the fixture was taken in: names, or numbers with -N.
      const numeric = name.includes("numeric") ? ["-N"] : [];
      const output = await system.run(["ip", `-${family}`, "-d", ...numeric, "-j", "route", "show", "table", "100"]);
      expect(parseRoutes(JSON.parse(output.stdout), family)).toEqual(routes);
      expect(system.unsupported).toEqual([]);
    });
  }

  test("absent table read fails", async () => {
    const system = new FakeSystem();
    const result = await system.run(["ip", "-4", "-d", "-N", "-j", "route", "show", "table", "77"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("Error: ipv4: FIB table does not exist.");
    expect(await readTable(system, 4, 77)).toEqual([]);
  });

  test("flushed table stays readable", async () => {
    const system = new FakeSystem();
    system.addRoutes(4, 77, ["10.1.0.0/16 dev eth0"]);
    system.setUp(...batch(4, ["route flush table 77"]));
    const result = await system.run(["ip", "-4", "-d", "-j", "route", "show", "table", "77"]);
    expect(result).toEqual({ exitCode: 0, stdout: "[]\n", stderr: "" });
    expect(system.render()).not.toContain("table 77");
  });

  test("unknown device rejected", async () => {
    const system = new FakeSystem();
    const result = await system.run(...batch(4, ["route append 10.1.0.0/16 dev tun9 table 7"]));
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe('Cannot find device "tun9"\nCommand failed -:1\n');
  });

  test("exact duplicate append rejected", async () => {
    const system = new FakeSystem();
    const line = "route append 10.1.0.0/16 dev eth0 table 7";
    const result = await system.run(...batch(4, [line, line]));
    expect(result.stderr).toBe("RTNETLINK answers: File exists\nCommand failed -:2\n");
    expect(system.ip.tables[4].get(7)).toHaveLength(1);
  });

  test("batch keeps lines before failure", async () => {
    const system = new FakeSystem();
    const result = await system.run(
      ...batch(4, [
        "route append 10.1.0.0/16 dev eth0 table 7",
        "rule del fwmark 0x9/0x9 lookup 7 priority 5",
        "route append 10.2.0.0/16 dev eth0 table 7",
      ]),
    );
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe("RTNETLINK answers: No such file or directory\nCommand failed -:2\n");
    expect(system.ip.tables[4].get(7)?.map((route) => route.dst)).toEqual(["10.1.0.0/16"]);
  });
});

describe("FakeSystem rules", () => {
  test("default rules per family", async () => {
    const system = new FakeSystem();
    expect(await readRules(system, 4)).toEqual([
      { priority: 0, src: "all", table: "255" },
      { priority: 32766, src: "all", table: "254" },
      { priority: 32767, src: "all", table: "253" },
    ]);
    expect(await readRules(system, 6)).toEqual([
      { priority: 0, src: "all", table: "255" },
      { priority: 32766, src: "all", table: "254" },
    ]);
  });

  test("rule add sorts by priority", async () => {
    const system = new FakeSystem();
    system.setUp(...batch(6, ["rule add fwmark 0x2/0x2 lookup 2 priority 1000", "rule add from 2001:db8::/32 lookup main priority 999"]));
    expect((await readRules(system, 6)).slice(1, 3)).toEqual([
      { priority: 999, src: "2001:db8::", srclen: 32, table: "254" },
      { priority: 1000, src: "all", fwmark: "0x2", fwmask: "0x2", table: "2" },
    ]);
  });

  test("full mask left out", async () => {
    const system = new FakeSystem();
    system.setUp(...batch(4, ["rule add fwmark 0x2 lookup 2 priority 1000"]));
    expect((await readRules(system, 4))[1]).toEqual({ priority: 1000, src: "all", fwmark: "0x2", table: "2" });
  });

  test("duplicate rule rejected", async () => {
    const system = new FakeSystem();
    const line = "rule add fwmark 0x2/0x2 lookup 2 priority 1000";
    const result = await system.run(...batch(4, [line, line]));
    expect(result.stderr).toBe("RTNETLINK answers: File exists\nCommand failed -:2\n");
  });
});

describe("FakeSystem firewall", () => {
  test("nft script is one transaction", async () => {
    const system = new FakeSystem();
    const result = await system.run(["nft", "-f", "-"], "table inet a\ndelete table inet b\n");
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("/dev/stdin:2:1-19: Error: Could not process rule: No such file or directory");
    expect(system.nft.tables.size).toBe(0);
  });

  test("nft lists tables", async () => {
    const system = new FakeSystem();
    system.setUp(["nft", "-f", "-"], "table inet a {\n\tchain c {\n\t}\n}\ntable ip b\n");
    expect((await system.run(["nft", "list", "tables"])).stdout).toBe("table inet a\ntable ip b\n");
    expect((await system.run(["nft", "list", "table", "inet", "a"])).stdout).toBe("table inet a {\n\tchain c {\n\t}\n}\n");
    expect((await system.run(["nft", "list", "table", "inet", "zz"])).exitCode).toBe(1);
  });

  test("nft block adds to table", async () => {
    const system = new FakeSystem();
    system.setUp(["nft", "-f", "-"], "table inet a {\n\tchain c {\n\t}\n}\n");
    system.setUp(["nft", "-f", "-"], "table inet a {\n\tchain d {\n\t}\n}\n");
    expect(system.nft.tables.get("inet a")).toEqual(["\tchain c {", "\t}", "\tchain d {", "\t}"]);
  });

  test("iptables-restore is all or nothing", async () => {
    const system = new FakeSystem();
    const input = "*mangle\n:MINE - [0:0]\n-A PREROUTING -j MINE\n-X MINE\nCOMMIT\n";
    const result = await system.run(["iptables-restore", "--noflush"], input);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe("iptables-restore: line 4 failed: chain MINE is referenced by a rule: Too many links\n");
    expect(system.iptables.isPristine("iptables")).toBe(true);
  });

  test("iptables delete needs exact rule", async () => {
    const system = new FakeSystem();
    system.setUp(["iptables-legacy-restore", "--noflush"], "*mangle\n-A OUTPUT -j MARK --set-xmark 0x4/0x4\nCOMMIT\n");
    const missing = await system.run(["iptables-legacy-restore", "--noflush"], "*mangle\n-D OUTPUT -j MARK --set-xmark 0x2/0x2\nCOMMIT\n");
    expect(missing.exitCode).toBe(1);
    const present = await system.run(["iptables-legacy-restore", "--noflush"], "*mangle\n-D OUTPUT -j MARK --set-xmark 0x4/0x4\nCOMMIT\n");
    expect(present.exitCode).toBe(0);
    expect(system.iptables.isPristine("iptables-legacy")).toBe(true);
  });

  test("iptables save format", async () => {
    const system = new FakeSystem();
    system.setUp(["ip6tables-restore", "--noflush"], "*mangle\n:B - [0:0]\n:A - [0:0]\n-I OUTPUT 1 -j A\n-A B -j RETURN\nCOMMIT\n");
    const result = await system.run(["ip6tables-save", "-t", "mangle"]);
    expect(result.stdout.split("\n").slice(1, -2)).toEqual([
      "*mangle",
      ":PREROUTING ACCEPT [0:0]",
      ":INPUT ACCEPT [0:0]",
      ":FORWARD ACCEPT [0:0]",
      ":OUTPUT ACCEPT [0:0]",
      ":POSTROUTING ACCEPT [0:0]",
      ":A - [0:0]",
      ":B - [0:0]",
      "-A OUTPUT -j A",
      "-A B -j RETURN",
      "COMMIT",
    ]);
  });

  test("iptables missing commit rejected", async () => {
    const system = new FakeSystem();
    const result = await system.run(["iptables-restore", "--noflush"], "*mangle\n:MINE - [0:0]\n");
    expect(result.stderr).toBe("iptables-restore: COMMIT expected at line 4\n");
    expect(system.iptables.isPristine("iptables")).toBe(true);
  });
});

describe("FakeSystem commands", () => {
  test("unknown command exits 127", async () => {
    const system = new FakeSystem();
    const result = await system.run(["ip", "link", "show"]);
    expect(result.exitCode).toBe(127);
    expect(result.stderr).toContain("ip link show");
    expect(system.unsupported).toHaveLength(1);
  });

  test("missing tool exits 127", async () => {
    const system = new FakeSystem({ tools: ["ip"] });
    expect((await system.run(["nft", "list", "tables"])).exitCode).toBe(127);
    expect(system.hasTool("nft")).toBe(false);
    expect(system.hasTool("ip")).toBe(true);
  });

  test("failOn fails chosen command", async () => {
    const system = new FakeSystem();
    system.failOn((argv) => argv[0] === "nft", "nft: broken");
    expect(await system.run(["nft", "list", "tables"])).toEqual({ exitCode: 1, stdout: "", stderr: "nft: broken\n" });
    expect(await system.run(["ip", "-4", "-N", "-j", "rule", "show"])).toMatchObject({ exitCode: 0 });
    await expect(system.writeSysctl("net.ipv4.conf.eth0.rp_filter", "1")).resolves.toBeUndefined();
    system.failOn((argv) => argv[0] === "sysctl");
    await expect(system.writeSysctl("net.ipv4.conf.eth0.rp_filter", "2")).rejects.toThrow("injected failure");
    expect(system.sysctls.get("net.ipv4.conf.eth0.rp_filter")).toBe("1");
  });

  test("commands log keeps order", async () => {
    const system = new FakeSystem();
    await system.run(["nft", "list", "tables"]);
    await system.writeSysctl("net.ipv4.conf.eth0.src_valid_mark", "1");
    expect(system.commands).toEqual([
      ["nft", "list", "tables"],
      ["sysctl", "-w", "net.ipv4.conf.eth0.src_valid_mark=1"],
    ]);
  });

  test("unknown sysctl write fails", async () => {
    const system = new FakeSystem();
    await expect(system.writeSysctl("net.ipv4.conf.tun7.src_valid_mark", "1")).rejects.toThrow("ENOENT");
    expect(await system.readSysctl("net.ipv4.conf.tun7.src_valid_mark")).toBeUndefined();
  });
});

describe("planUp", () => {
  test("observing changes nothing", async () => {
    const system = vpnHost();
    const before = system.render();
    await observeForUp(system, testConfig("iptables"), "tun0", "iptables", undefined);
    expect(system.render()).toBe(before);
    // A read-only ip batch names its commands (route show, rule show) on stdin and requests JSON.
    expect(system.commands.every((argv) => argv.includes("show") || argv.includes("-j") || argv.includes("-t") || argv.includes("--version"))).toBe(true);
  });

  test("steps per family and firewall", async () => {
    const system = vpnHost();
    const config = testConfig("nftables");
    const observed = await observeForUp(system, config, "tun0", "nftables", undefined);
    const { steps, state } = planUp({ config, device: "tun0", backend: "nftables", previous: undefined, observed });

    expect(steps.map((step) => step.summary)).toEqual([
      "installing IPv4 routes into table redirect (2) and its rule",
      "installing IPv6 routes into table redirect (2) and its rule",
      "installing nftables marking",
    ]);
    const ipv4 = steps[0]!;
    expect(ipv4.kind).toBe("run");
    const lines = ipv4.kind === "run" ? (ipv4.input ?? "").split("\n") : [];
    expect(lines.at(-2)).toBe("rule add fwmark 0x2/0x2 lookup 2 priority 1000");
    expect(state.routeCounts).toEqual({ 4: 4, 6: 3 });
    expect(state.tunnels).toEqual(["tun0"]);
  });

  test("nft table created or replaced", async () => {
    const system = vpnHost();
    const config = testConfig("nftables");
    const nftInput = async (ruleset: string | null | undefined) => {
      const observed = await observeForUp(system, config, "tun0", "nftables", undefined, ruleset);
      const step = planUp({ config, device: "tun0", backend: "nftables", previous: undefined, observed }).steps.at(-1)!;
      return step.kind === "run" ? (step.input ?? "") : "";
    };

    // Known absent: created only, because deleting a table makes the transaction slow.
    const created = await nftInput("table ip filter {\n}\n");
    expect(created.startsWith("table inet splitroute {\n")).toBe(true);
    expect(created).not.toContain("delete table");
    // Present or unknown: replaced in one transaction.
    for (const ruleset of ["table inet splitroute {\n}\n", null, undefined]) {
      expect((await nftInput(ruleset)).startsWith("table inet splitroute\ndelete table inet splitroute\n")).toBe(true);
    }
  });

  test("foreign table rejected naming it", async () => {
    const system = vpnHost();
    system.addRoutes(6, 2, ["2001:db8:99::/48 dev eth0"]);
    const config = testConfig("nftables");
    const observed = await observeForUp(system, config, "tun0", "nftables", undefined);
    expect(() => planUp({ config, device: "tun0", backend: "nftables", previous: undefined, observed })).toThrow(ConfigError);
    expect(() => planUp({ config, device: "tun0", backend: "nftables", previous: undefined, observed })).toThrow(
      "table 2 already contains 1 IPv6 route(s) that splitroute did not install",
    );
  });

  test("earlier up flushes own table", async () => {
    const system = vpnHost();
    system.addRoutes(4, 2, ["10.40.0.0/16 dev eth0 proto 83"]);
    const config = testConfig("nftables");
    const previous = installedState();
    const observed = await observeForUp(system, config, "tun1", "nftables", previous);
    const { steps, state } = planUp({ config, device: "tun1", backend: "nftables", previous, observed });

    const ipv4 = steps[0]!;
    expect(ipv4.kind).toBe("run");
    const lines = ipv4.kind === "run" ? (ipv4.input ?? "").split("\n") : [];
    expect(lines[0]).toBe("route flush table 2 proto 83");
    expect(state.tunnels).toEqual(["tun0", "tun1"]);
  });

  test("foreign route in own table survives", async () => {
    const system = vpnHost();
    system.addRoutes(4, 2, ["10.40.0.0/16 dev eth0 proto 83", "10.50.0.0/16 dev eth0 proto static"]);
    const config = testConfig("nftables");
    const observed = await observeForUp(system, config, "tun1", "nftables", installedState());
    const { steps } = planUp({ config, device: "tun1", backend: "nftables", previous: installedState(), observed });
    await applySteps(system, steps, createLogger("text", "silent"));

    const table = system.ip.tables[4].get(2) ?? [];
    expect(table.filter((route) => route.dst === "10.50.0.0/16")).toHaveLength(1);
    expect(table.filter((route) => route.dst === "10.40.0.0/16")).toHaveLength(0);
  });
});

describe("planDown", () => {
  test("removal skips what is gone", async () => {
    const system = vpnHost();
    const state = installedState({ backend: "iptables" });
    const plan = planRemoval(state, await observeForDown(system, state));
    expect(plan.steps).toEqual([]);
    expect(plan.remaining).toBeUndefined();
  });

  test("nftables removal always runs", async () => {
    const system = vpnHost();
    const state = installedState();
    const plan = planRemoval(state, await observeForDown(system, state));
    expect(plan.steps.map((step) => step.summary)).toEqual(["removing nftables marking"]);
    const result = await system.run(["nft", "-f", "-"], plan.steps[0]!.kind === "run" ? plan.steps[0]!.input : "");
    expect(result.exitCode).toBe(0);
  });

  test("other tunnel only rewrites marking", async () => {
    const system = vpnHost();
    const state = installedState({ tunnels: ["tun0", "tun1"] });
    const plan = planDown(state, "tun0", await observeForDown(system, state));
    expect(plan.steps.map((step) => step.summary)).toEqual(["installing nftables marking"]);
    expect(plan.remaining?.tunnels).toEqual(["tun1"]);
  });

  test("non-holder down only warns", async () => {
    const system = vpnHost();
    const state = installedState();
    const plan = planDown(state, "tun9", await observeForDown(system, state));
    expect(plan.steps).toEqual([]);
    expect(plan.remaining).toBe(state);
    expect(plan.warnings).toEqual(["tun9 does not hold the bypass (held by tun0); nothing to do"]);
  });

  test("changed sysctl left alone", async () => {
    const system = vpnHost();
    system.sysctls.set("net.ipv4.conf.eth0.src_valid_mark", "2");
    const state = installedState({ sysctls: [{ key: "net.ipv4.conf.eth0.src_valid_mark", value: "1", previous: "0" }] });
    const plan = planRemoval(state, await observeForDown(system, state));
    expect(plan.steps.some((step) => step.kind === "sysctl")).toBe(false);
    expect(plan.warnings).toEqual([
      "net.ipv4.conf.eth0.src_valid_mark is 2, not the 1 splitroute set; leaving it as it is",
    ]);
  });
});
