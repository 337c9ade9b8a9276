/**
 * WebGPU on a machine without a GPU: Chromium ships a Vulkan loader and Google's SwiftShader
 * (a CPU implementation of Vulkan), and onnxruntime's WebGPU provider runs on it when the
 * process starts with that loader on LD_LIBRARY_PATH and SwiftShader as its only driver
 * (../shared/notes/gpu.md). LD_LIBRARY_PATH is read at process start, so the WebGPU suites run
 * their work in a child process with this environment.
 *
 * tools/e2e/install.sh (run by `npm test`) installs Debian's chromium. Without it the WebGPU
 * suites are skipped, except when CI is set: then they fail.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

/** Folders that may hold Chromium's libvulkan.so.1 and vk_swiftshader_icd.json (LOGIT_LENS_SWIFTSHADER_DIR first). */
const CANDIDATES = [process.env["LOGIT_LENS_SWIFTSHADER_DIR"], "/usr/lib/chromium", "/usr/lib64/chromium-browser", "/usr/lib/chromium-browser"].filter((d): d is string => !!d);

export const WEBGPU_REQUIRED = Boolean(process.env["CI"]) && process.env["CI"] !== "false" && process.env["CI"] !== "0";

/** The environment that makes a child process's WebGPU run on SwiftShader, or undefined when it is not installed. */
export function swiftShaderEnv(): NodeJS.ProcessEnv | undefined {
  for (const dir of CANDIDATES) {
    const icd = path.join(dir, "vk_swiftshader_icd.json");
    if (fs.existsSync(icd) && fs.existsSync(path.join(dir, "libvulkan.so.1"))) {
      const libs = [dir, process.env["LD_LIBRARY_PATH"]].filter(Boolean).join(":");
      return { ...process.env, LD_LIBRARY_PATH: libs, VK_ICD_FILENAMES: icd, VK_DRIVER_FILES: icd };
    }
  }
  return undefined;
}

/**
 * The SwiftShader environment for a suite, or undefined: then the suite is skipped (with a line
 * on stderr saying so), and in CI a failing test says what is missing.
 */
export function webgpuSuiteEnv(suite: string): NodeJS.ProcessEnv | undefined {
  const env = process.platform === "linux" ? swiftShaderEnv() : undefined;
  if (env) return env;
  const what = process.platform === "linux" ? `SwiftShader (Chromium's vk_swiftshader_icd.json and libvulkan.so.1, looked in ${CANDIDATES.join(", ")})` : `a software Vulkan on ${process.platform}`;
  process.stderr.write(`${suite} ${WEBGPU_REQUIRED ? "cannot run" : "skipped"}: ${what} not found; run bash tools/e2e/install.sh (npm test does), or set LOGIT_LENS_SWIFTSHADER_DIR\n`);
  if (WEBGPU_REQUIRED) {
    describe(`${suite} in CI`, () => {
      it("has SwiftShader (CI is set, so a missing software Vulkan is a failure, not a skip)", () => {
        expect.fail(`CI is set but ${suite} cannot run: ${what} not found. tools/e2e/install.sh (run by npm test) installs chromium, which ships it`);
      });
    });
  }
  return undefined;
}

/**
 * Runs a test file again in a child vitest whose WebGPU is SwiftShader (`env`, with `childEnv`
 * set to "child" so that the file runs its child suites), and checks that it passed with every
 * test run (none skipped or filtered out) and at least `minTests` of them. `keep` picks the lines
 * of its output to print (its measured errors, say).
 */
export async function expectWebgpuChildPasses(file: string, o: { env: NodeJS.ProcessEnv; childEnv: string; timeoutMs: number; minTests: number; keep: RegExp; what: string }): Promise<void> {
  const root = path.resolve(__dirname, "../..");
  const vitest = path.join(root, "node_modules", "vitest", "vitest.mjs");
  const child = spawn(process.execPath, [vitest, "run", path.relative(root, file)], { cwd: root, env: { ...o.env, [o.childEnv]: "child", FORCE_COLOR: "0", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  const text = output.replace(/\x1b\[[0-9;]*m/g, "");
  console.log(`${o.what} child (exit ${code}):\n${text.split("\n").filter((l) => o.keep.test(l)).join("\n")}`);
  expect(code, text.slice(-4000)).toBe(0);
  const summary = /Tests\s+(\d+) passed \((\d+)\)/.exec(text);
  expect(summary, "the child's test summary").not.toBeNull();
  expect(Number(summary![1])).toBe(Number(summary![2]));
  expect(Number(summary![1])).toBeGreaterThanOrEqual(o.minTests);
}
