// Debian 12's Node.js 18, unpacked into a temporary folder for the package
// tests, without replacing the machine's node. Debian builds it to load
// cjs-module-lexer, undici and acorn from /usr/share/nodejs, which the
// node-* packages provide. A private mount namespace lays the unpacked
// /usr/share over the machine's, so that node finds them there and the
// machine's /usr/share stays as it is.

import { spawnSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

// nodejs pins libnode108 to its own version. libnode108's other libraries
// (libuv1, libicu72, libssl3 and others) come from scripts/install-deps.
const VERSIONED_PACKAGES = ["nodejs", "libnode108"];
const OTHER_PACKAGES = ["libc-ares2", "node-cjs-module-lexer", "node-undici", "node-acorn"];

export interface DebianNode18 {
  /** The Debian version fetched, such as 18.20.4+dfsg-1~deb12u3. */
  readonly version: string;
  /** A script that runs the unpacked node with its libraries; usable as SPLITROUTE_NODE. */
  readonly node: string;
  /** Prefixes argv so that it runs in a mount namespace where /usr/share/nodejs contains the unpacked built-ins. */
  wrap(argv: readonly string[]): string[];
  remove(): Promise<void>;
}

/**
 * Returns why Debian 12's node 18 cannot be fetched here, or undefined. Other
 * releases package node under other library names (Ubuntu 24.04: libnode109).
 */
export function node18Unavailable(): string | undefined {
  const result = spawnSync("apt-cache", ["show", "libnode108"], { encoding: "utf8" });
  return result.status === 0 && result.stdout.includes("Package: libnode108")
    ? undefined
    : "Debian 12's libnode108 is not in this machine's apt sources (run apt-get update on Debian 12)";
}

/** Returns the newest 18.x version of Debian's nodejs that apt can fetch. */
async function findVersion(): Promise<string> {
  const { stdout } = await execa("apt-cache", ["madison", "nodejs"]);
  const versions = stdout.split("\n").map((line) => line.split("|")[1]?.trim() ?? "");
  const version = versions.find((candidate) => candidate.startsWith("18."));
  if (version === undefined) {
    throw new Error(`apt-cache madison nodejs lists no 18.x version (${versions.join(", ")}); run apt-get update on a Debian 12 machine`);
  }
  return version;
}

/** Downloads Debian's node 18 packages with apt-get download and unpacks them with dpkg -x. Needs root for apt's cache lock. */
export async function fetchDebianNode18(): Promise<DebianNode18> {
  const dir = await mkdtemp(join(tmpdir(), "splitroute-node18-"));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    const version = await findVersion();
    const downloads = join(dir, "debs");
    await mkdir(downloads);
    // apt drops to the _apt user for downloads, which cannot write into a
    // folder of mkdtemp's; the download is the same either way.
    await chmod(downloads, 0o777);
    const names = [...VERSIONED_PACKAGES.map((name) => `${name}=${version}`), ...OTHER_PACKAGES];
    await execa("apt-get", ["download", "-q", ...names], { cwd: downloads });

    const root = join(dir, "root");
    for (const file of await readdir(downloads)) {
      await execa("dpkg-deb", ["--extract", join(downloads, file), root]);
    }
    const libraries = await findLibnodeFolder(root);
    const node = join(dir, "node");
    await writeFile(node, `#!/bin/sh\nLD_LIBRARY_PATH=${libraries} exec ${join(root, "usr/bin/node")} "$@"\n`, { mode: 0o755 });

    const share = join(root, "usr/share");
    return {
      version,
      node,
      wrap: (argv) => [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        'mount -t overlay overlay -o "lowerdir=$0:/usr/share" /usr/share && exec "$@"',
        share,
        ...argv,
      ],
      remove,
    };
  } catch (error) {
    await remove();
    throw error;
  }
}

// libnode.so.108 sits in the multiarch folder, such as usr/lib/x86_64-linux-gnu.
async function findLibnodeFolder(root: string): Promise<string> {
  const lib = join(root, "usr/lib");
  for (const entry of await readdir(lib, { withFileTypes: true })) {
    if (entry.isDirectory() && (await readdir(join(lib, entry.name))).includes("libnode.so.108")) {
      return join(lib, entry.name);
    }
  }
  throw new Error(`libnode.so.108 not found below ${lib}`);
}
