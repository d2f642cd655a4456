import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse } from "ini";

import { ConfigError } from "../errors.js";
import { DEFAULT_CONFIG_PATH, type Config } from "./types.js";
import { DEFAULTS, validateConfig } from "./validate.js";

/**
 * Loads the configuration from `--config`, then SPLITROUTE_CONFIG, then the
 * default path. Only a missing default file falls back to built-in defaults:
 * a file named explicitly must exist. A relative path is resolved against
 * the working directory, so that messages and the record name the file
 * wherever they are read.
 */
export function loadConfig(explicitPath: string | undefined, env: NodeJS.ProcessEnv): Config {
  const named = explicitPath ?? (env.SPLITROUTE_CONFIG || undefined);
  // resolve("") would name the working directory, so an empty --config stays empty.
  const path = named === "" ? named : resolve(named ?? DEFAULT_CONFIG_PATH);

  let text: string;
  try {
    text = readChecked(path);
  } catch (error) {
    if (named === undefined && (error as NodeJS.ErrnoException).code === "ENOENT") {
      return { ...structuredClone(DEFAULTS), source: "built-in defaults" };
    }
    if (error instanceof ConfigError) {
      throw error;
    }
    let origin: PathOrigin = "default";
    let fallback = `${DEFAULT_CONFIG_PATH} (built-in defaults when that file does not exist)`;
    if (explicitPath !== undefined) {
      origin = "--config";
      if (env.SPLITROUTE_CONFIG) {
        fallback = `${resolve(env.SPLITROUTE_CONFIG)}, which SPLITROUTE_CONFIG names`;
      }
    } else if (named !== undefined) {
      origin = "SPLITROUTE_CONFIG";
    }
    throw new ConfigError(readFailureMessage(path, error as NodeJS.ErrnoException, origin, fallback));
  }
  // Every problem goes into one message: the syntax problems, then what
  // validation finds in the rest of the file.
  const problems = checkSyntax(text);
  try {
    const config = validateConfig(parse(text), path);
    if (problems.length === 0) {
      return config;
    }
  } catch (error) {
    if (!(error instanceof ConfigError)) {
      throw error;
    }
    // A name that both checks reject is reported once, with its line number.
    const located = new Set(problems.map((problem) => problem.replace(/^line \d+: /, "")));
    problems.push(...error.message.split("\n").slice(1).map((line) => line.trim()).filter((problem) => !located.has(problem)));
  }
  throw new ConfigError(`invalid configuration in ${path}:\n${problems.map((problem) => `  ${problem}`).join("\n")}`);
}

/** The source of the configuration file's path. */
export type PathOrigin = "--config" | "SPLITROUTE_CONFIG" | "default";

/**
 * Describes why the file at `path` could not be read, in words rather than
 * Node's "ENOENT: no such file or directory, open ..." text, with the fix.
 * `fallback` names what splitroute reads without the option or variable.
 */
export function readFailureMessage(path: string, error: NodeJS.ErrnoException, origin: PathOrigin, fallback: string): string {
  switch (error.code) {
    case "ENOENT":
    case "ENOTDIR":
      if (origin === "--config" && path === "") {
        return `--config is empty; name a configuration file, or leave out --config to use ${fallback}`;
      }
      if (origin === "--config") {
        return `configuration file ${path} not found; correct the path given with --config, or leave out --config to use ${fallback}`;
      }
      if (origin === "SPLITROUTE_CONFIG") {
        return `configuration file ${path} not found; correct SPLITROUTE_CONFIG, or unset it to use ${fallback}`;
      }
      break;
    case "EACCES":
    case "EPERM":
      return `cannot read configuration file ${path}: permission denied; run splitroute as root, or make the file readable by the user that runs it`;
    case "EISDIR":
      return `cannot read configuration file ${path}: it is a directory; name a file`;
  }
  return `cannot read configuration file ${path}: ${error.message}`;
}

/**
 * Reads the file through the descriptor whose ownership was checked, so a
 * file swapped in between the check and the read is never used.
 */
function readChecked(path: string): string {
  const descriptor = openSync(path, "r");
  try {
    checkOwnership(path, descriptor);
    return readFileSync(descriptor, "utf8");
  } finally {
    closeSync(descriptor);
  }
}

