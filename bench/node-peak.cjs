// Preloaded with NODE_OPTIONS=--require by the benchmark's breakdown runs:
// writes the peak resident set size of this node process alone, in KiB, to
// the file named by SPLITROUTE_BENCH_PEAK_FILE when it exits. GNU time
// reports the largest of node and the tools it ran, which hides node's own.
"use strict";

const { writeFileSync } = require("node:fs");

process.on("exit", () => {
  writeFileSync(process.env.SPLITROUTE_BENCH_PEAK_FILE, String(process.resourceUsage().maxRSS));
});
