// Helpers for the package tests: build the .deb and .rpm with
// scripts/package.mjs into a temporary folder, and read their file lists,
// config marking and dependencies in one shape for both formats.

import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

import { findTool } from "../../src/system/tools.js";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const VERSION: string = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version;

/** Tools the build needs, with the Debian package that provides each. */
const BUILD_TOOLS: Record<string, string> = { "dpkg-deb": "dpkg", rpmbuild: "rpm", rpm: "rpm" };
const LINT_TOOLS: Record<string, string> = { lintian: "lintian", rpmlint: "rpmlint" };

/**
 * Returns why the package tests cannot run here, or undefined when every
 * tool is installed. scripts/install-deps installs them all.
 */
export function missingTools(withLint = false): string | undefined {
  const tools = { ...BUILD_TOOLS, ...(withLint ? LINT_TOOLS : {}) };
  const missing = Object.entries(tools).filter(([tool]) => findTool(tool) === undefined);
  if (missing.length === 0) {
    return undefined;
  }
  const packages = [...new Set(missing.map(([, debianPackage]) => debianPackage))].join(" ");
  return `${missing.map(([tool]) => tool).join(", ")} not installed (apt-get install ${packages}, or run scripts/install-deps)`;
}

export interface BuiltPackages {
  dir: string;
  deb: string;
  rpm: string;
  /** Standard output of scripts/package.mjs. */
  output: string;
  remove(): Promise<void>;
}

/** Runs `npm run package -- --out DIR` (with `--lint` when asked) into a new temporary folder. */
export async function buildPackages(options: { lint?: boolean } = {}): Promise<BuiltPackages> {
  const dir = await mkdtemp(join(tmpdir(), "splitroute-packages-"));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    const args = ["run", "--silent", "package", "--", "--out", dir, ...(options.lint ? ["--lint"] : [])];
    const result = await execa("npm", args, { cwd: REPO, all: true, reject: false });
    if (result.exitCode !== 0) {
      throw new Error(`npm ${args.join(" ")} failed with exit code ${result.exitCode}:\n${result.all}`);
    }
    return {
      dir,
      deb: join(dir, `splitroute_${VERSION}_all.deb`),
      rpm: join(dir, `splitroute-${VERSION}-1.noarch.rpm`),
      output: String(result.all),
      remove,
    };
  } catch (error) {
    await remove();
    throw error;
  }
}

/** One entry of a package's file list, in the same shape for deb and rpm. */
export interface PackageEntry {
  path: string;
  /** st_mode in octal, file type included, such as "100644" or "40755". */
  mode: string;
  /** The target of a symbolic link, "" for other entries. */
  target: string;
}

/** Lists every entry of the .deb's data archive, parent folders included. */
export async function debEntries(deb: string): Promise<PackageEntry[]> {
  const { stdout } = await execa("dpkg-deb", ["--contents", deb]);
  return stdout.split("\n").map((line) => {
    // drwxr-xr-x root/root 0 2026-12-04 20:30 ./etc/
    // lrwxrwxrwx root/root 0 2026-12-04 20:30 ./usr/bin/splitroute -> ../lib/splitroute/run-splitroute
    const match = /^(\S{10}) \S+\s+\d+ \S+ \S+ \.(\/\S*?)\/?(?: -> (\S+))?$/.exec(line);
    if (match === null) {
      throw new Error(`unexpected dpkg-deb --contents line: ${JSON.stringify(line)}`);
    }
    return { path: match[2] === "" ? "/" : match[2]!, mode: modeFromPermissions(match[1]!), target: match[3] ?? "" };
  });
}

// "-rwxr-xr-x" to "100755", as rpm prints FILEMODES:octal.
function modeFromPermissions(text: string): string {
  const types: Record<string, number> = { "-": 0o100000, d: 0o040000, l: 0o120000 };
  const type = types[text[0]!];
  if (type === undefined) {
    throw new Error(`unexpected file type in ${JSON.stringify(text)}`);
  }
  let bits = 0;
  for (const [index, letter] of [...text.slice(1)].entries()) {
    if (letter !== "-") {
      bits |= 1 << (8 - index);
    }
  }
  return (type | bits).toString(8);
}

/** Returns the .deb's conffiles, one absolute path each. */
export async function debConffiles(deb: string): Promise<string[]> {
  const { stdout } = await execa("dpkg-deb", ["--info", deb, "conffiles"]);
  return stdout.split("\n").filter((line) => line !== "");
}

/** Returns one control field of the .deb, such as Depends. */
export async function debField(deb: string, field: string): Promise<string> {
  return (await execa("dpkg-deb", ["--field", deb, field])).stdout;
}

export interface RpmEntry extends PackageEntry {
  /** rpm's file flags: c config, n noreplace, d doc, l license. */
  flags: string;
}

/** Lists the files and folders the .rpm owns. */
export async function rpmEntries(rpm: string): Promise<RpmEntry[]> {
  const format = "[%{FILENAMES}\\t%{FILEMODES:octal}\\t%{FILEFLAGS:fflags}\\t%{FILELINKTOS}\\n]";
  const { stdout } = await execa("rpm", ["--query", "--package", "--queryformat", format, rpm]);
  return stdout.split("\n").map((line) => {
    const [path, mode, flags, target] = line.split("\t");
    return { path: path!, mode: mode!, flags: flags ?? "", target: target ?? "" };
  });
}

/** Returns the .rpm's requirements, without those rpm adds itself (rpmlib(...), config(...)). */
export async function rpmRequires(rpm: string): Promise<string[]> {
  const { stdout } = await execa("rpm", ["--query", "--package", "--requires", rpm]);
  return [...new Set(stdout.split("\n"))].filter((line) => !/^(rpmlib|config)\(/.test(line));
}
