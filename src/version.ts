// splitroute's version, printed by --version. scripts/package.mjs takes the
// packages' version from package.json, and a unit test keeps the two equal.
export const VERSION = "0.1.0";
