import { describe, expect, it } from "vitest";
import { checkGpuMemory } from "../../src/sidecar/engine/engine";
import { parseNvidiaSmi } from "../../src/sidecar/runtime/devices";
import { availableMemory, chooseCpuPlan, estimateMemory, halfComputePlan, type ModelFootprint } from "../../src/sidecar/runtime/memoryEstimate";

const GB = 1e9;
/** LLaVA-1.5-7B's decoder (32 x 4096, 11008, 32 kv heads) with a 13.5 GB float16 checkpoint and a 600-token record. */
const llava7b: ModelFootprint = {
  f32Bytes: 0,
  halfBytes: 13.5 * GB,
  largestHalfBytes: 32064 * 4096 * 2,
  layers: 32,
  kvHeads: 32,
  headDim: 128,
  hidden: 4096,
  intermediate: 11008,
  vocab: 32064,
  tokens: 600,
  logitsBudget: 256 * 2 ** 20,
};

describe("the memory a model needs before it opens", () => {
  it("counts half weights twice as float32 copies and about once when kept half", () => {
    const full = estimateMemory(llava7b, "float32");
    const half = estimateMemory(llava7b, "half-per-use");
    expect(full.weightsBytes).toBe(27 * GB);
    expect(half.weightsBytes).toBeGreaterThan(13.5 * GB);
    // the file, plus the float32 copy of the largest matrix (the 32064 x 4096 unembedding) with room for a second
    expect(half.weightsBytes).toBe(13.5 * GB + 4 * 32064 * 4096 * 2);
    // KV cache of 600 tokens: 32 layers x 2 x 32 x 128 x 600 x 4 bytes = 629 MB, plus activations and the lens
    expect(full.runBytes).toBeGreaterThan(0.9 * GB);
    expect(full.runBytes).toBeLessThan(2 * GB);
  });

  it("keeps a 7B float16 model half on a 24 GB machine and says why; refuses float32 with a way out", () => {
    const choice = chooseCpuPlan(llava7b, 22 * GB);
    expect("estimate" in choice && choice.estimate.plan).toBe("half-per-use");
    expect("reason" in choice && choice.reason).toMatch(/as float32 they would need about 28 GB and 22 GB is free/);
    const forced = chooseCpuPlan(llava7b, 22 * GB, "float32");
    expect("refused" in forced && forced.refused).toBe("needs about 28 GB as float32 and 22 GB is free: use dtype auto to keep the weights in half precision (about 16 GB)");
  });

  it("converts to float32 when that fits, and refuses when even half does not", () => {
    const small = { ...llava7b, halfBytes: 4.4 * GB, largestHalfBytes: 0.9 * GB };
    const choice = chooseCpuPlan(small, 22 * GB);
    expect("estimate" in choice && choice.estimate.plan).toBe("float32");
    const refused = chooseCpuPlan(llava7b, 8 * GB);
    expect("refused" in refused && refused.refused).toMatch(/^needs about 16 GB even with its weights kept in half precision \(28 GB as float32\) and 8\.0 GB is free/);
    const f32 = chooseCpuPlan({ ...llava7b, halfBytes: 0, f32Bytes: 27 * GB }, 22 * GB);
    expect("refused" in f32 && f32.refused).toMatch(/^needs about 28 GB as float32 and 22 GB is free: .*half-precision/);
  });

  it("reads MemAvailable and bounds it by the cgroup's limit, counting its inactive page cache as free", () => {
    const files: Record<string, string> = {
      "/proc/meminfo": "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n",
    };
    const read = (f: string) => files[f];
    expect(availableMemory(read, () => 1)).toBe(20000000 * 1024);
    files["/sys/fs/cgroup/memory.max"] = "8000000000\n";
    files["/sys/fs/cgroup/memory.current"] = "7000000000\n";
    files["/sys/fs/cgroup/memory.stat"] = "anon 1000\nfile 6000000000\ninactive_anon 0\ninactive_file 5000000000\n";
    expect(availableMemory(read, () => 1)).toBe(6e9);
    files["/sys/fs/cgroup/memory.max"] = "max\n";
    expect(availableMemory(read, () => 1)).toBe(20000000 * 1024);
    expect(availableMemory(() => undefined, () => 123)).toBe(123);
  });
});

