/**
 * Building blocks shared by the architecture modules: parameters, linear layers, norms,
 * activations, rotary embeddings and attention. Activations are 2-D `[tokens, features]`
 * (the runtime runs one sequence at a time), which lets every linear layer be one Gemm with
 * `transB=1` straight over the checkpoint's `[out, in]` weight, with no transposed copy.
 */
import { LensInputError } from "../errors";
import type { ModelWeights } from "../model/weights";
import { GraphBuilder, type ElemType } from "./onnxBuilder";

export interface GraphCtx {
  b: GraphBuilder;
  weights: ModelWeights;
  /**
   * The execution provider the graph is built for (default cpu). Some of onnxruntime's fused
   * operators have kernels on some providers only (GroupQueryAttention in float32: CPU).
   */
  provider?: "cpu" | "cuda" | "webgpu";
  /** How half-precision weights become the float32 the graph computes in (default "cast"); float32 compute only. */
  halfWeights?: HalfWeights;
  /**
   * The dtype activations and weights are in between the graph's inputs and outputs (default
   * float32). In half precision the graph's host-facing inputs and outputs stay float32 (cast at
   * the edges, exactly: every half value is a float32), the KV cache is in the compute dtype,
   * and what transformers computes in float32 inside a half model is float32 here too: the
   * attention softmax, the rotary tables, the norms' statistics (inside onnxruntime's norm
   * kernels), and all of the lens statistics.
   */
  compute?: ComputeDtype;
}

export type ComputeDtype = "float32" | "float16" | "bfloat16";

const CAST_TO: Record<ComputeDtype, number> = { float32: 1, float16: 10, bfloat16: 16 };

export function computeOf(ctx: GraphCtx): ComputeDtype {
  return ctx.compute ?? "float32";
}

/** A float32 value in the compute dtype (itself in float32 compute). */
export function toCompute(ctx: GraphCtx, x: string): string {
  const c = computeOf(ctx);
  return c === "float32" ? x : ctx.b.op("Cast", [x], { to: CAST_TO[c] }, `to_${c}`);
}

/** A compute-dtype value in float32 (exact: every half value is a float32). */
export function toFloat32(ctx: GraphCtx, x: string): string {
  return computeOf(ctx) === "float32" ? x : ctx.b.op("Cast", [x], { to: 1 }, "to_float32");
}

/** A small float constant in the compute dtype (a Cast of the float32 constant, folded at load). */
export function computeConst(ctx: GraphCtx, ...values: number[]): string {
  return toConstCompute(ctx, ctx.b.f32(...values));
}

/** A float32 constant made by `ctx.b.constant`, in the compute dtype; one Cast per constant and graph. */
export function toConstCompute(ctx: GraphCtx, constant: string): string {
  if (computeOf(ctx) === "float32") return constant;
  let cache = castCache.get(ctx.b);
  if (!cache) castCache.set(ctx.b, (cache = new Map()));
  const key = `const:${constant}`;
  let cast = cache.get(key);
  if (!cast) cache.set(key, (cast = toCompute(ctx, constant)));
  return cast;
}

/** A float32 graph input, as the compute dtype. */
export function computeInput(ctx: GraphCtx, name: string, dims: (number | string)[]): string {
  return toCompute(ctx, ctx.b.input(name, "float32", dims));
}

/** A compute-dtype value as a float32 graph output. */
export function float32Output(ctx: GraphCtx, value: string, name: string, dims: (number | string)[]): string {
  return ctx.b.output(toFloat32(ctx, value), name, "float32", dims);
}

/**
 * softmax(scores + bias) over the last axis in float32, as transformers' eager attention
 * computes it in a half model (`softmax(..., dtype=float32).to(query.dtype)`): scores in the
 * compute dtype, bias (0 or -inf) float32; returns the probabilities in float32 and in the
 * compute dtype.
 */
export function attentionSoftmax(ctx: GraphCtx, scores: string, bias?: string): { probs: string; probsCompute: string } {
  const { b } = ctx;
  let x = toFloat32(ctx, scores);
  if (bias) x = b.op("Add", [x, bias]);
  const probs = b.op("Softmax", [x], { axis: -1 }, "probs");
  return { probs, probsCompute: toCompute(ctx, probs) };
}

