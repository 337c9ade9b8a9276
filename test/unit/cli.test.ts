/** The CLI end to end through the built bundle: the happy path and one-line errors with exit codes. */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { parseCsv } from "../helpers/csv";
import { FIXTURES } from "../helpers/fixtures";

const BIN = path.resolve(__dirname, "../../bin/logit-lens.js");
const LLAVA = path.join(FIXTURES, "llava-gqa-f32/model");
const IMAGE = path.join(FIXTURES, "images/landscape.png");
const LLAMA_F16 = path.join(FIXTURES, "llama-f16/model");

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

  it("--json prints a LensRecord that validates, with every layer's top-k sorted", () => {
    const r = cli("run", "--model", LLAVA, "--image", IMAGE, "--prompt", "What color is the circle?", "--json", "--top-k", "3", "--max-new-tokens", "2", "--device", "cpu");
    expect(r.code).toBe(0);
    const record = assertLensRecord(JSON.parse(r.stdout));
    expect(record.model.architecture).toBe("LlavaForConditionalGeneration");
    expect(record.layerLabels).toEqual(["embeddings", "block 1", "block 2", "block 3"]);
    expect(record.generation.ids).toHaveLength(2);
    const probs = record.lens.topkProbs.data;
    for (let i = 0; i < probs.length; i += 3) {
      expect(probs[i]).toBeGreaterThanOrEqual(probs[i + 1]);
      expect(probs[i] + probs[i + 1] + probs[i + 2]).toBeLessThanOrEqual(1 + 1e-6);
    }
  });

  it("--format csv --out writes one row per (position, layer) atomically", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-cli-"));
    const out = path.join(dir, "lens.csv");
    const r = cli("run", "--model", LLAVA, "--image", IMAGE, "--prompt", "What color is the circle?", "--format", "csv", "--out", out, "--top-k", "2", "--max-new-tokens", "3", "--device", "cpu");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(fs.readdirSync(dir)).toEqual(["lens.csv"]);
    const rows = parseCsv(fs.readFileSync(out, "utf8"));
    expect(rows[0].join(",")).toBe("position,token,next_token,segment,layer,layer_label,top1_token,top1_prob,top2_token,top2_prob,entropy,kl,cosine,target_token,target_prob,target_rank");
    // The 10 positions after the image, plus the two predicting the 2nd and 3rd generated tokens, times 4 layers.
    expect(rows).toHaveLength(1 + 12 * 4);
    for (const row of rows) expect(row).toHaveLength(rows[0].length);
    // The prompt's "\n" token survives quoting.
    expect(rows.some((row) => row[1] === "\n")).toBe(true);
  });

  it("--mask zeroes the named heads and the table says so", () => {
    const r = cli("run", "--model", LLAVA, "--image", IMAGE, "--prompt", "What color is the circle?", "--mask", "1:0,2;2:1", "--max-new-tokens", "0", "--device", "cpu");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('masked heads {"1":[0,2],"2":[1]}');
  });

  it("diff compares a masked run with an unmasked one, layer by layer", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-diff-"));
    const [a, b] = [path.join(dir, "a.json"), path.join(dir, "b.json")];
    const common = ["run", "--model", LLAVA, "--image", IMAGE, "--prompt", "What color is the circle?", "--target", "red", "--max-new-tokens", "0", "--json", "--device", "cpu"];
    expect(cli(...common, "--out", a).code).toBe(0);
    expect(cli(...common, "--mask-random", "4:3", "--out", b).code).toBe(0);
    const r = cli("diff", a, b, "--format", "csv");
    expect(r.code).toBe(0);
    const rows = parseCsv(r.stdout);
    expect(rows[0]).toEqual(["layer", "layer_label", "mean_target_prob_delta", "mean_target_rank_delta", "mean_entropy_delta"]);
    expect(rows.slice(1).map((row) => row[1])).toEqual(["embeddings", "block 1", "block 2", "block 3"]);
    expect(Number(rows[1][2])).toBe(0); // nothing upstream of the first block changes
    expect(rows.slice(2).some((row) => Number(row[4]) !== 0)).toBe(true);
    // A file that is not a record is a one-line input error.
    fs.writeFileSync(path.join(dir, "c.json"), "{}");
    const bad = cli("diff", a, path.join(dir, "c.json"));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/c\.json: not a valid LensRecord/);
  });

  it("a malformed --mask is a usage error", () => {
    const r = cli("run", "--model", LLAVA, "--prompt", "hi", "--mask", "one:two");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--mask: cannot read "one:two"/);
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
    const r = cli("run", "--image", IMAGE);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--prompt is required with --image/);
    expect(r.stderr).toMatch(/usage: logit-lens \[run\]/);
    expect(cli("run", "--top-k", "0").code).toBe(2);
    expect(cli("frobnicate").stderr).toMatch(/unknown command frobnicate/);
  });

  it("with no arguments runs the bundled model on the first bundled sample", () => {
    const r = cli();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/running the sample color-main-1\.png/);
    expect(r.stdout).toMatch(/^LlavaForConditionalGeneration · F32 · float32 compute · cpu/m);
    const rows = r.stdout.split("\n").filter((l) => /^(embeddings|block \d+) /.test(l));
    expect(rows).toHaveLength(9); // the bundled model's embeddings and 8 blocks
    // It answers the sample, and the lens shows the answer arriving in a middle block.
    expect(r.stdout).toMatch(/generated \(eos\): "red/);
    expect(rows[0]).not.toMatch(/^embeddings\s+"red"/);
    expect(rows[8]).toMatch(/^block 8\s+"red"/);
  });

  it("--dtype reaches the model: float32 and float16 run, another word names the choices, bfloat16 on the CPU is refused in one line", () => {
    const f32 = cli("run", "--model", LLAMA_F16, "--prompt", "The capital of France is", "--dtype", "float32", "--device", "cpu", "--max-new-tokens", "1", "--json");
    expect(f32.code, f32.stderr).toBe(0);
    // one record: float32 compute with the weights kept half, as the sidecar opens (the same numbers as float32 copies)
    expect(assertLensRecord(JSON.parse(f32.stdout)).model).toMatchObject({ dtype: "F16", computeDtype: "float32", weightPlan: "half-per-use" });
    expect(f32.stderr).toMatch(/^memory: half-precision weights kept half for this record and converted per use, which gives the same float32 numbers as float32 copies/m);
    const f16 = cli("run", "--model", LLAMA_F16, "--prompt", "The capital of France is", "--dtype", "float16", "--device", "cpu", "--max-new-tokens", "1", "--json");
    expect(f16.code, f16.stderr).toBe(0);
    expect(assertLensRecord(JSON.parse(f16.stdout)).model).toMatchObject({ dtype: "F16", computeDtype: "float16", weightPlan: "half" });

    const bad = cli("run", "--model", LLAVA, "--prompt", "hi", "--dtype", "half");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: --dtype must be one of auto, float32, float16, bfloat16, got half$/m);
    expect(cli("--help").stdout).toMatch(/--dtype auto\|float32\|float16\|bfloat16/);

    const bf16 = cli("run", "--model", LLAVA, "--prompt", "hi", "--dtype", "bfloat16", "--device", "cpu");
    expect(bf16.code).toBe(1);
    const lines = bf16.stderr.split("\n").filter((l) => l.trim() && !l.endsWith("…"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: .*llava-gqa-f32\/model: dtype bfloat16 computes only on CUDA/);
    // the bundled model's refusal is its own, not "the bundled model is missing"
    const bundled = cli("--dtype", "bfloat16", "--device", "cpu");
    expect(bundled.code).toBe(1);
    expect(bundled.stderr).toMatch(/lens-scenes-tiny: dtype bfloat16 computes only on CUDA/);
  });

  it("an experiment file's dtype opens its model, and --dtype wins over it", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-cli-dtype-"));
    const file = path.join(dir, "dtype.lens.json");
    const scenes = path.resolve(__dirname, "../fixtures/scenes/questions.jsonl");
    fs.writeFileSync(file, JSON.stringify({ model: LLAVA, dtype: "bfloat16", inputs: [{ manifest: scenes, limit: 1 }], prompts: ["{question}"], generation: { maxNewTokens: 1 } }));
    const refused = cli("run", file, "--device", "cpu");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/dtype bfloat16 computes only on CUDA/);
    const overridden = cli("run", file, "--device", "cpu", "--dtype", "float32");
    expect(overridden.code, overridden.stderr).toBe(0);
    expect(overridden.stderr).toMatch(/done: 1 run/);
  });

  it("a half-precision checkpoint keeps its weights half for one record, and an experiment of several items makes float32 copies first", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-cli-copies-"));
    const scenes = path.resolve(__dirname, "../fixtures/scenes/questions.jsonl");
    const bf16 = path.join(FIXTURES, "llava-gqa-bf16/model");
    const plans = (limit: number) => {
      const file = path.join(dir, `copies-${limit}.lens.json`);
      const out = path.join(dir, `out-${limit}`);
      fs.writeFileSync(file, JSON.stringify({ model: bf16, inputs: [{ manifest: scenes, limit }], prompts: ["{question}"], generation: { maxNewTokens: 1 }, output: { records: true } }));
      const r = cli("run", file, "--device", "cpu", "--out", out);
      expect(r.code, r.stderr).toBe(0);
      return fs.readFileSync(path.join(out, "records.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { record: { model: { weightPlan?: string } } }).record.model.weightPlan);
    };
    expect(plans(1)).toEqual(["half-per-use"]);
    expect(plans(2)).toEqual(["float32", "float32"]);
  });

  it("an unknown device names the valid ones", () => {
    const r = cli("run", "--model", LLAVA, "--prompt", "hi", "--device", "tpu");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown device "tpu": choose one of auto, cpu, cuda, webgpu/);
  });
});
