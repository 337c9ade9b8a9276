/**
 * Graphs built for WebGPU keep every per-layer node on the GPU. onnxruntime runs a node its
 * WebGPU provider has no kernel for (FusedMatMul, Scan, anything on int64 data) on the CPU, and
 * every such island costs a GPU drain and two copies: one per layer is ruinous. Each
 * architecture's tiny fixture is opened on WebGPU (SwiftShader, in a child process) and its
 * decoder and vision tower may leave on the CPU only the shape and index arithmetic done once
 * before the layers, with no GPU-to-host copy inside a layer. The lens graph's placement is
 * printed, not checked (its statistics run on the CPU under WebGPU).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { onnx } from "onnx-proto";
import { describe, expect, it } from "vitest";
import { findArchitecture } from "../../src/sidecar/arch";
import type { JsonObject } from "../../src/sidecar/arch/configUtil";
import { compileGraphs } from "../../src/sidecar/model/loadedModel";
import { WeightIndex } from "../../src/sidecar/model/safetensors";
import { ModelWeights } from "../../src/sidecar/model/weights";
import { resolveDevice } from "../../src/sidecar/runtime/ort";
import { isSoftwareAdapter, webgpuAdapter } from "../../src/sidecar/runtime/webgpuAdapter";
import { webgpuSuiteEnv } from "../helpers/webgpuEnv";
import { describePlacement, parsePlacement, placementOf, placementProblems } from "../helpers/webgpuPlacement";

const FIXTURES = path.resolve(__dirname, "../fixtures");
const MODELS = [
  ["LlamaForCausalLM", "models/llama-f32/model"],
  ["LlavaForConditionalGeneration (GQA)", "models/llava-gqa-f32/model"],
  ["LlavaForConditionalGeneration (tied)", "models/llava-tied-f32/model"],
  ["Qwen2VLForConditionalGeneration", "qwen2vl-tiny/model"],
  ["Idefics3ForConditionalGeneration", "idefics3-tiny/model"],
] as const;

describe("reading onnxruntime's placement log", () => {
  const log = [
    "2026-12-02 06:20:13.44 [I:onnxruntime:decoder, transformer_memcpy.cc:393 AddCopyNode] Add MemcpyToHost before layers.0/Reshape_26 for WebGpuExecutionProvider",
    "2026-12-02 06:20:13.44 [I:onnxruntime:decoder, transformer_memcpy.cc:393 AddCopyNode] Add MemcpyFromHost after mask/allowed for WebGpuExecutionProvider",
    "2026-12-02 06:20:13.44 [V:onnxruntime:decoder, session_state.cc:1377 VerifyEachNodeIsAssignedToAnEp] Node placements",
    "2026-12-02 06:20:13.44 [V:onnxruntime:decoder, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 3",
    "2026-12-02 06:20:13.44 [V:onnxruntime:decoder, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Range (mask/Range)",
    "2026-12-02 06:20:13.44 [V:onnxruntime:decoder, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   FusedMatMul (layers.0/scores)",
    "2026-12-02 06:20:13.44 [V:onnxruntime:decoder, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Scan (head/scan)",
    "2026-12-02 06:20:13.44 [V:onnxruntime:decoder, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [WebGpuExecutionProvider]. Number of nodes: 2",
    "2026-12-02 06:20:13.44 [V:onnxruntime:decoder, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   MatMul (layers.0/MatMul)",
    "2026-12-02 06:20:13.44 [V:onnxruntime:decoder, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   MemcpyToHost (Memcpy)",
    "2026-12-02 06:20:13.48 [V:onnxruntime:vision, session_state.cc:1380 VerifyEachNodeIsAssignedToAnEp]  All nodes placed on [WebGpuExecutionProvider]. Number of nodes: 1",
    "2026-12-02 06:20:13.48 [V:onnxruntime:vision, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Conv (embeddings/patch_embedding)",
  ].join("\n");

  it("attributes nodes and copies to their session and flags CPU islands in a layer, model arithmetic on the CPU and copies inside a layer", () => {
    const sessions = parsePlacement(log);
    const decoder = sessions.get("decoder")!;
    expect(decoder.cpu.map((n) => n.name)).toEqual(["mask/Range", "layers.0/scores", "head/scan"]);
    expect(decoder.gpu.map((n) => n.op)).toEqual(["MatMul", "MemcpyToHost"]);
    expect(decoder.copiesToHost).toEqual(["layers.0/Reshape_26"]);
    expect(placementProblems(decoder)).toEqual([
      "decoder: FusedMatMul (layers.0/scores) of the per-layer path runs on the CPU",
      "decoder: Scan (head/scan) runs on the CPU and is not shape or index arithmetic",
      "decoder: a value is copied from the GPU to the host before layers.0/Reshape_26, inside the per-layer path",
    ]);
    expect(sessions.get("vision")).toEqual({ session: "vision", counts: { cpu: 0, gpu: 1 }, cpu: [], gpu: [{ op: "Conv", name: "embeddings/patch_embedding" }], copiesToHost: [] });
    expect(decoder.counts).toEqual({ cpu: 3, gpu: 2 });
    expect(placementProblems(sessions.get("vision")!)).toEqual([]);
  });

  it("keeps each session's node lines with its own header when two sessions' lines interleave", () => {
    const at = (id: string, text: string) => `2026-12-04 02:20:13.44 [V:onnxruntime:${id}, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp] ${text}`;
    const sessions = parsePlacement(
      [
        at("decoder", " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 1"),
        at("vision", " Node(s) placed on [WebGpuExecutionProvider]. Number of nodes: 1"),
        at("decoder", "  Range (mask/Range)"),
        at("vision", "  Conv (embeddings/patch_embedding)"),
      ].join("\n"),
    );
    expect(sessions.get("decoder")!.cpu).toEqual([{ op: "Range", name: "mask/Range" }]);
    expect(sessions.get("vision")!.gpu).toEqual([{ op: "Conv", name: "embeddings/patch_embedding" }]);
    expect(sessions.get("vision")!.cpu).toEqual([]);
  });
});

/** Every op type in a graph, subgraphs included. */
function opTypes(bytes: Uint8Array): Set<string> {
  const out = new Set<string>();
  const walk = (nodes: onnx.INodeProto[]) => {
    for (const n of nodes) {
      out.add(n.opType ?? "");
      for (const a of n.attribute ?? []) if (a.g) walk(a.g.node ?? []);
    }
  };
  walk(onnx.ModelProto.decode(bytes).graph?.node ?? []);
  return out;
}

