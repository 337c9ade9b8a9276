/** The CLI end to end through the built bundle: the happy path and one-line errors with exit codes. */
import { spawnSync } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURES } from "../helpers/fixtures";

const BIN = path.resolve(__dirname, "../../bin/logit-lens.js");
const LLAVA = path.join(FIXTURES, "llava-gqa-f32/model");
const IMAGE = path.join(FIXTURES, "images/landscape.png");

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Runs the bundle that `npm test` builds first.
describe("logit-lens CLI", () => {
  it("prints one row per layer for the last prompt position", () => {
    const r = cli("run", "--model", LLAVA, "--image", IMAGE, "--prompt", "What color is the circle?", "--device", "cpu");
    expect(r.stderr).toMatch(/done in/);
    expect(r.code).toBe(0);
    const rows = r.stdout.split("\n").filter((l) => /^(embeddings|block \d+) /.test(l));
    expect(rows.map((l) => l.split(/\s+/)[0] + (l.startsWith("block") ? ` ${l.split(/\s+/)[1]}` : ""))).toEqual(["embeddings", "block 1", "block 2", "block 3"]);
  });

  it("--json gives every layer's top-k with probabilities that sort and sum below 1", () => {
    const r = cli("run", "--model", LLAVA, "--image", IMAGE, "--prompt", "What color is the circle?", "--json", "--top-k", "3", "--device", "cpu");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { model: { architecture: string }; layers: { top: { prob: number; token: string }[] }[] };
    expect(out.model.architecture).toBe("LlavaForConditionalGeneration");
    expect(out.layers).toHaveLength(4);
    for (const l of out.layers) {
      expect(l.top).toHaveLength(3);
      expect(l.top[0].prob).toBeGreaterThanOrEqual(l.top[1].prob);
      expect(l.top.reduce((a, t) => a + t.prob, 0)).toBeLessThanOrEqual(1 + 1e-6);
    }
  });

  it("an input error is one line on stderr, exit 1, no stack trace", () => {
    const missing = path.join(os.tmpdir(), "definitely-missing.png");
    const r = cli("run", "--model", LLAVA, "--image", missing, "--prompt", "hi", "--device", "cpu");
    expect(r.code).toBe(1);
    const lines = r.stderr.split("\n").filter((l) => l.trim() && !l.endsWith("…"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: .*definitely-missing\.png/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("--verbose adds the stack trace", () => {
    const r = cli("run", "--model", path.join(os.tmpdir(), "nope-model"), "--prompt", "hi", "--verbose");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  it("usage errors exit 2 with the usage text", () => {
    const r = cli("run", "--prompt", "hi");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--model is required/);
    expect(r.stderr).toMatch(/usage: logit-lens run/);
  });

  it("an unknown device names the valid ones", () => {
    const r = cli("run", "--model", LLAVA, "--prompt", "hi", "--device", "tpu");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown device "tpu": choose one of auto, cpu, cuda, webgpu/);
  });
});
