import { readdir } from "node:fs/promises";
import { join } from "node:path";

import type { System } from "../system/system.js";

// Reading configuration files of other software: rt_tables, networkd.conf
// with its drop-ins, firewalld.conf. Everything here only reads.

/** A System that can also list a folder, as the fake host in the tests does. */
interface ListingSystem extends System {
  listDirectory(path: string): Promise<string[] | undefined>;
}

/**
 * Returns the names in the folder `path`, sorted, or undefined when it does
 * not exist. The System interface has no listing, so on the real host this
 * reads the folder with node:fs. A System that offers `listDirectory` (the
 * fake host) lists it instead.
 */
export async function listDirectory(system: System, path: string): Promise<string[] | undefined> {
  if (typeof (system as Partial<ListingSystem>).listDirectory === "function") {
    return (system as ListingSystem).listDirectory(path);
  }
  try {
    return (await readdir(path)).sort();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      return undefined;
    }
    throw error;
  }
}

/** A file that was read, with its path. */
export interface TextFile {
  path: string;
  text: string;
}

/** Reads the `*.conf` files of the folder `path`, in name order. */
export async function readConfFolder(system: System, path: string): Promise<TextFile[]> {
  const files: TextFile[] = [];
  for (const name of (await listDirectory(system, path)) ?? []) {
    if (!name.endsWith(".conf")) {
      continue;
    }
    const text = await system.readText(join(path, name));
    if (text !== undefined) {
      files.push({ path: join(path, name), text });
    }
  }
  return files;
}

/** One `ID NAME` line of rt_tables. */
export interface TableDeclaration {
  id: number;
  name: string;
  path: string;
}

// iproute2 6.1 reads /etc/iproute2/rt_tables and then every *.conf in
// /etc/iproute2/rt_tables.d. Later iproute2 releases fall back to a folder
// under /usr (/usr/share/iproute2 or /usr/lib/iproute2, chosen at build
// time) for files missing from /etc.
const RT_TABLES_FOLDERS = ["/etc/iproute2", "/usr/share/iproute2", "/usr/lib/iproute2"];

/** Reads every table name that iproute2 would know, with the file that declares it. */
export async function readTableDeclarations(system: System): Promise<TableDeclaration[]> {
  const files: TextFile[] = [];
  for (const folder of RT_TABLES_FOLDERS) {
    const text = await system.readText(`${folder}/rt_tables`);
    if (text !== undefined) {
      files.push({ path: `${folder}/rt_tables`, text });
      break;
    }
  }
  for (const folder of RT_TABLES_FOLDERS) {
    files.push(...(await readConfFolder(system, `${folder}/rt_tables.d`)));
  }
  return files.flatMap(parseRtTables);
}

/** Parses `ID NAME` lines, with the id in decimal or 0x hexadecimal as iproute2 accepts it. */
export function parseRtTables(file: TextFile): TableDeclaration[] {
  const declarations: TableDeclaration[] = [];
  for (const raw of file.text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    const match = /^(0x[0-9a-fA-F]+|[0-9]+)\s+(\S+)/.exec(line);
    if (match !== null) {
      declarations.push({ id: Number(match[1]), name: match[2]!, path: file.path });
    }
  }
  return declarations;
}

/**
 * Returns the last value of `key` in section `section` across `files`, read
 * in order, as systemd reads a file and then its drop-ins. Keys and section
 * names are case-sensitive, as in systemd.
 */
export function lastIniValue(files: readonly TextFile[], section: string, key: string): { value: string; path: string } | undefined {
  let found: { value: string; path: string } | undefined;
  for (const file of files) {
    let current = "";
    for (const raw of file.text.split("\n")) {
      const line = raw.trim();
      if (line === "" || line.startsWith("#") || line.startsWith(";")) {
        continue;
      }
      const header = /^\[(.+)\]$/.exec(line);
      if (header !== null) {
        current = header[1]!;
        continue;
      }
      const equals = line.indexOf("=");
      if (current === section && equals > 0 && line.slice(0, equals).trim() === key) {
        found = { value: line.slice(equals + 1).trim(), path: file.path };
      }
    }
  }
  return found;
}

/** Reads a systemd boolean (1/yes/y/true/t/on or 0/no/n/false/f/off), or returns undefined for any other value. */
export function parseSystemdBoolean(value: string): boolean | undefined {
  const word = value.toLowerCase();
  if (["1", "yes", "y", "true", "t", "on"].includes(word)) {
    return true;
  }
  if (["0", "no", "n", "false", "f", "off"].includes(word)) {
    return false;
  }
  return undefined;
}