/**
 * - "cast": a Cast of the weight, which onnxruntime constant-folds at session creation (its
 *   folding is slow: a LLaVA-7B-width cut opened 25x slower than its weights were read). For
 *   GPU providers, where the weights must live on the device.
 * - "fed": the graph takes the weight as a float32 input and the engine feeds it the array it
 *   widened at open (engine/halfWeights.ts): the CPU's "float32" weight plan.
 * - "per-use": the weights stay half and are converted where they are used (the CPU's
 *   "half-per-use" plan, for models whose float32 copies would not fit). onnxruntime may run a
 *   node as soon as its inputs are ready, and a Cast of a weight needs nothing but the weight,
 *   so every cast would run at the start and all the float32 copies would be alive at once
 *   (measured: 1.9x the file size of peak RSS on a LLaVA-7B 4-layer cut). Each cast therefore
 *   sits in an If whose condition is computed from the activation that reads the weight: it
 *   runs when its layer runs, and its copy is freed after the product (whenUsed: the weights of
 *   one layer share an If, up to PER_USE_GROUP_BYTES of copies).
 */
export type HalfWeights = "cast" | "fed" | "per-use";

const SAFETENSORS_ELEM: Record<string, ElemType> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

/**
 * The checkpoint's tensor as stored (no cast), for ops that can work on any type (Gather).
 * `view` declares it with other dimensions of the same size, a reshape that costs nothing at
 * load or run time (a Reshape node over a weight is work for the constant folder).
 */
export function rawParam(ctx: GraphCtx, name: string, shape: readonly number[], view?: readonly number[]): { value: string; type: ElemType } {
  const e = ctx.weights.entry(name, shape);
  const type = SAFETENSORS_ELEM[e.dtype];
  const location = ctx.weights.index.location(e.file);
  const dims = view ?? e.shape;
  if (dims.reduce((a, d) => a * d, 1) !== e.shape.reduce((a, d) => a * d, 1)) throw new Error(`view [${dims.join(", ")}] of ${name} has another size than [${e.shape.join(", ")}]`);
  const key = view ? `${name}@${view.join("x")}` : name;
  return { value: ctx.b.externalWeight(key, type, [...dims], location, e.byteOffset, e.byteLength), type };
}

const castCache = new WeakMap<GraphBuilder, Map<string, string>>();

/** The checkpoint's tensor as float32 (F16/BF16 weights by ctx.halfWeights: cast once and folded at load, or fed). */
export function param(ctx: GraphCtx, name: string, shape: readonly number[], view?: readonly number[]): string {
  const compute = computeOf(ctx);
  if (compute === "float32" && ctx.halfWeights === "fed" && ctx.weights.entry(name, shape).dtype !== "F32") return fedParam(ctx, name, shape, view);
  const { value, type } = rawParam(ctx, name, shape, view);
  // half compute reads a weight of its own dtype as it is stored: no copy exists
  if (type === compute) return value;
  let cache = castCache.get(ctx.b);
  if (!cache) castCache.set(ctx.b, (cache = new Map()));
  const hit = cache.get(value);
  if (hit) return hit;
  const cast = ctx.b.op("Cast", [value], { to: CAST_TO[compute] }, `${name}_${compute === "float32" ? "f32" : compute}`);
  cache.set(value, cast);
  return cast;
}

/** A half-precision tensor as a float32 graph input the engine feeds (see HalfWeights "fed"). */
function fedParam(ctx: GraphCtx, name: string, shape: readonly number[], view?: readonly number[]): string {
  const dims = view ?? shape;
  if (dims.reduce((a, d) => a * d, 1) !== shape.reduce((a, d) => a * d, 1)) throw new Error(`view [${dims.join(", ")}] of ${name} has another size than [${shape.join(", ")}]`);
  return ctx.b.fedWeight(view ? `${name}@${view.join("x")}` : name, name, dims);
}

const readyFlags = new WeakMap<GraphBuilder, Map<string, string>>();

