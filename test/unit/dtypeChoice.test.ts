/**
 * The dtype a model opens with: auto computes in float32 on the CPU (a float16 checkpoint whose
 * float32 copies do not fit in float16: test/parity/halfWeights.test.ts) and in the checkpoint's
 * half precision on a GPU; float16 computes in float16 everywhere; bfloat16 only on CUDA (the
 * CPU and WebGPU providers have no bfloat16 kernels). The last test shows what onnxruntime's
 * CPU provider does with a float16 product (it computes it in float32), which is why float16
 * on the CPU has the bounds test/parity/halfCompute.test.ts states.
 */
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { chooseComputeDtype } from "../../src/sidecar/engine/engine";
import { GraphBuilder } from "../../src/sidecar/graph/onnxBuilder";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { listCases } from "../helpers/fixtures";

const opened: LoadedModel[] = [];
afterAll(async () => {
  for (const m of opened) await m.dispose();
});
const f16 = () => listCases().find((c) => c.model === "llama-f16")!.modelDir;

/** A weight index of tensors with these dtypes and byte sizes. */
const index = (tensors: [string, number][]) => ({
  folder: "/models/m",
  names: () => tensors.map((_, i) => `t${i}`),
  get: (name: string) => {
    const [dtype, byteLength] = tensors[Number(name.slice(1))];
    return { dtype, byteLength } as never;
  },
});

describe("dtype", () => {
  it("auto and float32 compute in float32 on the CPU; float32 makes float32 copies even when auto would keep weights half", async () => {
    const auto = await LoadedModel.open(f16(), { device: "cpu", dtype: "auto", weightPlan: "half-per-use" });
    const f32 = await LoadedModel.open(f16(), { device: "cpu", dtype: "float32", weightPlan: "half-per-use" });
    opened.push(auto, f32);
    expect([auto.info.computeDtype, auto.info.weightPlan]).toEqual(["float32", "half-per-use"]);
    expect([f32.info.computeDtype, f32.info.weightPlan]).toEqual(["float32", "float32"]);
  });

  it("float16 computes in float16 with the weights as stored: no float32 copy is made at open or fed, and the CPU widens each product where it runs", async () => {
    const half = await LoadedModel.open(f16(), { device: "cpu", dtype: "float16" });
    opened.push(half);
    expect([half.info.computeDtype, half.info.weightPlan]).toEqual(["float16", "half"]);
    expect(half.engine.fedBytes).toBe(0);
    expect(half.info.memory.reason).toMatch(/^weights and compute in float16, each weight product widened to float32 where it runs \(onnxruntime's CPU provider has no float16 product\); needs about/);
  });

  it("refuses bfloat16 off CUDA, and an unknown dtype, with one line that says what to use", async () => {
    await expect(LoadedModel.open(f16(), { device: "cpu", dtype: "bfloat16" })).rejects.toThrow(
      /llama-f16\/model: dtype bfloat16 computes only on CUDA: onnxruntime's CPU provider has no bfloat16 kernels; use dtype float16 or float32 \(or auto\)$/,
    );
    expect(() => chooseComputeDtype("bfloat16", index([["BF16", 10]]), "webgpu")).toThrow(/WebGPU provider has no bfloat16 kernels/);
    await expect(LoadedModel.open(f16(), { device: "cpu", dtype: "half" as never })).rejects.toThrow(/unknown dtype "half": choose one of auto, float32, float16, bfloat16/);
  });

  it("auto takes the checkpoint's half precision on a GPU, where the provider computes it", () => {
    const f16ckpt = index([["F16", 1000], ["F32", 10]]);
    const bf16ckpt = index([["BF16", 1000], ["F32", 10]]);
    const f32ckpt = index([["F32", 1000], ["F16", 10]]);
    expect(chooseComputeDtype("auto", f16ckpt, "cpu")).toBe("float32");
    expect(chooseComputeDtype("auto", f16ckpt, "webgpu")).toBe("float16");
    expect(chooseComputeDtype("auto", f16ckpt, "cuda")).toBe("float16");
    expect(chooseComputeDtype("auto", bf16ckpt, "cuda")).toBe("bfloat16");
    // WebGPU has no bfloat16 kernels: a bfloat16 checkpoint computes in float16 there
    expect(chooseComputeDtype("auto", bf16ckpt, "webgpu")).toBe("float16");
    expect(chooseComputeDtype("auto", f32ckpt, "webgpu")).toBe("float32");
    expect(chooseComputeDtype("float16", f32ckpt, "cpu")).toBe("float16");
    expect(chooseComputeDtype("bfloat16", f16ckpt, "cuda")).toBe("bfloat16");
  });

  it("is right that the CPU provider computes a float16 product in float32 (onnxruntime-node 1.30)", async () => {
    // x is rounded to float16 before the product: 1.0001 is 1 in float16, so a real float16 Gemm gives 2
    const b = new GraphBuilder("g");
    const x = b.input("x", "float32", [1, 2]);
    const w = b.input("w", "float16", [1, 2]);
    b.output(b.op("Cast", [b.op("Gemm", [b.op("Cast", [x], { to: 10 }), w], { transB: 1 })], { to: 1 }), "y", "float32", [1, 1]);
    const s = await ort.InferenceSession.create(b.build().bytes, { executionProviders: ["cpu"], graphOptimizationLevel: "disabled" });
    const r = await s.run({ x: new ort.Tensor("float32", new Float32Array([1.0001, 1.0001]), [1, 2]), w: new ort.Tensor("float16", new Uint16Array([0x3c00, 0x3c00]), [1, 2]) });
    expect((r["y"].data as Float32Array)[0]).toBeCloseTo(2.0002, 6);
    await s.release();
  });
});
