// The iptables backends' source NAT for connections selected in output: the
// nat chain's rules, and how up, down, plan, status and cleanup handle the
// chain, its jump and what iptables-nft creates for them in nftables.

import { describe, expect, test } from "vitest";

import { cleanup } from "../../src/commands/cleanup.js";
import { down } from "../../src/commands/down.js";
import { planCommands } from "../../src/commands/plan.js";
import { renderStatus, status } from "../../src/commands/status.js";
import { up } from "../../src/commands/up.js";
import type { Bypass } from "../../src/config/types.js";
import { iptablesTools, NOTHING_OBSERVED, parseIptablesSave, renderIptablesApply, renderIptablesRemove, type IptablesVariant } from "../../src/firewall/iptables.js";
import type { MarkingSpec } from "../../src/firewall/marking.js";
import { MemoryStateStore } from "../../src/state.js";
import { testConfig, testContext, vpnHost } from "../fake/host.js";
import type { FakeSystem } from "../fake/system.js";

const MASQUERADE =
  "-m conntrack --ctdir ORIGINAL -m connmark --mark 0x2/0x2 -m addrtype --src-type LOCAL -m addrtype ! --src-type LOCAL --limit-iface-out -j MASQUERADE";
const JUMP = "-m comment --comment splitroute -j SPLITROUTE-POST";

const SSH: Bypass = { name: "ssh", protocol: "tcp", localPort: 22 };
const NOBODY: Bypass = { name: "nobody", uid: 65534 };

function spec(...bypass: Bypass[]): MarkingSpec {
  return { mark: { value: 0x2, mask: 0x2 }, tunnels: ["tun0", "tun1"], bypass };
}

/** Returns the lines of the `*nat` block in iptables-restore input, or none. */
function natBlock(input: string): string[] {
  const lines = input.split("\n");
  const start = lines.indexOf("*nat");
  return start < 0 ? [] : lines.slice(start, lines.indexOf("COMMIT", start) + 1);
}

describe("iptables source nat rules", () => {
  test("output selection adds nat chain", () => {
    const expected = [
      "*nat",
      ":SPLITROUTE-POST - [0:0]",
      "-A SPLITROUTE-POST -o tun0 -j RETURN",
      "-A SPLITROUTE-POST -o tun1 -j RETURN",
      `-A SPLITROUTE-POST ${MASQUERADE}`,
      `-I POSTROUTING 1 ${JUMP}`,
      "COMMIT",
    ];
    expect(natBlock(renderIptablesApply(spec(SSH, NOBODY), NOTHING_OBSERVED, 4))).toEqual(expected);
    expect(natBlock(renderIptablesApply(spec(SSH, NOBODY), NOTHING_OBSERVED, 6))).toEqual(expected);
  });

  test("destination selection adds nat chain", () => {
    const input = renderIptablesApply(spec({ name: "office", destination: ["198.51.100.0/24"] }), NOTHING_OBSERVED, 4);
    expect(natBlock(input)).toContain(`-A SPLITROUTE-POST ${MASQUERADE}`);
  });

  test("inbound only adds no nat", () => {
    const input = renderIptablesApply(spec(SSH, { name: "lan", interface: "lan0" }), NOTHING_OBSERVED, 4);
    expect(input).not.toContain("*nat");
    expect(input).not.toContain("MASQUERADE");
  });

  test("existing jump not added again", () => {
    const observed = { ...NOTHING_OBSERVED, nat: { chains: ["SPLITROUTE-POST"], jumps: [`-A POSTROUTING ${JUMP}`], busyChains: [] } };
    const block = natBlock(renderIptablesApply(spec(NOBODY), observed, 4));
    expect(block).toContain(":SPLITROUTE-POST - [0:0]");
    expect(block.filter((line) => line.includes("POSTROUTING"))).toEqual([]);
  });

  test("stale nat chain removed", () => {
    const observed = { ...NOTHING_OBSERVED, nat: { chains: ["SPLITROUTE-POST"], jumps: [`-A POSTROUTING ${JUMP}`], busyChains: ["POSTROUTING"] } };
    expect(natBlock(renderIptablesApply(spec(SSH), observed, 4))).toEqual([
      "*nat",
      `-D POSTROUTING ${JUMP}`,
      "-F SPLITROUTE-POST",
      "-X SPLITROUTE-POST",
      "COMMIT",
    ]);
  });

  test("removal covers both tables", () => {
    const observed = {
      mangle: { chains: ["SPLITROUTE-PRE"], jumps: ["-A PREROUTING -m comment --comment splitroute -j SPLITROUTE-PRE"], busyChains: [] },
      nat: { chains: ["SPLITROUTE-POST"], jumps: [`-A POSTROUTING ${JUMP}`], busyChains: [] },
    };
    expect(renderIptablesRemove(observed)?.split("\n")).toEqual([
      "*mangle",
      "-D PREROUTING -m comment --comment splitroute -j SPLITROUTE-PRE",
      "-F SPLITROUTE-PRE",
      "-X SPLITROUTE-PRE",
      "COMMIT",
      "*nat",
      `-D POSTROUTING ${JUMP}`,
      "-F SPLITROUTE-POST",
      "-X SPLITROUTE-POST",
      "COMMIT",
      "",
    ]);
    expect(renderIptablesRemove(NOTHING_OBSERVED)).toBeUndefined();
  });

  test("parse finds ours among foreign", () => {
    const saved = [
      "*nat",
      ":PREROUTING ACCEPT [0:0]",
      ":INPUT ACCEPT [0:0]",
      ":OUTPUT ACCEPT [0:0]",
      ":POSTROUTING ACCEPT [0:0]",
      ":DOCKER - [0:0]",
      ":SPLITROUTE-POST - [0:0]",
      "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
      `-A POSTROUTING ${JUMP}`,
      "-A POSTROUTING -s 192.0.2.128/25 ! -o docker0 -j MASQUERADE",
      "-A SPLITROUTE-POST -o tun0 -j RETURN",
      `-A SPLITROUTE-POST ${MASQUERADE}`,
      "COMMIT",
    ].join("\n");
    expect(parseIptablesSave(saved, "nat")).toEqual({
      chains: ["SPLITROUTE-POST"],
      jumps: [`-A POSTROUTING ${JUMP}`],
      busyChains: ["DOCKER", "POSTROUTING", "PREROUTING"],
    });
    // The mangle chains' names mean nothing in nat.
    expect(parseIptablesSave(saved.replaceAll("SPLITROUTE-POST", "SPLITROUTE-PRE"), "nat").chains).toEqual([]);
  });
});