// Quotes, comment characters and the names of Object.prototype's members
// mean something else to the ini parser or to JavaScript objects, so section
// and key names are limited to plain words. A key may end in "[]", which ini
// reads as a list; validation then rejects the list with its value.
function isPlainName(name: string, allowList = false): boolean {
  const word = allowList ? name.replace(/\[\]$/, "") : name;
  return /^[A-Za-z0-9_.-]+$/.test(word) && !["__proto__", "constructor", "prototype"].includes(word);
}

/** Prints a name from the file as it is when plain, else as a JSON string, so it cannot forge a log line. */
function shown(name: string): string {
  return /^[^\x00-\x1f\x7f-\x9f]+$/u.test(name) ? name : JSON.stringify(name);
}

/**
 * Rejects what the ini parser would quietly accept: a byte order mark or a
 * section header that is not alone on its line (read as keys), a line
 * without "=", quotes or comment characters in names, a value cut short by
 * ";" or "#", and a key set twice in one section (the last would win).
 */
function checkSyntax(text: string): string[] {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  let section = "";
  if (text.startsWith("\uFEFF")) {
    problems.push("line 1: the file starts with a byte order mark, which ini would read as part of the first [table] or key; save the file as UTF-8 without one");
  }
  // ini splits lines at CR as well as LF, so this must too.
  for (const [index, raw] of text.replace(/^\uFEFF/, "").split(/\r\n|\r|\n/).entries()) {
    const line = raw.trim();
    const number = index + 1;
    if (line === "" || line.startsWith(";") || line.startsWith("#")) {
      continue;
    }
    if (line.startsWith("[")) {
      // The ini package reads "[name] ; comment" as a key, so a header must
      // stand alone on its line.
      const header = /^\[([^\]]+)\]$/.exec(line);
      const name = header?.[1]?.trim() ?? "";
      if (header === null) {
        problems.push(`line ${number}: invalid section header ${JSON.stringify(line)}; write it as [name] on a line of its own`);
      } else if (!isPlainName(name)) {
        const reason = name.startsWith("bypass.")
          ? "invalid section name; use [bypass.NAME] with NAME made of letters, digits, '_' and '-'"
          : "unknown section; section names are letters, digits, '_', '-' and '.'";
        problems.push(`line ${number}: [${shown(name)}]: ${reason}`);
      } else {
        section = name;
      }
      continue;
    }
    const equals = line.indexOf("=");
    if (equals <= 0) {
      problems.push(`line ${number}: invalid line ${JSON.stringify(line)}; write key = value`);
      continue;
    }
    const name = line.slice(0, equals).trim();
    if (!isPlainName(name, true)) {
      problems.push(`line ${number}: ${section}.${shown(name)}: unknown key; key names are letters, digits and '_'`);
      continue;
    }
    // ini cuts a value at ";" or "#" even without a space before it, which
    // would silently shorten "tun0;tun1" to "tun0".
    const value = line.slice(equals + 1).trim();
    if (/[^\s][;#]/.test(value)) {
      problems.push(
        `line ${number}: ${section}.${name}: invalid value ${JSON.stringify(value)}; ';' and '#' start a comment only after whitespace, and values cannot contain them`,
      );
      continue;
    }
    const key = `${section}.${name}`;
    const first = seen.get(key);
    if (first !== undefined) {
      problems.push(`line ${number}: ${key} is set again (first on line ${first}); keep one`);
    }
    seen.set(key, first ?? number);
  }
  return problems;
}

// A root hook that reads a file others can write runs their choices as root.
function checkOwnership(path: string, descriptor: number): void {
  if (process.getuid?.() !== 0) {
    return;
  }
  const stats = fstatSync(descriptor);
  if (stats.uid !== 0 || (stats.mode & 0o022) !== 0) {
    const mode = (stats.mode & 0o777).toString(8);
    throw new ConfigError(
      `refusing configuration file ${path}: owned by uid ${stats.uid} with mode ${mode}; it must be owned by root and writable by root only (chown root: ${path}; chmod go-w ${path})`,
    );
  }
}
