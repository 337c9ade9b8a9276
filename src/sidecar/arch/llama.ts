/**
 * The LLaMA decoder (LlamaForCausalLM, and the language model inside LLaVA).
 *
 * Graph contract (one sequence, batch dimension dropped):
 *   inputs   input_ids [S] int64, position_ids [S] int64 ([3, S] with M-RoPE), output_positions [K] int64,
 *            past_key.{i} / past_value.{i} [1, kvHeads, P, headDim] (P = 0 on the first call),
 *            image_features [N, hidden] when the model has a vision tower
 *   outputs  hidden_states [L+1, K, hidden] in transformers' convention (entry 0 = embeddings,
 *            entry i = output of block i-1, entry L = final_norm(output of block L-1)),
 *            present_key.{i} / present_value.{i} [1, kvHeads, P+S, headDim],
 *            attention_mass [L, heads, K, G]: each analysed query's attention per key segment,
 *            image_attention [L, K, NI]: head-averaged attention on the listed image keys
 *   more inputs  key_segments [P+S, G] one-hot segment of every key, image_key_positions [NI],
 *            head_mask [L, heads] (1 keeps a head, 0 zeroes its output before o_proj),
 *            pattern_head [1] int64: the head whose whole attention rows head_rows reports
 *   more outputs head_rows [L, K, P+S]: that head's attention of each analysed query over every key
 * `output_positions` picks which of the S positions report hidden states, so a decode step
 * asks for one row and a parity run for all of them. The decoder has no unembedding: the lens
 * graph (graph/lensGraph.ts) turns hidden states into tokens, so the unembedding matrix is
 * mapped by one session only.
 */
import * as path from "node:path";
import { LensInputError } from "../errors";
import {
  type GraphCtx,
  activation,
  applyRotary,
  attentionBias,
  attentionCore,
  attentionSoftmax,
  computeInput,
  computeOf,
  float32Output,
  linear,
  mergeHeads,
  multiAxisRotaryTables,
  rawParam,
  rmsNorm,
  rotaryTables,
  scaledScores,
  skipRmsNorm,
  splitHeads,
  toCompute,
  toFloat32,
} from "../graph/blocks";
import type { LensHeadSpec } from "../graph/lensGraph";
import { type ConfigSection, MAX_CONFIG_LAYERS } from "./configUtil";

export interface LlamaTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  hiddenAct: string;
  /** Bias on q/k/v, and on o_proj: LLaMA's attention_bias sets both; Qwen2 has the first, not the second. */
  qkvBias: boolean;
  outputBias: boolean;
  /** The architecture fixes the attention biases; attention_bias is not read. */
  fixedBias: boolean;
  mlpBias: boolean;
  tieWordEmbeddings: boolean;
  /** The context length, when the config states one. */
  maxPositionEmbeddings?: number;
  /** The section the fields came from, to name them in errors ("text_config."). */
  section: ConfigSection;
}

/**
 * Reads a LLaMA text config with LlamaConfig's defaults; `parentTie` is the outer (VLM) config's
 * tie flag, if any; `bias` overrides attention_bias for families whose biases are fixed (Qwen2).
 */
