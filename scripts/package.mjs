// Builds splitroute_<version>_all.deb and splitroute-<version>-1.noarch.rpm
// from one staged file tree: the esbuild bundle, the hooks, the
// configuration, the man pages and the docs. Needs dpkg-deb and rpmbuild
// (Debian's rpm package); with --lint also lintian and rpmlint. It downloads
// nothing.
//
// Usage: node scripts/package.mjs [--out DIR] [--lint]
//   --out DIR   where the packages go (default: dist/packages)
//   --lint      run lintian and rpmlint on the packages; any tag fails the build

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { buildSync } from "esbuild";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const PACKAGING = join(REPO, "packaging");
const NAME = "splitroute";
const RPM_RELEASE = "1";

// The deb's dependencies. The rpm's are in packaging/rpm/splitroute.spec.in,
// with Fedora's package names.
const DEB_DEPENDS = "nodejs (>= 18.19), iproute2, nftables | iptables";

// The hooks and the bundle live together, because hooks/run-splitroute looks
// for splitroute.mjs beside itself.
const LIB_DIR = "usr/lib/splitroute";
const DOC_DIR = "usr/share/doc/splitroute";
// NetworkManager runs the scripts here as well as those in /etc/NetworkManager/dispatcher.d.
const NM_DISPATCHER_DIR = "usr/lib/NetworkManager/dispatcher.d";
// Folders that NetworkManager's own package creates as well. Owning them too
// lets rpm remove them on erase where NetworkManager is not installed. dpkg
// does this for the deb by itself.
const RPM_SHARED_DIRS = ["/usr/lib/NetworkManager", `/${NM_DISPATCHER_DIR}`];

// Conffiles in the deb and %config(noreplace) in the rpm.
const CONFFILES = ["etc/iproute2/rt_tables.d/splitroute.conf", "etc/splitroute/splitroute.conf"];

// The bundle is an ES module, because src/cli.ts awaits at top level. Some
// bundled CommonJS packages call require() for Node's built-in modules,
// which an ES module lacks, so the banner defines it.
const BUNDLE_BANNER = 'import { createRequire } from "node:module";\nconst require = createRequire(import.meta.url);';

