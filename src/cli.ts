#!/usr/bin/env node
import { parseArgs } from "node:util";

import { cleanup } from "./commands/cleanup.js";
import { refresh } from "./commands/refresh.js";
import { watch } from "./commands/watch.js";
import { explain, parseFlow } from "./commands/explain.js";
import { planCommands } from "./commands/plan.js";
import { down } from "./commands/down.js";
import type { Context } from "./commands/context.js";
import { renderStatus, status } from "./commands/status.js";
import { up } from "./commands/up.js";
import { loadConfig } from "./config/load.js";
import { DEFAULTS } from "./config/validate.js";
import { resolveDevice } from "./device.js";
import { ConfigError } from "./errors.js";
import { acquireLock } from "./lock.js";
import { createLogger, logOptions, type Logger } from "./log.js";
import { namespaceStateStore } from "./state.js";
import { HostSystem } from "./system/host.js";
import { VERSION } from "./version.js";

const USAGE = `usage: splitroute COMMAND [options] [DEVICE] [ignored OpenVPN arguments...]

Commands:
  up        install the bypass for a tunnel (or add the tunnel to it)
  down      remove the tunnel; the last one removes everything splitroute installed
  cleanup   remove everything splitroute owns in this network namespace, with or
            without a state file (after a crash, or to start over)
  refresh   copy main into the bypass table again (after a new gateway or uplink),
            never leaving the table empty
  watch     run refresh after every burst of route changes, until stopped
  explain FLOW
            what happens to a flow, such as: tcp 203.0.113.5:51000 to 192.0.2.2:22 in eth0
            (without "in IFACE": a flow this host sends)
  plan up|down
            print the exact commands up or down would run now, and run none
  status    show what is installed and whether the system still matches
            (exit code 1 when it no longer matches)
  check     list everything that would keep the bypass from working, each with
            its fix, and change nothing (exit code 0 when all is fine, 1 with
            warnings, 2 with errors)

Options:
  --dev IFACE         tunnel device (default: $dev from OpenVPN, else the first argument)
  --config FILE       configuration file (default: $SPLITROUTE_CONFIG, else /etc/splitroute/splitroute.conf)
  --json              status and check: print JSON
  --openvpn FILE      check: also check this OpenVPN client configuration (repeatable)
  --log-format FMT    text (default) or json; also $SPLITROUTE_LOG_FORMAT
  --verbose           log reads and probes too
  --version           print splitroute's version
  -h, --help          show this help
`;

