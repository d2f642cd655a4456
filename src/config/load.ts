import { readFileSync, statSync } from "node:fs";
import { parse } from "ini";

import { ConfigError } from "../errors.js";
import { DEFAULT_CONFIG_PATH, type Config } from "./types.js";
import { DEFAULTS, validateConfig } from "./validate.js";

/**
 * Loads the configuration from `--config`, then SPLITROUTE_CONFIG, then the
 * default path. Only a missing default file falls back to built-in defaults:
 * a file named explicitly must exist.
 */
export function loadConfig(explicitPath: string | undefined, env: NodeJS.ProcessEnv): Config {
  const named = explicitPath ?? env.SPLITROUTE_CONFIG;
  const path = named ?? DEFAULT_CONFIG_PATH;

  let text: string;
  try {
    checkOwnership(path);
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (named === undefined && (error as NodeJS.ErrnoException).code === "ENOENT") {
      return { ...structuredClone(DEFAULTS), source: "built-in defaults" };
    }
    if (error instanceof ConfigError) {
      throw error;
    }
    throw new ConfigError(`cannot read configuration file ${path}: ${(error as Error).message}`);
  }
  return validateConfig(parse(text), path);
}

// A root hook that reads a file others can write runs their choices as root.
function checkOwnership(path: string): void {
  if (process.getuid?.() !== 0) {
    return;
  }
  const stats = statSync(path);
  if (stats.uid !== 0 || (stats.mode & 0o022) !== 0) {
    const mode = (stats.mode & 0o777).toString(8);
    throw new ConfigError(
      `refusing configuration file ${path}: owned by uid ${stats.uid} with mode ${mode}; it must be owned by root and writable by root only (chown root: ${path}; chmod go-w ${path})`,
    );
  }
}
