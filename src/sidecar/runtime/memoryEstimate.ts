/**
 * What a model needs in memory before it is opened, so that a model that cannot fit is refused
 * with one line instead of the process being killed half way through a 14 GB load.
 *
 * The weights dominate. On the CPU, half-precision (F16/BF16) weights are either converted once
 * to a float32 copy when the sessions open (onnxruntime folds the Cast of every initializer:
 * fastest runs, twice the file size resident, measured 1.95x the file's size of peak RSS on a
 * LLaVA-7B-width cut), or kept half in memory, mapped from the .safetensors files, and converted
 * per use (about the file's size plus one layer's matrices). Beside the weights a run holds the
 * KV cache, one layer's activations and the lens' logits (capped by the logits budget).
 */

export type WeightPlan =
  /** Every weight resident as float32: F32 weights as they are, F16/BF16 converted at open. */
  | "float32"
  /** Half-precision weights stay half, mapped from their files; each use converts one matrix. */
  | "half-per-use"
  /** Half-precision compute (dtype float16/bfloat16): weights in the compute dtype, half weights of that dtype as stored, the KV cache half too. */
  | "half";

export interface ModelFootprint {
  /** Bytes of weights stored as F32 (or wider) in the checkpoint. */
  f32Bytes: number;
  /** Bytes of weights stored as F16 or BF16. */
  halfBytes: number;
  /** Bytes of the largest single half-precision tensor (its float32 copy is the per-use peak). */
  largestHalfBytes: number;
  /** Decoder shape, for the KV cache and activations. */
  layers: number;
  kvHeads: number;
  headDim: number;
  hidden: number;
  intermediate: number;
  vocab: number;
  /** Tokens of the longest run the estimate allows for (prompt with image tokens plus generation). */
  tokens: number;
  /** The lens' logits budget (bytes of one unembedding's output). */
  logitsBudget: number;
}

export interface MemoryEstimate {
  plan: WeightPlan;
  weightsBytes: number;
  runBytes: number;
  totalBytes: number;
}

/** onnxruntime, sharp, the tokenizer and Node itself: a whole CLI run of the bundled model (10 MB of weights) peaks at 127 MB of RSS; doubled for margin. */
const BASE_BYTES = 256 * 1024 * 1024;

export function estimateMemory(m: ModelFootprint, plan: WeightPlan, o: { widened?: boolean } = {}): MemoryEstimate {
  // kept half: the files, plus the float32 copy of the largest matrix with room for a second (never more than all copies at once);
  // half compute: the half weights as they are, float32 ones converted to half once (the float32 originals are mapped, not copied);
  // half compute widened per product (float16 on the CPU, blocks.ts widensHalfProducts): the files, plus the kept-half plan's copies
  const perUseCopies = Math.min(2 * 2 * m.largestHalfBytes, 2 * m.halfBytes);
  const weightsBytes = {
    float32: m.f32Bytes + 2 * m.halfBytes,
    "half-per-use": m.f32Bytes + m.halfBytes + perUseCopies,
    half: o.widened ? m.f32Bytes + m.halfBytes + perUseCopies : m.halfBytes + m.f32Bytes / 2,
  }[plan];
  const valueBytes = plan === "half" ? 2 : 4;
  const kv = m.layers * 2 * m.kvHeads * m.headDim * m.tokens * valueBytes;
  // one layer at a time: the residual stream, q/k/v, the MLP's two intermediate products, attention scores of one head group
  const activations = m.tokens * (6 * m.hidden + 3 * m.intermediate) * valueBytes;
  const lens = Math.min(m.logitsBudget, m.tokens * m.vocab * 4) * 2;
  const runBytes = kv + activations + lens + BASE_BYTES;
  return { plan, weightsBytes, runBytes, totalBytes: weightsBytes + runBytes };
}

/** Bytes as people read them: "13.5 GB" (decimal, as file managers and the hub show sizes). */
export function formatGB(bytes: number): string {
  const gb = bytes / 1e9;
  return gb >= 10 ? `${Math.round(gb)} GB` : gb >= 1 ? `${gb.toFixed(1)} GB` : `${Math.round(bytes / 1e6)} MB`;
}

