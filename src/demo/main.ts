// Demo: shows in a throwaway network why a host stops responding on its own
// address when OpenVPN takes the default route, and that splitroute's hooks
// fix it. Run as root with `npm run demo`.

import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createLab, LAB_ADDRESSES, SSH_PORT, type AddressFamily, type Lab } from "../lab/lab.js";
import { DemoReport, diffLines } from "./report.js";

const USAGE = `Usage: node dist/demo/main.js [--hooks-dir DIR]

Builds a test network in network namespaces with an OpenVPN server and
client, shows the client losing inbound SSH when the VPN starts, and shows
splitroute's hooks restoring it. Needs root. Nothing outside the namespaces
is changed, and everything is removed at the end, on error and on Ctrl-C.

  --hooks-dir DIR  folder with the OpenVPN "up" and "down" scripts
                   (default: the hooks folder of this repository)
  --help           print this text`;

// dist/demo/main.js lies two levels below the repository root.
const REPOSITORY_ROOT = fileURLToPath(new URL("../..", import.meta.url));

// Set on SIGINT or SIGTERM. The demo's own steps then fail because their
// processes are gone, and those errors are not worth printing.
let interrupted = false;

interface Hooks {
  up: string;
  down: string;
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { "hooks-dir": { type: "string" }, help: { type: "boolean" } } });
  if (values.help === true) {
    console.log(USAGE);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    console.error("The demo must run as root, because it creates network namespaces and runs OpenVPN. Run it again with sudo.");
    return 1;
  }

  const hooksDir = resolve(values["hooks-dir"] ?? join(REPOSITORY_ROOT, "hooks"));
  const hooks: Hooks = { up: join(hooksDir, "up"), down: join(hooksDir, "down") };
  const missingHooks = await findMissingHooks(hooks);

  console.log("splitroute demo: building the test network...");
  const lab = await createLab();
  const report = new DemoReport();
  const stopOnSignal = removeLabOnSignal(lab, report);
  try {
    await runDemo(lab, report, hooks, missingHooks);
    console.log(`\n${report.summary()}`);
    return report.failures === 0 && missingHooks.length === 0 ? 0 : 1;
  } finally {
    await lab.destroy();
    stopOnSignal();
    if (!interrupted) {
      console.log("The test network has been removed.");
    }
  }
}

async function runDemo(lab: Lab, report: DemoReport, hooks: Hooks, missingHooks: string[]): Promise<void> {
  describeNetwork(lab);

  report.heading("Step 1: before the VPN starts");
  const stateBefore = await lab.clientState();
  await checkInbound(lab, report, true);
  await checkOutbound(lab, report, "client");

  report.heading("Step 2: VPN started, without splitroute");
  await lab.startVpnServer();
  await lab.startVpnClient();
  report.explain(
    "OpenVPN now routes 0.0.0.0/1 and 128.0.0.0/1, and for IPv6 ::/3, 2000::/4, 3000::/4",
    "and fc00::/7, into the tunnel. These beat the default route without replacing it.",
    "The client's replies to the administrator follow them into the tunnel, where the",
    "VPN server drops them because they come from an address it did not assign.",
  );
  await checkInbound(lab, report, false);
  await checkOutbound(lab, report, "vpn");
  await lab.stopVpnClient();

  report.heading("Step 3: VPN restarted with splitroute's hooks");
  if (missingHooks.length > 0) {
    report.explain(`Skipped, because these hook scripts are missing or not executable:`, ...missingHooks.map((path) => `  ${path}`));
    report.explain("Build or install splitroute, or pass --hooks-dir with a folder that contains them.");
    return;
  }
  report.explain(`up:   ${hooks.up}`, `down: ${hooks.down}`);
  await lab.startVpnClient({ hooks: { up: openVpnCommand(hooks.up), down: openVpnCommand(hooks.down) } });
  report.explain(
    `The hooks add policy routing so that replies to connections that reach port ${SSH_PORT}`,
    "through the client's uplink leave through that uplink. Everything else, including",
    "the client's own outbound traffic, still uses the tunnel.",
  );
  await checkInbound(lab, report, true);
  await checkOutbound(lab, report, "vpn");
  for (const family of [4, 6] as const) {
    report.check(await lab.connectThroughTunnel(family), `IPv${family}: the VPN server still reaches port ${SSH_PORT} on the client's tunnel address`);
  }

  report.heading("Step 4: VPN stopped");
  await lab.stopVpnClient();
  const stateAfter = await lab.clientState();
  const differences = diffLines(stateBefore, stateAfter);
  report.check(
    stateAfter === stateBefore,
    "the client's rules, routes, firewall and rp_filter settings are as they were in step 1",
    differences.length === 0 ? undefined : `differences (- step 1, + now):\n${differences.map((line) => `                 ${line}`).join("\n")}`,
  );
}

