// The .deb and .rpm as built by `npm run package`: their layout, config
// marking, dependencies and interpreter lines, the two compared with each
// other, and lintian and rpmlint. Needs dpkg-deb, rpmbuild, rpm, lintian
// and rpmlint, not root.

import { createHash } from "node:crypto";
import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  buildPackages,
  debConffiles,
  debEntries,
  debField,
  missingTools,
  rpmEntries,
  rpmRequires,
  type BuiltPackages,
  type PackageEntry,
} from "./packages.js";

const SKIP_REASON = missingTools(true);
if (SKIP_REASON !== undefined) {
  console.warn(`Skipping test/package/packages.test.ts: ${SKIP_REASON}.`);
}

// The installed files, apart from the folders that hold them.
const EXPECTED_FILES: Array<[path: string, mode: string, target?: string]> = [
  ["/etc/iproute2/rt_tables.d/splitroute.conf", "100644"],
  ["/etc/splitroute/splitroute.conf", "100644"],
  ["/usr/bin/splitroute", "120777", "../lib/splitroute/run-splitroute"],
  ["/usr/lib/NetworkManager/dispatcher.d/90-splitroute", "120777", "../../splitroute/nm-dispatcher"],
  ["/usr/lib/splitroute/down", "100755"],
  ["/usr/lib/splitroute/nm-dispatcher", "100755"],
  ["/usr/lib/splitroute/run-splitroute", "100755"],
  ["/usr/lib/splitroute/splitroute.mjs", "100644"],
  ["/usr/lib/splitroute/up", "100755"],
  ["/usr/share/doc/splitroute/changelog.gz", "100644"],
  ["/usr/share/doc/splitroute/copyright", "100644"],
  ["/usr/share/doc/splitroute/examples/openvpn-client.conf", "100644"],
  ["/usr/share/doc/splitroute/examples/openvpn-down-root.conf", "100644"],
  ["/usr/share/doc/splitroute/examples/wg-quick.conf", "100644"],
  ["/usr/share/man/man5/splitroute.conf.5.gz", "100644"],
  ["/usr/share/man/man8/splitroute.8.gz", "100644"],
];

const CONFFILES = ["/etc/iproute2/rt_tables.d/splitroute.conf", "/etc/splitroute/splitroute.conf"];

// The same requirement in each format. Fedora and RHEL package iproute2 as "iproute".
const DEPENDENCIES = [
  { deb: "nodejs (>= 18.19)", rpm: "nodejs >= 18.19" },
  { deb: "iproute2", rpm: "iproute" },
  { deb: "nftables | iptables", rpm: "(nftables or iptables)" },
];

