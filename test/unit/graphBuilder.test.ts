/**
 * GraphBuilder's build step: outputs are named at their producing node (no Identity copy on
 * every run), values keep working wherever they are read after being declared outputs, and
 * `foldsConstants` says whether a graph has load-time work for onnxruntime's constant folder
 * (which decides the session's optimisation level).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { onnx } from "onnx-proto";
import { describe, expect, it } from "vitest";
import { findArchitecture } from "../../src/sidecar/arch";
import type { JsonObject } from "../../src/sidecar/arch/configUtil";
import { GraphBuilder } from "../../src/sidecar/graph/onnxBuilder";
import { compileGraphs } from "../../src/sidecar/model/loadedModel";
import { WeightIndex } from "../../src/sidecar/model/safetensors";
import { ModelWeights } from "../../src/sidecar/model/weights";
import { openGraphSession } from "../../src/sidecar/runtime/ort";
import { FIXTURES } from "../helpers/fixtures";

function decode(b: GraphBuilder): onnx.IModelProto {
  return onnx.ModelProto.decode(b.build().bytes);
}

async function run(b: GraphBuilder, feeds: Record<string, Float32Array | Uint8Array>, dims: Record<string, number[]>): Promise<Record<string, number[]>> {
  const session = await openGraphSession(b.build(), { weightsFolder: os.tmpdir(), device: "cpu", threads: 1 });
  try {
    const out = await session.run(Object.fromEntries(Object.entries(feeds).map(([k, data]) => [k, { data, dims: dims[k] }])));
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, Array.from(t.data as Float32Array)]));
  } finally {
    await session.release();
  }
}

describe("GraphBuilder outputs", () => {
  it("names the producing node's output instead of copying it, also where later nodes and subgraphs read it", async () => {
    const b = new GraphBuilder("t");
    const x = b.input("x", "float32", [3]);
    const cond = b.input("cond", "bool", []);
    const doubled = b.op("Add", [x, x]);
    b.output(doubled, "doubled", "float32", [3]);
    const [branch] = b.ifElse(cond, ["float32"], () => [b.op("Mul", [doubled, doubled])], () => [b.op("Neg", [doubled])]);
    b.output(branch, "branch", "float32", [3]);
    b.output(b.op("Add", [doubled, b.f32(1)]), "plus_one", "float32", [3]);

    const graph = decode(b).graph!;
    expect(graph.node!.map((n) => n.opType)).not.toContain("Identity");
    expect(graph.node!.find((n) => n.opType === "Add" && n.input![0] === "x")!.output).toEqual(["doubled"]);

    const feeds = { x: new Float32Array([1, 2, 3]), cond: new Uint8Array([1]) };
    const out = await run(b, feeds, { x: [3], cond: [] });
    expect(out["doubled"]).toEqual([2, 4, 6]);
    expect(out["branch"]).toEqual([4, 16, 36]);
    expect(out["plus_one"]).toEqual([3, 5, 7]);
    expect((await run(b, { ...feeds, cond: new Uint8Array([0]) }, { x: [3], cond: [] }))["branch"]).toEqual([-2, -4, -6]);
  });

  it("copies through an Identity only an input, or a value declared as two outputs", async () => {
    const b = new GraphBuilder("t");
    const x = b.input("x", "float32", [2]);
    const y = b.op("Neg", [x]);
    b.output(x, "same_as_x", "float32", [2]);
    b.output(y, "neg", "float32", [2]);
    b.output(y, "neg_again", "float32", [2]);
    const identities = decode(b).graph!.node!.filter((n) => n.opType === "Identity");
    expect(identities.map((n) => n.output![0]).sort()).toEqual(["neg_again", "same_as_x"]);
    const out = await run(b, { x: new Float32Array([1, -5]) }, { x: [2] });
    expect(out).toEqual({ same_as_x: [1, -5], neg: [-1, 5], neg_again: [-1, 5] });
  });
});

describe("GraphBuilder.build().foldsConstants", () => {
  it("is false for a graph that only computes from its inputs", () => {
    const b = new GraphBuilder("t");
    const x = b.input("x", "float32", [2]);
    b.output(b.op("Mul", [x, b.f32(2)]), "y", "float32", [2]);
    expect(b.build().foldsConstants).toBe(false);
  });

  it("is true for a cast of a weight, the case that needs it (F16/BF16 checkpoints)", () => {
    const b = new GraphBuilder("t");
    const x = b.input("x", "float32", [2]);
    const w = b.externalWeight("w", "float16", [2], "model.safetensors", 8, 4);
    b.output(b.op("Mul", [x, b.op("Cast", [w], { to: 1 })]), "y", "float32", [2]);
    expect(b.build().foldsConstants).toBe(true);
  });

  it("looks inside subgraphs, and ignores ops that would only store a copy or a broadcast", () => {
    const ones = new GraphBuilder("t");
    const x = ones.input("x", "float32", [2]);
    ones.output(ones.op("Mul", [x, ones.op("Expand", [ones.f32(1), ones.i64(2)])]), "y", "float32", [2]);
    expect(ones.build().foldsConstants).toBe(false);

    const nested = new GraphBuilder("t");
    const c = nested.input("c", "bool", []);
    const [r] = nested.ifElse(c, ["float32"], () => [nested.op("Add", [nested.f32(1), nested.f32(2)])], () => [nested.f32(0)]);
    nested.output(r, "r", "float32", []);
    expect(nested.build().foldsConstants).toBe(true);
  });
});

describe("GraphBuilder.contribOp", () => {
  it("QuickGelu and FusedMatMul compute transformers' SiLU and scaled q @ k^T", async () => {
    const b = new GraphBuilder("t");
    const x = b.input("x", "float32", [2, 3]);
    const k = b.input("k", "float32", [4, 3]);
    b.output(b.contribOp("QuickGelu", [x], { alpha: { float: 1 } }), "silu", "float32", [2, 3]);
    b.output(b.contribOp("FusedMatMul", [x, k], { transB: 1, alpha: { float: 0.5 } }), "scores", "float32", [2, 4]);
    expect(decode(b).opsetImport!.map((o) => o.domain)).toContain("com.microsoft");

    const xs = [0.5, -1, 2, 3, -0.25, 1.5];
    const ks = [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, -2, 0.5];
    const out = await run(b, { x: Float32Array.from(xs), k: Float32Array.from(ks) }, { x: [2, 3], k: [4, 3] });
    out["silu"].forEach((v, i) => expect(v).toBeCloseTo(xs[i] / (1 + Math.exp(-xs[i])), 6));
    for (let r = 0; r < 2; r++) {
      for (let c = 0; c < 4; c++) {
        const dot = [0, 1, 2].reduce((s, j) => s + xs[r * 3 + j] * ks[c * 3 + j], 0);
        expect(out["scores"][r * 4 + c]).toBeCloseTo(0.5 * dot, 6);
      }
    }
  });
});

describe("compiled model graphs", () => {
  // Sessions open with onnxruntime's optimisation off unless a graph has constant work, so a
  // stray Reshape or Transpose over a weight would quietly make every model open slower.
  const folders: [string, string, boolean][] = [
    ["llama-f32", path.join(FIXTURES, "llama-f32", "model"), false],
    ["llava-gqa-f32", path.join(FIXTURES, "llava-gqa-f32", "model"), false],
    ["llava-tied-f32", path.join(FIXTURES, "llava-tied-f32", "model"), false],
    ["qwen2vl-tiny", path.join(FIXTURES, "..", "qwen2vl-tiny", "model"), false],
    ["idefics3-tiny", path.join(FIXTURES, "..", "idefics3-tiny", "model"), false],
    ["bundled lens-scenes-tiny", path.join(__dirname, "../../media/models/lens-scenes-tiny"), false],
    ["llama-f16", path.join(FIXTURES, "llama-f16", "model"), true],
    ["llava-gqa-bf16", path.join(FIXTURES, "llava-gqa-bf16", "model"), true],
  ];
  it("the decoder uses the fused GroupQueryAttention only on the CPU and for head sizes that are multiples of 8", async () => {
    const opsOf = async (fixture: string, provider: "cpu" | "cuda" | "webgpu") => {
      const folder = path.join(FIXTURES, fixture, "model");
      const configFile = path.join(folder, "config.json");
      const config = JSON.parse(fs.readFileSync(configFile, "utf8")) as JsonObject;
      const weights = new ModelWeights(await WeightIndex.open(folder), configFile);
      const { decoder } = compileGraphs(findArchitecture(config["architectures"], configFile).module, config, configFile, weights, { provider });
      return new Set(onnx.ModelProto.decode(decoder.bytes).graph!.node!.map((n) => n.opType));
    };
    expect((await opsOf("llava-tied-f32", "cpu")).has("GroupQueryAttention")).toBe(true); // head_dim 16
    expect((await opsOf("llava-tied-f32", "cuda")).has("GroupQueryAttention")).toBe(false);
    expect((await opsOf("llava-tied-f32", "webgpu")).has("GroupQueryAttention")).toBe(false);
    expect((await opsOf("llava-gqa-f32", "cpu")).has("GroupQueryAttention")).toBe(false); // head_dim 12
  });

  it.each(folders)("%s: constant work only where F16/BF16 weights need casting", async (_name, folder, halfPrecision) => {
    const configFile = path.join(folder, "config.json");
    const config = JSON.parse(fs.readFileSync(configFile, "utf8")) as JsonObject;
    const weights = new ModelWeights(await WeightIndex.open(folder), configFile);
    const graphs = compileGraphs(findArchitecture(config["architectures"], configFile).module, config, configFile, weights);
    expect(graphs.decoder.foldsConstants).toBe(halfPrecision);
    expect(graphs.lens.foldsConstants).toBe(halfPrecision);
    if (graphs.vision) expect(graphs.vision.foldsConstants).toBe(halfPrecision);
  });
});
