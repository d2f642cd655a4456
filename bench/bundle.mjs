// Builds the bundle that the packages ship, so the benchmark measures the
// hooks as installed. The esbuild options are those of writeBundle in
// scripts/package.mjs; keep the two in step.

import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildSync } from "esbuild";

// src/cli.ts awaits at top level, so the bundle is an ES module, and the
// banner gives bundled CommonJS packages the require() they call.
const BANNER = 'import { createRequire } from "node:module";\nconst require = createRequire(import.meta.url);';

/**
 * Writes splitroute.mjs and the hooks into `dir`, laid out as the packages
 * install them in /usr/lib/splitroute, where hooks/run-splitroute finds the
 * bundle beside itself. Returns the bundle's size in bytes.
 */
export function stageBundle(repo, dir) {
  const result = buildSync({
    entryPoints: [join(repo, "src/cli.ts")],
    bundle: true,
    platform: "node",
    target: "node18.19",
    format: "esm",
    banner: { js: BANNER },
    write: false,
    logLevel: "silent",
  });
  if (result.warnings.length > 0) {
    throw new Error(`esbuild warned:\n${result.warnings.map((warning) => warning.text).join("\n")}`);
  }
  const code = result.outputFiles[0].text.replace(/^#!.*\n/, "");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "splitroute.mjs"), code, { mode: 0o644 });
  for (const hook of ["up", "down", "run-splitroute"]) {
    copyFileSync(join(repo, "hooks", hook), join(dir, hook));
    chmodSync(join(dir, hook), 0o755);
  }
  return Buffer.byteLength(code);
}
