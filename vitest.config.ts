import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Parity suites compile and run small ONNX graphs; the 2-core CI machine needs room.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