/**
 * The checkpoint's tensor as float32, converted only once `reader` (the activation it will
 * multiply) exists (see HalfWeights "per-use"). Both branches of the If cast: the
 * condition's value does not matter, only that it depends on `reader`.
 */
function paramWhenUsed(ctx: GraphCtx, name: string, shape: readonly number[], reader: string): string {
  const { value, type } = rawParam(ctx, name, shape);
  if (type === "float32") return value;
  return whenUsed(ctx, reader, elementsOf(shape) * 4, () => ctx.b.op("Cast", [value], { to: 1 }, `${name}_f32`));
}

/**
 * Bytes of float32 copies that one If of whenUsed makes together, at most (a single larger
 * weight gets an If of its own). A Qwen2-VL-2B decoder layer's seven matrices (187 MB as
 * float32) or a vision block's four (78 MB) share one, where an If per matrix cost about 100 ms
 * more of session creation (2026-12-04, 359 of them in Qwen2-VL-2B's two graphs); a LLaVA-7B
 * layer's make four (the attention's four 64 MB matrices, then one per MLP matrix, 180 MB each),
 * so no more copies are alive at once than with an If each, whose MLP gate and up copies,
 * ready on the same input, were made together anyway.
 */
export const PER_USE_GROUP_BYTES = 256 * 2 ** 20;

interface UseGroup {
  add: (type: ElemType, make: () => string) => string;
  bytes: number;
}
const useGroups = new WeakMap<GraphBuilder, Map<string, UseGroup>>();

/**
 * The float32 value `make` builds (`bytes` of it), built inside an If whose condition depends on
 * `reader` only. Within one scope (a layer: GraphBuilder.scoped, in one graph), values join the If of the
 * scope's first reader while their bytes stay within PER_USE_GROUP_BYTES: made at the layer's
 * start instead of just before their own product, which changes no number and keeps a layer's
 * copies alive together, within that bound.
 */
function whenUsed(ctx: GraphCtx, reader: string, bytes: number, make: () => string): string {
  const { b } = ctx;
  let flags = readyFlags.get(b);
  if (!flags) readyFlags.set(b, (flags = new Map()));
  let groups = useGroups.get(b);
  if (!groups) useGroups.set(b, (groups = new Map()));
  const scope = b.scopePath;
  let group = groups.get(scope);
  if (!group || group.bytes + bytes > PER_USE_GROUP_BYTES) {
    let ready = flags.get(reader);
    if (!ready) flags.set(reader, (ready = b.op("Cast", [b.op("Size", [reader])], { to: 9 }, "ready")));
    groups.set(scope, (group = { add: b.growingIf(ready, "when_used").add, bytes: 0 }));
  }
  group.bytes += bytes;
  return group.add("float32", make);
}

