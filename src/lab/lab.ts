// A throwaway network with a real OpenVPN server and client, and a WireGuard
// server and client that can run beside them, built from network namespaces,
// for the end-to-end tests and the demo. See topology.ts for the layout and
// addresses. Requires root, iproute2, nftables, iptables (for clientState),
// procps sysctl, openssl and OpenVPN 2.6, and for WireGuard wireguard-tools
// and, where the kernel has no WireGuard module, wireguard-go.

import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AggregateFailure, withContext } from "../errors.js";
import { createSelfSignedCertificate, type Certificate } from "./certificates.js";
import { deleteNamespace, newNamespacePrefix, runInNamespace, setSysctls } from "./namespaces.js";
import { killOpenVpn, readLog, signalOpenVpn, startOpenVpn, stopOpenVpn, waitForLogText, type OpenVpnInstance } from "./openvpn.js";
import { OPENVPN_PORT, renderClientConfig, renderServerConfig, type ClientHooks } from "./openvpn-config.js";
import { connectAndReadLine, ProbeSession, startListener, writeProbeProgram, type ConnectResult } from "./probe.js";
import type { LabProcess } from "./processes.js";
import { readNamespaceState } from "./state.js";
import { addVpnServerNat, buildNetwork, LAB_ADDRESSES, namespaceNames, TUNNEL_NETWORK, type LabNames } from "./topology.js";
import {
  addWireGuardServerNat,
  deleteWireGuardServerNat,
  generateKeyPair,
  startWgQuick,
  stopAllDaemons,
  stopWgQuick,
  waitForHandshake,
  wireguardInterfaceNames,
  type WireGuardInstance,
} from "./wireguard.js";
import {
  FULL_TUNNEL_ALLOWED_IPS,
  renderClientConfig as renderWireGuardClientConfig,
  renderServerConfig as renderWireGuardServerConfig,
  WIREGUARD_ADDRESSES,
  type KeyPair,
  type WireGuardHooks,
  type WireGuardTable,
} from "./wireguard-config.js";

export { LAB_ADDRESSES, type LabNames } from "./topology.js";
export type { ClientHooks } from "./openvpn-config.js";
export { OPENVPN_PORT } from "./openvpn-config.js";
export { READY_MESSAGE as OPENVPN_READY_MESSAGE } from "./openvpn.js";
export type { ConnectResult } from "./probe.js";
export { ProbeSession } from "./probe.js";
export {
  FULL_TUNNEL_ALLOWED_IPS,
  SPLIT_TUNNEL_ALLOWED_IPS,
  WIREGUARD_ADDRESSES,
  WIREGUARD_NETWORK,
  WIREGUARD_PORT,
  type WireGuardHooks,
  type WireGuardTable,
} from "./wireguard-config.js";

export type AddressFamily = 4 | 6;

/** Banner line of the client's SSH-like listener on port 22. */
export const SSH_BANNER = "SSH-2.0-lab";
export const SSH_PORT = 22;
/** Port of the remote host's listener that replies with the caller's address. */
export const WEB_PORT = 80;
/** How long a probe connection waits for the first line before it counts as failed. */
export const CONNECT_TIMEOUT_MS = 2_500;
/** Default timeout of waitForClientLog(), in milliseconds. */
export const LOG_WAIT_TIMEOUT_MS = 30_000;

// The nftables table that blockVpnServer() adds in the vpn namespace.
const BLOCK_TABLE = "splitroute_lab_block";

export interface VpnClientOptions {
  /** `up` and `down` commands for the client. Without them, OpenVPN runs no scripts. */
  hooks?: ClientHooks;
  /** Environment variables passed to the hooks through `setenv`. */
  setenv?: Readonly<Record<string, string>>;
  /**
   * Lines added at the end of the client config, such as "persist-tun",
   * "up-restart", "ping-restart 3", "user nobody" or a `plugin` line.
   */
  extraConfig?: readonly string[];
}

export interface VpnServerOptions {
  /** Lines added at the end of the server config, such as "ping 1". */
  extraConfig?: readonly string[];
}

export interface WireGuardClientOptions {
  /** The server peer's AllowedIPs, comma-separated. Default FULL_TUNNEL_ALLOWED_IPS ("0.0.0.0/0, ::/0"). */
  allowedIps?: string;
  /** wg-quick's `Table` setting. Default "auto". */
  table?: WireGuardTable;
  /** PreUp, PostUp, PreDown and PostDown lines. Without them, wg-quick runs no hooks. */
  hooks?: WireGuardHooks;
  /**
   * Variables added to wg-quick's environment, which its hooks inherit. The
   * rest of that environment is PATH as systemd sets it for services and
   * WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go.
   */
  env?: Readonly<Record<string, string>>;
  /** Whether the start waits for the first handshake with the server. Default true. */
  waitForHandshake?: boolean;
}

