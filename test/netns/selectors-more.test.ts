// Integration: the remote_port, source and interface selectors against the
// real kernel, in the test host of host.ts, whose default routes lead into a
// tun device that no process reads. Before up, the selected connections are
// lost in the tunnel. After up they reach the peer through the uplink while
// the others are still lost. down must leave the host as it was before up,
// and the selected connections are lost again. Needs root.

import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { addNamespace, deleteNamespace, inNamespace, runInNamespace, setSysctls } from "../../src/lab/namespaces.js";
import { startListener } from "../../src/lab/probe.js";
import { connectClient, LOST } from "./client.js";
import { ADDRESSES, type TestHost } from "./host.js";
import { BACKENDS, useSelectorHost, type Defer } from "./selector-setup.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/selectors-more.test.ts: it ${SKIP_REASON}.`);
}

const FAMILIES = [4, 6] as const;
type Family = (typeof FAMILIES)[number];
const familyKey = (family: Family) => (family === 4 ? "v4" : "v6");

/** Starts a listener that sends each client its source address, and defers stopping it. */
async function listenForPeers(namespace: string, host: TestHost, port: number, defer: Defer): Promise<void> {
  await startListener(
    { label: `listener on port ${port}`, namespace, programPath: join(host.dir, "probe.mjs"), mode: "listen-peer", host: "::", port },
    (listener) => defer(() => listener.stop()),
  );
}

/** The peer's source ports: the one that bypass.client-port selects, and one it does not. */
const CLIENT_PORT = { selected: 40_000, other: 40_001 } as const;

/**
 * The host's listening ports, one for each phase of the remote_port suite.
 * Every phase connects from the same address and source port. A port of its
 * own keeps each connection apart from the kernel's state for an earlier
 * one, such as a half-open connection after a lost reply or a TIME_WAIT socket.
 */
const HOST_PORT = { before: 8081, up: 8082, after: 8083 } as const;

describe.skipIf(!isRoot).each(BACKENDS)(`remote_port selector with %s (${SKIP_REASON})`, (backend) => {
  const section = `[bypass.client-port]\nprotocol = tcp\nremote_port = ${CLIENT_PORT.selected}\n`;
  const lab = useSelectorHost(backend, section, async (host, defer) => {
    for (const port of Object.values(HOST_PORT)) {
      await listenForPeers(host.host, host, port, defer);
    }
  });

  /** Connects from the peer's remote address and `sourcePort` to the host's `port`. */
  function connectFrom(family: Family, sourcePort: number, port: number) {
    return connectClient({
      enter: inNamespace(lab.host.peer, []),
      host: ADDRESSES.host[familyKey(family)],
      port,
      localAddress: ADDRESSES.remote[familyKey(family)],
      localPort: sourcePort,
    });
  }

  it("selected port fails without splitroute", async () => {
    const [v4, v6] = await Promise.all(FAMILIES.map((family) => connectFrom(family, CLIENT_PORT.selected, HOST_PORT.before)));
    expect(v4).toEqual(LOST);
    expect(v6).toEqual(LOST);
  });

  it("up succeeds", async () => {
    const result = await lab.host.splitroute(["up", "--dev", "tun0", "--config", lab.config]);
    expect(result.stderr).not.toContain("error");
    expect(result.exitCode).toBe(0);
  });

  it("selected port connects over IPv4", async () => {
    expect(await connectFrom(4, CLIENT_PORT.selected, HOST_PORT.up)).toEqual({ connected: true, line: ADDRESSES.remote.v4 });
  });

  it("selected port connects over IPv6", async () => {
    expect(await connectFrom(6, CLIENT_PORT.selected, HOST_PORT.up)).toEqual({ connected: true, line: ADDRESSES.remote.v6 });
  });

  it("other port still uses tunnel", async () => {
    const [v4, v6] = await Promise.all(FAMILIES.map((family) => connectFrom(family, CLIENT_PORT.other, HOST_PORT.up)));
    expect(v4).toEqual(LOST);
    expect(v6).toEqual(LOST);
  });

  it("down restores the start", async () => {
    const result = await lab.host.splitroute(["down", "--dev", "tun0", "--config", lab.config]);
    expect(result.exitCode).toBe(0);
    expect(await lab.host.state()).toBe(lab.before);
    expect(await connectFrom(4, CLIENT_PORT.selected, HOST_PORT.after)).toEqual(LOST);
  });
});