// Without SwiftShader the suite below is skipped; what the graphs are built of is checked everywhere.
describe.each(MODELS)("%s built for WebGPU", (_label, dir) => {
  it("has no op WebGPU lacks kernels for in its decoder and vision tower, and computes its rotary tables on the CPU", async () => {
    const folder = path.join(FIXTURES, dir);
    const configFile = path.join(folder, "config.json");
    const config = JSON.parse(fs.readFileSync(configFile, "utf8")) as JsonObject;
    const weights = new ModelWeights(await WeightIndex.open(folder), configFile);
    const module = findArchitecture(config["architectures"], configFile).module;
    const gpu = compileGraphs(module, config, configFile, weights, { provider: "webgpu" });
    for (const graph of [gpu.decoder, gpu.vision]) {
      if (!graph) continue;
      const ops = opTypes(graph.bytes);
      for (const op of ["FusedMatMul", "Scan", "Loop", "Unique", "NonZero", "GroupQueryAttention"]) expect(ops.has(op), `${graph.name} has ${op}`).toBe(false);
    }
    expect(gpu.decoder.cpuNodes).toEqual(expect.arrayContaining(["rope/cos", "rope/sin"]));
    // The CPU keeps its fused product.
    expect(opTypes(compileGraphs(module, config, configFile, weights, { provider: "cpu" }).decoder.bytes).has("FusedMatMul")).toBe(true);
  });
});

describe("device auto", () => {
  it("takes WebGPU only where Dawn offers a hardware adapter (here: none, or a software one)", async () => {
    const answer = await webgpuAdapter();
    const hardware = "adapter" in answer && !isSoftwareAdapter(answer.adapter);
    const provider = await resolveDevice("auto");
    if (provider !== "cuda") expect(provider).toBe(hardware ? "webgpu" : "cpu");
  });
});

const env = webgpuSuiteEnv("the WebGPU placement suite");

describe.runIf(env !== undefined).each(MODELS.flatMap(([label, dir]) => (["float32", "float16"] as const).map((dtype) => [label, dir, dtype] as const)))("%s on WebGPU in %s", (_label, dir, dtype) => {
  it("keeps every decoder and vision-tower node but shape and index arithmetic on the GPU", async () => {
    // float16 sessions are created and placed as on an adapter with shader-f16 (SwiftShader has none, so they never run here)
    const open = async () => {
      const placed = await placementOf(path.join(FIXTURES, dir), env!, 90_000, dtype);
      return { ...placed, checked: [...placed.sessions.values()].filter((s) => s.session === "decoder" || s.session === "vision") };
    };
    let placed = await open();
    // Once (a clean-clone CI run on 2026-12-04, Idefics3) the log came back with no WebGPU
    // nodes for the decoder, and the rerun placed them as always; the cause was not found. A
    // misplacement the graphs cause repeats, so a second opening decides, and the first is shown.
    if (placed.checked.some((s) => s.counts.gpu === 0)) {
      console.warn(`${dir} on WebGPU: a session showed no WebGPU nodes; opening it once more. First log:\n${[...placed.sessions.values()].map(describePlacement).join("\n")}`);
      placed = await open();
    }
    const { provider, computeDtype, sessions, checked } = placed;
    expect([provider, computeDtype]).toEqual(["webgpu", dtype]);
    console.log(`${dir} on WebGPU:\n${[...sessions.values()].map(describePlacement).join("\n")}`);
    expect(checked.map((s) => s.session)).toContain("decoder");
    for (const s of checked) expect(s.counts.gpu, `${s.session} has nodes on WebGPU`).toBeGreaterThan(0);
    expect(checked.flatMap(placementProblems)).toEqual([]);
  });
});
