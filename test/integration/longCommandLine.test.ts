/**
 * onnxruntime-node crashes (SIGSEGV) creating a session when the process's command line is
 * long (32,000 characters was enough); the entry point hands such a command line to a child
 * through a pipe. Both sides of the hand-over are checked here on the built CLI.
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const CLI = path.resolve(__dirname, "../../dist/sidecar.js");

describe("a long command line", () => {
  it("gets the CLI's one-line refusal of an overlong target, not a crash", () => {
    const r = spawnSync(process.execPath, [CLI, "run", "--target", "a".repeat(32_000)], { encoding: "utf8", timeout: 60_000 });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n").at(-1)).toBe("error: a target or tracked token is 32,000 characters, over the 200-character limit: give a short word");
  });

  it("runs with every argument intact through the hand-over", () => {
    // 9,000 characters of command line, the prompt itself short: the run must be the ordinary one
    const r = spawnSync(process.execPath, [CLI, "run", "--format", "json", "--prompt", "Answer with one word. What color is the object?", "--track", "x".repeat(150), ...Array(60).fill(["--track", "red".padEnd(150, " ")]).flat()], { encoding: "utf8", timeout: 60_000 });
    expect(r.signal).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const record = JSON.parse(r.stdout) as { input: { prompt: string } };
    expect(record.input.prompt).toBe("Answer with one word. What color is the object?");
  });
});
