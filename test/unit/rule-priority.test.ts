import { describe, expect, test } from "vitest";

import { down } from "../../src/commands/down.js";
import { up } from "../../src/commands/up.js";
import { chooseRulePriority, type ObservedRule } from "../../src/rule.js";
import { testConfig, testContext, vpnHost } from "../fake/host.js";
import type { FakeSystem } from "../fake/system.js";

// What `ip -N -j rule show` prints for wg-quick's two rules.
function wgQuickRules(priority: number): ObservedRule[] {
  return [
    { priority: priority - 1, src: "all", table: "254", suppress_prefixlen: 0 },
    { priority, not: null, src: "all", fwmark: "0xca6c", table: "51820" },
  ];
}

/** Adds wg-quick's rules to both families, sorted the way the kernel keeps them. */
function addWgQuickRules(system: FakeSystem, priority: number): void {
  for (const family of [4, 6] as const) {
    system.ip.rules[family].push(...(wgQuickRules(priority) as typeof system.ip.rules[4]));
    system.ip.rules[family].sort((a, b) => Number(a.priority) - Number(b.priority));
  }
}

describe("chooseRulePriority", () => {
  test("keeps configured priority when alone", () => {
    expect(chooseRulePriority(1000, [{ priority: 0, src: "all", table: "255" }])).toBe(1000);
  });

  test("keeps priority below wg-quick's usual rules", () => {
    expect(chooseRulePriority(1000, wgQuickRules(32765))).toBe(1000);
  });

  test("moves below wg-quick rules placed first", () => {
    expect(chooseRulePriority(1000, wgQuickRules(999))).toBe(997);
  });

  test("ignores other foreign rules", () => {
    expect(chooseRulePriority(1000, [{ priority: 500, src: "all", table: "100" }])).toBe(1000);
  });

  test("rejects when no priority is left", () => {
    expect(() => chooseRulePriority(1000, wgQuickRules(2))).toThrow(/no priority below them/);
  });
});

describe("up next to wg-quick", () => {
  test("moves the rule after wg-quick came up", async () => {
    const system = vpnHost();
    const context = testContext(system, testConfig("nftables"));
    const before = system.render();

    await up(context, "tun0");
    addWgQuickRules(system, 999);
    await up(context, "wg0");

    const ours = system.ip.rules[4].filter((rule) => rule.table === "2");
    expect(ours.map((rule) => rule.priority)).toEqual([997]);
    expect((await context.store.read())?.priority).toBe(997);

    await down(context, "wg0");
    await down(context, "tun0");
    for (const family of [4, 6] as const) {
      system.ip.rules[family] = system.ip.rules[family].filter((rule) => Number(rule.table) < 51820 && !("suppress_prefixlen" in rule));
    }
    expect(system.render()).toBe(before);
  });

  test("keeps the rule when wg-quick came first", async () => {
    const system = vpnHost();
    addWgQuickRules(system, 32765);
    const context = testContext(system, testConfig("nftables"));
    await up(context, "wg0");
    expect(system.ip.rules[6].filter((rule) => rule.table === "2").map((rule) => rule.priority)).toEqual([1000]);
  });
});