async function sha256(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

/** Files and links, plus the folders named after splitroute: what the package alone owns. */
function ownEntries(entries: readonly PackageEntry[]): PackageEntry[] {
  return entries
    .filter((entry) => !entry.mode.startsWith("40") || entry.path.split("/").includes("splitroute"))
    .map(({ path, mode, target }) => ({ path, mode, target }))
    .sort((a, b) => a.path.localeCompare(b.path));
}

describe.skipIf(SKIP_REASON !== undefined)(`deb and rpm packages${SKIP_REASON === undefined ? "" : ` (${SKIP_REASON})`}`, () => {
  let built: BuiltPackages;
  let unpacked: string;

  beforeAll(async () => {
    built = await buildPackages();
    unpacked = await mkdtemp(join(tmpdir(), "splitroute-unpacked-"));
    await execa("dpkg-deb", ["--extract", built.deb, unpacked]);
  });

  afterAll(async () => {
    await built?.remove();
    if (unpacked !== undefined) {
      await rm(unpacked, { recursive: true, force: true });
    }
  });

  it("deb installs the documented layout", async () => {
    const files = (await debEntries(built.deb)).filter((entry) => !entry.mode.startsWith("40"));
    files.sort((a, b) => a.path.localeCompare(b.path));
    expect(files).toEqual(EXPECTED_FILES.map(([path, mode, target]) => ({ path, mode, target: target ?? "" })));
  });

  it("deb marks the files in /etc as conffiles", async () => {
    expect((await debConffiles(built.deb)).sort()).toEqual(CONFFILES);
  });

  it("deb depends on node, iproute2 and a firewall", async () => {
    expect((await debField(built.deb, "Depends")).split(", ")).toEqual(DEPENDENCIES.map((dependency) => dependency.deb));
    expect(await debField(built.deb, "Architecture")).toBe("all");
  });

  it("rpm has the deb's files and modes", async () => {
    expect(ownEntries(await rpmEntries(built.rpm))).toEqual(ownEntries(await debEntries(built.deb)));
  });

  it("rpm marks the deb's conffiles noreplace", async () => {
    const config = (await rpmEntries(built.rpm)).filter((entry) => entry.flags.includes("c"));
    expect(config.map((entry) => entry.path).sort()).toEqual(CONFFILES);
    for (const entry of config) {
      expect(entry.flags, entry.path).toContain("n");
    }
  });

  it("rpm requires the deb's dependencies", async () => {
    // rpm adds /bin/sh for the hooks' interpreter line; Debian's sh is essential.
    const requires = (await rpmRequires(built.rpm)).filter((requirement) => requirement !== "/bin/sh");
    expect(requires.sort()).toEqual(DEPENDENCIES.map((dependency) => dependency.rpm).sort());
  });

  it("scripts name /bin/sh or /usr/bin/node", async () => {
    const interpreters: Record<string, string> = {};
    for (const [path, , target] of EXPECTED_FILES) {
      if (target !== undefined) {
        continue;
      }
      const head = (await readFile(join(unpacked, path)).catch(() => Buffer.alloc(0))).subarray(0, 64).toString("latin1");
      if (head.startsWith("#!")) {
        interpreters[path] = head.slice(2).split("\n")[0]!.trim();
      }
    }
    expect(interpreters).toEqual({
      "/usr/lib/splitroute/down": "/bin/sh",
      "/usr/lib/splitroute/nm-dispatcher": "/bin/sh",
      "/usr/lib/splitroute/run-splitroute": "/bin/sh",
      "/usr/lib/splitroute/up": "/bin/sh",
    });
  });

  it("bundle runs without node_modules", async () => {
    // A copy outside the checkout has no node_modules folder above it to resolve imports from.
    const dir = await mkdtemp(join(tmpdir(), "splitroute-bundle-"));
    try {
      await cp(join(unpacked, "usr/lib/splitroute"), dir, { recursive: true });
      const result = await execa(join(dir, "run-splitroute"), ["--help"], { reject: false, env: {}, extendEnv: false });
      expect(result.stderr).toBe("");
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toContain("usage: splitroute COMMAND");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("copyright covers every bundled package", async () => {
    const copyright = await readFile(join(unpacked, "usr/share/doc/splitroute/copyright"), "utf8");
    const bundle = await readFile(join(unpacked, "usr/lib/splitroute/splitroute.mjs"), "utf8");
    // esbuild heads each bundled file with a comment naming its path.
    const packages = new Set([...bundle.matchAll(/^\/\/ node_modules\/((?:@[^/]+\/)?[^/]+)\//gm)].map((match) => match[1]!));
    expect(packages.size).toBeGreaterThan(0);
    for (const name of packages) {
      expect(copyright, name).toMatch(new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\d+\\.\\d+\\.\\d+\\nLicense: `, "m"));
    }
  });

  it("builds byte-identical packages twice", async () => {
    // Every mtime comes from the changelog date, and dpkg-deb and rpmbuild
    // take SOURCE_DATE_EPOCH for the rest.
    const again = await buildPackages();
    try {
      expect(await sha256(again.deb)).toBe(await sha256(built.deb));
      expect(await sha256(again.rpm)).toBe(await sha256(built.rpm));
    } finally {
      await again.remove();
    }
  });

  it("lintian and rpmlint report no tags", async () => {
    const linted = await buildPackages({ lint: true });
    try {
      expect(linted.output).toContain("lintian and rpmlint: no tags");
    } finally {
      await linted.remove();
    }
  });
});
