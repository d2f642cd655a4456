// The `nft` tool of the fake host: tables by family and name, each kept as
// the text of its block. A script is one transaction, as in nftables.

import type { CommandResult } from "../../src/system/system.js";
import { ToolFailure, Unsupported, succeed } from "./result.js";

const FAMILIES = new Set(["ip", "ip6", "inet", "arp", "bridge", "netdev"]);

interface OpenBlock {
  key: string;
  lines: string[];
  depth: number;
}

export class FakeNft {
  /**
   * Tables by "FAMILY NAME", each as the lines inside its block as the script
   * wrote them. NOTE: real nft prints rules in its own normalized syntax, but
   * the fake prints them as written.
   */
  readonly tables = new Map<string, string[]>();

  run(args: readonly string[], input: string | undefined): CommandResult {
    if (args.length === 2 && args[0] === "list" && args[1] === "ruleset") {
      return succeed([...this.tables].map(([key, body]) => renderTable(key, body)).join(""));
    }
    if (args.length === 2 && args[0] === "list" && args[1] === "tables") {
      return succeed([...this.tables.keys()].map((key) => `table ${key}\n`).join(""));
    }
    if (args.length === 4 && args[0] === "list" && args[1] === "table") {
      const key = `${args[2]} ${args[3]}`;
      const body = this.tables.get(key);
      if (body === undefined) {
        throw new ToolFailure(1, `Error: No such file or directory\nlist table ${key}\n${"^".repeat(`list table ${key}`.length)}\n`);
      }
      return succeed(renderTable(key, body));
    }
    if (args.length === 2 && args[0] === "-f" && args[1] === "-" && input !== undefined) {
      this.applyScript(input);
      return succeed();
    }
    throw new Unsupported("nft command");
  }

  // Works on a copy and keeps it only when every statement succeeded.
  private applyScript(script: string): void {
    const working = new Map([...this.tables].map(([key, body]) => [key, [...body]]));
    const lines = script.split("\n");
    let block: OpenBlock | undefined;

    for (const [index, line] of lines.entries()) {
      const code = withoutComment(line);
      if (block !== undefined) {
        block.depth += braceBalance(code);
        if (block.depth > 0) {
          block.lines.push(line);
          continue;
        }
        const beforeClose = code.slice(0, code.lastIndexOf("}"));
        if (beforeClose.trim() !== "") {
          block.lines.push(beforeClose);
        }
        // Declaring a table that exists adds the block's chains and rules to it.
        working.set(block.key, [...(working.get(block.key) ?? []), ...block.lines]);
        block = undefined;
        continue;
      }

      const statement = code.trim();
      if (statement === "") {
        continue;
      }
      const words = statement.split(/\s+/);
      const declaration = words[0] === "add" ? words.slice(1) : words;
      if (declaration[0] === "table" && declaration.length >= 3) {
        const key = tableKey(declaration[1]!, declaration[2]!);
        if (declaration.length === 3) {
          working.set(key, working.get(key) ?? []);
          continue;
        }
        if (declaration[3] === "{") {
          block = { key, lines: [], depth: braceBalance(statement) };
          if (block.depth === 0) {
            working.set(key, working.get(key) ?? []);
            block = undefined;
          }
          continue;
        }
      }
      if (words.length === 4 && words[0] === "delete" && words[1] === "table") {
        const key = tableKey(words[2]!, words[3]!);
        if (!working.delete(key)) {
          throw new ToolFailure(
            1,
            `/dev/stdin:${index + 1}:1-${statement.length}: Error: Could not process rule: No such file or directory\n` +
              `${statement}\n${"^".repeat(statement.length)}\n`,
          );
        }
        continue;
      }
      throw new Unsupported(`nft statement "${statement}" on line ${index + 1}`);
    }

    if (block !== undefined) {
      throw new ToolFailure(1, `/dev/stdin:${lines.length}:1-1: Error: syntax error, unexpected end of file\n`);
    }
    this.tables.clear();
    for (const [key, body] of working) {
      this.tables.set(key, body);
    }
  }
}

/** Renders a table the way `nft list table` frames it. */
export function renderTable(key: string, body: readonly string[]): string {
  return `table ${key} {\n${body.join("\n")}\n}\n`;
}

function tableKey(family: string, name: string): string {
  if (!FAMILIES.has(family)) {
    throw new Unsupported(`nft table family "${family}"`);
  }
  return `${family} ${name}`;
}

// Counts braces outside double-quoted strings: opening ones minus closing ones.
function braceBalance(code: string): number {
  let balance = 0;
  let quoted = false;
  for (const character of code) {
    if (character === '"') quoted = !quoted;
    if (quoted) continue;
    if (character === "{") balance++;
    if (character === "}") balance--;
  }
  return balance;
}

function withoutComment(line: string): string {
  let quoted = false;
  for (const [index, character] of [...line].entries()) {
    if (character === '"') quoted = !quoted;
    if (character === "#" && !quoted) return line.slice(0, index);
  }
  return line;
}
