// End to end: a real OpenVPN client in the lab restarts (SIGUSR1, ping-restart,
// with and without persist-tun and up-restart) or is killed, while running
// splitroute's hooks. Whatever OpenVPN runs on the way, the bypass must be in
// place exactly once after the reconnection, and stopping the client must
// leave its namespace as it was before the first start. Needs root.

import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createLab, OPENVPN_READY_MESSAGE, type ConnectResult, type Lab } from "../../src/lab/lab.js";
import { clientStatus, HOOKS, removeLeftoverBypass, REPO } from "./support.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces and run OpenVPN";
if (!isRoot) {
  console.warn(`Skipping test/e2e/openvpn-restarts.test.ts: it ${SKIP_REASON}.`);
}

const FAMILIES = [4, 6] as const;

// The client's ping-restart counts only packets from the server, and an idle
// server sends none unless it pings too.
const SERVER_CONFIG = ["ping 1"];
const PING_RESTART = ["ping 1", "ping-restart 3"];

interface Scenario {
  name: string;
  trigger: "SIGUSR1" | "ping-restart";
  extraConfig: string[];
  /**
   * The down run OpenVPN makes during the restart, as "down DEVICE LAST-ARGUMENT".
   * A ping-restart repeats while the server stays silent, and OpenVPN then
   * repeats this run too when it kept the tunnel device.
   */
  down?: string;
  /** The single up run that follows, in the same form. */
  up?: string;
}

// Observed with OpenVPN 2.6.14. Without persist-tun, OpenVPN closes the tunnel
// device, runs down with "init", and later runs up with "init" for the new
// device, with or without up-restart. With persist-tun it keeps the device
// and its routes and runs no script, unless up-restart is set, which makes it
// run down and up with "restart".
const SCENARIOS: Scenario[] = [
  { name: "SIGUSR1 without persist-tun", trigger: "SIGUSR1", extraConfig: [], down: "down tun0 init", up: "up tun0 init" },
  { name: "SIGUSR1 with persist-tun", trigger: "SIGUSR1", extraConfig: ["persist-tun"] },
  { name: "SIGUSR1 with up-restart only", trigger: "SIGUSR1", extraConfig: ["up-restart"], down: "down tun0 init", up: "up tun0 init" },
  {
    name: "SIGUSR1 with persist-tun and up-restart",
    trigger: "SIGUSR1",
    extraConfig: ["persist-tun", "up-restart"],
    down: "down tun0 restart",
    up: "up tun0 restart",
  },
  { name: "ping-restart without persist-tun", trigger: "ping-restart", extraConfig: PING_RESTART, down: "down tun0 init", up: "up tun0 init" },
  { name: "ping-restart with persist-tun", trigger: "ping-restart", extraConfig: [...PING_RESTART, "persist-tun"] },
  {
    name: "ping-restart with persist-tun and up-restart",
    trigger: "ping-restart",
    extraConfig: [...PING_RESTART, "persist-tun", "up-restart"],
    down: "down tun0 restart",
    up: "up tun0 restart",
  },
];

async function runInClient(lab: Lab, argv: readonly string[]): Promise<string> {
  const result = await execa("ip", ["netns", "exec", lab.names.client, ...argv]);
  return result.stdout;
}

/** Counts the client's rules that look up splitroute's table 2. */
async function splitrouteRuleCount(lab: Lab, family: 4 | 6): Promise<number> {
  const rules = JSON.parse(await runInClient(lab, ["ip", "-N", "-j", `-${family}`, "rule", "show"])) as Array<{ table?: string }>;
  return rules.filter((rule) => String(rule.table) === "2").length;
}

/** Returns the client's nftables tables named "splitroute", as "FAMILY NAME". */
async function splitrouteNftTables(lab: Lab): Promise<string[]> {
  const output = JSON.parse(await runInClient(lab, ["nft", "-j", "list", "tables"])) as { nftables: Array<{ table?: { family: string; name: string } }> };
  return output.nftables.flatMap((entry) => (entry.table?.name === "splitroute" ? [`${entry.table.family} ${entry.table.name}`] : []));
}

async function splitrouteNftRuleset(lab: Lab): Promise<string> {
  return runInClient(lab, ["nft", "list", "table", "inet", "splitroute"]);
}

/**
 * Returns the hook runs OpenVPN logged, as "SCRIPT DEVICE LAST-ARGUMENT". At
 * verb 3 OpenVPN logs each script's command line before running it.
 */
function hookRuns(log: string): string[] {
  const prefix = `${join(REPO, "hooks")}/`;
  const runs: string[] = [];
  for (const line of log.split("\n")) {
    const start = line.indexOf(prefix);
    if (start < 0) {
      continue;
    }
    const [script, device, ...rest] = line.slice(start + prefix.length).trim().split(" ");
    runs.push(`${script} ${device} ${rest.at(-1)}`);
  }
  return runs;
}

// Passed as [name, scenario], because vitest shortens a $name longer than 40 characters in titles.
const SCENARIO_ROWS = SCENARIOS.map((scenario) => [scenario.name, scenario] as const);

