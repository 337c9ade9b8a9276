/**
 * The @vscode/test-electron suite: desktop VS Code with this extension loaded from the work
 * tree, running test/electron/suite.ts inside it. test-electron downloads VS Code by default,
 * which cannot be reached from these machines, so the suite runs only when a VS Code executable
 * is given: VSCODE_EXECUTABLE=/path/to/code npm test. Otherwise it says it was skipped and why.
 * (The code-server suite in test/e2e drives the real editor on every run.)
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runTests } from "@vscode/test-electron";
import * as esbuild from "esbuild";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "../..");
const executable = process.env["VSCODE_EXECUTABLE"];
if (!executable) {
  process.stderr.write(
    "test-electron suite skipped: no VS Code executable given (set VSCODE_EXECUTABLE=/path/to/code; @vscode/test-electron cannot download VS Code on this machine)\n",
  );
}

describe.skipIf(!executable)("desktop VS Code through @vscode/test-electron", () => {
  it("activates, runs the lens on a sample through the command, and the panel holds the record", async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "lens-electron-"));
    const suite = path.join(out, "suite.js");
    await esbuild.build({ entryPoints: [path.join(__dirname, "suite.ts")], outfile: suite, bundle: true, platform: "node", format: "cjs", target: "node20", external: ["vscode"] });
    const code = await runTests({
      vscodeExecutablePath: executable!,
      extensionDevelopmentPath: ROOT,
      extensionTestsPath: suite,
      launchArgs: [path.join(ROOT, "media", "samples"), "--disable-extensions", "--disable-workspace-trust", "--user-data-dir", path.join(out, "user-data")],
    });
    expect(code).toBe(0);
  }, 300_000);
});
