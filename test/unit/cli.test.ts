// The command line itself: version, and what a missing command prints.

import { readFileSync } from "node:fs";
import { afterEach, describe, expect, test, vi } from "vitest";

import { main } from "../../src/cli.js";
import { VERSION } from "../../src/version.js";

describe("command line", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  test("version matches package.json", () => {
    const manifest = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect(VERSION).toBe(manifest.version);
  });

  test("--version prints it", async () => {
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    expect(await main(["--version"], {})).toBe(0);
    expect(stdout).toHaveBeenCalledWith(`splitroute ${VERSION}\n`);
  });

  test("missing config file exits 2", async () => {
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    const path = "/nonexistent/splitroute/x.conf";
    expect(await main(["check"], { SPLITROUTE_CONFIG: path })).toBe(2);
    const output = stderr.mock.calls.map(([chunk]) => String(chunk)).join("");
    expect(output).toContain(`splitroute: error: configuration file ${path} not found; correct SPLITROUTE_CONFIG, or unset it`);
    expect(output).not.toContain("ENOENT");
  });

  test("missing command named", async () => {
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    expect(await main([], {})).toBe(2);
    expect(String(stderr.mock.calls[0]?.[0])).toMatch(/^splitroute: missing command\nusage: splitroute COMMAND/);
  });
});
