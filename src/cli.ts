#!/usr/bin/env node
import { parseArgs } from "node:util";

import { down } from "./commands/down.js";
import type { Context } from "./commands/context.js";
import { renderStatus, status } from "./commands/status.js";
import { up } from "./commands/up.js";
import { loadConfig } from "./config/load.js";
import { resolveDevice } from "./device.js";
import { ConfigError } from "./errors.js";
import { acquireLock } from "./lock.js";
import { createLogger, logOptions, type Logger } from "./log.js";
import { namespaceStateStore } from "./state.js";
import { HostSystem } from "./system/host.js";

const USAGE = `usage: splitroute COMMAND [options] [DEVICE] [ignored OpenVPN arguments...]

Commands:
  up        install the bypass for a tunnel (or add the tunnel to it)
  down      remove the tunnel; the last one removes everything splitroute installed
  status    show what is installed and whether the system still matches

Options:
  --dev IFACE         tunnel device (default: $dev from OpenVPN, else the first argument)
  --config FILE       configuration file (default: $SPLITROUTE_CONFIG, else /etc/splitroute/splitroute.conf)
  --json              status: print JSON
  --log-format FMT    text (default) or json; also $SPLITROUTE_LOG_FORMAT
  --verbose           log reads and probes too
  -h, --help          show this help
`;

/** Runs the CLI with `args` (without node and the script) and returns the exit code. */
export async function main(args: string[], env: NodeJS.ProcessEnv, makeContext = hostContext): Promise<number> {
  let log: Logger = createLogger("text", "info");
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        dev: { type: "string" },
        config: { type: "string" },
        json: { type: "boolean" },
        "log-format": { type: "string" },
        verbose: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const options = logOptions({ logFormat: values["log-format"], verbose: values.verbose }, env);
    log = createLogger(options.format, options.level);

    const [command, ...rest] = positionals;
    const context = makeContext(loadConfig(values.config, env), log, env);
    switch (command) {
      case "up":
        await up(context, resolveDevice(values.dev, env, rest));
        return 0;
      case "down":
        await down(context, resolveDevice(values.dev, env, rest));
        return 0;
      case "status": {
        const report = await status(context);
        process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderStatus(report));
        return 0;
      }
      default:
        process.stderr.write(command === undefined ? USAGE : `splitroute: unknown command ${JSON.stringify(command)}\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    log.error((error as Error).message);
    return error instanceof ConfigError || isUsageError(error) ? 2 : 1;
  }
}

function isUsageError(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS") ?? false;
}

function hostContext(config: Context["config"], log: Logger, env: NodeJS.ProcessEnv): Context {
  return { system: new HostSystem(env), config, store: namespaceStateStore(env), log, lock: () => acquireLock() };
}

// Run only when executed, not when a test imports main().
if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  process.exitCode = await main(process.argv.slice(2), process.env);
}
