import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Namespace tests change kernel state in namespaces they own; running
    // files in parallel is safe, but each OpenVPN lab takes seconds to start.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
