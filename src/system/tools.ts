import { accessSync, constants } from "node:fs";
import { join } from "node:path";

// OpenVPN starts scripts with an environment that has no PATH, so every tool
// is looked up in the usual system folders first, then in PATH if one is set.
const SYSTEM_DIRS = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"];

/** Returns the absolute path of `tool`, or undefined when it is not installed. */
export function findTool(tool: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...SYSTEM_DIRS, ...(env.PATH ?? "").split(":").filter((dir) => dir.startsWith("/"))];
  for (const dir of dirs) {
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this folder; keep looking.
    }
  }
  return undefined;
}
