// The findings of `splitroute check` and how they turn into an exit code.

/** How much a finding matters: an error stops the bypass from working, a warning may. */
export type Severity = "error" | "warning" | "ok";

/** One thing check found, with the reason it matters and the fix. */
export interface Finding {
  severity: Severity;
  /** The area checked, such as "tools", "rules" or "openvpn". */
  area: string;
  what: string;
  /** The reason it matters for the bypass, absent for most ok findings. */
  why?: string;
  /** The change that fixes it, absent for ok findings. */
  fix?: string;
}

export function error(area: string, what: string, why: string, fix: string): Finding {
  return { severity: "error", area, what, why, fix };
}

export function warning(area: string, what: string, why: string, fix: string): Finding {
  return { severity: "warning", area, what, why, fix };
}

export function ok(area: string, what: string, why?: string): Finding {
  return why === undefined ? { severity: "ok", area, what } : { severity: "ok", area, what, why };
}

/** Returns the exit code for `findings`: 2 with any error, 1 with any warning, else 0. */
export function exitCodeOf(findings: readonly Finding[]): 0 | 1 | 2 {
  if (findings.some((finding) => finding.severity === "error")) {
    return 2;
  }
  return findings.some((finding) => finding.severity === "warning") ? 1 : 0;
}
