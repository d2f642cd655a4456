import { ConfigError } from "./errors.js";

// Linux limits interface names to 15 bytes. We accept the characters that
// tunnel names use in practice and nothing that a shell, ip -batch or an nft
// string could read as syntax. "." and ".." are not names, and a trailing "+"
// is rejected because iptables reads `-i tun+` as every name starting with tun.
const DEVICE_NAME = /^[A-Za-z0-9_.@:+-]{1,15}$/;

/** Checks a tunnel device name taken from `origin` (an option, the environment or an argument). */
export function validateDevice(name: string, origin: string): string {
  if (!DEVICE_NAME.test(name) || name === "." || name === ".." || name.endsWith("+")) {
    throw new ConfigError(
      `invalid tunnel device ${JSON.stringify(name)} from ${origin}: use at most 15 characters of A-Z a-z 0-9 _ . @ : + -, not ending in +`,
    );
  }
  return name;
}

/**
 * Finds the tunnel device: --dev first, then OpenVPN's `dev` environment
 * variable, then the first argument (wg-quick passes the interface as %i,
 * and OpenVPN passes it first as well).
 */
export function resolveDevice(option: string | undefined, env: NodeJS.ProcessEnv, positionals: readonly string[]): string {
  if (option !== undefined) {
    return validateDevice(option, "--dev");
  }
  if (env.dev !== undefined && env.dev !== "") {
    return validateDevice(env.dev, "the environment variable dev");
  }
  const first = positionals[0];
  if (first !== undefined) {
    return validateDevice(first, "the first argument");
  }
  throw new ConfigError("no tunnel device given: pass --dev IFACE, or run from OpenVPN (which sets dev) or wg-quick (which passes %i)");
}
