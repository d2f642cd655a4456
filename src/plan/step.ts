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

/** Renders a step as the shell command an administrator could paste to repeat it. */
export function renderStep(step: Step, formatArgv: (argv: readonly string[]) => string): string {
  if (step.kind === "sysctl") {
    return `sysctl -w ${step.key}=${step.value}`;
  }
  const command = formatArgv(step.argv);
  if (step.input === undefined) {
    return command;
  }
  return `${command} <<'EOF'\n${step.input.replace(/\n$/, "")}\nEOF`;
}