/** Addresses on the peer inside the networks that bypass.partners selects. */
const PARTNER = { v4: "203.0.113.130", v6: "2001:db8:5::10" } as const;

describe.skipIf(!isRoot).each(BACKENDS)(`source selector with %s (${SKIP_REASON})`, (backend) => {
  const section = "[bypass.partners]\nsource = 203.0.113.128/25 2001:db8:5::/48\n";
  const lab = useSelectorHost(backend, section, async (host) => {
    await runInNamespace(host.peer, ["ip", "addr", "add", `${PARTNER.v4}/32`, "dev", "lo"]);
    await runInNamespace(host.peer, ["ip", "addr", "add", `${PARTNER.v6}/128`, "dev", "lo"]);
  });

  /**
   * Connects from `address` on the peer to the host's port 22, where host.ts
   * listens. No section selects port 22 here, because the file replaces the
   * built-in bypass.ssh.
   */
  function connectFrom(family: Family, address: { v4: string; v6: string }) {
    return connectClient({ enter: inNamespace(lab.host.peer, []), host: ADDRESSES.host[familyKey(family)], port: 22, localAddress: address[familyKey(family)] });
  }

  it("selected network fails without splitroute", async () => {
    const [v4, v6] = await Promise.all(FAMILIES.map((family) => connectFrom(family, PARTNER)));
    expect(v4).toEqual(LOST);
    expect(v6).toEqual(LOST);
  });

  it("up succeeds", async () => {
    const result = await lab.host.splitroute(["up", "--dev", "tun0", "--config", lab.config]);
    expect(result.stderr).not.toContain("error");
    expect(result.exitCode).toBe(0);
  });

  it("selected network connects over IPv4", async () => {
    expect(await connectFrom(4, PARTNER)).toEqual({ connected: true, line: "SSH-2.0-test" });
  });

  it("selected network connects over IPv6", async () => {
    expect(await connectFrom(6, PARTNER)).toEqual({ connected: true, line: "SSH-2.0-test" });
  });

  it("other network still uses tunnel", async () => {
    const [v4, v6] = await Promise.all(FAMILIES.map((family) => connectFrom(family, ADDRESSES.remote)));
    expect(v4).toEqual(LOST);
    expect(v6).toEqual(LOST);
  });

  it("down restores the start", async () => {
    const result = await lab.host.splitroute(["down", "--dev", "tun0", "--config", lab.config]);
    expect(result.exitCode).toBe(0);
    expect(await lab.host.state()).toBe(lab.before);
    expect(await connectFrom(4, PARTNER)).toEqual(LOST);
  });
});

/**
 * The LAN behind the host's lan0. 198.19.0.0/24 lies in the benchmarking
 * range 198.18.0.0/15 next to tun0's 198.18.0.0/24, and fd00:1::/64 is a
 * unique local prefix.
 */
const LAN = {
  gateway: { v4: "198.19.0.1", v6: "fd00:1::1" },
  client: { v4: "198.19.0.10", v6: "fd00:1::10" },
} as const;
const PEER_PORT = 8080;