export interface LabOptions {
  /**
   * The client's net.ipv4.conf.{all,default,lo,eth0}.rp_filter: 0 off, 1
   * strict, 2 loose. Default 0, the kernel's own default. systemd's
   * sysctl.d/50-default.conf sets net.ipv4.conf.all.rp_filter = 2.
   */
  rpFilter?: 0 | 1 | 2;
  /** Hooks for every startVpnClient call that does not pass its own. */
  clientHooks?: ClientHooks;
  clientSetenv?: Readonly<Record<string, string>>;
}

export interface Lab {
  readonly names: LabNames;
  /** Temp folder with certificates, configs, logs and pid files, deleted by destroy(). */
  readonly tempDir: string;
  startVpnServer(options?: VpnServerOptions): Promise<void>;
  /**
   * Drops the OpenVPN port's UDP traffic in both directions inside the vpn
   * namespace, so the client receives nothing from the server while the server
   * keeps running.
   */
  blockVpnServer(): Promise<void>;
  /** Removes the drop rules of blockVpnServer(). */
  unblockVpnServer(): Promise<void>;
  /** Starts the client, with `options` in place of the lab's clientHooks and clientSetenv when given. */
  startVpnClient(options?: VpnClientOptions): Promise<void>;
  /** Stops the client and waits until OpenVPN, and with it the down hook, has finished. */
  stopVpnClient(): Promise<void>;
  /**
   * Sends `signal` to the running client without waiting, such as SIGUSR1
   * for a soft restart. Read clientLogOffset() before, and pass it to
   * waitForClientLog() to wait for what follows.
   */
  signalVpnClient(signal: NodeJS.Signals): void;
  /** Kills the client with SIGKILL and waits for its exit. OpenVPN runs no down script then. */
  killVpnClient(): Promise<void>;
  /** Returns the current or last client log, "" before the first start. Hook output appears here too. */
  clientLog(): Promise<string>;
  /** Returns the current length of the client log in characters, for waitForClientLog() and for slicing clientLog(). */
  clientLogOffset(): Promise<number>;
  /**
   * Waits until the running client's log contains `text` at or after character
   * offset `fromOffset` and returns the offset just past it. Throws with the log
   * tail when the client exits first or after `timeoutMs` (default LOG_WAIT_TIMEOUT_MS).
   */
  waitForClientLog(text: string, fromOffset: number, timeoutMs?: number): Promise<number>;
  /** Returns whether the remote host (203.0.113.10 or 2001:db8:3::10) receives the client's banner from port 22 of its uplink address. */
  connectInbound(family: AddressFamily): Promise<boolean>;
  /** Connects like connectInbound() and returns the line received or why the connection failed. */
  probeInbound(family: AddressFamily): Promise<ConnectResult>;
  /** Returns whether the VPN server receives the banner from port 22 of the client's tunnel address. */
  connectThroughTunnel(family: AddressFamily): Promise<boolean>;
  /** Opens an inbound connection like probeInbound and keeps it, to test a session that spans a change. */
  openInboundSession(family: AddressFamily): Promise<ProbeSession>;
  /** Connects from the client to the remote host and returns the source address the remote host saw. */
  outboundSeenAs(family: AddressFamily): Promise<string>;
  /** Returns the tunnel address OpenVPN assigned to the client. Throws when the OpenVPN client is not connected. */
  clientTunnelAddress(family: AddressFamily): Promise<string>;
  /** Returns the client's rules, routes, firewall rulesets and rp_filter/src_valid_mark sysctls as text. */
  clientState(): Promise<string>;
  /**
   * The client's WireGuard interface, such as "wgc-3fa91c", which wg-quick
   * hooks get as `%i`. Each lab has its own name, because userspace
   * WireGuard interfaces must be unique on the host.
   */
  readonly wireguardInterface: string;
  readonly wireguardServerInterface: string;
  /**
   * Starts wg-quick in the vpn namespace, listening on UDP port 51820 of all
   * its addresses, and the masquerade rules for the WireGuard subnets. The
   * first call generates the key pairs of both ends.
   */
  startWireGuardServer(): Promise<void>;
  stopWireGuardServer(): Promise<void>;
  /** Starts wg-quick in the client namespace. Requires the WireGuard server. */
  startWireGuardClient(options?: WireGuardClientOptions): Promise<void>;
  /** Runs `wg-quick down`, with its hooks, and waits until wireguard-go has exited. */
  stopWireGuardClient(): Promise<void>;
  /** Returns the output of the current or last client's `wg-quick up` and `down`, "" before the first start. */
  wireguardClientLog(): Promise<string>;
  /** Returns whether the VPN server receives the banner from port 22 of the client's WireGuard address. */
  connectThroughWireGuard(family: AddressFamily): Promise<boolean>;
  /**
   * Stops every process the lab started and deletes its namespaces and temp
   * folder. Later calls return the first call's promise.
   */
  destroy(): Promise<void>;
}

