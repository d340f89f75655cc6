import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // node-llama-cpp's native addon cannot run in vm contexts: forks only.
    pool: "forks",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    // One process for all files: much faster start-up on small machines. Each file must leave process-wide state
    // as it found it: test/setup/isolation.ts checks that after every file (and puts it back).
    isolate: false,
    setupFiles: ["test/setup/isolation.ts"],
  },
});