/** Adds a namespace with one LAN host behind the host's lan0, and lets the host forward. */
async function addLan(host: TestHost, defer: Defer): Promise<string> {
  const lan = host.host.replace(/-host$/, "-lan");
  await addNamespace(lan);
  defer(() => deleteNamespace(lan));

  await setSysctls(lan, [["net.ipv6.conf.all.accept_dad", 0], ["net.ipv6.conf.default.accept_dad", 0]]);
  await runInNamespace(host.host, ["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", lan]);
  await runInNamespace(host.host, ["ip", "link", "set", "lan0", "up"]);
  await runInNamespace(host.host, ["ip", "addr", "add", `${LAN.gateway.v4}/24`, "dev", "lan0"]);
  await runInNamespace(host.host, ["ip", "addr", "add", `${LAN.gateway.v6}/64`, "dev", "lan0", "nodad"]);
  await setSysctls(host.host, [["net.ipv4.ip_forward", 1], ["net.ipv6.conf.all.forwarding", 1]]);

  await runInNamespace(lan, ["ip", "link", "set", "eth0", "up"]);
  await runInNamespace(lan, ["ip", "addr", "add", `${LAN.client.v4}/24`, "dev", "eth0"]);
  await runInNamespace(lan, ["ip", "addr", "add", `${LAN.client.v6}/64`, "dev", "eth0", "nodad"]);
  await runInNamespace(lan, ["ip", "route", "add", "default", "via", LAN.gateway.v4]);
  await runInNamespace(lan, ["ip", "-6", "route", "add", "default", "via", LAN.gateway.v6]);
  // The peer needs no route of its own back to the LAN, because its default
  // routes lead to the host.
  return lan;
}

describe.skipIf(!isRoot).each(BACKENDS)(`interface selector with %s (${SKIP_REASON})`, (backend) => {
  let lan: string;
  const lab = useSelectorHost(backend, "[bypass.lan]\ninterface = lan0\n", async (host, defer) => {
    lan = await addLan(host, defer);
    await listenForPeers(host.peer, host, PEER_PORT, defer);
  });

  /** Connects from `namespace` to the peer's listener on its remote address. */
  function connectToRemote(namespace: string, family: Family) {
    return connectClient({ enter: inNamespace(namespace, []), host: ADDRESSES.remote[familyKey(family)], port: PEER_PORT });
  }

  it("LAN host fails without splitroute", async () => {
    const [v4, v6] = await Promise.all(FAMILIES.map((family) => connectToRemote(lan, family)));
    expect(v4).toEqual(LOST);
    expect(v6).toEqual(LOST);
  });

  it("up succeeds", async () => {
    const result = await lab.host.splitroute(["up", "--dev", "tun0", "--config", lab.config]);
    expect(result.stderr).not.toContain("error");
    expect(result.exitCode).toBe(0);
  });

  // Forwarded connections keep their source address, since neither backend
  // changes the source of traffic that other hosts send.
  it("LAN host reaches peer IPv4", async () => {
    expect(await connectToRemote(lan, 4)).toEqual({ connected: true, line: LAN.client.v4 });
  });

  it("LAN host reaches peer IPv6", async () => {
    expect(await connectToRemote(lan, 6)).toEqual({ connected: true, line: LAN.client.v6 });
  });

  it("host traffic still uses tunnel", async () => {
    const [v4, v6] = await Promise.all(FAMILIES.map((family) => connectToRemote(lab.host.host, family)));
    expect(v4).toEqual(LOST);
    expect(v6).toEqual(LOST);
  });

  // Inbound connections pass the same prerouting chain as forwarded ones,
  // so this shows that the rule matches on the interface.
  it("uplink inbound still uses tunnel", async () => {
    const connectIn = (family: Family) =>
      connectClient({ enter: inNamespace(lab.host.peer, []), host: ADDRESSES.host[familyKey(family)], port: 22, localAddress: ADDRESSES.remote[familyKey(family)] });
    const [v4, v6] = await Promise.all(FAMILIES.map(connectIn));
    expect(v4).toEqual(LOST);
    expect(v6).toEqual(LOST);
  });

  it("down restores the start", async () => {
    const result = await lab.host.splitroute(["down", "--dev", "tun0", "--config", lab.config]);
    expect(result.exitCode).toBe(0);
    expect(await lab.host.state()).toBe(lab.before);
    expect(await connectToRemote(lan, 4)).toEqual(LOST);
  });
});
