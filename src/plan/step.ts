// A plan is a list of steps, data that names exactly what will run. Planners
// build them without touching the system, and only the applier executes them.

/** Runs a tool; argv[0] is the tool name, `input` goes to its stdin. */
export interface RunStep {
  kind: "run";
  /** Lower-case context for errors and logs, such as "installing IPv4 routes and rule". */
  summary: string;
  argv: string[];
  input?: string;
}

/** Writes one sysctl. */
export interface SysctlStep {
  kind: "sysctl";
  summary: string;
  key: string;
  value: string;
}

export type Step = RunStep | SysctlStep;

/**
 * Renders a step as the shell command an administrator could paste to repeat
 * it. With `maxInputLines`, a longer input shows only its first lines and a
 * count of the rest, and the result can no longer be pasted.
 */
export function renderStep(step: Step, formatArgv: (argv: readonly string[]) => string, maxInputLines = Infinity): string {
  if (step.kind === "sysctl") {
    return `sysctl -w ${step.key}=${step.value}`;
  }
  const command = formatArgv(step.argv);
  if (step.input === undefined) {
    return command;
  }
  const input = step.input.replace(/\n$/, "");
  const lines = countLines(input);
  if (lines <= maxInputLines) {
    return `${command} <<'EOF'\n${input}\nEOF`;
  }
  const headLines = LOGGED_HEAD_LINES;
  let end = -1;
  for (let line = 0; line < headLines; line += 1) {
    end = input.indexOf("\n", end + 1);
  }
  return `${command} <<'EOF'\n${input.slice(0, end)}\n# ... ${lines - headLines} more lines (--verbose logs them all)\nEOF`;
}

/** Lines of an input shown when it is cut short. */
const LOGGED_HEAD_LINES = 5;

/** Counts the lines of `text`, which has no final newline; "" has none. */
export function countLines(text: string): number {
  if (text === "") {
    return 0;
  }
  let count = 1;
  for (let index = text.indexOf("\n"); index !== -1; index = text.indexOf("\n", index + 1)) {
    count += 1;
  }
  return count;
}
