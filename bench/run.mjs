// Benchmarks the up and down hooks against copying the routing table with a
// shell loop and with one bare `ip -batch`, in throwaway network namespaces
// whose main table contains N routes. Needs root, iproute2, nftables, bash and
// GNU time (/usr/bin/time); `npm run bench` builds dist/ first.
//
// Usage: node bench/run.mjs [--sizes 10,1000,10000,100000] [--mixes ipv4,mixed]
//          [--runs 5] [--loop-runs 3] [--loop-max 10000] [--out DIR]
//   --sizes      route counts in main, comma-separated
//   --mixes      ipv4 (all routes IPv4) and/or mixed (half IPv4, half IPv6)
//   --runs       runs of each variant per size; the table shows medians
//   --loop-runs  runs of the shell loop, which takes about 1.5 ms per route
//   --loop-max   largest route count the shell loop runs at
//   --out        folder for the JSON results (default: bench-results)

import { execFileSync, spawn } from "node:child_process";
import { accessSync, constants, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, release, tmpdir, totalmem, loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { stageBundle } from "./bundle.mjs";
import { createLab, loadRoutes, routeCounts, routeLines } from "./lab.mjs";
import { renderReport, summarize } from "./report.mjs";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

// The node that hooks/run-splitroute picks when SPLITROUTE_NODE is unset,
// so that `node -e 0` and the hooks start the same binary.
const HOOK_NODES = ["/usr/bin/node", "/usr/local/bin/node"];

function options() {
  const { values } = parseArgs({
    options: {
      sizes: { type: "string", default: "10,1000,10000,100000" },
      mixes: { type: "string", default: "ipv4,mixed" },
      runs: { type: "string", default: "5" },
      "loop-runs": { type: "string", default: "3" },
      "loop-max": { type: "string", default: "10000" },
      out: { type: "string", default: join(REPO, "bench-results") },
    },
  });
  const sizes = values.sizes.split(",").map(Number);
  const mixes = values.mixes.split(",");
  const numbers = { runs: Number(values.runs), loopRuns: Number(values["loop-runs"]), loopMax: Number(values["loop-max"]) };
  if (sizes.some((size) => !Number.isInteger(size) || size < 1)) {
    throw new Error(`invalid --sizes ${values.sizes}: expected positive integers separated by commas`);
  }
  if (mixes.some((mix) => mix !== "ipv4" && mix !== "mixed")) {
    throw new Error(`invalid --mixes ${values.mixes}: expected ipv4, mixed or both`);
  }
  for (const [name, value] of Object.entries(numbers)) {
    const minimum = name === "loopMax" ? 0 : 1;
    if (!Number.isInteger(value) || value < minimum) {
      const flag = name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
      throw new Error(`invalid --${flag} ${value}: expected an integer of at least ${minimum}`);
    }
  }
  return { sizes, mixes, ...numbers, out: values.out };
}

function requireTools(node) {
  if (process.getuid?.() !== 0) {
    throw new Error("the benchmark needs root, because it creates network namespaces; run it as root");
  }
  const tools = { "/usr/bin/time": "time", "/bin/bash": "bash", [node ?? HOOK_NODES[0]]: "nodejs" };
  for (const tool of ["ip", "nft"]) {
    tools[which(tool) ?? tool] = tool === "ip" ? "iproute2" : "nftables";
  }
  for (const [path, pkg] of Object.entries(tools)) {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      throw new Error(`${path} not found; install the Debian package ${pkg} (scripts/install-deps does)`);
    }
  }
}

function which(tool) {
  for (const dir of SYSTEM_PATH.split(":")) {
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return join(dir, tool);
    } catch {
      // Not in this folder.
    }
  }
  return undefined;
}

function toolVersion(argv) {
  try {
    return execFileSync(argv[0], argv.slice(1), { encoding: "utf8" }).trim().split("\n")[0];
  } catch {
    return "unknown";
  }
}

/** Lists what one round measures for `routes` routes, with the argv and environment of each. */
function variantsFor(scenario, paths, settings) {
  const ip = which("ip");
  const tools = { PATH: SYSTEM_PATH, LC_ALL: "C" };
  // As OpenVPN runs the hooks: no PATH, the device in `dev`. The state goes
  // to a folder of the benchmark's own, and the configuration is the file
  // the packages install, so that reading and checking it is measured.
  const hook = { dev: "tun0", SPLITROUTE_CONFIG: paths.config, SPLITROUTE_STATE_DIR: paths.state };
  const variants = [
    { key: "node", label: "node -e 0", argv: [paths.node, "-e", "0"], env: {} },
    { key: "batch", label: "ip -batch copy", argv: [ip, "-batch", paths.copyBatch], env: tools },
  ];
  if (scenario.routes <= settings.loopMax) {
    variants.push({ key: "loop", label: "shell loop", argv: ["/bin/bash", paths.loop], env: tools, mayFail: true, runs: settings.loopRuns });
  }
  variants.push(
    { key: "up-bundle", label: "up (bundle)", argv: [join(paths.stage, "up")], env: hook },
    { key: "down-bundle", label: "down (bundle)", argv: [join(paths.stage, "down")], env: hook },
    { key: "up-tsc", label: "up (tsc)", argv: [join(REPO, "hooks", "up")], env: hook },
    { key: "down-tsc", label: "down (tsc)", argv: [join(REPO, "hooks", "down")], env: hook },
  );
  return variants;
}