function describeNetwork(lab: Lab): void {
  const { client, remote, vpnServer } = LAB_ADDRESSES;
  console.log(`
The test network lives in four network namespaces named ${lab.names.client.replace(/-client$/, "-*")}:

  client  ${client.v4}, ${client.v6}
          The host that runs the VPN client. A small SSH-like server listens on port ${SSH_PORT}.
  remote  ${remote.v4}, ${remote.v6}
          The administrator's machine. It also runs a web server that reports the
          address each visitor connects from.
  vpn     ${vpnServer.v4}, ${vpnServer.v6}
          The OpenVPN server. It pushes "redirect-gateway def1 ipv6" and translates
          (masquerades) tunnel traffic to its own address.
  internet
          The router that joins the three.`);
}

async function checkInbound(lab: Lab, report: DemoReport, expectConnected: boolean): Promise<void> {
  for (const family of [4, 6] as const) {
    const { remote, client } = addressesFor(family);
    const result = await lab.probeInbound(family);
    const outcome = result.connected ? `connected, banner "${result.line}"` : `failed: ${result.reason}`;
    report.check(result.connected === expectConnected, `IPv${family}: SSH from the administrator (${remote}) to the client (${client}) port ${SSH_PORT}: ${outcome}`);
  }
}

async function checkOutbound(lab: Lab, report: DemoReport, expectedSource: "client" | "vpn"): Promise<void> {
  for (const family of [4, 6] as const) {
    const { client, vpnServer } = addressesFor(family);
    const expected = expectedSource === "client" ? client : vpnServer;
    const seen = await lab.outboundSeenAs(family);
    report.check(seen === expected, `IPv${family}: the web server sees the client's visit coming from ${seen}, ${describeSource(seen, family)}`);
  }
}

function describeSource(source: string, family: AddressFamily): string {
  const { client, vpnServer } = addressesFor(family);
  if (source === vpnServer) {
    return "the VPN server, so it went through the tunnel";
  }
  if (source === client) {
    return "the client itself, so it did not go through a VPN tunnel";
  }
  return "neither the client nor the VPN server";
}

function addressesFor(family: AddressFamily): { client: string; remote: string; vpnServer: string } {
  const key = family === 4 ? "v4" : "v6";
  return { client: LAB_ADDRESSES.client[key], remote: LAB_ADDRESSES.remote[key], vpnServer: LAB_ADDRESSES.vpnServer[key] };
}

async function findMissingHooks(hooks: Hooks): Promise<string[]> {
  const missing: string[] = [];
  for (const path of [hooks.up, hooks.down]) {
    try {
      await access(path, constants.X_OK);
    } catch {
      missing.push(path);
    }
  }
  return missing;
}

/**
 * Quotes a script path as one word of an OpenVPN command line. OpenVPN splits
 * the `up` and `down` values into words itself and takes single-quoted text literally.
 */
function openVpnCommand(path: string): string {
  if (path.includes("'")) {
    throw new Error(`invalid hook path ${path}: the demo cannot quote a path that contains a single quote for OpenVPN. Use a hooks folder without one.`);
  }
  return `'${path}'`;
}

/**
 * Mutes the report, removes the lab on SIGINT or SIGTERM and exits. Returns a
 * function that removes the handlers again. A second signal exits at once and
 * names the namespaces that may be left behind.
 */
function removeLabOnSignal(lab: Lab, report: DemoReport): () => void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    const exitCode = signal === "SIGINT" ? 130 : 143;
    if (stopping) {
      console.error(`\n${signal} again: exiting now. Remove any leftover namespaces with: ip netns delete NAME (${Object.values(lab.names).join(", ")})`);
      process.exit(exitCode);
    }
    stopping = true;
    interrupted = true;
    report.muted = true;
    console.error(`\n${signal} received: removing the test network...`);
    lab.destroy().then(
      () => {
        console.error("The test network has been removed.");
        process.exit(exitCode);
      },
      (error: unknown) => {
        console.error(error instanceof Error ? error.message : String(error));
        process.exit(exitCode);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}

main().then(
  (exitCode) => {
    process.exitCode = exitCode;
  },
  (error: unknown) => {
    if (!interrupted) {
      console.error(`splitroute demo failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    process.exitCode = 1;
  },
);
