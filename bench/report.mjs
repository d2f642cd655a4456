// Turns the benchmark's samples into medians, checks them against the
// performance targets, and renders the tables that `npm run bench` prints.

const COLUMNS = ["node", "up-bundle", "down-bundle", "up-tsc", "down-tsc", "batch", "loop"];

// The targets, all ratios within one run: up with many routes close to the
// bare batch it cannot avoid, the hooks with few routes close to starting
// node, and bounded memory.
export const TARGETS = {
  upToBatch: 1.3,
  hookToNode: 2,
  smallRoutes: 20,
  peakMb: 100,
  // A route costs at most this much more at the largest size than at the
  // next smaller one before the growth counts as worse than linear.
  linearSlack: 1.25,
};

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const kbToMb = (kb) => (kb * 1024) / 1e6;

/** Adds the median wall time (ms) and peak memory (MB, 10^6 bytes) of each variant. */
export function summarize(scenario) {
  const variants = {};
  for (const { key, label } of scenario.variants) {
    const samples = scenario.samples[key];
    variants[key] = {
      label,
      runs: samples.length,
      medianMs: median(samples.map((sample) => sample.wallMs)),
      medianPeakMb: median(samples.map((sample) => kbToMb(sample.peakKb))),
      samples,
    };
  }
  return { routes: scenario.routes, mix: scenario.mix, counts: scenario.counts, variants, breakdown: scenario.breakdown };
}

function cell(variant, field, digits) {
  return variant === undefined ? "skipped" : variant[field].toFixed(digits);
}

