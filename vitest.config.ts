import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // node-llama-cpp's native addon cannot run in vm contexts: forks only.
    pool: "forks",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    // One process for all files: much faster start-up on small machines; tests keep no global state.
    isolate: false,
  },
});