/**
 * Builds the namespaces, the certificates and the listeners. The VPN is not
 * started yet. On failure everything created so far is removed again.
 */
export async function createLab(options: LabOptions = {}): Promise<Lab> {
  const prefix = newNamespacePrefix();
  const lab = new NamespaceLab(namespaceNames(prefix), wireguardInterfaceNames(prefix), options);
  try {
    await lab.build();
  } catch (error) {
    await lab.destroy().catch(() => undefined);
    throw withContext("creating the network namespace lab", error);
  }
  return lab;
}

function familyKey(family: AddressFamily): "v4" | "v6" {
  return family === 4 ? "v4" : "v6";
}

class NamespaceLab implements Lab {
  tempDir = "";
  private readonly createdNamespaces: string[] = [];
  private readonly processes = new Set<LabProcess>();
  private readonly sessions = new Set<ProbeSession>();
  private probeProgram = "";
  private serverCertificate: Certificate | undefined;
  private clientCertificate: Certificate | undefined;
  private server: OpenVpnInstance | undefined;
  private client: OpenVpnInstance | undefined;
  private clientStarts = 0;
  private lastClientLogPath: string | undefined;
  private wireguardKeys: { server: KeyPair; client: KeyPair } | undefined;
  private wireguardServer: WireGuardInstance | undefined;
  private wireguardClient: WireGuardInstance | undefined;
  private wireguardClientStarts = 0;
  private lastWireGuardClientLogPath: string | undefined;
  private destroyed = false;
  private destruction: Promise<void> | undefined;

  constructor(
    readonly names: LabNames,
    private readonly wireguardInterfaces: { client: string; server: string },
    private readonly options: LabOptions,
  ) {}

  get wireguardInterface(): string {
    return this.wireguardInterfaces.client;
  }

  get wireguardServerInterface(): string {
    return this.wireguardInterfaces.server;
  }

  async build(): Promise<void> {
    this.tempDir = await mkdtemp(join(tmpdir(), "splitroute-lab-"));
    this.probeProgram = await writeProbeProgram(this.tempDir);
    this.serverCertificate = await createSelfSignedCertificate(this.tempDir, "server");
    this.clientCertificate = await createSelfSignedCertificate(this.tempDir, "client");

    await buildNetwork(this.names, this.options.rpFilter ?? 0, (namespace) => this.createdNamespaces.push(namespace));
    await addVpnServerNat(this.names.vpn);

    // Dual-stack listeners on "::", so the client also accepts connections on
    // the tunnel address that appears later.
    await startListener(
      { label: "SSH-like listener", namespace: this.names.client, programPath: this.probeProgram, mode: "listen-banner", host: "::", port: SSH_PORT, banner: SSH_BANNER },
      (listener) => this.processes.add(listener),
    );
    await startListener(
      { label: "remote web listener", namespace: this.names.remote, programPath: this.probeProgram, mode: "listen-peer", host: "::", port: WEB_PORT },
      (listener) => this.processes.add(listener),
    );
  }

  async startVpnServer(serverOptions: VpnServerOptions = {}): Promise<void> {
    this.assertUsable();
    if (this.server !== undefined) {
      throw new Error("the OpenVPN server is already running");
    }
    const configPath = join(this.tempDir, "server.conf");
    const config = renderServerConfig(this.serverCertificate!, this.clientCertificate!.fingerprint, serverOptions.extraConfig);
    await writeFile(configPath, config, { mode: 0o600 });

    this.server = await startOpenVpn(
      {
        label: "OpenVPN server",
        namespace: this.names.vpn,
        configPath,
        logPath: join(this.tempDir, "server.log"),
        pidPath: join(this.tempDir, "server.pid"),
      },
      (openvpn) => this.processes.add(openvpn),
    );
  }

