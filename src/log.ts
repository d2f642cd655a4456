import { pino, type Logger } from "pino";

import { ConfigError } from "./errors.js";

export type LogFormat = "text" | "json";
export type { Logger };

const LEVELS = ["debug", "info", "warn", "error", "silent"] as const;
export type LogLevel = (typeof LEVELS)[number];

/**
 * Creates the logger. Text, the default, reads well in OpenVPN's and
 * wg-quick's logs: one line per event, changes shown as `[#] command`, the
 * way wg-quick prints them. JSON gives one pino object per line.
 */
export function createLogger(format: LogFormat, level: LogLevel, stream: NodeJS.WritableStream = process.stderr): Logger {
  if (format === "json") {
    return pino({ level, base: { name: "splitroute" } }, stream);
  }
  return pino({ level, base: undefined, timestamp: false }, { write: (line: string) => stream.write(renderText(line)) });
}

const PREFIX: Record<number, string> = { 20: "debug: ", 30: "", 40: "warning: ", 50: "error: ", 60: "error: " };

function renderText(line: string): string {
  const event = JSON.parse(line) as { level: number; msg?: string };
  const message = event.msg ?? "";
  return `${message
    .split("\n")
    .map((text) => `splitroute: ${PREFIX[event.level] ?? ""}${text}`)
    .join("\n")}\n`;
}

/** Reads the log options from flags first, then SPLITROUTE_LOG_FORMAT and SPLITROUTE_LOG_LEVEL. */
export function logOptions(
  flags: { logFormat?: string; verbose?: boolean },
  env: NodeJS.ProcessEnv,
): { format: LogFormat; level: LogLevel } {
  const format = flags.logFormat ?? env.SPLITROUTE_LOG_FORMAT ?? "text";
  if (format !== "text" && format !== "json") {
    throw new ConfigError(`invalid log format ${JSON.stringify(format)}; use text or json`);
  }
  const level = flags.verbose ? "debug" : (env.SPLITROUTE_LOG_LEVEL ?? "info");
  if (!(LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(`invalid SPLITROUTE_LOG_LEVEL ${JSON.stringify(level)}; use one of ${LEVELS.join(", ")}`);
  }
  return { format, level: level as LogLevel };
}