export function parseLlamaConfig(c: ConfigSection, parentTie?: boolean, bias?: { qkv: boolean; output: boolean }): LlamaTextConfig {
  const hiddenSize = c.size("hidden_size", 4096);
  const numHeads = c.size("num_attention_heads", 32);
  const numKvHeads = c.size("num_key_value_heads", numHeads);
  if (!c.has("head_dim") && hiddenSize % numHeads !== 0) {
    throw c.error("hidden_size", `${hiddenSize} is not divisible by ${c.name("num_attention_heads")} ${numHeads}, and there is no head_dim: fix the config or re-download it`);
  }
  const headDim = c.size("head_dim", hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw c.error("head_dim", `${headDim} is odd; rotary embeddings turn pairs of dimensions: fix the config or re-download it`);
  if (numHeads % numKvHeads !== 0) {
    throw c.error("num_attention_heads", `${numHeads} is not a multiple of ${c.name("num_key_value_heads")} ${numKvHeads}: fix the config or re-download it`);
  }
  // transformers 5 keeps rope settings in rope_parameters; 4.x in rope_theta + rope_scaling.
  const rope = c.optionalSection("rope_parameters") ?? c.optionalSection("rope_scaling");
  const ropeType = rope ? String(rope.json["rope_type"] ?? rope.json["type"] ?? "default") : "default";
  if (ropeType !== "default") {
    throw new LensInputError(c.file, `rope type "${ropeType}" is not supported yet (supported: default): use a model with plain rotary embeddings`);
  }
  const ropeTheta = rope?.has("rope_theta") ? rope.positive("rope_theta") : c.positive("rope_theta", 10000);
  const attnBias = c.bool("attention_bias", false);
  return {
    vocabSize: c.size("vocab_size", 32000),
    hiddenSize,
    intermediateSize: c.size("intermediate_size", 11008),
    numLayers: c.size("num_hidden_layers", 32, MAX_CONFIG_LAYERS),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: c.nonNegative("rms_norm_eps", 1e-6),
    ropeTheta,
    hiddenAct: c.string("hidden_act", "silu"),
    qkvBias: bias?.qkv ?? attnBias,
    outputBias: bias?.output ?? attnBias,
    fixedBias: bias !== undefined,
    mlpBias: c.bool("mlp_bias", false),
    // transformers ties when either the outer or the text config says so.
    tieWordEmbeddings: c.optionalBool("tie_word_embeddings") === true || parentTie === true,
    ...(c.has("max_position_embeddings") ? { maxPositionEmbeddings: c.size("max_position_embeddings") } : {}),
    section: c,
  };
}

/** transformers' default inverse frequencies, rounded to float32 step by step as torch computes them. */
export function defaultInvFreq(headDim: number, theta: number): Float32Array {
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < out.length; i++) {
    const exponent = Math.fround((2 * i) / headDim);
    out[i] = Math.fround(1 / Math.fround(Math.pow(theta, exponent)));
  }
  return out;
}

export interface DecoderNames {
  /** Prefix of the decoder body, e.g. "model." or "language_model.model.". */
  body: string;
  /** Name of the unembedding matrix (lm_head.weight, or embed_tokens.weight when tied). */
  lmHead: string;
}

/**
 * Resolves the decoder's tensor names among the key layouts transformers has used, and checks
 * the weights against the config before anything is built from it.
 */
export function resolveDecoderNames(ctx: GraphCtx, cfg: LlamaTextConfig, bodyPrefixes: readonly string[], headPrefixes: readonly string[]): DecoderNames {
  const body = ctx.weights.findPrefix(bodyPrefixes, "embed_tokens.weight", "decoder");
  const head = headPrefixes.map((p) => `${p}lm_head.weight`).find((n) => ctx.weights.has(n));
  let names: DecoderNames;
  if (head) names = { body, lmHead: head };
  else if (!cfg.tieWordEmbeddings) {
    throw new LensInputError(ctx.weights.folder, `no lm_head.weight and tie_word_embeddings is false in config.json: the checkpoint is incomplete`);
  } else names = { body, lmHead: `${body}embed_tokens.weight` };
  checkDecoderWeights(ctx, cfg, names);
  return names;
}

/** The decoder's tensors against the config: sizes, the layer count, and biases present exactly when the config has them. */
function checkDecoderWeights(ctx: GraphCtx, cfg: LlamaTextConfig, names: DecoderNames): void {
  const w = ctx.weights;
  const c = cfg.section;
  const says = (key: string, value: number | boolean) => `${c.name(key)} ${value}`;
  const hidden = [cfg.hiddenSize, says("hidden_size", cfg.hiddenSize)] as const;
  const vocab = [cfg.vocabSize, says("vocab_size", cfg.vocabSize)] as const;
  const qWidth = [cfg.numHeads * cfg.headDim, `${c.name("num_attention_heads")} x head_dim = ${cfg.numHeads} x ${cfg.headDim}`] as const;
  const kvWidth = [cfg.numKvHeads * cfg.headDim, `${c.name("num_key_value_heads")} x head_dim = ${cfg.numKvHeads} x ${cfg.headDim}`] as const;
  const inter = [cfg.intermediateSize, says("intermediate_size", cfg.intermediateSize)] as const;
  w.checkShape(`${names.body}embed_tokens.weight`, [vocab, hidden]);
  w.checkLayerCount(`${names.body}layers.`, "input_layernorm.weight", cfg.numLayers, says("num_hidden_layers", cfg.numLayers), true);
  const p = `${names.body}layers.0.`;
  w.checkShape(`${p}self_attn.q_proj.weight`, [qWidth, hidden]);
  w.checkShape(`${p}self_attn.k_proj.weight`, [kvWidth, hidden]);
  w.checkShape(`${p}self_attn.v_proj.weight`, [kvWidth, hidden]);
  w.checkShape(`${p}self_attn.o_proj.weight`, [hidden, qWidth]);
  w.checkShape(`${p}mlp.gate_proj.weight`, [inter, hidden]);
  w.checkShape(`${p}mlp.down_proj.weight`, [hidden, inter]);
  w.checkShape(`${names.body}norm.weight`, [hidden]);
  w.checkShape(names.lmHead, [vocab, hidden]);
  // A bias the config turns off but the checkpoint holds would be dropped without a word; one
  // it turns on but the checkpoint lacks is reported by the graph builder, naming the tensor.
  const flag = (key: string) => (c.has(key) ? w.says(says(key, false)) : `${path.basename(c.file)} does not set ${c.name(key)} (default false)`);
  const attnFlag = cfg.fixedBias ? "this architecture has no such bias" : flag("attention_bias");
  if (!cfg.qkvBias) for (const m of ["q_proj", "k_proj", "v_proj"]) w.checkAbsent(`${p}self_attn.${m}.bias`, attnFlag);
  if (!cfg.outputBias) w.checkAbsent(`${p}self_attn.o_proj.bias`, attnFlag);
  if (!cfg.mlpBias) for (const m of ["gate_proj", "up_proj", "down_proj"]) w.checkAbsent(`${p}mlp.${m}.bias`, flag("mlp_bias"));
}