  async startVpnClient(clientOptions?: VpnClientOptions): Promise<void> {
    this.assertUsable();
    if (this.server === undefined) {
      throw new Error("the OpenVPN server is not running: call startVpnServer() before startVpnClient()");
    }
    if (this.client !== undefined) {
      throw new Error("the OpenVPN client is already running: call stopVpnClient() first");
    }

    // Each start gets its own config and log, so the wait for the ready
    // message cannot match a line from an earlier run.
    this.clientStarts += 1;
    const configPath = join(this.tempDir, `client-${this.clientStarts}.conf`);
    const logPath = join(this.tempDir, `client-${this.clientStarts}.log`);
    const config = renderClientConfig({
      certificate: this.clientCertificate!,
      serverFingerprint: this.serverCertificate!.fingerprint,
      hooks: clientOptions === undefined ? this.options.clientHooks : clientOptions.hooks,
      setenv: clientOptions === undefined ? this.options.clientSetenv : clientOptions.setenv,
      extraConfig: clientOptions?.extraConfig,
    });
    await writeFile(configPath, config, { mode: 0o600 });
    this.lastClientLogPath = logPath;

    this.client = await startOpenVpn(
      { label: "OpenVPN client", namespace: this.names.client, configPath, logPath, pidPath: join(this.tempDir, "client.pid") },
      (openvpn) => this.processes.add(openvpn),
    );
  }

  async stopVpnClient(): Promise<void> {
    const client = this.client;
    if (client === undefined) {
      throw new Error("the OpenVPN client is not running");
    }
    this.client = undefined;
    try {
      await stopOpenVpn(client);
    } finally {
      this.processes.delete(client.process);
    }
  }

  signalVpnClient(signal: NodeJS.Signals): void {
    this.assertUsable();
    signalOpenVpn(this.runningClient(), signal);
  }

  async killVpnClient(): Promise<void> {
    const client = this.runningClient();
    this.client = undefined;
    try {
      await killOpenVpn(client);
    } finally {
      this.processes.delete(client.process);
    }
  }

  async clientLog(): Promise<string> {
    return this.lastClientLogPath === undefined ? "" : readLog(this.lastClientLogPath);
  }

  async clientLogOffset(): Promise<number> {
    return (await this.clientLog()).length;
  }

  async waitForClientLog(text: string, fromOffset: number, timeoutMs = LOG_WAIT_TIMEOUT_MS): Promise<number> {
    this.assertUsable();
    const client = this.runningClient();
    return waitForLogText(client.process, client.logPath, text, fromOffset, timeoutMs);
  }

  async blockVpnServer(): Promise<void> {
    this.assertUsable();
    const ruleset = [
      `table inet ${BLOCK_TABLE} {`,
      "  chain input {",
      "    type filter hook input priority filter; policy accept;",
      `    udp dport ${OPENVPN_PORT} drop`,
      "  }",
      "  chain output {",
      "    type filter hook output priority filter; policy accept;",
      `    udp sport ${OPENVPN_PORT} drop`,
      "  }",
      "}",
      "",
    ].join("\n");
    await runInNamespace(this.names.vpn, ["nft", "-f", "-"], ruleset);
  }

  async unblockVpnServer(): Promise<void> {
    this.assertUsable();
    await runInNamespace(this.names.vpn, ["nft", "delete", "table", "inet", BLOCK_TABLE]);
  }

  private runningClient(): OpenVpnInstance {
    if (this.client === undefined) {
      throw new Error("the OpenVPN client is not running");
    }
    return this.client;
  }

  async connectInbound(family: AddressFamily): Promise<boolean> {
    const result = await this.probeInbound(family);
    return result.connected && result.line === SSH_BANNER;
  }

  async probeInbound(family: AddressFamily): Promise<ConnectResult> {
    const key = familyKey(family);
    return this.connect(this.names.remote, LAB_ADDRESSES.client[key], SSH_PORT, LAB_ADDRESSES.remote[key]);
  }

  async openInboundSession(family: AddressFamily): Promise<ProbeSession> {
    this.assertUsable();
    const key = familyKey(family);
    const { session } = await ProbeSession.open({
      namespace: this.names.remote,
      programPath: this.probeProgram,
      host: LAB_ADDRESSES.client[key],
      port: SSH_PORT,
      localAddress: LAB_ADDRESSES.remote[key],
      timeoutMs: CONNECT_TIMEOUT_MS,
    });
    this.sessions.add(session);
    return session;
  }

