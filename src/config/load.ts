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
  const named = explicitPath ?? (env.SPLITROUTE_CONFIG || undefined);
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
  checkSyntax(text, path);
  return validateConfig(parse(text), path);
}

/**
 * Rejects what the ini parser would quietly accept: a section header without
 * its closing bracket (read as a key), a line without "=", and a key set twice
 * in one section (the last value would win unnoticed).
 */
function checkSyntax(text: string, path: string): void {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  let section = "";
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    const number = index + 1;
    if (line === "" || line.startsWith(";") || line.startsWith("#")) {
      continue;
    }
    if (line.startsWith("[")) {
      // The ini package reads "[name] ; comment" as a key, so a header must
      // stand alone on its line.
      const header = /^\[([^\]]+)\]$/.exec(line);
      if (header === null) {
        problems.push(`line ${number}: invalid section header ${JSON.stringify(line)}; write it as [name] on a line of its own`);
      } else {
        section = header[1]!.trim();
      }
      continue;
    }
    const equals = line.indexOf("=");
    if (equals <= 0) {
      problems.push(`line ${number}: invalid line ${JSON.stringify(line)}; write key = value`);
      continue;
    }
    const key = `${section}.${line.slice(0, equals).trim()}`;
    const first = seen.get(key);
    if (first !== undefined) {
      problems.push(`line ${number}: ${key} is set again (first on line ${first}); keep one`);
    }
    seen.set(key, first ?? number);
  }
  if (problems.length > 0) {
    throw new ConfigError(`invalid configuration in ${path}:\n${problems.map((problem) => `  ${problem}`).join("\n")}`);
  }
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
