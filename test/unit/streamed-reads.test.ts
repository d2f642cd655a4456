// Reading ip's JSON piece by piece. The splitter must hand over exactly the
// elements that JSON.parse finds in the whole output, wherever the pipe cuts
// it. The table reader must handle errors as a whole-output read does.

import fc from "fast-check";
import { describe, expect, test } from "vitest";

import { readRouteProtocols, readTable } from "../../src/observe.js";
import { PROTOCOLS_ONLY, readFamily } from "../../src/observe-family.js";
import { readRouteEntries } from "../../src/snapshot/read.js";
import { countLines, renderStep } from "../../src/plan/step.js";
import { formatArgv } from "../../src/errors.js";
import { JsonArraySplitter } from "../../src/system/json-arrays.js";
import type { CommandResult, System } from "../../src/system/system.js";

/** Feeds `text` to a splitter in pieces that end at `cuts`, and returns the elements and array count. */
function split(text: string, cuts: readonly number[] = []): { elements: Array<[unknown, number]>; arrays: number } {
  const elements: Array<[unknown, number]> = [];
  const splitter = new JsonArraySplitter((element, arrayIndex) => elements.push([JSON.parse(element), arrayIndex]));
  let start = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    splitter.write(text.slice(start, cut));
    start = cut;
  }
  splitter.write(text.slice(start));
  return { elements, arrays: splitter.end() };
}

const ROUTES = [
  { type: "1", dst: "default", gateway: "192.0.2.1", dev: "eth0", flags: [] },
  { dst: "198.51.100.0/24", dev: 'we"ird]}\\', metrics: [{ mtu: 1400 }], flags: ["onlink"] },
  { dst: "2001:db8::/32", nexthops: [{ gateway: "fe80::1", dev: "eth1", flags: [] }] },
];

describe("JsonArraySplitter", () => {
  test("elements of one array", () => {
    const { elements, arrays } = split(`${JSON.stringify(ROUTES)}\n`);
    expect(elements).toEqual(ROUTES.map((route) => [route, 0]));
    expect(arrays).toBe(1);
  });

  test("several arrays numbered", () => {
    const { elements, arrays } = split(`[]\n${JSON.stringify(ROUTES.slice(0, 1))}\n[{"priority":0}]\n`);
    expect(elements).toEqual([
      [ROUTES[0], 1],
      [{ priority: 0 }, 2],
    ]);
    expect(arrays).toBe(3);
  });

  test("any cut points", () => {
    const text = `${JSON.stringify(ROUTES)}\n${JSON.stringify(ROUTES)}\n`;
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: text.length }), { maxLength: 20 }), (cuts) => {
        expect(split(text, cuts).elements).toEqual([...ROUTES.map((route) => [route, 0]), ...ROUTES.map((route) => [route, 1])]);
      }),
      { seed: 20261204, numRuns: 300 },
    );
  });

  test("output cut inside an array", () => {
    expect(() => split('[{"dst":"default"}')).toThrow("the output ended inside an array");
    expect(() => split('[{"dst":"def')).toThrow("the output ended inside an array");
  });

  test("text between arrays rejected", () => {
    expect(() => split("[]\nError: oops\n")).toThrow('expected "[" between arrays, found "E"');
  });

  test("bare values rejected", () => {
    expect(() => split("[1,2]")).toThrow("array elements must be objects or arrays");
  });
});

/** Builds a System whose one command prints `stdout` in pieces of `piece` characters. */
function printing(result: CommandResult, piece = 7): System & { streamed: boolean } {
  return {
    streamed: false,
    async run() {
      return result;
    },
    async stream(_argv, onData) {
      this.streamed = true;
      for (let index = 0; index < result.stdout.length; index += piece) {
        onData(result.stdout.slice(index, index + piece));
      }
      return { ...result, stdout: "" };
    },
    hasTool: () => true,
    readSysctl: async () => undefined,
    writeSysctl: async () => undefined,
    readText: async () => undefined,
  };
}

describe("streamed table reads", () => {
  const table = JSON.stringify([
    { type: "unicast", dst: "default", gateway: "192.0.2.1", dev: "eth0", protocol: "boot", scope: "global", flags: [] },
    { type: "unicast", dst: "192.0.2.0/24", dev: "eth0", protocol: "kernel", scope: "link", prefsrc: "192.0.2.2", flags: [] },
  ]);

  test("routes parsed from pieces", async () => {
    const system = printing({ exitCode: 0, stdout: `${table}\n`, stderr: "" });
    const routes = await readTable(system, 4, "main");
    expect(system.streamed).toBe(true);
    expect(routes.map((route) => route.dst)).toEqual(["0.0.0.0/0", "192.0.2.0/24"]);
  });

  test("protocols only", async () => {
    const system = printing({ exitCode: 0, stdout: `${table}\n`, stderr: "" });
    expect(await readRouteProtocols(system, 4, 2)).toEqual([{ protocol: "boot" }, { protocol: "kernel" }]);
  });

  test("absent table reads empty", async () => {
    const system = printing({ exitCode: 2, stdout: "[", stderr: "Error: ipv4: FIB table does not exist.\nDump terminated\n" });
    expect(await readTable(system, 4, 2)).toEqual([]);
  });

  test("failing ip raises its error", async () => {
    const system = printing({ exitCode: 1, stdout: "[", stderr: "Error: something else\n" });
    await expect(readTable(system, 4, 2)).rejects.toThrow("Error: something else");
  });

  test("bad route named after exit", async () => {
    const system = printing({ exitCode: 0, stdout: '[{"dst":"default","encap":{}}]\n', stderr: "" });
    await expect(readTable(system, 4, "main")).rejects.toThrow(/route 0 \(default\)/);
  });

  test("cut output rejected", async () => {
    const system = printing({ exitCode: 0, stdout: table.slice(0, 40), stderr: "" });
    await expect(readRouteEntries(system, ["ip", "-j", "route", "show"], () => undefined)).rejects.toThrow("ended inside an array");
  });

  test("run used without stream", async () => {
    const { stream: _unused, ...withoutStream } = printing({ exitCode: 0, stdout: `${table}\n`, stderr: "" });
    expect((await readTable(withoutStream, 4, "main")).length).toBe(2);
  });
});

