// Integration: the uid and destination selectors against the real kernel, in
// a throwaway namespace whose default routes lead into a tun device that no
// process reads. A process of the selected user, and any process talking to
// a selected destination, must reach the peer through the uplink with the
// uplink's address, while root's other traffic goes into the tunnel. Needs
// root.

import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { inNamespace, runInNamespace } from "../../src/lab/namespaces.js";
import { startListener } from "../../src/lab/probe.js";
import type { LabProcess } from "../../src/lab/processes.js";
import { ADDRESSES, createTestHost, type TestHost } from "./host.js";

const isRoot = process.getuid?.() === 0;
const SKIP_REASON = "needs root to create network namespaces";
if (!isRoot) {
  console.warn(`Skipping test/netns/selectors.test.ts: it ${SKIP_REASON}.`);
}

const BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"] as const;

/**
 * An IPv6 address on tun0. Source address selection prefers an address of
 * the outgoing interface, so IPv6 sockets take this one as IPv4 sockets take
 * tun0's 198.18.0.2, and the source NAT shows in both families.
 */
const TUNNEL_V6 = "fd00:18::2";

/** A second address on the peer that only the destination selector selects. */
const OFFICE = { v4: "198.51.100.10", v6: "2001:db8:4::10" } as const;
const PEER_PORT = 8080;
const TIMEOUT_MS = 2_500;

const CONFIG = (backend: string) => `[firewall]
backend = ${backend}

[bypass.ssh]
protocol = tcp
local_port = 22

[bypass.nobody]
uid = nobody

[bypass.office]
destination = ${OFFICE.v4} 2001:db8:4::/48
`;

describe.skipIf(!isRoot).each(BACKENDS)(`selectors with %s (${SKIP_REASON})`, (backend) => {
  let host: TestHost;
  let config: string;
  let before: string;
  const processes: LabProcess[] = [];

  /** Connects from the host to the peer's port and returns the source address the peer saw. */
  async function connect(address: string, asNobody: boolean) {
    const program = join(host.dir, "probe.mjs");
    const probe = [process.execPath, program, "connect", address, String(PEER_PORT), String(TIMEOUT_MS)];
    const user = asNobody ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    const [file, ...args] = inNamespace(host.host, [...user, ...probe]);
    const result = await execa(file, args, { reject: false, stdin: "ignore", timeout: TIMEOUT_MS + 10_000 });
    return result.exitCode === 0 ? { connected: true, line: result.stdout.trim() } : { connected: false, reason: result.stderr.trim() };
  }

  beforeAll(async () => {
    host = await createTestHost();
    // The probe program must be readable by nobody; the folder holds no secrets.
    await chmod(host.dir, 0o755);
    config = join(host.dir, "splitroute.conf");
    await writeFile(config, CONFIG(backend), { mode: 0o644 });
    await runInNamespace(host.peer, ["ip", "addr", "add", `${OFFICE.v4}/32`, "dev", "lo"]);
    await runInNamespace(host.peer, ["ip", "addr", "add", `${OFFICE.v6}/128`, "dev", "lo"]);
    await host.run(["ip", "addr", "add", `${TUNNEL_V6}/64`, "dev", "tun0", "nodad"]);
    await startListener(
      { label: "peer listener", namespace: host.peer, programPath: join(host.dir, "probe.mjs"), mode: "listen-peer", host: "::", port: PEER_PORT },
      (listener) => processes.push(listener),
    );
    await host.takeDefaultRoute();
    before = await host.state();
  });

  afterAll(async () => {
    for (const listener of processes) {
      await listener.stop().catch(() => undefined);
    }
    await host?.destroy();
  });

  it("nobody fails without splitroute", async () => {
    expect(await connect(ADDRESSES.remote.v4, true)).toMatchObject({ connected: false });
  });

  it("up succeeds", async () => {
    const result = await host.splitroute(["up", "--dev", "tun0", "--config", config]);
    expect(result.stderr).not.toContain("error");
    expect(result.stderr).not.toContain("may not work");
    expect(result.exitCode).toBe(0);
  });

  // The socket took tun0's address, and the peer would route replies to it
  // back to the host, which a real network would not do. So the uplink's
  // address here shows that the source NAT ran.
  it("nobody reaches peer IPv4", async () => {
    expect(await connect(ADDRESSES.remote.v4, true)).toEqual({ connected: true, line: ADDRESSES.host.v4 });
  });

  it("nobody reaches peer IPv6", async () => {
    expect(await connect(ADDRESSES.remote.v6, true)).toEqual({ connected: true, line: ADDRESSES.host.v6 });
  });

  it("root still uses tunnel", async () => {
    expect(await connect(ADDRESSES.remote.v4, false)).toMatchObject({ connected: false });
    expect(await connect(ADDRESSES.remote.v6, false)).toMatchObject({ connected: false });
  });

  it("root reaches selected destination", async () => {
    expect(await connect(OFFICE.v4, false)).toEqual({ connected: true, line: ADDRESSES.host.v4 });
    expect(await connect(OFFICE.v6, false)).toEqual({ connected: true, line: ADDRESSES.host.v6 });
  });

  it("inbound ssh still works", async () => {
    expect(await host.connectInbound(4)).toMatchObject({ connected: true, line: "SSH-2.0-test" });
  });

  it("down restores the start", async () => {
    const result = await host.splitroute(["down", "--dev", "tun0", "--config", config]);
    expect(result.exitCode).toBe(0);
    expect(await host.state()).toBe(before);
    expect(await connect(ADDRESSES.remote.v4, true)).toMatchObject({ connected: false });
  });
});

