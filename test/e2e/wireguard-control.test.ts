// Control experiment for the WireGuard lab, without splitroute: a full tunnel
// must break inbound connections to the client's own address, so that a hooks
// test that passes proves the hooks fixed them. Also records how wg-quick
// (wireguard-tools 1.0.20210914) behaves where splitroute's hooks depend on
// it: its policy rules, its nftables table, and the hooks' environment. Needs
// root, wireguard-tools and, without the kernel module, wireguard-go.

import { chmod, mkdtemp, readdir, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createLab,
  LAB_ADDRESSES,
  SPLIT_TUNNEL_ALLOWED_IPS,
  WIREGUARD_ADDRESSES,
  type Lab,
} from "../../src/lab/lab.js";
import { runInNamespace } from "../../src/lab/namespaces.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces and run wg-quick";
if (!isRoot) {
  console.warn(`Skipping test/e2e/wireguard-control.test.ts: it ${SKIP_REASON}.`);
}

const FAMILIES = [4, 6] as const;
const key = (family: 4 | 6) => (family === 4 ? "v4" : "v6");

/** wg-quick's fwmark and routing table for a full tunnel: 51820 unless that table already has routes. */
const WG_QUICK_TABLE = 51820;
const WG_QUICK_FWMARK = "0xca6c";

// Records its arguments, whether the interface named by the second argument
// exists, and its environment, to $RECORD_DIR/<first argument>.env. Only
// commands on wg-quick's PATH are used, to show that PATH is set.
const RECORDING_HOOK = `#!/bin/sh
{
  echo "args=$*"
  if ip link show dev "$2" >/dev/null 2>&1; then echo "link=present"; else echo "link=absent"; fi
  env
} > "$RECORD_DIR/$1.env"
`;

function parseEnv(text: string): Map<string, string> {
  const entries = text
    .split("\n")
    .filter((line) => line.includes("="))
    .map((line) => {
      const separator = line.indexOf("=");
      return [line.slice(0, separator), line.slice(separator + 1)] as const;
    });
  return new Map(entries);
}

/** Returns the lines of `after` missing from `before`, and those of `before` missing from `after`. */
function diffLines(before: string, after: string): { added: string[]; removed: string[] } {
  const beforeLines = new Set(before.split("\n"));
  const afterLines = new Set(after.split("\n"));
  return {
    added: [...afterLines].filter((line) => !beforeLines.has(line)),
    removed: [...beforeLines].filter((line) => !afterLines.has(line)),
  };
}

async function inClient(lab: Lab, argv: readonly string[], input?: string): Promise<string> {
  return runInNamespace(lab.names.client, argv, input);
}

async function processesMentioning(text: string): Promise<string[]> {
  const matches: string[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    const commandLine = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (commandLine.includes(text)) {
      matches.push(`${entry}: ${commandLine.replaceAll("\0", " ")}`);
    }
  }
  return matches;
}