export interface PlanChoice {
  estimate: MemoryEstimate;
  /** Why this plan, for the log and the runtime info. */
  reason: string;
}

/**
 * The weight plan for the CPU: float32 copies when they fit in what is free with a margin, else
 * half-precision weights converted per use when those fit; undefined when nothing fits.
 * `forced` is the user's choice (a dtype of float32 forces the copy when it is possible at all).
 */
export function chooseCpuPlan(m: ModelFootprint, availableBytes: number, forced?: WeightPlan): PlanChoice | { refused: string } {
  const full = estimateMemory(m, "float32");
  const half = estimateMemory(m, "half-per-use");
  // keep a tenth of free memory (and at least 512 MB) for the editor, the OS and the rest of the machine
  const usable = availableBytes - Math.max(availableBytes * 0.1, 512e6);
  if (m.halfBytes === 0) {
    if (full.totalBytes <= usable) return { estimate: full, reason: "float32 weights" };
    return { refused: `needs about ${formatGB(full.totalBytes)} as float32 and ${formatGB(availableBytes)} is free: close other programs, or use a half-precision (float16 or bfloat16) copy of the checkpoint` };
  }
  if (forced !== "half-per-use" && full.totalBytes <= usable) return { estimate: full, reason: `half-precision weights converted to float32 at open (${formatGB(full.totalBytes)} of ${formatGB(availableBytes)} free)` };
  if (forced === "float32") {
    return { refused: `needs about ${formatGB(full.totalBytes)} as float32 and ${formatGB(availableBytes)} is free: use dtype auto to keep the weights in half precision (about ${formatGB(half.totalBytes)})` };
  }
  if (half.totalBytes <= usable) {
    return { estimate: half, reason: forced === "half-per-use" ? "half-precision weights kept half (asked for)" : `half-precision weights kept half and converted per use: as float32 they would need about ${formatGB(full.totalBytes)} and ${formatGB(availableBytes)} is free` };
  }
  return { refused: `needs about ${formatGB(half.totalBytes)} even with its weights kept in half precision (${formatGB(full.totalBytes)} as float32) and ${formatGB(availableBytes)} is free: close other programs, or use a machine or GPU with more memory` };
}

/**
 * The plan for half-precision compute (dtype float16 or bfloat16) against the memory that is
 * free where the weights live (the machine's memory for the CPU, the GPU's for CUDA).
 */
export function halfComputePlan(m: ModelFootprint, availableBytes: number, dtype: string, where = "free", widened = false): PlanChoice | { refused: string } {
  const half = estimateMemory(m, "half", { widened });
  const usable = availableBytes - Math.max(availableBytes * 0.1, 512e6);
  if (half.totalBytes <= usable) return { estimate: half, reason: `weights and compute in ${dtype}${widened ? ", each weight product widened to float32 where it runs (onnxruntime's CPU provider has no float16 product)" : ""}` };
  return { refused: `needs about ${formatGB(half.totalBytes)} in ${dtype} and ${formatGB(availableBytes)} is ${where}: close other programs, or use a machine or GPU with more memory` };
}

/**
 * Memory this process can still use: the kernel's MemAvailable (free plus reclaimable page
 * cache), bounded by the cgroup's limit when the process runs in a container with one.
 */
export function availableMemory(read: (file: string) => string | undefined, freemem: () => number): number {
  let available = freemem();
  const meminfo = read("/proc/meminfo");
  const m = meminfo?.match(/^MemAvailable:\s+(\d+)\s+kB/m);
  if (m) available = Number(m[1]) * 1024;
  const max = read("/sys/fs/cgroup/memory.max")?.trim();
  const current = read("/sys/fs/cgroup/memory.current")?.trim();
  if (max && max !== "max" && current && /^\d+$/.test(max) && /^\d+$/.test(current)) {
    // the cgroup's usage counts page cache too; its inactive part is reclaimed before anything is killed
    const inactive = Number(read("/sys/fs/cgroup/memory.stat")?.match(/^inactive_file (\d+)/m)?.[1] ?? 0);
    available = Math.min(available, Math.max(0, Number(max) - Number(current) + inactive));
  }
  return available;
}