const VARIANTS: IptablesVariant[] = ["iptables", "iptables-nft", "iptables-legacy"];

/** Builds the fake laptop with only `variant`'s iptables tools, so that cleanup searches that variant. */
function hostWith(variant: IptablesVariant): FakeSystem {
  const tools = [4, 6].flatMap((family) => Object.values(iptablesTools(variant, family as 4 | 6)));
  return vpnHost({ tools: ["ip", "nft", ...tools] });
}

/** Adds Docker-style nat rules of another program for both families. */
function addForeignNat(system: FakeSystem, variant: IptablesVariant): void {
  for (const family of [4, 6] as const) {
    const network = family === 4 ? "192.0.2.128/25" : "2001:db8:9::/64";
    system.setUp(
      [iptablesTools(variant, family).restore, "--noflush"],
      ["*nat", ":DOCKER - [0:0]", "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER", `-A POSTROUTING -s ${network} ! -o docker0 -j MASQUERADE`, "COMMIT", ""].join("\n"),
    );
  }
}

/** Returns the rules of one chain of a nat table of the fake, as iptables-save prints them after `-A CHAIN`. */
function natRules(system: FakeSystem, base: string, chain: string): string[] | undefined {
  return system.iptables.table(base, "nat").get(chain)?.rules;
}

function bases(variant: IptablesVariant): string[] {
  return [variant, variant.replace(/^iptables/, "ip6tables")];
}