function elementsOf(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/**
 * Whether the graph computes its weight products in float32 around float16 values. onnxruntime's
 * CPU provider has no float16 matrix product on x86: it widens both sides of a float16 Gemm to
 * float32 in Casts of its own, and since a Cast of a weight needs only the weight, it runs them
 * all at the start, every layer's float32 copy alive at once (eight 4096 x 4096 products peaked
 * at 5.4x their float16 weights of RSS; npm run bench:halfmatmul). So on the CPU a float16
 * graph does the widening itself: the activation and the result are cast at the product, and
 * the weight (rounded to float16 first when stored otherwise, as transformers' float16 model
 * holds it) is widened only when its product runs, as the half-per-use plan does: 1.67x, and
 * faster (4.8 against 6.3 ms a one-row product). The numbers are onnxruntime's own: a float32
 * product of the same float16 values, rounded to float16.
 */
export function widensHalfProducts(ctx: GraphCtx): boolean {
  return halfProductsWidened(ctx.provider ?? "cpu", computeOf(ctx));
}

/** widensHalfProducts for a provider and compute dtype, for what the engine decides from it (no folding at load, the memory plan). */
export function halfProductsWidened(provider: "cpu" | "cuda" | "webgpu", compute: ComputeDtype): boolean {
  return provider === "cpu" && compute === "float16";
}

/**
 * `x @ W.T (+ bias)` over a checkpoint weight stored `[out, in]` (a `view` of it for kernels),
 * in the compute dtype; see widensHalfProducts for float16 on the CPU.
 */
export function weightProduct(ctx: GraphCtx, x: string, name: string, shape: readonly number[], opts: { view?: readonly number[]; bias?: string; hint?: string } = {}): string {
  const hint = opts.hint ?? name.split(".").slice(-2)[0];
  if (widensHalfProducts(ctx)) {
    const w = halfWhenUsed(ctx, name, shape, x, opts.view);
    const inputs = [toFloat32(ctx, x), w];
    if (opts.bias) inputs.push(halfWhenUsed(ctx, opts.bias, [shape[0]], x));
    return toCompute(ctx, ctx.b.op("Gemm", inputs, { transB: 1 }, hint));
  }
  const w = ctx.halfWeights === "per-use" && computeOf(ctx) === "float32" && !opts.view ? paramWhenUsed(ctx, name, shape, x) : param(ctx, name, shape, opts.view);
  const inputs = [x, w];
  if (opts.bias) inputs.push(param(ctx, opts.bias, [shape[0]]));
  return ctx.b.op("Gemm", inputs, { transB: 1 }, hint);
}

/**
 * A weight as float32 holding its float16 values, made only once `reader` exists (the If of
 * paramWhenUsed): the float16 values as stored, or rounded to float16 first.
 */
function halfWhenUsed(ctx: GraphCtx, name: string, shape: readonly number[], reader: string, view?: readonly number[]): string {
  const { value, type } = rawParam(ctx, name, shape, view);
  return whenUsed(ctx, reader, elementsOf(shape) * 4, () => ctx.b.op("Cast", [type === "float16" ? value : ctx.b.op("Cast", [value], { to: CAST_TO.float16 }, `${name}_f16`)], { to: 1 }, `${name}_f32`));
}

/** `x @ W.T + b` for a Hugging Face Linear stored as `[out, in]`; bias "auto" uses one when the checkpoint has it. */
export function linear(ctx: GraphCtx, x: string, prefix: string, inFeatures: number, outFeatures: number, bias: boolean | "auto"): string {
  const useBias = bias === "auto" ? ctx.weights.has(`${prefix}.bias`) : bias;
  return weightProduct(ctx, x, `${prefix}.weight`, [outFeatures, inFeatures], { bias: useBias ? `${prefix}.bias` : undefined, hint: prefix.split(".").slice(-1)[0] });
}

/**
 * LLaMA's RMSNorm, `weight * (x * rsqrt(mean(x^2) + eps))` in float32, as onnxruntime's one-node
 * SimplifiedLayerNormalization (seven elementwise nodes before: fewer nodes is both a faster
 * run and a faster session start, which grows faster than linearly with the node count).
 */
export function rmsNorm(ctx: GraphCtx, x: string, weightName: string, dim: number, eps: number): string {
  return ctx.b.op("SimplifiedLayerNormalization", [x, param(ctx, weightName, [dim])], { axis: -1, epsilon: { float: eps } }, "rmsnorm");
}

/**
 * `sum = x + skip` and `rmsNorm(sum)` in one node (onnxruntime's SkipSimplifiedLayerNormalization):
 * the residual add before a decoder's norms, without a pass over the sum in between.
 */
export function skipRmsNorm(ctx: GraphCtx, x: string, skip: string, weightName: string, dim: number, eps: number): { normed: string; sum: string } {
  const [normed, , , sum] = ctx.b.contribOpMulti("SkipSimplifiedLayerNormalization", [x, skip, param(ctx, weightName, [dim])], 4, { epsilon: { float: eps } }, "skip_rmsnorm");
  return { normed, sum };
}

export function layerNorm(ctx: GraphCtx, x: string, prefix: string, dim: number, eps: number): string {
  return ctx.b.op(
    "LayerNormalization",
    [x, param(ctx, `${prefix}.weight`, [dim]), param(ctx, `${prefix}.bias`, [dim])],
    { axis: -1, epsilon: { float: eps } },
    "layernorm",
  );
}

export const SUPPORTED_ACTIVATIONS = ["silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new", "quick_gelu", "relu"] as const;

/** Hugging Face's ACT2FN by name. */
export function activation(ctx: GraphCtx, x: string, name: string, configFile: string): string {
  const { b } = ctx;
  const k = (v: number) => computeConst(ctx, v);
  switch (name) {
    case "silu": // x * sigmoid(x)
    case "swish":
      return b.contribOp("QuickGelu", [x], { alpha: { float: 1 } }, "silu");
    case "gelu": // exact: 0.5 x (1 + erf(x / sqrt 2))
      return b.op("Mul", [b.op("Mul", [x, k(0.5)]), b.op("Add", [k(1), b.op("Erf", [b.op("Mul", [x, k(Math.SQRT1_2)])])])], {}, "gelu");
    case "gelu_pytorch_tanh":
    case "gelu_new": {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      const x3 = b.op("Mul", [b.op("Mul", [x, x]), x]);
      const inner = b.op("Mul", [b.op("Add", [x, b.op("Mul", [x3, k(0.044715)])]), k(Math.sqrt(2 / Math.PI))]);
      return b.op("Mul", [b.op("Mul", [x, k(0.5)]), b.op("Add", [k(1), b.op("Tanh", [inner])])], {}, "gelu_tanh");
    }
    case "quick_gelu": // x * sigmoid(1.702 x)
      return b.contribOp("QuickGelu", [x], { alpha: { float: 1.702 } }, "quick_gelu");
    case "relu":
      return b.op("Relu", [x]);
    default:
      throw new LensInputError(configFile, `activation "${name}" is not supported (supported: ${SUPPORTED_ACTIVATIONS.join(", ")}): this model needs a newer logit-lens`);
  }
}

/** `[tokens, heads*dim]` -> `[heads, tokens, dim]`. */
export function splitHeads(ctx: GraphCtx, x: string, heads: number, headDim: number): string {
  const { b } = ctx;
  return b.op("Transpose", [b.op("Reshape", [x, b.i64(-1, heads, headDim)])], { perm: [1, 0, 2] });
}

/** `[heads, tokens, dim]` -> `[tokens, heads*dim]`. */
export function mergeHeads(ctx: GraphCtx, x: string, heads: number, headDim: number): string {
  const { b } = ctx;
  return b.op("Reshape", [b.op("Transpose", [x], { perm: [1, 0, 2] }), b.i64(-1, heads * headDim)]);
}

/**
 * Whether a vision tower's self-attention (every query over every key, no attention pattern
 * read out) is onnxruntime's fused MultiHeadAttention: on the CPU in float32. It takes q, k and
 * v as the projections give them, `[tokens, heads*dim]`, so no head transposes exist, and
 * without a mask it never forms the scores matrix: for Qwen2-VL-2B's tower on a 640 x 480
 * picture (1,564 patches) the attention took 1.7 s against 9.3 s as separate scores, mask,
 * softmax and product, and 6.4 s fused with a mask (bench:real, onnxruntime's profile). Half
 * compute, WebGPU and CUDA build it of plain operators (attentionCore).
 */
export function hasFusedSelfAttention(ctx: GraphCtx): boolean {
  return (ctx.provider ?? "cpu") === "cpu" && computeOf(ctx) === "float32";
}

/**
 * softmax(q k^T * scale + bias) v by MultiHeadAttention, where hasFusedSelfAttention: q, k, v
 * of any shape `[tokens, ...]` that is `[tokens, heads*dim]` in memory, `bias` an additive
 * `[1, 1, tokens, tokens]` mask (slow: leave it out where it allows everything). With `group`,
 * the tokens attend in consecutive groups of that many (Idefics3's tiles), as a batch: no mask.
 * Returns `[tokens, heads*dim]`.
 */
export function fusedSelfAttention(ctx: GraphCtx, q: string, k: string, v: string, opts: { heads: number; headDim: number; bias?: string; group?: number }): string {
  const { b } = ctx;
  const D = opts.heads * opts.headDim;
  const bsd = (t: string) => b.op("Reshape", [t, opts.group ? b.i64(-1, opts.group, D) : b.i64(1, -1, D)]);
  const inputs = [bsd(q), bsd(k), bsd(v), ...(opts.bias ? ["", "", opts.bias] : [])];
  const context = b.contribOp("MultiHeadAttention", inputs, { num_heads: opts.heads, scale: { float: 1 / Math.sqrt(opts.headDim) } }, "attention");
  return b.op("Reshape", [context, b.i64(-1, D)]);
}

/**
 * Scaled dot-product attention with grouped KV heads, softmax in float32 as transformers'
 * eager path does (probs: float32). q: `[heads, S, D]`, k/v: `[kvHeads, T, D]`. Query heads are folded into
 * the KV-head axis (`[kv, rep*S, D]`) so keys and values are never repeated in memory; head h
 * reads KV head `h // rep`, as in transformers' repeat_kv. `allowed` is a `[S, T]` boolean
 * mask or undefined for full attention.
 */
export function attentionCore(
  ctx: GraphCtx,
  q: string,
  k: string,
  v: string,
  opts: { heads: number; kvHeads: number; headDim: number; scale: number; allowed?: string; bias?: string },
): { context: string; probs: string } {
  const { b } = ctx;
  const rep = opts.heads / opts.kvHeads;
  const qg = rep === 1 ? q : b.op("Reshape", [q, b.i64(opts.kvHeads, -1, opts.headDim)]);
  const scores = scaledScores(ctx, qg, k, opts.scale, 3);
  // An additive mask (0 or -inf): Add costs a fifth of a Where over the scores (bench:lens
  // prefill). A caller with many layers makes it once (attentionBias) and passes `bias`.
  const bias = opts.bias ?? (opts.allowed ? attentionBias(ctx, opts.allowed, rep) : undefined);
  const { probs, probsCompute } = attentionSoftmax(ctx, scores, bias);
  let context = b.op("MatMul", [probsCompute, v]);
  if (rep !== 1) context = b.op("Reshape", [context, b.i64(opts.heads, -1, opts.headDim)]);
  return { context, probs };
}

/**
 * `(q @ k^T) * scale` as transformers computes it, over the last two axes of rank-`rank` q and k.
 * On the CPU and CUDA one FusedMatMul reads k transposed in place. WebGPU has no FusedMatMul
 * kernel (onnxruntime would run it on the CPU, with a GPU drain and two copies per layer), so
 * there it is a Transpose, a MatMul and a Mul, all with WebGPU kernels.
 */
export function scaledScores(ctx: GraphCtx, q: string, k: string, scale: number, rank: number): string {
  const { b } = ctx;
  if (!hasFusedMatMul(ctx)) {
    const perm = [...Array(rank - 2).keys(), rank - 1, rank - 2];
    return b.op("Mul", [b.op("MatMul", [q, b.op("Transpose", [k], { perm }, "keys_t")]), computeConst(ctx, scale)], {}, "scores");
  }
  return b.contribOp("FusedMatMul", [q, k], { transB: 1, alpha: { float: scale } }, "scores");
}

/** Whether the graph's provider has onnxruntime's FusedMatMul kernel (CPU, CUDA: yes; WebGPU: no). */
export function hasFusedMatMul(ctx: GraphCtx): boolean {
  return (ctx.provider ?? "cpu") !== "webgpu";
}

/** The additive mask (0 where `allowed`, else -inf) for `rep` query heads per KV head: `[rep*S, T]`. */
export function attentionBias(ctx: GraphCtx, allowed: string, rep: number): string {
  const { b } = ctx;
  const bias = b.op("Where", [allowed, b.f32(0), b.f32(-Infinity)], {}, "mask_bias");
  return rep === 1 ? bias : b.op("Tile", [bias, b.i64(rep, 1)]);
}

/**
 * Rotary embedding in transformers' rotate_half convention: `x*cos + cat(-x2, x1)*sin` over
 * `[heads, S, D]` with cos/sin `[S, D]` (frequencies duplicated: `emb = cat(freqs, freqs)`).
 */
export function applyRotary(ctx: GraphCtx, x: string, cos: string, sin: string, headDim: number): string {
  const { b } = ctx;
  // cat(-x2, x1) as one product with a signed permutation (each output is one input times
  // +-1, so it is exact): four nodes where Slice, Slice, Neg and Concat took seven.
  const half = headDim / 2;
  const swap = new Float32Array(headDim * headDim);
  for (let j = 0; j < half; j++) {
    swap[(j + half) * headDim + j] = -1;
    swap[j * headDim + j + half] = 1;
  }
  const rotated = b.op("MatMul", [x, toConstCompute(ctx, b.constant("float32", swap, [headDim, headDim]))]);
  return b.op("Add", [b.op("Mul", [x, cos]), b.op("Mul", [rotated, sin])], {}, "rope");
}

/**
 * applyRotary in float32 whatever the compute dtype, with float32 tables, the result back in the
 * compute dtype: transformers' Qwen2-VL vision tower rotates its queries and keys in float32.
 */
export function applyRotaryFloat32(ctx: GraphCtx, x: string, cos: string, sin: string, headDim: number): string {
  const f32: GraphCtx = { ...ctx, compute: "float32" };
  return toCompute(ctx, applyRotary(f32, toFloat32(ctx, x), cos, sin, headDim));
}


/**
 * cos/sin `[S, D]` for integer positions `[S]` and inverse frequencies (D/2 of them), computed
 * in float32 and then in the compute dtype (transformers' `cos.to(x.dtype)`).
 */
export function rotaryTables(ctx: GraphCtx, positions: string, invFreq: Float32Array): { cos: string; sin: string } {
  return tablesInCompute(ctx, ctx.b.onCpu(() => rotaryTablesHere(ctx, positions, invFreq)));
}

export function tablesInCompute(ctx: GraphCtx, t: { cos: string; sin: string }): { cos: string; sin: string } {
  return { cos: toCompute(ctx, t.cos), sin: toCompute(ctx, t.sin) };
}

function rotaryTablesHere(ctx: GraphCtx, positions: string, invFreq: Float32Array): { cos: string; sin: string } {
  const { b } = ctx;
  const pos = b.op("Unsqueeze", [b.op("Cast", [positions], { to: 1 }), b.i64(1)]);
  const freqs = b.op("Mul", [pos, b.constant("float32", invFreq, [1, invFreq.length])]);
  const emb = b.op("Concat", [freqs, freqs], { axis: -1 });
  return { cos: b.op("Cos", [emb], {}, "cos"), sin: b.op("Sin", [emb], {}, "sin") };
}

/**
 * cos/sin `[S, D]` for positions on several axes `[A, S]` (Qwen2-VL's M-RoPE: temporal, height,
 * width), where frequency j rotates by the position on axis `axisOfFreq[j]`. Picking each
 * frequency's axis before multiplying gives the same floats as transformers, which computes
 * every axis and then keeps one slice per mrope_section.
 */
export function multiAxisRotaryTables(ctx: GraphCtx, positions: string, invFreq: Float32Array, axisOfFreq: readonly number[]): { cos: string; sin: string } {
  return tablesInCompute(ctx, ctx.b.onCpu(() => multiAxisRotaryTablesHere(ctx, positions, invFreq, axisOfFreq)));
}

function multiAxisRotaryTablesHere(ctx: GraphCtx, positions: string, invFreq: Float32Array, axisOfFreq: readonly number[]): { cos: string; sin: string } {
  const { b } = ctx;
  if (axisOfFreq.length !== invFreq.length) throw new Error(`multiAxisRotaryTables: ${axisOfFreq.length} axes for ${invFreq.length} frequencies`);
  const perFreq = b.op("Transpose", [b.op("Gather", [positions, b.i64(...axisOfFreq)], { axis: 0 })], { perm: [1, 0] });
  const freqs = b.op("Mul", [b.op("Cast", [perFreq], { to: 1 }), b.constant("float32", invFreq, [1, invFreq.length])]);
  const emb = b.op("Concat", [freqs, freqs], { axis: -1 });
  return { cos: b.op("Cos", [emb], {}, "cos"), sin: b.op("Sin", [emb], {}, "sin") };
}
