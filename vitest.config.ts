import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // node-llama-cpp's native addon cannot run in vm contexts: forks only.
    pool: "forks",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
