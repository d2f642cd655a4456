import { CommandError, formatArgv, withContext } from "./errors.js";
import type { Logger } from "./log.js";
import { countLines, renderStep, type Step } from "./plan/step.js";
import type { System } from "./system/system.js";

// Tests of crash recovery set SPLITROUTE_TEST_KILL_AFTER_STEP=N to have the
// process kill itself with SIGKILL once N steps of this run have completed
// (0: before the first). Nothing else reads it.
const killAfter = process.env.SPLITROUTE_TEST_KILL_AFTER_STEP;
let completedSteps = 0;

/** Kills this process if a crash test asked for it at this point. */
export function crashPoint(): void {
  if (killAfter !== undefined && Number(killAfter) === completedSteps) {
    process.kill(process.pid, "SIGKILL");
  }
}

// A copy of a large main table is one batch line per route. Logged whole,
// 100,000 routes put 7 MB into OpenVPN's log on every up, so above this
// many lines a step's input is logged in full only at debug level.
const MAX_LOGGED_INPUT_LINES = 100;

/**
 * Runs one step, logging it first as a command line an administrator could
 * replay. An input longer than MAX_LOGGED_INPUT_LINES is shortened unless
 * debug logging is on.
 */
export async function runStep(system: System, step: Step, log: Logger): Promise<void> {
  const fields =
    step.kind === "run" ? { argv: step.argv, inputLines: countLines((step.input ?? "").replace(/\n$/, "")) } : { sysctl: step.key, value: step.value };
  const maxInputLines = log.isLevelEnabled("debug") ? Infinity : MAX_LOGGED_INPUT_LINES;
  log.info(fields, `[#] ${renderStep(step, formatArgv, maxInputLines)}`);
  try {
    if (step.kind === "sysctl") {
      await system.writeSysctl(step.key, step.value);
      return;
    }
    const result = await system.run(step.argv, step.input);
    if (result.exitCode !== 0) {
      throw new CommandError(step.argv, result.exitCode, result.stderr);
    }
  } catch (error) {
    throw withContext(step.summary, error);
  } finally {
    completedSteps += 1;
    crashPoint();
  }
}

/** Runs steps in order and stops at the first failure, which it throws. */
export async function applySteps(system: System, steps: readonly Step[], log: Logger): Promise<void> {
  for (const step of steps) {
    await runStep(system, step, log);
  }
}

/** Runs every step even after failures, and returns all the errors. */
export async function applyAllSteps(system: System, steps: readonly Step[], log: Logger): Promise<Error[]> {
  const failures: Error[] = [];
  for (const step of steps) {
    try {
      await runStep(system, step, log);
    } catch (error) {
      log.error((error as Error).message);
      failures.push(error as Error);
    }
  }
  return failures;
}