function main() {
  const { values } = parseArgs({
    options: {
      out: { type: "string", default: join(REPO, "dist", "packages") },
      lint: { type: "boolean", default: false },
    },
  });
  // npm runs scripts in the repository root; INIT_CWD is where `npm run` was typed.
  const outDir = resolve(process.env.INIT_CWD ?? process.cwd(), values.out);
  const version = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version;
  const changelog = parseChangelog(readFileSync(join(PACKAGING, "changelog"), "utf8"));
  if (changelog[0].version !== version) {
    throw new Error(`packaging/changelog starts with version ${changelog[0].version}, but package.json has ${version}; add a changelog entry for ${version}`);
  }
  const release = { version, date: changelog[0].date, maintainer: changelog[0].maintainer, changelog };

  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), "splitroute-package-"));
  try {
    const stage = join(work, "stage");
    const bundled = stageTree(stage, release);
    const deb = buildDeb(work, stage, bundled, release, outDir);
    const rpm = buildRpm(work, stage, bundled, release, outDir);
    console.log(`built ${deb}`);
    console.log(`built ${rpm}`);
    if (values.lint) {
      lintDeb(deb);
      lintRpm(rpm);
      console.log("lintian and rpmlint: no tags");
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Parses a Debian changelog into entries, newest first: version, the lines
 * of the entry's body, the maintainer and the date of its trailer line.
 */
function parseChangelog(text) {
  const entries = [];
  let entry;
  for (const line of text.split("\n")) {
    const header = /^\S+ \(([^)]+)\) /.exec(line);
    const trailer = /^ -- (.+?)  (.+)$/.exec(line);
    if (header !== null) {
      entry = { version: header[1], body: [] };
    } else if (trailer !== null && entry !== undefined) {
      entries.push({ ...entry, maintainer: trailer[1], date: new Date(trailer[2]) });
      entry = undefined;
    } else if (entry !== undefined && line.trim() !== "") {
      entry.body.push(line);
    }
  }
  if (entries.length === 0 || Number.isNaN(entries[0].date.getTime())) {
    throw new Error("packaging/changelog has no complete entry: expected a 'splitroute (VERSION) ...' line and a ' -- NAME <EMAIL>  DATE' line");
  }
  return entries;
}

/**
 * Writes the installed file tree under `stage` and returns the npm packages
 * in the bundle. Every mtime is the changelog date, so that two builds of
 * one version are byte-identical.
 */
function stageTree(stage, release) {
  const bundled = writeBundle(join(stage, LIB_DIR, "splitroute.mjs"));
  for (const hook of ["up", "down", "run-splitroute", "nm-dispatcher"]) {
    install(join(REPO, "hooks", hook), join(stage, LIB_DIR, hook), 0o755);
  }
  mkdirSync(join(stage, "usr/bin"), { recursive: true });
  symlinkSync("../lib/splitroute/run-splitroute", join(stage, "usr/bin/splitroute"));
  // nm-dispatcher follows links and checks the target, and hooks/nm-dispatcher
  // finds run-splitroute beside the target. A file of the same name in
  // /etc/NetworkManager/dispatcher.d takes precedence over this link.
  mkdirSync(join(stage, NM_DISPATCHER_DIR), { recursive: true });
  symlinkSync("../../splitroute/nm-dispatcher", join(stage, NM_DISPATCHER_DIR, "90-splitroute"));

  install(join(PACKAGING, "splitroute.conf"), join(stage, "etc/splitroute/splitroute.conf"), 0o644);
  install(join(PACKAGING, "rt_tables.conf"), join(stage, "etc/iproute2/rt_tables.d/splitroute.conf"), 0o644);

  const manDate = release.date.toISOString().slice(0, 10);
  for (const [page, section] of [["splitroute.8", 8], ["splitroute.conf.5", 5]]) {
    const text = readFileSync(join(PACKAGING, page), "utf8").replaceAll("@VERSION@", release.version).replaceAll("@DATE@", manDate);
    writeGzip(join(stage, `usr/share/man/man${section}/${page}.gz`), text);
  }

  writeGzip(join(stage, DOC_DIR, "changelog.gz"), readFileSync(join(PACKAGING, "changelog"), "utf8"));
  for (const example of readdirSync(join(PACKAGING, "examples"))) {
    install(join(PACKAGING, "examples", example), join(stage, DOC_DIR, "examples", example), 0o644);
  }
  // The copyright file differs between the two packages; each build writes its own.

  setTimes(stage, release.date);
  return bundled;
}

/** Bundles src/cli.ts and its npm dependencies into one file for Node 18.19 and returns the bundled packages. */
function writeBundle(path) {
  const result = buildSync({
    entryPoints: [join(REPO, "src/cli.ts")],
    bundle: true,
    platform: "node",
    target: "node18.19",
    format: "esm",
    banner: { js: BUNDLE_BANNER },
    metafile: true,
    write: false,
    logLevel: "silent",
  });
  if (result.warnings.length > 0) {
    throw new Error(`esbuild warned:\n${result.warnings.map((warning) => warning.text).join("\n")}`);
  }
  // The bundle is started by hooks/run-splitroute, never run directly, so
  // the entry's "#!/usr/bin/env node" line goes.
  const code = result.outputFiles[0].text.replace(/^#!.*\n/, "");
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, code, { mode: 0o644 });
  chmodSync(path, 0o644);
  return bundledPackages(result.metafile);
}

/** Lists the npm packages whose files esbuild put into the bundle, with their license files. */
function bundledPackages(metafile) {
  const directories = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match !== null) {
      directories.add(match[1]);
    }
  }
  return [...directories].sort().map((directory) => {
    const absolute = join(REPO, directory);
    const manifest = JSON.parse(readFileSync(join(absolute, "package.json"), "utf8"));
    const licenseFile = readdirSync(absolute).find((file) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(file));
    if (licenseFile === undefined) {
      throw new Error(`bundled package ${manifest.name} has no LICENSE file in ${absolute}; its license text must ship in the copyright file`);
    }
    return { name: manifest.name, version: manifest.version, license: manifest.license, licenseText: readFileSync(join(absolute, licenseFile), "utf8").trim() };
  });
}

/**
 * Renders the copyright file: splitroute's license, then each bundled
 * package's. Debian ships the Apache License 2.0 in /usr/share/common-licenses,
 * so the deb points there and keeps only the copyright lines; the rpm
 * carries the full text.
 */