describe.each(VARIANTS)("source nat with %s", (variant) => {
  test("up installs nat chain first", async () => {
    const system = hostWith(variant);
    addForeignNat(system, variant);
    await up(testContext(system, testConfig(variant, { bypass: [SSH, NOBODY] })), "tun0");
    expect(system.unsupported).toEqual([]);
    for (const base of bases(variant)) {
      expect(natRules(system, base, "SPLITROUTE-POST"), base).toEqual(["-o tun0 -j RETURN", MASQUERADE]);
      expect(natRules(system, base, "POSTROUTING")?.[0], base).toBe(JUMP);
      expect(natRules(system, base, "POSTROUTING"), base).toHaveLength(2);
    }
  });

  test("down keeps foreign nat rules", async () => {
    const system = hostWith(variant);
    addForeignNat(system, variant);
    const context = testContext(system, testConfig(variant, { bypass: [SSH, NOBODY] }));
    const before = system.render();

    await up(context, "tun0");
    await up(context, "tun1");
    expect(natRules(system, variant, "SPLITROUTE-POST")).toEqual(["-o tun0 -j RETURN", "-o tun1 -j RETURN", MASQUERADE]);
    await down(context, "tun0");
    expect(natRules(system, variant, "SPLITROUTE-POST")).toEqual(["-o tun1 -j RETURN", MASQUERADE]);
    await down(context, "tun1");
    expect(system.render()).toBe(before);
    expect(system.unsupported).toEqual([]);
  });

  test("dropped output section removes nat", async () => {
    const system = hostWith(variant);
    const store = new MemoryStateStore();
    const before = system.render();
    await up(testContext(system, testConfig(variant, { bypass: [SSH, NOBODY] }), store), "tun0");
    const context = testContext(system, testConfig(variant, { bypass: [SSH] }), store);
    await up(context, "tun1");
    for (const base of bases(variant)) {
      expect(natRules(system, base, "SPLITROUTE-POST"), base).toBeUndefined();
      expect(natRules(system, base, "POSTROUTING"), base).toEqual([]);
    }
    expect(system.iptables.table(variant).has("SPLITROUTE-PRE")).toBe(true);
    await down(context, "tun0");
    await down(context, "tun1");
    expect(system.render()).toBe(before);
  });

  test("status reports missing nat jump", async () => {
    const system = hostWith(variant);
    const context = testContext(system, testConfig(variant, { bypass: [SSH, NOBODY] }));
    await up(context, "tun0");
    const installed = await status(context);
    expect(installed.drift).toEqual([]);
    expect(installed.live?.sourceNat).toBe(true);
    expect(renderStatus(installed)).toContain(
      `firewall:  ${variant} mangle chains SPLITROUTE-PRE and SPLITROUTE-OUT and nat chain SPLITROUTE-POST, each reached by one jump tagged "splitroute"`,
    );

    system.setUp([iptablesTools(variant, 6).restore, "--noflush"], `*nat\n-D POSTROUTING ${JUMP}\nCOMMIT\n`);
    const drifted = await status(context);
    expect(drifted.live?.sourceNat).toBe(false);
    expect(drifted.live?.firewall).toBe(true);
    expect(drifted.drift).toEqual([`the ${variant} source NAT (nat chain SPLITROUTE-POST and its jump from POSTROUTING) is missing`]);

    // up puts the jump back.
    await up(context, "tun0");
    expect((await status(context)).drift).toEqual([]);
  });

  test("status without output section", async () => {
    const system = hostWith(variant);
    const context = testContext(system, testConfig(variant));
    await up(context, "tun0");
    const report = await status(context);
    expect(report.live?.sourceNat).toBeUndefined();
    expect(report.firewall).not.toContain("nat");
  });

  test("plan up prints nat block", async () => {
    const system = hostWith(variant);
    const script = await planCommands(testContext(system, testConfig(variant, { bypass: [SSH, NOBODY] })), "up", "tun0");
    expect(script).toContain(`*nat\n:SPLITROUTE-POST - [0:0]\n-A SPLITROUTE-POST -o tun0 -j RETURN\n-A SPLITROUTE-POST ${MASQUERADE}\n-I POSTROUTING 1 ${JUMP}\nCOMMIT\n`);
    expect(system.render()).toBe(hostWith(variant).render());
  });

  test("plan down removes nat chain", async () => {
    const system = hostWith(variant);
    const context = testContext(system, testConfig(variant, { bypass: [SSH, NOBODY] }));
    await up(context, "tun0");
    const script = await planCommands(context, "down", "tun0");
    expect(script).toContain(`*nat\n-D POSTROUTING ${JUMP}\n-F SPLITROUTE-POST\n-X SPLITROUTE-POST\nCOMMIT\n`);
  });

  test("cleanup without state removes nat", async () => {
    const system = hostWith(variant);
    addForeignNat(system, variant);
    const config = testConfig(variant, { bypass: [SSH, NOBODY] });
    const context = testContext(system, config);
    await up(context, "tun0");
    await context.store.remove();

    // Without a record, cleanup searches with the built-in defaults, which select nothing in output.
    await cleanup(testContext(system, testConfig(variant), context.store));
    for (const base of bases(variant)) {
      expect(natRules(system, base, "SPLITROUTE-POST"), base).toBeUndefined();
      expect(natRules(system, base, "POSTROUTING"), base).toHaveLength(1);
      expect(natRules(system, base, "PREROUTING"), base).toEqual(["-m addrtype --dst-type LOCAL -j DOCKER"]);
    }
    expect(system.render()).not.toContain("SPLITROUTE");
    expect(system.unsupported).toEqual([]);
  });

  test("firewall failure rolls back nat", async () => {
    const system = hostWith(variant);
    const context = testContext(system, testConfig(variant, { bypass: [SSH, NOBODY] }));
    const before = system.render();
    system.failOn((argv, input) => argv[0]!.startsWith("ip6tables") && (input ?? "").includes("*nat"));
    await expect(up(context, "tun0")).rejects.toThrow("up for tun0 failed and was rolled back");
    expect(system.render()).toBe(before);
  });
});

