import * as path from "node:path";
import { defineConfig } from "vitest/config";

export default defineConfig({
  // Extension modules import "vscode", which only exists inside VS Code: unit tests get a small
  // stand-in with the few classes they use (the editor suites run the real one).
  resolve: { alias: { vscode: path.resolve(__dirname, "test/helpers/vscodeStub.ts") } },
  test: {
    include: ["test/**/*.test.ts"],
    // Parity suites compile and run small ONNX graphs; the 2-core CI machine needs room.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