describe("logged step input", () => {
  const step = (lines: number) => ({
    kind: "run" as const,
    summary: "installing routes",
    argv: ["ip", "-4", "-batch", "-"],
    input: `${Array.from({ length: lines }, (_, index) => `route append 198.18.0.${index} dev eth0 table 2`).join("\n")}\n`,
  });

  test("short input shown whole", () => {
    expect(renderStep(step(3), formatArgv, 3)).toBe(
      "ip -4 -batch - <<'EOF'\nroute append 198.18.0.0 dev eth0 table 2\nroute append 198.18.0.1 dev eth0 table 2\nroute append 198.18.0.2 dev eth0 table 2\nEOF",
    );
  });

  test("long input cut with count", () => {
    const lines = renderStep(step(200), formatArgv, 100).split("\n");
    expect(lines).toHaveLength(8);
    expect(lines[5]).toBe("route append 198.18.0.4 dev eth0 table 2");
    expect(lines[6]).toBe("# ... 195 more lines (--verbose logs them all)");
    expect(lines[7]).toBe("EOF");
  });

  test("line counts", () => {
    expect(countLines("")).toBe(0);
    expect(countLines("a")).toBe(1);
    expect(countLines("a\nb")).toBe(2);
  });
});

describe("family reads in one batch", () => {
  const main = [{ type: "unicast", dst: "default", gateway: "192.0.2.1", dev: "eth0", protocol: "boot", scope: "global", flags: [] }];
  const ours = [{ type: "unicast", dst: "default", gateway: "192.0.2.1", dev: "eth0", protocol: "83", scope: "global", flags: [] }];
  const rules = [
    { priority: 0, src: "all", table: "255", protocol: "2" },
    { priority: 1000, src: "all", fwmark: "0x2", fwmask: "0x2", table: "2", protocol: "0" },
  ];

  /** Builds a System that prints the three arrays for a batch, or fails it, and returns the output of single reads. */
  function familyHost(batchExitCode: number): System & { commands: string[] } {
    const single: Record<string, unknown> = {
      "ip -4 -d -N -j route show table main": main,
      "ip -4 -N -j route show table 2": ours,
      "ip -4 -N -j rule show": rules.map(({ protocol: _protocol, ...rule }) => rule),
    };
    const host = printing({ exitCode: 0, stdout: "", stderr: "" });
    const commands: string[] = [];
    const answer = (argv: readonly string[]): CommandResult => {
      const line = argv.join(" ");
      commands.push(line);
      if (line.endsWith("-batch -")) {
        return batchExitCode === 0
          ? { exitCode: 0, stdout: `${JSON.stringify(main)}\n${JSON.stringify(ours)}\n${JSON.stringify(rules)}\n`, stderr: "" }
          : { exitCode: batchExitCode, stdout: "[", stderr: "Error: ipv4: FIB table does not exist.\nDump terminated\nCommand failed -:2\n" };
      }
      return { exitCode: 0, stdout: `${JSON.stringify(single[line] ?? [])}\n`, stderr: "" };
    };
    return {
      ...host,
      commands,
      run: async (argv) => answer(argv),
      stream: async (argv, onData) => {
        const result = answer(argv);
        onData(result.stdout);
        return { ...result, stdout: "" };
      },
    };
  }

  test("one process per family", async () => {
    const system = familyHost(0);
    const reads = await readFamily(system, 4, "main", 2, PROTOCOLS_ONLY);
    expect(system.commands).toEqual(["ip -4 -d -N -j -batch -"]);
    expect(reads.main.map((route) => route.dst)).toEqual(["0.0.0.0/0"]);
    expect(reads.table).toEqual([{ protocol: "83" }]);
    // -d adds each rule's protocol, which the rule matching does not expect.
    expect(reads.rules).toEqual([
      { priority: 0, src: "all", table: "255" },
      { priority: 1000, src: "all", fwmark: "0x2", fwmask: "0x2", table: "2" },
    ]);
  });

  test("failed batch reads one by one", async () => {
    const system = familyHost(1);
    const reads = await readFamily(system, 4, "main", 2, PROTOCOLS_ONLY);
    expect(system.commands).toEqual([
      "ip -4 -d -N -j -batch -",
      "ip -4 -d -N -j route show table main",
      "ip -4 -N -j route show table 2",
      "ip -4 -N -j rule show",
    ]);
    expect(reads.main).toHaveLength(1);
    expect(reads.table).toEqual([{ protocol: "83" }]);
    expect(reads.rules).toHaveLength(2);
  });
});