describe("source nat and iptables-nft's tables", () => {
  test("nat table created by up deleted by down", async () => {
    const system = hostWith("iptables-nft");
    const context = testContext(system, testConfig("iptables-nft", { bypass: [SSH, NOBODY] }));
    const before = system.render();
    await up(context, "tun0");
    expect(system.render()).toContain("nft: iptables-nft created its nat table, with base chains: POSTROUTING");
    expect(system.render()).toContain("nft: ip6tables-nft created its nat table, with base chains: POSTROUTING");
    expect((await context.store.read())?.createdNat).toEqual([
      { family: 4, table: true, chains: [] },
      { family: 6, table: true, chains: [] },
    ]);
    await down(context, "tun0");
    expect(system.commands.map((argv) => argv.join(" "))).toContain("nft delete table ip nat");
    expect(system.render()).toBe(before);
  });

  test("cleanup without state keeps tables", async () => {
    const system = hostWith("iptables-nft");
    const context = testContext(system, testConfig("iptables-nft", { bypass: [SSH, NOBODY] }));
    await up(context, "tun0");
    await context.store.remove();

    // Only the record lists which of iptables-nft's tables up made it create.
    await cleanup(testContext(system, testConfig("iptables-nft"), context.store));
    const state = system.render();
    expect(state).not.toContain("SPLITROUTE");
    for (const base of ["iptables-nft", "ip6tables-nft"]) {
      expect(state).toContain(`nft: ${base} created its mangle table, with base chains: OUTPUT PREROUTING`);
      expect(state).toContain(`nft: ${base} created its nat table, with base chains: POSTROUTING`);
    }
  });

  test("existing nat table keeps its chains", async () => {
    const system = hostWith("iptables-nft");
    system.setUp(["iptables-nft-restore", "--noflush"], "*nat\n-A PREROUTING -m addrtype --dst-type LOCAL -j RETURN\nCOMMIT\n");
    const context = testContext(system, testConfig("iptables-nft", { bypass: [SSH, NOBODY] }));
    const before = system.render();
    await up(context, "tun0");
    expect((await context.store.read())?.createdNat).toEqual([
      { family: 4, table: false, chains: ["POSTROUTING"] },
      { family: 6, table: true, chains: [] },
    ]);
    await down(context, "tun0");
    const commands = system.commands.map((argv) => argv.join(" "));
    expect(commands).toContain("nft delete chain ip nat POSTROUTING");
    expect(commands).not.toContain("nft delete table ip nat");
    expect(system.render()).toBe(before);
  });

  test("nat chain added by later up", async () => {
    const system = hostWith("iptables-nft");
    const store = new MemoryStateStore();
    const before = system.render();
    await up(testContext(system, testConfig("iptables-nft"), store), "tun0");
    expect((await store.read())?.createdNat).toBeUndefined();

    const context = testContext(system, testConfig("iptables-nft", { bypass: [SSH, NOBODY] }), store);
    await up(context, "tun1");
    expect((await store.read())?.createdNat).toHaveLength(2);
    await down(context, "tun0");
    await down(context, "tun1");
    expect(system.render()).toBe(before);
  });

  test("state without createdNat still removes", async () => {
    const system = hostWith("iptables-nft");
    const context = testContext(system, testConfig("iptables-nft", { bypass: [SSH, NOBODY] }));
    await up(context, "tun0");
    // A state file written before the nat chain existed has no createdNat.
    const { createdNat: _, ...older } = (await context.store.read())!;
    await context.store.write(older);

    await down(context, "tun0");
    expect(await context.store.read()).toBeUndefined();
    expect(system.render()).not.toContain("SPLITROUTE");
    // Without the record, down cannot tell whether the nat table was there before.
    expect(system.render()).toContain("nft: iptables-nft created its nat table");
  });
});

describe("source nat and legacy tables", () => {
  test("inbound only leaves nat unloaded", async () => {
    const system = hostWith("iptables-legacy");
    const context = testContext(system, testConfig("iptables-legacy"));
    await up(context, "tun0");
    await down(context, "tun0");
    expect([...system.iptables.legacyTables].sort()).toEqual(["ip6tables-legacy mangle", "iptables-legacy mangle"]);
    expect(system.commands.some((argv) => argv.join(" ").endsWith("-save -t nat"))).toBe(false);
  });

  test("output selection loads nat", async () => {
    const system = hostWith("iptables-legacy");
    await up(testContext(system, testConfig("iptables-legacy", { bypass: [NOBODY] })), "tun0");
    expect(await system.readText("/proc/net/ip_tables_names")).toBe("mangle\nnat\n");
  });
});