describe.skipIf(!isRoot)(`WireGuard lab without hooks (${SKIP_REASON})`, () => {
  let lab: Lab;
  let stateBeforeVpn: string;
  let rulesBeforeVpn: { v4: string; v6: string };

  beforeAll(async () => {
    lab = await createLab();
    stateBeforeVpn = await lab.clientState();
    rulesBeforeVpn = { v4: await inClient(lab, ["ip", "-4", "rule"]), v6: await inClient(lab, ["ip", "-6", "rule"]) };
    await lab.startWireGuardServer();
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  describe("with a full tunnel", () => {
    beforeAll(async () => {
      await lab.startWireGuardClient();
    });

    it("completes the handshake", async () => {
      const output = await inClient(lab, ["wg", "show", lab.wireguardInterface, "latest-handshakes"]);
      const time = Number(output.split("\t")[1]);
      expect(time).toBeGreaterThan(0);
    });

    it.each(FAMILIES)("outbound seen as VPN server over IPv%i", async (family) => {
      expect(await lab.outboundSeenAs(family)).toBe(LAB_ADDRESSES.vpnServer[key(family)]);
    });

    it.each(FAMILIES)("inbound SSH fails over IPv%i", async (family) => {
      const result = await lab.probeInbound(family);
      expect(result.connected).toBe(false);
    });

    it.each(FAMILIES)("tunnel address reachable over IPv%i", async (family) => {
      expect(await lab.connectThroughWireGuard(family)).toBe(true);
    });

    it.each(FAMILIES)("adds policy rules for IPv%i", async (family) => {
      const rules = await inClient(lab, ["ip", `-${family}`, "rule"]);
      expect(rules).toContain(`32764:\tfrom all lookup main suppress_prefixlength 0\n`);
      expect(rules).toContain(`32765:\tnot from all fwmark ${WG_QUICK_FWMARK} lookup ${WG_QUICK_TABLE}\n`);
    });

    it("marks the WireGuard socket", async () => {
      expect(await inClient(lab, ["wg", "show", lab.wireguardInterface, "fwmark"])).toBe(WG_QUICK_FWMARK);
    });

    it.each(["ip", "ip6"])("copies unmasked UDP marks in table %s", async (family) => {
      const table = await inClient(lab, ["nft", "list", "table", family, `wg-quick-${lab.wireguardInterface}`]);
      expect(table).toContain("meta l4proto udp meta mark set ct mark\n");
      expect(table).toContain(`meta l4proto udp meta mark 0x0000ca6c ct mark set meta mark\n`);
    });

    it("sets src_valid_mark for all interfaces", async () => {
      expect(await inClient(lab, ["sysctl", "-n", "net.ipv4.conf.all.src_valid_mark"])).toBe("1");
    });

    it.each(FAMILIES)("routes marked IPv%i replies into the tunnel", async (family) => {
      const output = await inClient(lab, ["ip", `-${family}`, "route", "get", LAB_ADDRESSES.remote[key(family)], "mark", "2"]);
      expect(output).toContain(`dev ${lab.wireguardInterface} table ${WG_QUICK_TABLE}`);
    });
  });

  describe("after the full tunnel stops", () => {
    beforeAll(async () => {
      await lab.stopWireGuardClient();
    });

    // wg-quick down restores rules, routes and nftables, but never resets the
    // src_valid_mark that up set to 1.
    it("client state differs only in src_valid_mark", async () => {
      expect(diffLines(stateBeforeVpn, await lab.clientState())).toEqual({
        added: ["net.ipv4.conf.all.src_valid_mark = 1"],
        removed: ["net.ipv4.conf.all.src_valid_mark = 0"],
      });
    });

    it("deletes the link", async () => {
      await expect(inClient(lab, ["ip", "link", "show", "dev", lab.wireguardInterface])).rejects.toThrow(/does not exist/);
    });

    it("lets wireguard-go exit", async () => {
      expect(await processesMentioning(`wireguard-go ${lab.wireguardInterface}`)).toEqual([]);
    });

    it.each(FAMILIES)("inbound SSH connects again over IPv%i", async (family) => {
      expect(await lab.probeInbound(family)).toEqual({ connected: true, line: "SSH-2.0-lab" });
    });
  });

  describe("with split AllowedIPs", () => {
    beforeAll(async () => {
      await lab.startWireGuardClient({ allowedIps: SPLIT_TUNNEL_ALLOWED_IPS });
    });

    afterAll(async () => {
      await lab.stopWireGuardClient();
    });

    it.each(FAMILIES)("inbound SSH connects over IPv%i", async (family) => {
      expect(await lab.probeInbound(family)).toEqual({ connected: true, line: "SSH-2.0-lab" });
    });

    it.each(FAMILIES)("outbound seen as client over IPv%i", async (family) => {
      expect(await lab.outboundSeenAs(family)).toBe(LAB_ADDRESSES.client[key(family)]);
    });

    it.each(FAMILIES)("tunnel address reachable over IPv%i", async (family) => {
      expect(await lab.connectThroughWireGuard(family)).toBe(true);
    });

    it("adds no rules and no fwmark", async () => {
      expect(await inClient(lab, ["ip", "-4", "rule"])).toBe(rulesBeforeVpn.v4);
      expect(await inClient(lab, ["ip", "-6", "rule"])).toBe(rulesBeforeVpn.v6);
      expect(await inClient(lab, ["wg", "show", lab.wireguardInterface, "fwmark"])).toBe("off");
    });
  });

  describe("with Table = off", () => {
    beforeAll(async () => {
      await lab.startWireGuardClient({ table: "off" });
    });

    afterAll(async () => {
      await lab.stopWireGuardClient();
    });

    it("brings the link up", async () => {
      const links = JSON.parse(await inClient(lab, ["ip", "-j", "link", "show", "dev", lab.wireguardInterface])) as Array<{ flags: string[] }>;
      expect(links[0]?.flags).toContain("UP");
    });

    it.each(FAMILIES)("adds only kernel routes for IPv%i", async (family) => {
      const routes = await inClient(lab, ["ip", `-${family}`, "route", "show", "table", "all", "dev", lab.wireguardInterface]);
      const lines = routes.split("\n").filter((line) => line !== "");
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.filter((line) => !line.includes("proto kernel"))).toEqual([]);
    });

    it("adds no rules", async () => {
      expect(await inClient(lab, ["ip", "-4", "rule"])).toBe(rulesBeforeVpn.v4);
      expect(await inClient(lab, ["ip", "-6", "rule"])).toBe(rulesBeforeVpn.v6);
    });

    it.each(FAMILIES)("outbound seen as client over IPv%i", async (family) => {
      expect(await lab.outboundSeenAs(family)).toBe(LAB_ADDRESSES.client[key(family)]);
    });
  });

  describe("hooks", () => {
    let recordDir: string;
    let hook: string;

    beforeAll(async () => {
      recordDir = await mkdtemp(join(tmpdir(), "splitroute-wg-record-"));
      hook = join(recordDir, "record-hook");
      await writeFile(hook, RECORDING_HOOK);
      await chmod(hook, 0o755);
    });

    afterAll(async () => {
      await rm(recordDir, { recursive: true, force: true });
    });

    describe("that succeed", () => {
      beforeAll(async () => {
        await lab.startWireGuardClient({
          hooks: {
            preUp: [`${hook} preup %i`],
            postUp: [`${hook} postup %i`, `echo "INTERFACE=$INTERFACE" > "$RECORD_DIR/inline.txt"`],
            preDown: [`${hook} predown %i`],
            postDown: [`${hook} postdown %i`],
          },
          env: { RECORD_DIR: recordDir },
        });
        await lab.stopWireGuardClient();
      });

      it.each([
        ["preup", "absent"],
        ["postup", "present"],
        ["predown", "present"],
        ["postdown", "absent"],
      ])("%s sees the link %s", async (phase, link) => {
        const env = parseEnv(await readFile(join(recordDir, `${phase}.env`), "utf8"));
        expect(env.get("args")).toBe(`${phase} ${lab.wireguardInterface}`);
        expect(env.get("link")).toBe(link);
      });

      it("postup gets wg-quick's environment", async () => {
        const env = parseEnv(await readFile(join(recordDir, "postup.env"), "utf8"));
        const wgQuick = await realpath((await execa("sh", ["-c", "command -v wg-quick"])).stdout);
        expect(env.get("PATH")?.startsWith(`${dirname(wgQuick)}:`)).toBe(true);
        expect(env.get("LC_ALL")).toBe("C");
        expect(env.get("RECORD_DIR")).toBe(recordDir);
        expect(env.get("WG_QUICK_USERSPACE_IMPLEMENTATION")).toBe("wireguard-go");
        expect(env.has("dev")).toBe(false);
        expect(env.has("INTERFACE")).toBe(false);
      });

      it("inline hook sees wg-quick's variables", async () => {
        expect(await readFile(join(recordDir, "inline.txt"), "utf8")).toBe(`INTERFACE=${lab.wireguardInterface}\n`);
      });
    });

    describe("with a failing PostUp", () => {
      let startError: unknown;

      beforeAll(async () => {
        await rm(join(recordDir, "postdown.env"), { force: true });
        await rm(join(recordDir, "predown.env"), { force: true });
        await lab
          .startWireGuardClient({
            hooks: {
              postUp: ["exit 3", `${hook} late-postup %i`],
              preDown: [`${hook} predown %i`],
              postDown: [`${hook} postdown %i`],
            },
            env: { RECORD_DIR: recordDir },
          })
          .catch((error: unknown) => {
            startError = error;
          });
      });

      it("rejects the start with the exit code", () => {
        expect(String(startError)).toMatch(/wg-quick up .* exited with code 3/);
      });

      it("deletes the link", async () => {
        await expect(inClient(lab, ["ip", "link", "show", "dev", lab.wireguardInterface])).rejects.toThrow(/does not exist/);
      });

      it("removes rules and nftables table", async () => {
        expect(await inClient(lab, ["ip", "-4", "rule"])).toBe(rulesBeforeVpn.v4);
        expect(await inClient(lab, ["ip", "-6", "rule"])).toBe(rulesBeforeVpn.v6);
        expect(await inClient(lab, ["nft", "list", "tables"])).not.toContain("wg-quick-");
      });

      it("skips later hooks and the down hooks", async () => {
        const files = await readdir(recordDir);
        expect(files).not.toContain("late-postup.env");
        expect(files).not.toContain("predown.env");
        expect(files).not.toContain("postdown.env");
      });

      it("leaves no wireguard-go", async () => {
        expect(await processesMentioning(`wireguard-go ${lab.wireguardInterface}`)).toEqual([]);
      });
    });
  });

  // A hand-made stand-in for splitroute's bypass: table 2 contains a copy of
  // the main table, a rule sends packets with mark 0x2 there, and nftables
  // gives that mark to connections arriving on port 22 outside the tunnel.
  describe("with a bypass for port 22", () => {
    const MARK_TABLE = "splitroute_lab_probe_mark";

    async function addBypassRules(): Promise<void> {
      for (const family of FAMILIES) {
        await inClient(lab, ["ip", `-${family}`, "rule", "add", "fwmark", "0x2/0x2", "lookup", "2", "priority", "1000"]);
      }
    }

    beforeAll(async () => {
      // Taken while no tunnel is up, so the main table contains only eth0's routes.
      for (const family of FAMILIES) {
        const routes = await inClient(lab, ["ip", `-${family}`, "route", "show", "table", "main"]);
        for (const route of routes.split("\n").filter((line) => line.trim() !== "")) {
          await inClient(lab, ["ip", `-${family}`, "route", "add", ...route.trim().split(/\s+/), "table", "2"]);
        }
      }
      const ruleset = [
        `table inet ${MARK_TABLE} {`,
        "  chain prerouting {",
        "    type filter hook prerouting priority mangle; policy accept;",
        `    iifname != "${lab.wireguardInterface}" tcp dport 22 ct state new ct mark set ct mark | 0x2`,
        "  }",
        "  chain output {",
        "    type route hook output priority mangle; policy accept;",
        "    ct mark & 0x2 == 0x2 meta mark set meta mark | 0x2",
        "  }",
        "}",
        "",
      ].join("\n");
      await inClient(lab, ["nft", "-f", "-"], ruleset);
    });

    afterAll(async () => {
      await inClient(lab, ["nft", "delete", "table", "inet", MARK_TABLE]);
      for (const family of FAMILIES) {
        await inClient(lab, ["ip", `-${family}`, "route", "flush", "table", "2"]);
      }
    });

    // The kernel gives a rule added without a priority the priority of the
    // first rule after "local", minus one, so wg-quick's two rules land in
    // front of a rule that exists before `up`.
    describe("added before up", () => {
      beforeAll(async () => {
        await addBypassRules();
        await lab.startWireGuardClient();
      });

      afterAll(async () => {
        await lab.stopWireGuardClient();
        for (const family of FAMILIES) {
          await inClient(lab, ["ip", `-${family}`, "rule", "delete", "priority", "1000"]);
        }
      });

      it.each(FAMILIES)("puts wg-quick's IPv%i rules first", async (family) => {
        const rules = await inClient(lab, ["ip", `-${family}`, "rule"]);
        expect(rules).toContain(
          [
            "998:\tfrom all lookup main suppress_prefixlength 0",
            `999:\tnot from all fwmark ${WG_QUICK_FWMARK} lookup ${WG_QUICK_TABLE}`,
            "1000:\tfrom all fwmark 0x2/0x2 lookup 2",
          ].join("\n"),
        );
      });

      it.each(FAMILIES)("inbound SSH fails over IPv%i", async (family) => {
        expect((await lab.probeInbound(family)).connected).toBe(false);
      });
    });

    // As a PostUp hook would add it: wg-quick's rules then sit at 32764 and
    // 32765, behind priority 1000.
    describe("added after up", () => {
      beforeAll(async () => {
        await lab.startWireGuardClient();
        await addBypassRules();
      });

      afterAll(async () => {
        for (const family of FAMILIES) {
          await inClient(lab, ["ip", `-${family}`, "rule", "delete", "priority", "1000"]);
        }
        await lab.stopWireGuardClient();
      });

      it.each(FAMILIES)("keeps wg-quick's IPv%i rules behind", async (family) => {
        const rules = await inClient(lab, ["ip", `-${family}`, "rule"]);
        expect(rules).toContain(
          [
            "1000:\tfrom all fwmark 0x2/0x2 lookup 2",
            "32764:\tfrom all lookup main suppress_prefixlength 0",
            `32765:\tnot from all fwmark ${WG_QUICK_FWMARK} lookup ${WG_QUICK_TABLE}`,
          ].join("\n"),
        );
      });

      it.each(FAMILIES)("inbound SSH connects over IPv%i", async (family) => {
        expect(await lab.probeInbound(family)).toEqual({ connected: true, line: "SSH-2.0-lab" });
      });

      it.each(FAMILIES)("outbound seen as VPN server over IPv%i", async (family) => {
        expect(await lab.outboundSeenAs(family)).toBe(LAB_ADDRESSES.vpnServer[key(family)]);
      });
    });
  });

  describe("beside OpenVPN", () => {
    beforeAll(async () => {
      await lab.startVpnServer();
      await lab.startVpnClient();
      await lab.startWireGuardClient({ allowedIps: SPLIT_TUNNEL_ALLOWED_IPS });
    });

    afterAll(async () => {
      await lab.stopWireGuardClient();
      await lab.stopVpnClient();
    });

    it.each(FAMILIES)("both tunnels reachable over IPv%i", async (family) => {
      expect(await lab.connectThroughTunnel(family)).toBe(true);
      expect(await lab.connectThroughWireGuard(family)).toBe(true);
    });

    it.each(FAMILIES)("tunnel addresses differ over IPv%i", async (family) => {
      expect(await lab.clientTunnelAddress(family)).not.toBe(WIREGUARD_ADDRESSES.client[key(family)]);
    });
  });

  it("destroy stops a running client", async () => {
    await lab.startWireGuardClient();
    const tempDir = lab.tempDir;
    await lab.destroy();

    const namespaces = (await execa("ip", ["netns", "list"])).stdout;
    for (const name of Object.values(lab.names)) {
      expect(namespaces).not.toContain(name);
    }
    expect(await processesMentioning(lab.wireguardInterface)).toEqual([]);
    expect(await processesMentioning(lab.wireguardServerInterface)).toEqual([]);
    expect(await processesMentioning(tempDir)).toEqual([]);
    const sockets = await readdir("/var/run/wireguard").catch(() => []);
    expect(sockets).not.toContain(`${lab.wireguardInterface}.sock`);
  });
});