  async connectThroughTunnel(family: AddressFamily): Promise<boolean> {
    const tunnelAddress = await this.clientTunnelAddress(family);
    const result = await this.connect(this.names.vpn, tunnelAddress, SSH_PORT);
    return result.connected && result.line === SSH_BANNER;
  }

  async outboundSeenAs(family: AddressFamily): Promise<string> {
    const remote = LAB_ADDRESSES.remote[familyKey(family)];
    const result = await this.connect(this.names.client, remote, WEB_PORT);
    if (!result.connected) {
      throw new Error(`connecting from the client to ${remote} port ${WEB_PORT} failed: ${result.reason}`);
    }
    return result.line;
  }

  async clientTunnelAddress(family: AddressFamily): Promise<string> {
    const output = await runInNamespace(this.names.client, ["ip", "-j", `-${family}`, "address", "show", "scope", "global"]);
    const interfaces = JSON.parse(output) as Array<{ addr_info?: Array<{ local?: string }> }>;
    const prefix = TUNNEL_NETWORK[familyKey(family)].prefix;
    for (const entry of interfaces) {
      for (const address of entry.addr_info ?? []) {
        if (address.local?.startsWith(prefix)) {
          return address.local;
        }
      }
    }
    throw new Error(`the client has no IPv${family} tunnel address in ${prefix}*: is the OpenVPN client connected?`);
  }

  async clientState(): Promise<string> {
    return readNamespaceState(this.names.client);
  }

  async startWireGuardServer(): Promise<void> {
    this.assertUsable();
    if (this.wireguardServer !== undefined) {
      throw new Error("the WireGuard server is already running");
    }
    const dir = await this.wireguardDir();
    this.wireguardKeys ??= {
      server: await generateKeyPair(dir, "server"),
      client: await generateKeyPair(dir, "client"),
    };
    const interfaceName = this.wireguardInterfaces.server;
    const configPath = join(dir, `${interfaceName}.conf`);
    const config = renderWireGuardServerConfig({ server: this.wireguardKeys.server, clientPublicKey: this.wireguardKeys.client.publicKey });
    await writeFile(configPath, config, { mode: 0o600 });

    // buildNetwork turns forwarding on already. Set here too, so the server
    // does not depend on that.
    await setSysctls(this.names.vpn, [
      ["net.ipv4.ip_forward", 1],
      ["net.ipv6.conf.all.forwarding", 1],
    ]);
    await addWireGuardServerNat(this.names.vpn);
    try {
      this.wireguardServer = await startWgQuick({
        label: "WireGuard server",
        namespace: this.names.vpn,
        interfaceName,
        configPath,
        logPath: join(dir, "server.log"),
      });
    } catch (error) {
      await deleteWireGuardServerNat(this.names.vpn).catch(() => undefined);
      throw error;
    }
  }

  async stopWireGuardServer(): Promise<void> {
    const server = this.wireguardServer;
    if (server === undefined) {
      throw new Error("the WireGuard server is not running");
    }
    this.wireguardServer = undefined;
    try {
      await stopWgQuick(server);
    } finally {
      await deleteWireGuardServerNat(this.names.vpn);
    }
  }

  async startWireGuardClient(clientOptions: WireGuardClientOptions = {}): Promise<void> {
    this.assertUsable();
    if (this.wireguardServer === undefined || this.wireguardKeys === undefined) {
      throw new Error("the WireGuard server is not running: call startWireGuardServer() before startWireGuardClient()");
    }
    if (this.wireguardClient !== undefined) {
      throw new Error("the WireGuard client is already running: call stopWireGuardClient() first");
    }

    // wg-quick takes the interface name from the file name, so each start
    // gets a folder of its own for its config, and a log of its own.
    this.wireguardClientStarts += 1;
    const dir = await this.wireguardDir();
    const configDir = join(dir, `client-${this.wireguardClientStarts}`);
    await mkdir(configDir, { mode: 0o700 });
    const interfaceName = this.wireguardInterfaces.client;
    const configPath = join(configDir, `${interfaceName}.conf`);
    const logPath = join(dir, `client-${this.wireguardClientStarts}.log`);
    const config = renderWireGuardClientConfig({
      client: this.wireguardKeys.client,
      serverPublicKey: this.wireguardKeys.server.publicKey,
      allowedIps: clientOptions.allowedIps ?? FULL_TUNNEL_ALLOWED_IPS,
      table: clientOptions.table ?? "auto",
      hooks: clientOptions.hooks ?? {},
    });
    await writeFile(configPath, config, { mode: 0o600 });
    this.lastWireGuardClientLogPath = logPath;

    const client = await startWgQuick({
      label: "WireGuard client",
      namespace: this.names.client,
      interfaceName,
      configPath,
      logPath,
      env: clientOptions.env,
    });
    this.wireguardClient = client;

    if (clientOptions.waitForHandshake ?? true) {
      try {
        await waitForHandshake(client);
      } catch (error) {
        this.wireguardClient = undefined;
        await stopWgQuick(client).catch(() => undefined);
        throw error;
      }
    }
  }

