// Runs inside the benchmark's host namespace (bench/run.mjs starts it with
// `ip netns exec`), so that no measurement includes entering the namespace.
// It runs every variant once per round, round after round, so that a slow
// spell on a busy machine hits all variants alike, and writes the wall
// times and peak memory to a JSON file.
//
// Usage: node bench/worker.mjs PLAN.json RESULT.json

import { spawnSync } from "node:child_process";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";

const SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";
const TIME = "/usr/bin/time";

const [planPath, resultPath] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planPath, "utf8"));

/** Runs argv to completion with its output in the plan's log file; returns its exit status. */
function runLogged(argv, env) {
  const log = openSync(plan.logFile, "w");
  try {
    const result = spawnSync(argv[0], argv.slice(1), { stdio: ["ignore", log, log], env });
    if (result.error !== undefined) {
      throw result.error;
    }
    return result.status ?? 128;
  } finally {
    closeSync(log);
  }
}

function failure(label, argv, status) {
  const log = readFileSync(plan.logFile, "utf8");
  return new Error(`${label} (${argv.join(" ")}) exited with status ${status}; last output:\n${log.slice(-3000)}`);
}

/**
 * Measures one run of argv: wall time from spawn to exit, and the peak
 * resident set size that GNU time reports. That peak is the largest of the
 * process and each child it waited for, so for a hook it covers node and
 * every ip or nft it started.
 */
function measure(variant) {
  const argv = [TIME, "-f", "%M", "-o", plan.timeFile, ...variant.argv];
  const start = process.hrtime.bigint();
  const status = runLogged(argv, variant.env);
  const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
  if (status !== 0 && !variant.mayFail) {
    throw failure(variant.label, variant.argv, status);
  }
  // time writes "Command exited with non-zero status N" before the format on failure.
  const lines = readFileSync(plan.timeFile, "utf8").trim().split("\n");
  return { wallMs, peakKb: Number(lines[lines.length - 1]) };
}

/** Runs an untimed command inside the namespace, such as a reset between runs. */
function quiet(argv, { mayFail = false } = {}) {
  const status = runLogged(argv, { PATH: SYSTEM_PATH, LC_ALL: "C" });
  if (status !== 0 && !mayFail) {
    throw failure("setup command", argv, status);
  }
}

/** Counts the routes in table 2 of each family. */
function countTable(table) {
  let total = 0;
  for (const family of ["-4", "-6"]) {
    const result = spawnSync("ip", [family, "-o", "route", "show", "table", String(table)], { encoding: "utf8", maxBuffer: 1 << 30 });
    total += result.status === 0 ? result.stdout.split("\n").filter(Boolean).length : 0;
  }
  return total;
}

function emptyTable2() {
  quiet(["ip", "-4", "route", "flush", "table", "2"], { mayFail: true });
  quiet(["ip", "-6", "route", "flush", "table", "2"], { mayFail: true });
}

// Sanity checks on the first round: the copy contains at least the benchmark's
// routes, and down leaves none behind. A failed check ends the benchmark,
// because the times would describe something other than a copy.
function expectCopied(label) {
  const copied = countTable(2);
  if (copied < plan.routes) {
    throw new Error(`${label}: table 2 contains ${copied} routes after the copy, expected at least ${plan.routes}`);
  }
}

function expectEmpty(label) {
  const left = countTable(2);
  if (left !== 0) {
    throw new Error(`${label}: table 2 still contains ${left} routes, expected none`);
  }
}

const AFTER = {
  batch: (first) => {
    if (first) expectCopied("ip -batch copy");
    emptyTable2();
  },
  loop: () => emptyTable2(),
  "up-bundle": (first) => first && expectCopied("up (bundle)"),
  "down-bundle": (first) => first && expectEmpty("down (bundle)"),
  "up-tsc": (first) => first && expectCopied("up (tsc)"),
  "down-tsc": (first) => first && expectEmpty("down (tsc)"),
};

const samples = Object.fromEntries(plan.variants.map((variant) => [variant.key, []]));
emptyTable2();
for (let round = 0; round < plan.runs; round += 1) {
  for (const variant of plan.variants) {
    if (round >= (variant.runs ?? plan.runs)) {
      continue;
    }
    samples[variant.key].push(measure(variant));
    AFTER[variant.key]?.(round === 0);
  }
  process.stderr.write(".");
}

writeFileSync(resultPath, JSON.stringify({ samples, breakdown: breakdownRuns() }));

/**
 * Runs up and down of the bundle once more with JSON debug logging, which
 * gives each command's duration and end time, and turns that into a
 * timeline, and records node's own peak memory. These runs are slower than
 * the measured ones by the cost of the debug logging, so they explain where
 * the time goes but are not medians.
 */
function breakdownRuns() {
  const timelines = {};
  for (const key of ["up-bundle", "down-bundle"]) {
    const variant = plan.variants.find((entry) => entry.key === key);
    if (variant === undefined) {
      continue;
    }
    const env = {
      ...variant.env,
      SPLITROUTE_LOG_FORMAT: "json",
      SPLITROUTE_LOG_LEVEL: "debug",
      NODE_OPTIONS: `--require ${plan.peakPreload}`,
      SPLITROUTE_BENCH_PEAK_FILE: plan.timeFile,
    };
    const startMs = Date.now();
    const status = runLogged(variant.argv, env);
    const endMs = Date.now();
    if (status !== 0) {
      throw failure(`${variant.label} with debug logging`, variant.argv, status);
    }
    timelines[key] = {
      ...timeline(readFileSync(plan.logFile, "utf8"), startMs, endMs),
      nodePeakKb: Number(readFileSync(plan.timeFile, "utf8")),
    };
  }
  return timelines;
}

/**
 * Reads the "ran ..." debug events, each logged when its command ended, and
 * returns the commands in the order they started, with start times in ms
 * since the hook was spawned.
 */
function timeline(log, startMs, endMs) {
  const commands = [];
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) {
      continue;
    }
    const event = JSON.parse(line);
    if (event.argv === undefined || event.durationMs === undefined) {
      continue;
    }
    commands.push({ command: event.argv.join(" "), startMs: event.time - event.durationMs - startMs, durationMs: event.durationMs });
  }
  commands.sort((a, b) => a.startMs - b.startMs);
  return { totalMs: endMs - startMs, commands };
}
