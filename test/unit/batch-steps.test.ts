import { describe, expect, test } from "vitest";

import { batchSteps, MAX_BATCH_LINES } from "../../src/plan/up.js";

const lines = (count: number) => Array.from({ length: count }, (_, index) => `route append 198.18.${index >> 8}.${index & 255}/32 dev eth0 table 2`);

describe("batchSteps", () => {
  test("short input stays one step", () => {
    const steps = batchSteps(4, lines(3), "installing routes");
    expect(steps).toEqual([{ kind: "run", summary: "installing routes", argv: ["ip", "-4", "-batch", "-"], input: `${lines(3).join("\n")}\n` }]);
  });

  test("no lines give no step", () => {
    expect(batchSteps(6, [], "installing routes")).toEqual([]);
  });

  test("long input splits at the line limit", () => {
    const all = lines(2 * MAX_BATCH_LINES + 1);
    const steps = batchSteps(6, all, "installing routes");

    expect(steps.map((step) => step.summary)).toEqual([
      "installing routes (batch 1 of 3)",
      "installing routes (batch 2 of 3)",
      "installing routes (batch 3 of 3)",
    ]);
    const inputs = steps.map((step) => (step.kind === "run" ? (step.input ?? "") : ""));
    expect(inputs.map((input) => input.split("\n").length - 1)).toEqual([MAX_BATCH_LINES, MAX_BATCH_LINES, 1]);
    expect(inputs.join("")).toBe(`${all.join("\n")}\n`);
    expect(steps.every((step) => step.kind === "run" && step.argv.join(" ") === "ip -6 -batch -")).toBe(true);
  });
});