function table(header, rows) {
  const widths = header.map((title, index) => Math.max(title.length, ...rows.map((row) => row[index].length)));
  const line = (row) => `| ${row.map((text, index) => (index < 2 ? text.padEnd(widths[index]) : text.padStart(widths[index]))).join(" | ")} |`;
  const rule = `|${widths.map((width, index) => (index < 2 ? `:${"-".repeat(width + 1)}` : `${"-".repeat(width + 1)}:`)).join("|")}|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

function labels(scenarios) {
  const found = new Map();
  for (const scenario of scenarios) {
    for (const [key, variant] of Object.entries(scenario.variants)) {
      found.set(key, variant.label);
    }
  }
  return COLUMNS.filter((key) => found.has(key)).map((key) => [key, found.get(key)]);
}

/** Checks each target and returns one { met, text } per check, text giving the numbers. */
export function checkTargets(scenarios) {
  const results = [];
  const add = (met, text) => results.push({ met, text });
  for (const mix of new Set(scenarios.map((scenario) => scenario.mix))) {
    const series = scenarios.filter((scenario) => scenario.mix === mix).sort((a, b) => a.routes - b.routes);
    const largest = series[series.length - 1];
    const up = largest.variants["up-bundle"];
    const batch = largest.variants.batch;
    const ratio = up.medianMs / batch.medianMs;
    add(ratio <= TARGETS.upToBatch, `${mix}, ${largest.routes} routes: up is ${ratio.toFixed(2)}x the bare ip -batch copy (target at most ${TARGETS.upToBatch}x)`);

    if (series.length >= 3) {
      const smallest = series[0];
      const previous = series[series.length - 2];
      const perRoute = (scenario) => (scenario.variants["up-bundle"].medianMs - smallest.variants["up-bundle"].medianMs) / (scenario.routes - smallest.routes);
      const growth = perRoute(largest) / perRoute(previous);
      add(
        growth <= TARGETS.linearSlack,
        `${mix}: up costs ${(perRoute(previous) * 1000).toFixed(1)} µs per added route up to ${previous.routes} routes and ${(perRoute(largest) * 1000).toFixed(1)} µs up to ${largest.routes} (linear within ${TARGETS.linearSlack}x)`,
      );
    }

    for (const scenario of series.filter((entry) => entry.routes <= TARGETS.smallRoutes)) {
      const node = scenario.variants.node.medianMs;
      for (const key of ["up-bundle", "down-bundle"]) {
        const hookRatio = scenario.variants[key].medianMs / node;
        add(
          hookRatio <= TARGETS.hookToNode,
          `${mix}, ${scenario.routes} routes: ${scenario.variants[key].label} takes ${hookRatio.toFixed(2)}x node -e 0 (target at most ${TARGETS.hookToNode}x)`,
        );
      }
    }

    for (const key of ["up-bundle", "down-bundle"]) {
      const peak = largest.variants[key].medianPeakMb;
      add(peak <= TARGETS.peakMb, `${mix}, ${largest.routes} routes: ${largest.variants[key].label} peaks at ${peak.toFixed(0)} MB (target at most ${TARGETS.peakMb} MB)`);
    }
  }
  return results;
}

/** Returns how long at least one command was running: the length of the union of their intervals. */
function busyMs(commands) {
  let busy = 0;
  let coveredUntil = -Infinity;
  for (const { startMs, durationMs } of commands) {
    const end = startMs + durationMs;
    if (end > coveredUntil) {
      busy += end - Math.max(startMs, coveredUntil);
      coveredUntil = end;
    }
  }
  return busy;
}

function renderBreakdown(scenario, key) {
  const timeline = scenario.breakdown?.[key];
  if (timeline === undefined) {
    return [];
  }
  const busy = busyMs(timeline.commands);
  const lines = [
    `${scenario.variants[key].label}, ${scenario.routes.toLocaleString("en-US")} routes, ${scenario.mix}: ${timeline.totalMs} ms from spawn to exit; ` +
      `${timeline.commands.length} commands ran during ${busy} ms of it, node alone ${timeline.totalMs - busy} ms; node peaked at ${kbToMb(timeline.nodePeakKb).toFixed(0)} MB`,
    "  start     took  command",
  ];
  for (const command of timeline.commands) {
    lines.push(`  ${`+${command.startMs}`.padStart(6)} ms ${String(command.durationMs).padStart(5)} ms  ${command.command}`);
  }
  return lines;
}

export function renderReport(results) {
  const scenarios = results.scenarios;
  const columns = labels(scenarios);
  const header = ["routes", "mix", ...columns.map(([, label]) => label)];
  const rows = (field, digits) =>
    scenarios.map((scenario) => [scenario.routes.toLocaleString("en-US"), scenario.mix, ...columns.map(([key]) => cell(scenario.variants[key], field, digits))]);

  const ratioRows = scenarios.map((scenario) => {
    const v = scenario.variants;
    return [
      scenario.routes.toLocaleString("en-US"),
      scenario.mix,
      (v["up-bundle"].medianMs / v.batch.medianMs).toFixed(2),
      (v["up-bundle"].medianMs / v.node.medianMs).toFixed(2),
      (v["down-bundle"].medianMs / v.node.medianMs).toFixed(2),
      v.loop === undefined ? "skipped" : ((v.loop.medianMs / scenario.routes) * 1000).toFixed(0),
    ];
  });

  const machine = results.machine;
  const runs = `${results.settings.runs} runs each, shell loop ${results.settings.loopRuns}, skipped above ${results.settings.loopMax.toLocaleString("en-US")} routes`;
  const out = [
    `splitroute benchmark, ${results.date}: node ${machine.node}, ${machine.ip}, ${machine.nft}, Linux ${machine.kernel}, ${machine.cpus} CPUs, ${machine.memoryGiB} GiB`,
    `load average ${machine.loadBefore.map((value) => value.toFixed(1)).join(" ")} before, ${machine.loadAfter.map((value) => value.toFixed(1)).join(" ")} after; ${runs}`,
    "",
    "Wall time, median ms (process start to exit):",
    "",
    table(header, rows("medianMs", 1)),
    "",
    "Peak resident memory, median MB (largest process of the run):",
    "",
    table(header, rows("medianPeakMb", 0)),
    "",
    "Ratios (bundle):",
    "",
    table(["routes", "mix", "up / ip -batch", "up / node -e 0", "down / node -e 0", "shell loop µs per route"], ratioRows),
    "",
    "Targets:",
    "",
    ...checkTargets(scenarios).map((result) => `- ${result.met ? "met" : "MISSED"}: ${result.text}`),
    "",
    "Where the time goes (one more run of each hook with debug logging, which adds a little; start is ms after spawn):",
    "",
  ];
  const picks = new Set();
  for (const mix of new Set(scenarios.map((scenario) => scenario.mix))) {
    const series = scenarios.filter((scenario) => scenario.mix === mix).sort((a, b) => a.routes - b.routes);
    picks.add(series[0]);
    picks.add(series[series.length - 1]);
  }
  for (const scenario of picks) {
    out.push(...renderBreakdown(scenario, "up-bundle"), ...renderBreakdown(scenario, "down-bundle"), "");
  }
  return `${out.join("\n")}\n`;
}
