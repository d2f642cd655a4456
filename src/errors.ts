// Error types whose messages reach the administrator as the last line of a
// failed hook, so each names what failed, on which value, and what to do.

/** A configuration or input value that is invalid; nothing has been changed. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** A command that exited non-zero, with its argv and stderr kept for the report. */
export class CommandError extends Error {
  override name = "CommandError";
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
  ) {
    const detail = stderr.trim() || `exit code ${exitCode ?? "unknown"}`;
    super(`${formatArgv(argv)}: ${detail}`);
  }
}

/** Several failures from a step that tries every action (down, rollback). */
export class AggregateFailure extends Error {
  override name = "AggregateFailure";
  constructor(
    message: string,
    readonly failures: readonly Error[],
  ) {
    super(`${message}:\n${failures.map((failure) => `  - ${failure.message}`).join("\n")}`);
  }
}

/** Wraps an error with lower-case context such as "adding ip rule", keeping the cause. */
export function withContext(context: string, error: unknown): Error {
  const cause = error instanceof Error ? error : new Error(String(error));
  return new Error(`${context}: ${cause.message}`, { cause });
}

/** Quotes an argv the way a POSIX shell would need it, so a logged command can be pasted. */
export function formatArgv(argv: readonly string[]): string {
  return argv.map(quoteArgument).join(" ");
}

function quoteArgument(argument: string): string {
  if (argument !== "" && /^[A-Za-z0-9_./:=@%+,-]+$/.test(argument)) {
    return argument;
  }
  return `'${argument.replaceAll("'", `'\\''`)}'`;
}