  async stopWireGuardClient(): Promise<void> {
    const client = this.wireguardClient;
    if (client === undefined) {
      throw new Error("the WireGuard client is not running");
    }
    this.wireguardClient = undefined;
    await stopWgQuick(client);
  }

  async wireguardClientLog(): Promise<string> {
    return this.lastWireGuardClientLogPath === undefined ? "" : readLog(this.lastWireGuardClientLogPath);
  }

  async connectThroughWireGuard(family: AddressFamily): Promise<boolean> {
    const result = await this.connect(this.names.vpn, WIREGUARD_ADDRESSES.client[familyKey(family)], SSH_PORT);
    return result.connected && result.line === SSH_BANNER;
  }

  private async wireguardDir(): Promise<string> {
    const dir = join(this.tempDir, "wireguard");
    // wg-quick warns about a config file in a folder that others can read.
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  destroy(): Promise<void> {
    // A second call, even one made while the first still runs, gets the
    // first call's promise, so every caller waits for the same cleanup.
    this.destruction ??= this.removeEverything();
    return this.destruction;
  }

  private async removeEverything(): Promise<void> {
    this.destroyed = true;
    this.client = undefined;
    this.server = undefined;
    const wireguardInstances = [this.wireguardClient, this.wireguardServer];
    this.wireguardClient = undefined;
    this.wireguardServer = undefined;
    const failures: Error[] = [];

    for (const session of this.sessions) {
      session.close();
    }
    this.sessions.clear();

    // `wg-quick down` runs the client's PreDown and PostDown hooks, as
    // stopping OpenVPN below runs its down hook. wireguard-go is no child of
    // this process. So every daemon still left in a lab namespace, such as
    // one from a start that failed halfway, is then stopped by its pid.
    for (const instance of wireguardInstances) {
      if (instance !== undefined) {
        await stopWgQuick(instance).catch((error: unknown) => failures.push(withContext(`stopping the ${instance.label}`, error)));
      }
    }
    for (const namespace of this.createdNamespaces) {
      await stopAllDaemons(namespace)
        .then((daemonFailures) => failures.push(...daemonFailures))
        .catch((error: unknown) => failures.push(withContext(`stopping wireguard-go in namespace ${namespace}`, error)));
    }

    // Processes first, because a namespace lives on while a process is in it.
    // Newest first, so the OpenVPN client stops before its server. OpenVPN's
    // pid from --writepid equals the child's pid (checked at start), so
    // stopping the child stops OpenVPN, and the client's down hook runs.
    for (const labProcess of [...this.processes].reverse()) {
      await labProcess.stop().catch((error: unknown) => failures.push(withContext(`stopping ${labProcess.label}`, error)));
    }
    this.processes.clear();

    for (const namespace of this.createdNamespaces) {
      await deleteNamespace(namespace).catch((error: unknown) => failures.push(withContext(`deleting namespace ${namespace}`, error)));
    }
    this.createdNamespaces.length = 0;

    if (this.tempDir !== "") {
      await rm(this.tempDir, { recursive: true, force: true }).catch((error: unknown) =>
        failures.push(withContext(`deleting ${this.tempDir}`, error)),
      );
    }

    if (failures.length > 0) {
      throw new AggregateFailure("destroying the lab failed", failures);
    }
  }

  private connect(namespace: string, host: string, port: number, localAddress?: string): Promise<ConnectResult> {
    this.assertUsable();
    return connectAndReadLine({ namespace, programPath: this.probeProgram, host, port, localAddress, timeoutMs: CONNECT_TIMEOUT_MS });
  }

  private assertUsable(): void {
    if (this.destroyed) {
      throw new Error("the lab has been destroyed");
    }
  }
}