describe.skipIf(!isRoot).each(SCENARIO_ROWS)(`OpenVPN restart, %s (${SKIP_REASON})`, (_name, scenario) => {
  let lab: Lab;
  let stateBefore: string;
  let rulesetAfterStart: string;
  let restartLog: string;
  const duringOutage = new Map<4 | 6, ConnectResult>();

  beforeAll(async () => {
    lab = await createLab();
    await lab.startVpnServer({ extraConfig: SERVER_CONFIG });
    stateBefore = await lab.clientState();
    await lab.startVpnClient({ hooks: HOOKS, extraConfig: scenario.extraConfig });
    rulesetAfterStart = await splitrouteNftRuleset(lab);

    const offset = await lab.clientLogOffset();
    if (scenario.trigger === "SIGUSR1") {
      lab.signalVpnClient("SIGUSR1");
    } else {
      await lab.blockVpnServer();
      // OpenVPN logs this line after any down script has finished, so the
      // probes below see the state that lasts until the server is unblocked.
      await lab.waitForClientLog("process restarting", offset);
      for (const family of FAMILIES) {
        duringOutage.set(family, await lab.probeInbound(family));
      }
      await lab.unblockVpnServer();
    }
    const ready = await lab.waitForClientLog(OPENVPN_READY_MESSAGE, offset);
    restartLog = (await lab.clientLog()).slice(offset, ready);
  });

  afterAll(async () => {
    if (lab === undefined) {
      return;
    }
    try {
      await removeLeftoverBypass(lab);
    } finally {
      await lab.destroy();
    }
  });

  it("runs up at most once", () => {
    expect(hookRuns(restartLog).filter((run) => run.startsWith("up "))).toEqual(scenario.up === undefined ? [] : [scenario.up]);
  });

  it("runs down with the expected argument", () => {
    const downs = hookRuns(restartLog).filter((run) => run.startsWith("down "));
    expect(new Set(downs)).toEqual(new Set(scenario.down === undefined ? [] : [scenario.down]));
    if (scenario.trigger === "SIGUSR1") {
      expect(downs.length).toBe(scenario.down === undefined ? 0 : 1);
    }
  });

  it.runIf(scenario.up !== undefined)("runs up after the last down", () => {
    expect(hookRuns(restartLog).at(-1)).toBe(scenario.up);
  });

  // With persist-tun and up-restart, OpenVPN runs down with "restart" but
  // keeps its routes into tun0, so down must keep the bypass through the outage.
  it.runIf(scenario.trigger === "ping-restart").each(FAMILIES)("keeps inbound IPv%i during the outage", (family) => {
    expect(duringOutage.get(family)).toMatchObject({ connected: true });
  });

  it.each(FAMILIES)("accepts inbound IPv%i after the restart", async (family) => {
    expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
  });

  it("reports one tunnel without drift", async () => {
    const report = await clientStatus(lab);
    expect(report.state?.tunnels).toEqual(["tun0"]);
    expect(report.drift).toEqual([]);
  });

  it.each(FAMILIES)("keeps one IPv%i rule", async (family) => {
    expect(await splitrouteRuleCount(lab, family)).toBe(1);
  });

  it("keeps one nftables table", async () => {
    expect(await splitrouteNftTables(lab)).toEqual(["inet splitroute"]);
    expect(await splitrouteNftRuleset(lab)).toBe(rulesetAfterStart);
  });

  it("restores the client namespace on stop", async () => {
    await lab.stopVpnClient();
    expect(await lab.clientState()).toBe(stateBefore);
    expect((await clientStatus(lab)).installed).toBe(false);
  });
});

describe.skipIf(!isRoot)(`OpenVPN client killed with SIGKILL (${SKIP_REASON})`, () => {
  let lab: Lab;
  let stateBefore: string;

  beforeAll(async () => {
    lab = await createLab();
    await lab.startVpnServer();
    stateBefore = await lab.clientState();
    await lab.startVpnClient({ hooks: HOOKS });
  });

  afterAll(async () => {
    if (lab === undefined) {
      return;
    }
    try {
      await removeLeftoverBypass(lab);
    } finally {
      await lab.destroy();
    }
  });

  it("leaves the bypass after the kill", async () => {
    await lab.killVpnClient();
    expect(await lab.clientLog()).not.toContain(`${HOOKS.down} `);
    const report = await clientStatus(lab);
    expect(report.installed).toBe(true);
    expect(report.state?.tunnels).toEqual(["tun0"]);
  });

  it("starts again over the leftover bypass", async () => {
    await lab.startVpnClient({ hooks: HOOKS });
    const report = await clientStatus(lab);
    expect(report.state?.tunnels).toEqual(["tun0"]);
    expect(report.drift).toEqual([]);
  });

  it.each(FAMILIES)("accepts inbound IPv%i after the new start", async (family) => {
    expect(await lab.probeInbound(family)).toMatchObject({ connected: true });
  });

  it.each(FAMILIES)("keeps one IPv%i rule", async (family) => {
    expect(await splitrouteRuleCount(lab, family)).toBe(1);
  });

  it("keeps one nftables table", async () => {
    expect(await splitrouteNftTables(lab)).toEqual(["inet splitroute"]);
  });

  it("restores the client namespace on stop", async () => {
    await lab.stopVpnClient();
    expect(await lab.clientState()).toBe(stateBefore);
    expect((await clientStatus(lab)).installed).toBe(false);
  });
});
