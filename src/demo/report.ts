// Console output of the demo: headings, explanations and pass/fail checks.

export class DemoReport {
  private passed = 0;
  private failed = 0;
  /** Set once the demo is interrupted, after which results are meaningless and not printed. */
  muted = false;

  heading(title: string): void {
    console.log(`\n${title}\n${"-".repeat(title.length)}`);
  }

  /** Prints explanatory text indented under the current heading. */
  explain(...paragraphs: string[]): void {
    for (const paragraph of paragraphs) {
      console.log(`  ${paragraph}`);
    }
  }

  /** Records one expectation and prints it with "ok" or "UNEXPECTED". */
  check(passed: boolean, description: string, detail?: string): void {
    if (this.muted) {
      return;
    }
    if (passed) {
      this.passed += 1;
    } else {
      this.failed += 1;
    }
    const mark = passed ? "ok        " : "UNEXPECTED";
    console.log(`  [${mark}] ${description}`);
    if (detail !== undefined) {
      console.log(`               ${detail}`);
    }
  }

  get failures(): number {
    return this.failed;
  }

  summary(): string {
    const total = this.passed + this.failed;
    return this.failed === 0 ? `All ${total} checks passed.` : `${this.failed} of ${total} checks failed.`;
  }
}

/** Returns the lines present in only one of the two texts, prefixed with "-" (before) or "+" (after). */
export function diffLines(before: string, after: string): string[] {
  const beforeLines = before.split("\n");
  const afterLines = after.split("\n");
  const removed = beforeLines.filter((line) => !afterLines.includes(line)).map((line) => `- ${line}`);
  const added = afterLines.filter((line) => !beforeLines.includes(line)).map((line) => `+ ${line}`);
  return [...removed, ...added];
}
