/**
 * The dtype a model opens with. auto and float32 compute in float32; float16 and bfloat16 are
 * refused with one line on the CPU, because onnxruntime's CPU provider does not compute them:
 * the last test shows it, and fails (telling us to build float16 compute) the day it does.
 */
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../../src/sidecar/graph/onnxBuilder";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { listCases } from "../helpers/fixtures";

const opened: LoadedModel[] = [];
afterAll(async () => {
  for (const m of opened) await m.dispose();
});
const f16 = () => listCases().find((c) => c.model === "llama-f16")!.modelDir;

describe("dtype", () => {
  it("auto and float32 compute in float32; float32 makes float32 copies even when auto would keep weights half", async () => {
    const auto = await LoadedModel.open(f16(), { device: "cpu", dtype: "auto", weightPlan: "half-per-use" });
    const f32 = await LoadedModel.open(f16(), { device: "cpu", dtype: "float32", weightPlan: "half-per-use" });
    opened.push(auto, f32);
    expect([auto.info.computeDtype, auto.info.weightPlan]).toEqual(["float32", "half-per-use"]);
    expect([f32.info.computeDtype, f32.info.weightPlan]).toEqual(["float32", "float32"]);
  });

  it("refuses float16 and bfloat16 on the CPU with one line that says what to use", async () => {
    for (const dtype of ["float16", "bfloat16"] as const) {
      await expect(LoadedModel.open(f16(), { device: "cpu", dtype })).rejects.toThrow(
        new RegExp(`llama-f16/model: dtype ${dtype} cannot compute in ${dtype} here: onnxruntime has no ${dtype} kernels for matrix products on this provider; use dtype auto`),
      );
    }
    await expect(LoadedModel.open(f16(), { device: "cpu", dtype: "half" as never })).rejects.toThrow(/unknown dtype "half": choose one of auto, float32, float16, bfloat16/);
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