function renderCopyright(bundled, flavor) {
  const parts = [readFileSync(join(PACKAGING, "copyright"), "utf8").trim()];
  parts.push(
    [
      `The file /${LIB_DIR}/splitroute.mjs also contains the following npm`,
      "packages, bundled by esbuild, each under its own license.",
    ].join("\n"),
  );
  for (const entry of bundled) {
    let text = entry.licenseText;
    if (flavor === "deb" && entry.license === "Apache-2.0") {
      const notices = text.split("\n").filter((line) => /copyright \d{4}/i.test(line)).map((line) => line.trim());
      text = [...notices, "", "On Debian systems, the full text of the Apache License 2.0 is in", "/usr/share/common-licenses/Apache-2.0."].join("\n");
    }
    parts.push(`${entry.name} ${entry.version}\nLicense: ${entry.license}\n\n${text}`);
  }
  return `${parts.join(`\n\n${"-".repeat(72)}\n\n`)}\n`;
}

function buildDeb(work, stage, bundled, release, outDir) {
  const root = join(work, "deb");
  cpSync(stage, root, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  writeDoc(join(root, DOC_DIR, "copyright"), renderCopyright(bundled, "deb"), release.date);

  // md5sums lists the installed files, so it is computed before DEBIAN/ exists.
  const sums = md5sums(root);
  const control = join(root, "DEBIAN");
  mkdirSync(control, { mode: 0o755 });
  const [summary, ...description] = readFileSync(join(PACKAGING, "description"), "utf8").trimEnd().split("\n");
  const fields = [
    `Package: ${NAME}`,
    `Version: ${release.version}`,
    "Architecture: all",
    `Maintainer: ${release.maintainer}`,
    `Installed-Size: ${installedSize(root)}`,
    `Depends: ${DEB_DEPENDS}`,
    "Section: net",
    "Priority: optional",
    `Description: ${summary}`,
    ...description.map((line) => (line === "" ? " ." : ` ${line}`)),
  ];
  writeFileSync(join(control, "control"), `${fields.join("\n")}\n`, { mode: 0o644 });
  writeFileSync(join(control, "conffiles"), CONFFILES.map((path) => `/${path}\n`).join(""), { mode: 0o644 });
  writeFileSync(join(control, "md5sums"), sums, { mode: 0o644 });
  install(join(PACKAGING, "deb", "postrm"), join(control, "postrm"), 0o755);

  const path = join(outDir, `${NAME}_${release.version}_all.deb`);
  execFileSync("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", root, path], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, SOURCE_DATE_EPOCH: String(Math.floor(release.date.getTime() / 1000)) },
  });
  return path;
}

function buildRpm(work, stage, bundled, release, outDir) {
  const topdir = join(work, "rpmbuild");
  const tree = join(work, "rpm");
  cpSync(stage, tree, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  writeDoc(join(tree, DOC_DIR, "copyright"), renderCopyright(bundled, "rpm"), release.date);

  const [summary, ...description] = readFileSync(join(PACKAGING, "description"), "utf8").trimEnd().split("\n");
  const licenses = [...new Set(["MIT", ...bundled.map((entry) => entry.license)])].sort();
  const spec = readFileSync(join(PACKAGING, "rpm", "splitroute.spec.in"), "utf8")
    .replaceAll("@VERSION@", release.version)
    .replaceAll("@SUMMARY@", summary)
    .replaceAll("@PACKAGER@", release.maintainer)
    .replaceAll("@LICENSE@", licenses.join(" AND "))
    .replaceAll("@DESCRIPTION@", description.join("\n").trim())
    .replaceAll("@FILES@", rpmFileList(tree).join("\n"))
    .replaceAll("@CHANGELOG@", rpmChangelog(release.changelog).join("\n"));
  mkdirSync(join(topdir, "SPECS"), { recursive: true });
  const specPath = join(topdir, "SPECS", `${NAME}.spec`);
  writeFileSync(specPath, spec);

  const epoch = String(Math.floor(release.date.getTime() / 1000));
  execFileSync(
    "rpmbuild",
    [
      "-bb",
      "--quiet",
      "--define", `_topdir ${topdir}`,
      "--define", `stagedir ${tree}`,
      "--define", "use_source_date_epoch_as_buildtime 1",
      "--define", "clamp_mtime_to_source_date_epoch 1",
      specPath,
    ],
    { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, SOURCE_DATE_EPOCH: epoch } },
  );
  const file = `${NAME}-${release.version}-${RPM_RELEASE}.noarch.rpm`;
  const path = join(outDir, file);
  copyFileSync(join(topdir, "RPMS", "noarch", file), path);
  return path;
}

/**
 * Lists the tree for the spec's %files: the folders that are splitroute's
 * own or shared with NetworkManager, and every file, with the marking the
 * deb gives it (conffiles) or that rpm expects for docs.
 */