// The common recipe, one `ip route add` per route. Lines that ip cannot
// take back (a `linkdown` route through tun0, a second fe80::/64) fail and
// the loop goes on, as it does wherever the recipe is used.
function loopScript(counts) {
  const lines = ["ip route show table main | while read r; do ip route add $r table 2; done"];
  if (counts[6] > 0) {
    lines.push("ip -6 route show table main | while read r; do ip -6 route add $r table 2; done");
  }
  return `${lines.join("\n")}\n`;
}

// The namespaces that exist now and the worker running in one of them. On
// Ctrl-C or SIGTERM the worker is stopped, and the namespaces are deleted.
const labs = new Set();
let activeWorker;
let interrupted = false;

function runWorker(lab, planPath, resultPath) {
  return new Promise((resolve, reject) => {
    const worker = spawn("ip", ["netns", "exec", lab.host, process.execPath, join(REPO, "bench", "worker.mjs"), planPath, resultPath], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    activeWorker = worker;
    worker.on("error", reject);
    worker.on("close", (code, signal) => {
      activeWorker = undefined;
      if (code === 0) {
        resolve(JSON.parse(readFileSync(resultPath, "utf8")));
      } else {
        reject(new Error(interrupted ? "interrupted" : `benchmark worker failed with ${signal ?? `exit code ${code}`}`));
      }
    });
  });
}

async function runScenario(scenario, work, paths, settings) {
  const dir = join(work, `${scenario.mix}-${scenario.routes}`);
  mkdirSync(dir);
  const counts = routeCounts(scenario.routes, scenario.mix);
  const scenarioPaths = {
    ...paths,
    state: join(dir, "state"),
    copyBatch: join(dir, "copy.batch"),
    loop: join(dir, "loop.sh"),
  };
  // The bare copy: the benchmark routes and the default routes, each with
  // `table 2`, as one batch prepared beforehand.
  const defaults = [`route add default via 192.0.2.1 table 2`];
  if (counts[6] > 0) {
    defaults.push("route add default via 2001:db8:1::1 table 2");
  }
  writeFileSync(scenarioPaths.copyBatch, `${[...defaults, ...routeLines(counts, " table 2")].join("\n")}\n`);
  writeFileSync(scenarioPaths.loop, loopScript(counts));

  const lab = createLab();
  labs.add(lab);
  try {
    loadRoutes(lab, counts, join(dir, "main.batch"));
    const variants = variantsFor(scenario, scenarioPaths, settings);
    const plan = {
      routes: scenario.routes,
      runs: settings.runs,
      variants,
      logFile: join(dir, "output.log"),
      timeFile: join(dir, "time.txt"),
      peakPreload: join(REPO, "bench", "node-peak.cjs"),
    };
    writeFileSync(join(dir, "plan.json"), JSON.stringify(plan));
    process.stderr.write(`bench: ${scenario.routes} routes, ${scenario.mix} (${counts[4]} IPv4, ${counts[6]} IPv6) `);
    const result = await runWorker(lab, join(dir, "plan.json"), join(dir, "result.json"));
    process.stderr.write("\n");
    return { ...scenario, counts, variants: variants.map(({ key, label }) => ({ key, label })), ...result };
  } finally {
    lab.delete();
    labs.delete(lab);
  }
}

async function main() {
  const settings = options();
  const node = HOOK_NODES.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  requireTools(node);

  const work = mkdtempSync(join(tmpdir(), "splitroute-bench-"));
  const stop = () => {
    interrupted = true;
    activeWorker?.kill("SIGTERM");
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    const paths = { node, stage: join(work, "lib"), config: join(work, "splitroute.conf") };
    const bundleBytes = stageBundle(REPO, paths.stage);
    copyFileSync(join(REPO, "packaging", "splitroute.conf"), paths.config);

    const machine = {
      node: toolVersion([node, "--version"]),
      ip: toolVersion(["ip", "-V"]),
      nft: toolVersion(["nft", "--version"]),
      kernel: release(),
      cpus: cpus().length,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      loadBefore: loadavg(),
    };
    const scenarios = [];
    for (const mix of settings.mixes) {
      for (const routes of settings.sizes) {
        if (interrupted) {
          throw new Error("interrupted");
        }
        scenarios.push(await runScenario({ routes, mix }, work, paths, settings));
      }
    }
    machine.loadAfter = loadavg();

    const results = { date: new Date().toISOString(), machine, settings, bundleBytes, scenarios: scenarios.map(summarize) };
    process.stdout.write(renderReport(results));
    mkdirSync(settings.out, { recursive: true });
    const file = join(settings.out, `bench-${results.date.replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    process.stdout.write(`\nresults written to ${file}\n`);
  } finally {
    for (const lab of labs) {
      lab.delete();
    }
    rmSync(work, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (error) {
  process.stderr.write(`\nbench: error: ${error.message}\n`);
  process.exitCode = interrupted ? 130 : 1;
}
