// Shared pieces of the fake tools: how a command fails, and how its input is
// split into words.

import type { CommandResult } from "../../src/system/system.js";

/** A failure that the real tool also reports, with its exit code and stderr. */
export class ToolFailure extends Error {
  constructor(
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(stderr.trim());
  }
}

/**
 * Input that the fake does not model. FakeSystem turns it into exit code 127,
 * so a test notices when splitroute starts running a new command or syntax.
 */
export class Unsupported extends Error {}

export function succeed(stdout = ""): CommandResult {
  return { exitCode: 0, stdout, stderr: "" };
}

/**
 * Splits a line into words at whitespace. A double-quoted word keeps its
 * quotes, because iptables-save prints comments with spaces that way and the
 * fake stores rules as printed.
 */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  const pattern = /"[^"]*"|\S+/g;
  for (const match of line.matchAll(pattern)) {
    words.push(match[0]);
  }
  return words;
}

/** Reads a decimal or 0x-prefixed hexadecimal 32-bit number, or returns undefined. */
export function readUint32(text: string | undefined): number | undefined {
  if (text === undefined || !/^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/.test(text)) {
    return undefined;
  }
  const value = Number(text);
  return value <= 0xffff_ffff ? value : undefined;
}
