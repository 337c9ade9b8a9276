/**
 * float16 on the CPU: onnxruntime's CPU provider has no float16 matrix product on x86, and the
 * Casts it inserts around one run at the start of a run, every weight's float32 copy alive at
 * once. So the graphs widen each weight product themselves (blocks.ts widensHalfProducts): every
 * Gemm over a checkpoint matrix reads float32 values that an If makes from the float16 weight
 * only once the product's input exists. Built for WebGPU, which has float16 products, the same
 * graphs read float16 weights as stored.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { onnx } from "onnx-proto";
import { describe, expect, it } from "vitest";
import { findArchitecture } from "../../src/sidecar/arch";
import type { JsonObject } from "../../src/sidecar/arch/configUtil";
import { compileGraphs } from "../../src/sidecar/engine/engine";
import { WeightIndex } from "../../src/sidecar/model/safetensors";
import { ModelWeights } from "../../src/sidecar/model/weights";
import { FIXTURES } from "../helpers/fixtures";

const HALF = ["llama-f16", "llava-gqa-bf16"] as const;

async function compiled(name: string, opts: Parameters<typeof compileGraphs>[4]) {
  const folder = path.join(FIXTURES, name, "model");
  const configFile = path.join(folder, "config.json");
  const config = JSON.parse(fs.readFileSync(configFile, "utf8")) as JsonObject;
  const index = await WeightIndex.open(folder);
  return compileGraphs(findArchitecture(config["architectures"], configFile).module, config, configFile, new ModelWeights(index, configFile), opts);
}

async function graphsOf(name: string, provider: "cpu" | "webgpu") {
  const g = await compiled(name, { provider, halfWeights: "cast", compute: "float16" });
  return [g.decoder, g.lens, ...(g.vision ? [g.vision] : [])];
}

/** Per Gemm over a checkpoint matrix (external initializers of rank 2): what feeds its B input, and the top-level Casts of such matrices. */
function weightProducts(bytes: Uint8Array) {
  const graph = onnx.ModelProto.decode(bytes).graph!;
  const matrices = new Set((graph.initializer ?? []).filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL && (t.dims ?? []).length === 2).map((t) => t.name));
  const producer = new Map<string, onnx.INodeProto>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) producer.set(o, n);
  // the matrices each If's branches read (an If's subgraphs see the outer initializers by name)
  const readIn = (n: onnx.INodeProto) => (n.attribute ?? []).flatMap((a) => (a.g?.node ?? []).flatMap((m) => m.input ?? [])).filter((i) => matrices.has(i));
  const gemms = (graph.node ?? []).filter((n) => n.opType === "Gemm");
  const overWeights = gemms.flatMap((n) => {
    const b = n.input![1];
    if (matrices.has(b)) return [{ gemm: n.name, how: "as stored" }];
    const p = producer.get(b);
    if (p?.opType === "If" && readIn(p).length > 0) return [{ gemm: n.name, how: "widened when used" }];
    if (p?.opType === "Cast" && matrices.has(p.input?.[0] ?? "")) return [{ gemm: n.name, how: "cast at top level" }];
    return [];
  });
  return { overWeights, matrices: matrices.size };
}

describe.each(HALF)("%s in float16", (name) => {
  it("on the CPU, every weight product widens its weight inside an If, and no weight is converted at top level", async () => {
    for (const g of await graphsOf(name, "cpu")) {
      const { overWeights } = weightProducts(g.bytes);
      expect(overWeights.length, g.name).toBeGreaterThan(0);
      expect(overWeights.filter((p) => p.how !== "widened when used"), g.name).toEqual([]);
    }
  });

  it("on WebGPU, which has float16 products, the float16 weights are read as stored", async () => {
    const decoder = (await graphsOf(name, "webgpu"))[0];
    const { overWeights } = weightProducts(decoder.bytes);
    expect(overWeights.length).toBeGreaterThan(0);
    // float16 weights are read as they are; bfloat16 ones are cast to float16 (folded at load)
    expect(new Set(overWeights.map((p) => p.how))).toEqual(new Set([name === "llama-f16" ? "as stored" : "cast at top level"]));
  });
});

describe.each(HALF)("%s: the weights of one layer share an If", (name) => {
  for (const how of [{ halfWeights: "per-use", compute: "float32" }, { halfWeights: "cast", compute: "float16" }] as const) {
    it(`${how.compute} compute (${how.halfWeights}): one If per decoder layer and vision block, read only by that layer's products`, async () => {
      const g = await compiled(name, { provider: "cpu", ...how });
      for (const built of [g.decoder, ...(g.vision ? [g.vision] : [])]) {
        const graph = onnx.ModelProto.decode(built.bytes).graph!;
        const ifs = (graph.node ?? []).filter((n) => n.opType === "If" && (n.name ?? "").includes("when_used"));
        // the scope (a layer: "layers.2", "vision.layers.0"; the projector) an If or a Gemm was built in, from its name
        const layerOf = (n: string) => n.slice(0, Math.max(0, n.lastIndexOf("/")));
        const layers = ifs.map((n) => layerOf(n.name ?? ""));
        expect(new Set(layers).size, `${built.name}: one If per layer`).toBe(layers.length);
        expect(layers.filter((l) => /(^|\/)(vision\.)?(layers|blocks)\.\d+$/.test(l)).length, built.name).toBeGreaterThan(1);
        const ifOf = new Map(ifs.flatMap((n) => (n.output ?? []).map((o) => [o, n] as const)));
        for (const gemm of (graph.node ?? []).filter((n) => n.opType === "Gemm")) {
          const made = ifOf.get(gemm.input![1]);
          if (made) expect(layerOf(made.name ?? ""), gemm.name!).toBe(layerOf(gemm.name ?? ""));
        }
        // every output of each If is read
        const read = new Set((graph.node ?? []).flatMap((n) => n.input ?? []));
        for (const n of ifs) for (const o of n.output ?? []) expect(read.has(o), o).toBe(true);
      }
    });
  }
});