/** Runs the CLI with `args` (without node and the script) and returns the exit code. */
export async function main(args: string[], env: NodeJS.ProcessEnv, makeContext = hostContext): Promise<number> {
  let log: Logger = createLogger("text", "info");
  try {
    const { values, positionals } = parseArgs({
      // parseArgs would read explain's "->" as an option; "to" means the same.
      args: args.map((argument) => (argument === "->" ? "to" : argument)),
      allowPositionals: true,
      options: {
        dev: { type: "string" },
        config: { type: "string" },
        json: { type: "boolean" },
        openvpn: { type: "string", multiple: true },
        "log-format": { type: "string" },
        verbose: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean" },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (values.version) {
      process.stdout.write(`splitroute ${VERSION}\n`);
      return 0;
    }
    const options = logOptions({ logFormat: values["log-format"], verbose: values.verbose }, env);
    log = createLogger(options.format, options.level);

    const [command, ...rest] = positionals;
    switch (command) {
      case "up": {
        const device = resolveDevice(values.dev, env, rest);
        requireRoot("up", "run it as root, or from OpenVPN's up, which runs before OpenVPN drops privileges");
        await up(makeContext(loadConfig(values.config, env), log, env), device);
        return 0;
      }
      case "down": {
        const device = resolveDevice(values.dev, env, rest);
        requireRoot(
          "down",
          "with OpenVPN's user/group options, run it through the down-root plugin (splitroute(8) shows how); until then the bypass stays, and 'splitroute down' as root removes it",
        );
        if (isOpenVpnRestart(env, rest)) {
          log.info(`OpenVPN is restarting with ${device} kept (persist-tun); the bypass stays until the final down`);
          return 0;
        }
        await down(makeContext(configForRecord(values.config, env, log), log, env), device);
        return 0;
      }
      case "cleanup": {
        requireRoot("cleanup", "run it as root");
        await cleanup(makeContext(configForRecord(values.config, env, log), log, env));
        return 0;
      }
      case "plan": {
        const [action, ...deviceArguments] = rest;
        if (action !== "up" && action !== "down") {
          throw new ConfigError(`plan needs up or down, as in: splitroute plan up --dev tun0 (got ${JSON.stringify(action ?? "")})`);
        }
        const device = resolveDevice(values.dev, env, deviceArguments);
        requireRoot("plan", "run it as root: reading the firewall needs it, although plan changes nothing");
        process.stdout.write(await planCommands(makeContext(loadConfig(values.config, env), log, env), action, device));
        return 0;
      }
      case "refresh": {
        requireRoot("refresh", "run it as root");
        await refresh(makeContext(loadConfig(values.config, env), log, env));
        return 0;
      }
      case "watch": {
        requireRoot("watch", "run it as root");
        await watch(makeContext(loadConfig(values.config, env), log, env));
        return 0;
      }
      case "explain": {
        const flow = parseFlow(rest);
        process.stdout.write(await explain(makeContext(configForRecord(values.config, env, log), log, env), flow));
        return 0;
      }
      case "check": {
        // Reading nftables and iptables needs root. Other users get warnings
        // that the marks, and the backend that auto picks, were not checked.
        const { check, configurationFailureReport, renderCheck } = await import("./commands/check.js");
        let config: Context["config"];
        try {
          config = loadConfig(values.config, env);
        } catch (error) {
          if (!values.json || !(error instanceof ConfigError)) {
            throw error;
          }
          // A script that reads --json gets the failure on stdout as well, and stderr still gets the message.
          log.error(error.message);
          process.stdout.write(`${JSON.stringify(configurationFailureReport(error), null, 2)}\n`);
          return 2;
        }
        const report = await check(makeContext(config, log, env), { openvpn: values.openvpn ?? [], readFirewall: process.getuid?.() === 0 });
        process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderCheck(report));
        return report.exitCode;
      }
      case "status": {
        // nftables and iptables cannot be read without root. Other users get
        // the rule and the routes compared, and a note that the marking was not.
        const context = makeContext(configForRecord(values.config, env, log), log, env);
        const report = await status(context, { readFirewall: process.getuid?.() === 0 });
        process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderStatus(report));
        return report.drift.length === 0 ? 0 : 1;
      }
      default:
        process.stderr.write(`splitroute: ${command === undefined ? "missing command" : `unknown command ${JSON.stringify(command)}`}\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    log.error((error as Error).message);
    return error instanceof ConfigError || isUsageError(error) ? 2 : 1;
  }
}

/**
 * Returns whether OpenVPN runs down for a restart that keeps the tunnel
 * (persist-tun with up-restart): it then passes "restart" as the last
 * argument, keeps its routes, and runs up again when it reconnects.
 * Removing the bypass would lock the administrator out for the whole outage.
 * The final down passes "init". The down-root plugin passes no arguments and
 * runs only at the final down, so its environment is not consulted.
 */
function isOpenVpnRestart(env: NodeJS.ProcessEnv, positionals: readonly string[]): boolean {
  return env.script_type === "down" && positionals.length > 1 && positionals.at(-1) === "restart";
}

// Changing routes, rules and the firewall needs CAP_NET_ADMIN. Checking first
// turns a confusing "Permission denied" from the third tool into one message.
function requireRoot(command: string, fix: string): void {
  if (process.getuid?.() !== 0) {
    throw new Error(`splitroute ${command} needs root privileges; ${fix}`);
  }
}

/**
 * Loads the configuration for down and status, which act on the record in
 * /run and need none of its values: a broken file must not keep down from
 * removing what up installed.
 */
function configForRecord(path: string | undefined, env: NodeJS.ProcessEnv, log: Logger): Context["config"] {
  try {
    return loadConfig(path, env);
  } catch (error) {
    log.warn(`${(error as Error).message}\ncontinuing with the built-in defaults; the record of what was installed, where there is one, still applies`);
    return { ...structuredClone(DEFAULTS), source: "built-in defaults" };
  }
}

function isUsageError(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS") ?? false;
}

function hostContext(config: Context["config"], log: Logger, env: NodeJS.ProcessEnv): Context {
  return { system: new HostSystem(env, log), config, store: namespaceStateStore(env), log, lock: () => acquireLock() };
}

// Run only when executed, not when a test imports main().
if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  process.exitCode = await main(process.argv.slice(2), process.env);
}
