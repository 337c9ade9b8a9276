/**
 * The vision towers' attention on the CPU in float32 is onnxruntime's fused MultiHeadAttention
 * (blocks.ts hasFusedSelfAttention): separate scores, mask, softmax and product operators took
 * 9.3 s of Qwen2-VL-2B's tower on a 640 x 480 picture, the fused kernel 1.7 s without the mask
 * and 6.4 s with it. So Qwen2-VL's tower adds its frame mask only in an If taken for several
 * frames (the parity suite runs both branches: one frame in every case, two frames in the
 * frame test of test/parity/qwen2vl.test.ts), and Idefics3's tower attends within each tile
 * by making the tiles the kernel's batch. Half compute and WebGPU keep plain operators.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { onnx } from "onnx-proto";
import { describe, expect, it } from "vitest";
import { findArchitecture } from "../../src/sidecar/arch";
import type { JsonObject } from "../../src/sidecar/arch/configUtil";
import type { ComputeDtype } from "../../src/sidecar/graph/blocks";
import { compileGraphs } from "../../src/sidecar/engine/engine";
import { WeightIndex } from "../../src/sidecar/model/safetensors";
import { ModelWeights } from "../../src/sidecar/model/weights";
import { FIXTURES } from "../helpers/fixtures";

const IDEFICS3_LAYERS = (JSON.parse(fs.readFileSync(path.resolve(FIXTURES, "../idefics3-tiny/model/config.json"), "utf8")) as { vision_config: { num_hidden_layers: number } }).vision_config.num_hidden_layers;

const TOWERS = [
  // Qwen2-VL: vision_config.depth 2; LLaVA: CLIP's 3 layers, of which the features take the second-to-last (vision_feature_layer -2): 2 built
  { name: "qwen2vl-tiny", folder: path.resolve(FIXTURES, "../qwen2vl-tiny/model"), blocks: 2 },
  { name: "llava-gqa-f32", folder: path.join(FIXTURES, "llava-gqa-f32/model"), blocks: 2 },
  // Idefics3's SigLIP over its tiles, which are the fused kernel's batch (no mask)
  { name: "idefics3-tiny", folder: path.resolve(FIXTURES, "../idefics3-tiny/model"), blocks: IDEFICS3_LAYERS },
];

async function visionGraph(folder: string, provider: "cpu" | "webgpu", compute: ComputeDtype): Promise<onnx.IGraphProto> {
  const configFile = path.join(folder, "config.json");
  const config = JSON.parse(fs.readFileSync(configFile, "utf8")) as JsonObject;
  const weights = new ModelWeights(await WeightIndex.open(folder), configFile);
  const g = compileGraphs(findArchitecture(config["architectures"], configFile).module, config, configFile, weights, { provider, halfWeights: "cast", compute });
  return onnx.ModelProto.decode(g.vision!.bytes).graph!;
}

/** Every node, with the If branch it sits in ("" at top level). */
function nodes(graph: onnx.IGraphProto, branch = ""): { node: onnx.INodeProto; branch: string }[] {
  return (graph.node ?? []).flatMap((node) => [
    { node, branch },
    ...(node.attribute ?? []).filter((a) => a.g).flatMap((a) => nodes(a.g!, `${node.opType}.${a.name}`)),
  ]);
}

const count = (all: ReturnType<typeof nodes>, op: string, branch?: string) => all.filter((n) => n.node.opType === op && (branch === undefined || n.branch === branch)).length;

describe.each(TOWERS)("$name's vision tower", ({ name, folder, blocks }) => {
  it("on the CPU in float32: one fused MultiHeadAttention per block, no softmax of its own", async () => {
    const all = nodes(await visionGraph(folder, "cpu", "float32"));
    expect(count(all, "Softmax")).toBe(0);
    if (name === "qwen2vl-tiny") {
      // the mask (attention_bias, the sixth input) only in the branch for several frames, and
      // made only then: one If per block, and the mask's own
      expect(count(all, "If")).toBe(blocks + 1);
      expect(count(all, "Where", "")).toBe(0);
      expect(count(all, "Where", "If.then_branch")).toBe(1);
      const mha = all.filter((n) => n.node.opType === "MultiHeadAttention");
      expect(mha.filter((n) => n.branch === "If.then_branch").map((n) => n.node.input!.length)).toEqual(Array(blocks).fill(6));
      expect(mha.filter((n) => n.branch === "If.else_branch").map((n) => n.node.input!.length)).toEqual(Array(blocks).fill(3));
    } else {
      expect(count(all, "MultiHeadAttention", "")).toBe(blocks);
      // CLIP: the patch grid's, before the blocks (Idefics3's pixel shuffle has its own after them)
      if (name === "llava-gqa-f32") expect(count(all, "Transpose")).toBe(1);
    }
  });

  it.each([
    ["on WebGPU", "webgpu", "float32"],
    ["in float16 on the CPU", "cpu", "float16"],
  ] as const)("%s: plain operators, the mask (if any) always added", async (_label, provider, compute) => {
    const all = nodes(await visionGraph(folder, provider, compute));
    expect(count(all, "MultiHeadAttention")).toBe(0);
    // at top level: no If around the attention (float16's Ifs widen weight products)
    expect(count(all, "Softmax", "")).toBe(blocks);
  });
});
