import { describe, expect, test } from "vitest";

import { parseFlow } from "../../src/commands/explain.js";
import { ConfigError } from "../../src/errors.js";

describe("parseFlow", () => {
  test("reads an inbound IPv4 flow", () => {
    expect(parseFlow(["tcp", "203.0.113.5:51000", "->", "192.0.2.10:22", "in", "eth0"])).toEqual({
      protocol: "tcp",
      source: { address: "203.0.113.5", port: 51000, family: 4 },
      destination: { address: "192.0.2.10", port: 22, family: 4 },
      inbound: "eth0",
      family: 4,
    });
  });

  test("reads an outgoing IPv6 flow", () => {
    const flow = parseFlow(["udp", "[2001:db8:1::2]:5000", "to", "[2001:db8:3::10]:53"]);
    expect(flow.family).toBe(6);
    expect(flow.inbound).toBeUndefined();
    expect(flow.destination).toEqual({ address: "2001:db8:3::10", port: 53, family: 6 });
  });

  test.each([
    [["icmp", "192.0.2.1:1", "->", "192.0.2.2:2"]],
    [["tcp", "192.0.2.1:1", "=>", "192.0.2.2:2"]],
    [["tcp", "192.0.2.1:0", "->", "192.0.2.2:2"]],
    [["tcp", "192.0.2.1:1", "->", "[2001:db8::1]:2"]],
    [["tcp", "192.0.2.1:1", "->", "192.0.2.2:2", "in", "eth0;reboot"]],
    [["tcp", "192.0.2.1:1", "->", "192.0.2.2:2", "on", "eth0"]],
  ])("rejects %j", (words) => {
    expect(() => parseFlow(words)).toThrow(ConfigError);
  });
});

describe("explain with selectors", () => {
  test("finds an outgoing destination section", async () => {
    const { explain } = await import("../../src/commands/explain.js");
    const { testConfig, testContext, vpnHost } = await import("../fake/host.js");
    const { up } = await import("../../src/commands/up.js");
    const system = vpnHost();
    const config = testConfig("nftables", {
      bypass: [
        { name: "ssh", protocol: "tcp", localPort: 22 },
        { name: "office", destination: ["198.51.100.0/24"] },
        { name: "backup", protocol: "tcp", remotePort: 22, uid: 65534 },
      ],
    });
    const context = testContext(system, config);
    await up(context, "tun0");

    const office = await explain(context, parseFlow(["tcp", "192.0.2.10:40000", "->", "198.51.100.7:443"]));
    expect(office).toContain("selected by [bypass.office]");
    const backup = await explain(context, parseFlow(["tcp", "192.0.2.10:40000", "->", "203.0.113.9:22"]));
    expect(backup).toContain("selected by [bypass.backup]");
    expect(backup).toContain("if it is sent by uid 65534");
    const other = await explain(context, parseFlow(["tcp", "192.0.2.10:40000", "->", "203.0.113.9:443"]));
    expect(other).toContain("no [bypass.*] section selects it");
  });
});

describe("explain input checks", () => {
  test("unknown inbound interface rejected", async () => {
    const { explain } = await import("../../src/commands/explain.js");
    const { testConfig, testContext, vpnHost } = await import("../fake/host.js");
    const context = testContext(vpnHost(), testConfig("nftables"));
    await expect(explain(context, parseFlow(["tcp", "203.0.113.5:51000", "to", "192.0.2.10:22", "in", "eth9"]))).rejects.toThrow(
      "interface eth9 does not exist in this network namespace",
    );
  });
});