describe("the GPU memory a model needs, in its compute dtype", () => {
  const rtx4090 = { name: "NVIDIA GeForce RTX 4090", freeBytes: 22 * GB };
  it("half compute holds a float16 checkpoint as stored, with a half KV cache", () => {
    const half = estimateMemory(llava7b, "half");
    expect(half.weightsBytes).toBe(13.5 * GB);
    const full = estimateMemory(llava7b, "float32");
    // the cache and activations at 2 bytes a value instead of 4 (the base and lens parts are the same)
    expect(full.runBytes - half.runBytes).toBeGreaterThan(0.3 * GB);
    // float32 weights in half compute are converted once: half their size
    expect(estimateMemory({ ...llava7b, f32Bytes: 2 * GB, halfBytes: 0 }, "half").weightsBytes).toBe(1 * GB);
    expect(halfComputePlan(llava7b, 22 * GB, "float16")).toEqual({ estimate: half, reason: "weights and compute in float16" });
    expect(halfComputePlan(llava7b, 12 * GB, "float16")).toEqual({ refused: "needs about 14 GB in float16 and 12 GB is free: close other programs, or use a machine or GPU with more memory" });
  });

  it("float16 on the CPU counts the float32 copies its products widen where they run, as the kept-half plan does", () => {
    const widened = estimateMemory(llava7b, "half", { widened: true });
    // the files, plus the largest matrix's float32 copy with room for a second; float32 weights mapped as they are
    expect(widened.weightsBytes).toBe(13.5 * GB + 4 * 32064 * 4096 * 2);
    expect(estimateMemory({ ...llava7b, f32Bytes: 2 * GB, halfBytes: 0, largestHalfBytes: 0 }, "half", { widened: true }).weightsBytes).toBe(2 * GB);
    expect(widened.runBytes).toBe(estimateMemory(llava7b, "half").runBytes);
    const plan = halfComputePlan(llava7b, 22 * GB, "float16", "free", true);
    expect(plan).toEqual({ estimate: widened, reason: "weights and compute in float16, each weight product widened to float32 where it runs (onnxruntime's CPU provider has no float16 product)" });
    expect(halfComputePlan(llava7b, 15 * GB, "float16", "free", true)).toEqual({ refused: "needs about 15 GB in float16 and 15 GB is free: close other programs, or use a machine or GPU with more memory" });
  });

  it("refuses a 7B in float32 on a 24 GB GPU with the dtype that fits, and takes it in float16", () => {
    expect(checkGpuMemory(llava7b, "float32", rtx4090)).toEqual({ refused: "needs about 28 GB of GPU memory in float32 and 22 GB is free on NVIDIA GeForce RTX 4090: use dtype float16 (about 14 GB)" });
    expect(checkGpuMemory(llava7b, "float16", rtx4090)).toEqual({ reason: "14 GB of the 22 GB free on NVIDIA GeForce RTX 4090" });
    expect(checkGpuMemory(llava7b, "float16", { name: "a laptop GPU", freeBytes: 7.5 * GB })).toEqual({ refused: "needs about 14 GB of GPU memory in float16 and 7.5 GB is free on a laptop GPU: use a GPU with 15 GB, or device cpu" });
    expect(checkGpuMemory(llava7b, "float32", { name: "a laptop GPU", freeBytes: 7.5 * GB })).toEqual({ refused: "needs about 28 GB of GPU memory in float32 and 7.5 GB is free on a laptop GPU: use dtype float16 and a GPU with 15 GB, or device cpu" });
  });

  it("reads nvidia-smi's free memory beside the total", () => {
    expect(parseNvidiaSmi("NVIDIA H200, 143771, 140000\n")).toEqual({ name: "NVIDIA H200", memoryBytes: 143771 * 2 ** 20, freeBytes: 140000 * 2 ** 20 });
    expect(parseNvidiaSmi("NVIDIA GeForce RTX 4090, [N/A], [N/A]\n")).toEqual({ name: "NVIDIA GeForce RTX 4090" });
  });
});