function rpmFileList(tree) {
  const lines = ["%defattr(-,root,root,-)"];
  for (const path of walk(tree)) {
    const installed = `/${relative(tree, path)}`;
    const stat = lstatSync(path);
    if (stat.isDirectory()) {
      if (installed.split("/").includes(NAME) || RPM_SHARED_DIRS.includes(installed)) {
        lines.push(`%dir ${installed}`);
      }
    } else if (CONFFILES.includes(installed.slice(1))) {
      lines.push(`%config(noreplace) ${installed}`);
    } else if (installed === `/${DOC_DIR}/copyright`) {
      lines.push(`%license ${installed}`);
    } else if (installed.startsWith(`/${DOC_DIR}/`)) {
      lines.push(`%doc ${installed}`);
    } else {
      lines.push(installed);
    }
  }
  return lines;
}

/** Turns Debian changelog entries into rpm %changelog entries. */
function rpmChangelog(entries) {
  const lines = [];
  for (const entry of entries) {
    const day = entry.date.toUTCString().slice(0, 16).replace(",", "");
    const [weekday, date, month, year] = day.split(" ");
    lines.push(`* ${weekday} ${month} ${date} ${year} ${entry.maintainer} - ${entry.version}-${RPM_RELEASE}`);
    for (const line of entry.body) {
      lines.push(line.replace(/^ {2}\* /, "- ").replace(/^ {4}/, "  "));
    }
    lines.push("");
  }
  return lines;
}

/**
 * Runs lintian with pedantic and informational tags shown; any tag fails.
 * lintian leaves mldbm-elf-* files in its temporary folder after it exits
 * (lintian 2.116.3 on Debian 12), so it gets a folder of its own, removed
 * afterwards.
 */
function lintDeb(path) {
  const tempDir = mkdtempSync(join(tmpdir(), "splitroute-lintian-"));
  try {
    execFileSync("lintian", ["--fail-on", "error,warning,info,pedantic", "--display-info", "--pedantic", path], {
      stdio: "inherit",
      env: { ...process.env, TMPDIR: tempDir },
    });
  } finally {
    rmSync(tempDir, { recursive: true, force: true });
  }
}

/** Runs rpmlint with splitroute's filters in packaging/rpm/rpmlint.toml; any error or warning fails. */
function lintRpm(path) {
  execFileSync("rpmlint", ["--strict", "-c", join(PACKAGING, "rpm", "rpmlint.toml"), path], { stdio: "inherit" });
}

function install(source, target, mode) {
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(source, target);
  chmodSync(target, mode);
}

function writeGzip(path, text) {
  mkdirSync(dirname(path), { recursive: true });
  // zlib writes no file name and a zero mtime into the header, as gzip -n does.
  writeFileSync(path, gzipSync(text, { level: 9 }));
  chmodSync(path, 0o644);
}

function writeDoc(path, text, date) {
  writeFileSync(path, text);
  chmodSync(path, 0o644);
  lutimesSync(path, date, date);
}

/** Yields every path below `root`, parents before their contents, in sorted order. */
function* walk(root) {
  for (const name of readdirSync(root).sort()) {
    const path = join(root, name);
    yield path;
    if (lstatSync(path).isDirectory()) {
      yield* walk(path);
    }
  }
}

function setTimes(root, date) {
  for (const path of walk(root)) {
    if (!lstatSync(path).isDirectory()) {
      lutimesSync(path, date, date);
    }
  }
  // Folders after their contents, because writing into a folder changes its mtime.
  for (const path of [...walk(root)].reverse()) {
    if (lstatSync(path).isDirectory()) {
      lutimesSync(path, date, date);
    }
  }
  lutimesSync(root, date, date);
}

/** Returns the size in KiB that dpkg shows as Installed-Size: each file rounded up to a KiB, one for each folder and link. */
function installedSize(root) {
  let kib = 0;
  for (const path of walk(root)) {
    const stat = lstatSync(path);
    kib += stat.isFile() ? Math.ceil(stat.size / 1024) : 1;
  }
  return kib;
}

function md5sums(root) {
  const lines = [];
  for (const path of walk(root)) {
    if (lstatSync(path).isFile()) {
      const installed = relative(root, path);
      if (!CONFFILES.includes(installed)) {
        lines.push(`${createHash("md5").update(readFileSync(path)).digest("hex")}  ${installed}\n`);
      }
    }
  }
  return lines.join("");
}

try {
  main();
} catch (error) {
  console.error(`scripts/package.mjs: error: ${error.message}`);
  process.exitCode = 1;
}