export interface DecoderGraphOptions {
  /** When set, positions holding this token id take their embedding from `image_features`. */
  imageTokenId?: number;
  /**
   * M-RoPE (Qwen2-VL): `position_ids` becomes `[axes, S]` and the first `mropeSection[0]` rotary
   * frequencies take axis 0's position, the next `mropeSection[1]` axis 1's, and so on.
   */
  mropeSection?: readonly number[];
}

export function buildLlamaDecoder(ctx: GraphCtx, cfg: LlamaTextConfig, names: DecoderNames, opts: DecoderGraphOptions, configFile: string): void {
  const { b } = ctx;
  const { hiddenSize: H, numHeads, numKvHeads, headDim: D, numLayers: L } = cfg;
  const rep = numHeads / numKvHeads;
  // The KV cache is in the compute dtype (it stays on the device, and the host only passes it
  // back), but float32 for bfloat16 compute: onnxruntime-node's JavaScript has no bfloat16
  // tensor to hold it in between calls.
  const compute = computeOf(ctx);
  const cacheType = compute === "bfloat16" ? "float32" : compute;
  const cacheIn = (x: string) => (cacheType === compute ? x : toCompute(ctx, x));
  const cacheOut = (x: string) => (cacheType === compute ? x : toFloat32(ctx, x));

  const inputIds = b.input("input_ids", "int64", ["seq"]);
  const mrope = opts.mropeSection;
  const positionIds = b.input("position_ids", "int64", mrope ? [mrope.length, "seq"] : ["seq"]);
  const outputPositions = b.input("output_positions", "int64", ["outputs"]);
  const pastInputs = Array.from({ length: L }, (_, i) => ({
    key: b.input(`past_key.${i}`, cacheType, [1, numKvHeads, "past", D]),
    value: b.input(`past_value.${i}`, cacheType, [1, numKvHeads, "past", D]),
  }));
  const past = pastInputs.map((p) => ({ key: cacheIn(p.key), value: cacheIn(p.value) }));

  let h = b.scoped("embed", () => embed(ctx, cfg, names, inputIds, opts));

  // onnxruntime's fused GroupQueryAttention takes head sizes that are multiples of 8 (every
  // released checkpoint we know of); it has float32 and float16 kernels on the CPU and half ones
  // (float16, bfloat16) on CUDA. Other sizes (tiny test models), WebGPU and CUDA in float32
  // take the unfused path.
  const provider = ctx.provider ?? "cpu";
  const fused = D % 8 === 0 && (provider === "cpu" ? compute !== "bfloat16" : provider === "cuda" && compute !== "float32");

  // Queries at absolute positions P..P+S-1 over keys 0..P+S-1. GroupQueryAttention masks
  // causally itself and takes the lengths; the additive mask serves the read-out rows and the
  // unfused path.
  const mask = b.scoped("mask", () => {
    const seqLen = b.op("Squeeze", [b.op("Shape", [inputIds])]);
    const pastLen = b.op("Squeeze", [b.op("Shape", [pastInputs[0].key], { start: 2, end: 3 })]);
    const total = b.op("Add", [pastLen, seqLen]);
    const qPos = b.op("Range", [pastLen, total, b.i64Scalar(1)]);
    const kPos = b.op("Range", [b.i64Scalar(0), total, b.i64Scalar(1)]);
    const allowed = b.op("LessOrEqual", [b.op("Unsqueeze", [kPos, b.i64(0)]), b.op("Unsqueeze", [qPos, b.i64(1)])], {}, "allowed");
    const bias = attentionBias(ctx, allowed, 1);
    return {
      seqlensK: b.op("Cast", [b.op("Reshape", [b.op("Sub", [total, b.i64Scalar(1)]), b.i64(1)])], { to: 6 }),
      totalLength: b.op("Cast", [total], { to: 6 }),
      readoutBias: b.op("Gather", [bias, outputPositions], { axis: 0 }),
      fullBias: fused ? undefined : rep === 1 ? bias : b.op("Tile", [bias, b.i64(rep, 1)]),
    };
  });
  // Rotary tables [S, 1, D], broadcast over the heads of a [S, heads, D] layout.
  const { cos, sin } = b.scoped("rope", () => {
    const t = mrope
      ? multiAxisRotaryTables(ctx, positionIds, defaultInvFreq(D, cfg.ropeTheta), mrope.flatMap((n, axis) => Array<number>(n).fill(axis)))
      : rotaryTables(ctx, positionIds, defaultInvFreq(D, cfg.ropeTheta));
    return { cos: b.op("Unsqueeze", [t.cos, b.i64(1)]), sin: b.op("Unsqueeze", [t.sin, b.i64(1)]) };
  });
  const { qkvBias, outputBias } = cfg;

  // Attention read-outs for the analysed queries: mass per key segment ([T, G] one-hot from
  // the caller) per head, and the head-averaged row over the image keys the caller lists.
  const keySegments = b.input("key_segments", "float32", ["total", "segments"]);
  const imageKeys = b.input("image_key_positions", "int64", ["image_keys"]);
  const headMask = computeInput(ctx, "head_mask", [L, numHeads]);
  const patternHead = b.input("pattern_head", "int64", [1]);
  const attentionMass: string[] = [];
  const imageAttention: string[] = [];
  const headRows: string[] = [];
  // The fused attention keeps its probabilities to itself, so the analysed rows are computed
  // again here: softmax(q k^T * scale + mask) for the K requested queries only ([heads, K, T]).
  const readAttention = (roped: string, keys: string) => {
    const q = b.op("Slice", [b.op("Transpose", [b.op("Gather", [roped, outputPositions], { axis: 0 })], { perm: [1, 0, 2] }), b.i64(0), b.i64(numHeads), b.i64(0)]);
    // Query head h reads key head h // rep: [kvHeads, rep*K, D] against [kvHeads, T, D].
    const grouped = b.op("Reshape", [q, b.i64(numKvHeads, -1, D)]);
    const scores = scaledScores(ctx, grouped, b.op("Reshape", [keys, b.i64(numKvHeads, -1, D)]), 1 / Math.sqrt(D), 3);
    const { probs: rows } = attentionSoftmax(ctx, b.op("Reshape", [scores, b.i64(numHeads, -1, 0)], { allowzero: 0 }), mask.readoutBias);
    attentionMass.push(b.op("MatMul", [rows, keySegments], {}, "attention_mass"));
    imageAttention.push(b.op("ReduceMean", [b.op("Gather", [rows, imageKeys], { axis: 2 })], { axes: [0], keepdims: 1 }, "image_attention"));
    headRows.push(b.op("Gather", [rows, patternHead], { axis: 0 }, "head_rows"));
  };

  // Both return the context [S, heads * D] and the grown cache [1, kvHeads, P+S, D].
  const fusedAttention = (roped: string, vProj: string, i: number) => {
    // GroupQueryAttention's packed layout [1, S, (heads + 2 kvHeads) * D].
    const v = b.op("Reshape", [vProj, b.i64(-1, numKvHeads, D)]);
    const packed = b.op("Reshape", [b.op("Concat", [roped, v], { axis: 1 }), b.i64(1, -1, (numHeads + 2 * numKvHeads) * D)]);
    const [context, keys, values] = b.contribOpMulti(
      "GroupQueryAttention",
      [packed, "", "", past[i].key, past[i].value, mask.seqlensK, mask.totalLength],
      3,
      { num_heads: numHeads, kv_num_heads: numKvHeads, scale: { float: 1 / Math.sqrt(D) } },
      "attention",
    );
    return { context: b.op("Reshape", [context, b.i64(-1, numHeads * D)]), keys, values };
  };
  const unfusedAttention = (roped: string, vProj: string, i: number) => {
    const [q, k] = b.opMulti("Split", [b.op("Transpose", [roped], { perm: [1, 0, 2] }), b.i64(numHeads, numKvHeads)], 2, { axis: 0 });
    const grow = (cache: string, x: string) => b.op("Concat", [cache, b.op("Unsqueeze", [x, b.i64(0)])], { axis: 2 });
    const keys = grow(past[i].key, k);
    const values = grow(past[i].value, splitHeads(ctx, vProj, numKvHeads, D));
    const as3d = (x: string) => b.op("Reshape", [x, b.i64(numKvHeads, -1, D)]);
    const { context } = attentionCore(ctx, q, as3d(keys), as3d(values), { heads: numHeads, kvHeads: numKvHeads, headDim: D, scale: 1 / Math.sqrt(D), bias: mask.fullBias });
    return { context: mergeHeads(ctx, context, numHeads, D), keys, values };
  };

  const collected: string[] = [];
  const collect = (x: string) => collected.push(b.op("Gather", [x, outputPositions], { axis: 0 }));
  // Per-layer pieces are joined along axis 0 and shaped once at the end (an Unsqueeze per
  // layer was one more node each; session creation grows faster than the node count).
  // Head masking scales each head's output before o_proj (1 = keep, 0 = zero it out); one
  // [heads * D] row of scales per layer, made once.
  const headScales = b.opMulti(
    "Split",
    [b.op("Reshape", [b.op("Expand", [b.op("Reshape", [headMask, b.i64(L, numHeads, 1)]), b.i64(1, 1, D)]), b.i64(L, numHeads * D)])],
    L,
    { axis: 0 },
    "head_scales",
  );
  collect(h);

  // Each residual add is fused with the norm that reads it: after attention with the block's
  // post-attention norm, after the MLP with the next block's input norm (or the final norm).
  let x = b.scoped("layers.0", () => rmsNorm(ctx, h, `${names.body}layers.0.input_layernorm.weight`, H, cfg.rmsNormEps));
  for (let i = 0; i < L; i++) {
    const p = `${names.body}layers.${i}.`;
    const nextNorm = i < L - 1 ? `${names.body}layers.${i + 1}.input_layernorm.weight` : `${names.body}norm.weight`;
    [x, h] = b.scoped(`layers.${i}`, () => {
      // Queries and keys, as [S, heads, D], get the rotary embedding together.
      const qk = b.op("Reshape", [
        b.op("Concat", [linear(ctx, x, `${p}self_attn.q_proj`, H, numHeads * D, qkvBias), linear(ctx, x, `${p}self_attn.k_proj`, H, numKvHeads * D, qkvBias)], { axis: 1 }),
        b.i64(-1, numHeads + numKvHeads, D),
      ]);
      const roped = applyRotary(ctx, qk, cos, sin, D);
      const vProj = linear(ctx, x, `${p}self_attn.v_proj`, H, numKvHeads * D, qkvBias);
      // Causal softmax(q k^T / sqrt(D)) v in float32 with key/value head h // rep for query
      // head h, as transformers' eager attention with repeat_kv; the cache grows by S.
      const { context, keys, values } = fused ? fusedAttention(roped, vProj, i) : unfusedAttention(roped, vProj, i);
      b.output(cacheOut(keys), `present_key.${i}`, cacheType, [1, numKvHeads, "total", D]);
      b.output(cacheOut(values), `present_value.${i}`, cacheType, [1, numKvHeads, "total", D]);
      readAttention(roped, keys);
      const masked = b.op("Mul", [context, headScales[i]], {}, "head_mask");
      const attnOut = linear(ctx, masked, `${p}self_attn.o_proj`, numHeads * D, H, outputBias);
      const { normed: y, sum: afterAttn } = skipRmsNorm(ctx, attnOut, h, `${p}post_attention_layernorm.weight`, H, cfg.rmsNormEps);
      const gate = activation(ctx, linear(ctx, y, `${p}mlp.gate_proj`, H, cfg.intermediateSize, cfg.mlpBias), cfg.hiddenAct, configFile);
      const up = linear(ctx, y, `${p}mlp.up_proj`, H, cfg.intermediateSize, cfg.mlpBias);
      const down = linear(ctx, b.op("Mul", [gate, up]), `${p}mlp.down_proj`, cfg.intermediateSize, H, cfg.mlpBias);
      const { normed, sum } = skipRmsNorm(ctx, down, afterAttn, nextNorm, H, cfg.rmsNormEps);
      return [normed, sum];
    });
    if (i < L - 1) collect(h);
  }

  b.scoped("head", () => {
    // transformers' last hidden state is the final norm's output
    collect(x);
    const states = b.op("Reshape", [b.op("Concat", collected, { axis: 0 }), b.i64(L + 1, -1, H)]);
    float32Output(ctx, states, "hidden_states", [L + 1, "outputs", H]);
    const segments = b.op("Slice", [b.op("Shape", [keySegments]), b.i64(1), b.i64(2)]);
    b.output(
      b.opNamed("attention_mass", "Reshape", [b.op("Concat", attentionMass, { axis: 0 }), b.op("Concat", [b.i64(L, numHeads, -1), segments], { axis: 0 })]),
      "attention_mass",
      "float32",
      [L, numHeads, "outputs", "segments"],
    );
    b.output(b.opNamed("image_attention", "Concat", imageAttention, { axis: 0 }), "image_attention", "float32", [L, "outputs", "image_keys"]);
    b.output(b.opNamed("head_rows", "Concat", headRows, { axis: 0 }), "head_rows", "float32", [L, "outputs", "total"]);
  });
}

/** The lens graph's view of this decoder: its final norm and unembedding. */
export function llamaLensSpec(cfg: LlamaTextConfig, names: DecoderNames): LensHeadSpec {
  return {
    numLayers: cfg.numLayers,
    hiddenSize: cfg.hiddenSize,
    vocabSize: cfg.vocabSize,
    normWeight: `${names.body}norm.weight`,
    normEps: cfg.rmsNormEps,
    unembedding: names.lmHead,
  };
}

/**
 * Token embeddings, with image features spliced in where the image token stands: the k-th
 * image token (in order) takes row k of `image_features`. Done with a gather over
 * `[zeros; features]` so that a decode step with no image (N = 0) needs no special graph.
 */
function embed(ctx: GraphCtx, cfg: LlamaTextConfig, names: DecoderNames, inputIds: string, opts: DecoderGraphOptions): string {
  const { b } = ctx;
  const table = rawParam(ctx, `${names.body}embed_tokens.weight`, [cfg.vocabSize, cfg.hiddenSize]);
  const lookup = (ids: string) => {
    const rows = b.op("Gather", [table.value, ids], { axis: 0 }, "embed_tokens");
    return table.type === computeOf(ctx) ? rows : table.type === "float32" ? toCompute(ctx, rows) : toCompute(ctx, b.op("Cast", [rows], { to: 1 }));
  };
  if (opts.imageTokenId === undefined) return lookup(inputIds);

  const features = b.input("image_features", "float32", ["image_tokens", cfg.hiddenSize]);
  // Without features (a decode step), an image token the model generated is an ordinary token,
  // embedded from the table, as in transformers.
  const hasFeatures = b.op("Greater", [b.op("Gather", [b.op("Shape", [features]), b.i64Scalar(0)], { axis: 0 }), b.i64Scalar(0)]);
  const isImage = b.op("And", [b.op("Equal", [inputIds, b.i64Scalar(opts.imageTokenId)]), hasFeatures], {}, "is_image");
  const textIds = b.op("Where", [isImage, b.i64Scalar(0), inputIds]);
  const isImageI64 = b.op("Cast", [isImage], { to: 7 });
  const featureRow = b.op("Mul", [b.op("CumSum", [isImageI64, b.i64Scalar(0)]), isImageI64]);
  const padded = b.op("Concat", [b.constant("float32", new Float32Array(cfg.hiddenSize), [1, cfg.hiddenSize]), features], { axis: 0 });
  const imageRows = toCompute(ctx, b.op("Gather", [padded, featureRow], { axis: 0 }));
  return b.op("Where", [b.op("Unsqueeze", [isImage, b.i64(1)]), imageRows, lookup(textIds)], {}, "inputs_embeds");
}
