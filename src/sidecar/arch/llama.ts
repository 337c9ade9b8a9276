/**
 * The LLaMA decoder (LlamaForCausalLM, and the language model inside LLaVA).
 *
 * Graph contract (one sequence, batch dimension dropped):
 *   inputs   input_ids [S] int64, position_ids [S] int64 ([3, S] with M-RoPE), output_positions [K] int64,
 *            past_key.{i} / past_value.{i} [kvHeads, P, headDim] (P = 0 on the first call),
 *            image_features [N, hidden] when the model has a vision tower
 *   outputs  hidden_states [L+1, K, hidden] in transformers' convention (entry 0 = embeddings,
 *            entry i = output of block i-1, entry L = final_norm(output of block L-1)),
 *            present_key.{i} / present_value.{i} [kvHeads, P+S, headDim],
 *            attention_mass [L, heads, K, G]: each analysed query's attention per key segment,
 *            image_attention [L, K, NI]: head-averaged attention on the listed image keys
 *   more inputs  key_segments [P+S, G] one-hot segment of every key, image_key_positions [NI],
 *            head_mask [L, heads] (1 keeps a head, 0 zeroes its output before o_proj)
 * `output_positions` picks which of the S positions report hidden states, so a decode step
 * asks for one row and a parity run for all of them. The decoder has no unembedding: the lens
 * graph (graph/lensGraph.ts) turns hidden states into tokens, so the unembedding matrix is
 * mapped by one session only.
 */
import { LensInputError } from "../errors";
import { type GraphCtx, activation, applyRotary, attentionBias, attentionCore, linear, mergeHeads, multiAxisRotaryTables, rawParam, rmsNorm, rotaryTables, splitHeads } from "../graph/blocks";
import type { LensHeadSpec } from "../graph/lensGraph";
import { cfgBool, cfgNumber, cfgString, type JsonObject } from "./configUtil";

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
  attentionBias: boolean;
  mlpBias: boolean;
  tieWordEmbeddings: boolean;
}

/** Reads a LLaMA text config with LlamaConfig's defaults; `parentTie` is the outer (VLM) config's tie flag, if any. */
export function parseLlamaConfig(c: JsonObject, file: string, parentTie?: boolean): LlamaTextConfig {
  const hiddenSize = cfgNumber(c, "hidden_size", file, 4096);
  const numHeads = cfgNumber(c, "num_attention_heads", file, 32);
  const numKvHeads = cfgNumber(c, "num_key_value_heads", file, numHeads);
  const headDim = cfgNumber(c, "head_dim", file, Math.floor(hiddenSize / numHeads));
  if (numHeads % numKvHeads !== 0) {
    throw new LensInputError(file, `num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads}): fix the config`);
  }
  // transformers 5 keeps rope settings in rope_parameters; 4.x in rope_theta + rope_scaling.
  const ropeParams = (c["rope_parameters"] ?? c["rope_scaling"] ?? null) as JsonObject | null;
  const ropeType = ropeParams ? String(ropeParams["rope_type"] ?? ropeParams["type"] ?? "default") : "default";
  if (ropeType !== "default") {
    throw new LensInputError(file, `rope type "${ropeType}" is not supported yet (supported: default): use a model with plain rotary embeddings`);
  }
  const ropeTheta = Number((ropeParams?.["rope_theta"] as number | undefined) ?? cfgNumber(c, "rope_theta", file, 10000));
  const tieOwn = c["tie_word_embeddings"];
  return {
    vocabSize: cfgNumber(c, "vocab_size", file, 32000),
    hiddenSize,
    intermediateSize: cfgNumber(c, "intermediate_size", file, 11008),
    numLayers: cfgNumber(c, "num_hidden_layers", file, 32),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: cfgNumber(c, "rms_norm_eps", file, 1e-6),
    ropeTheta,
    hiddenAct: cfgString(c, "hidden_act", file, "silu"),
    attentionBias: cfgBool(c, "attention_bias", file, false),
    mlpBias: cfgBool(c, "mlp_bias", file, false),
    // transformers ties when either the outer or the text config says so.
    tieWordEmbeddings: tieOwn === true || parentTie === true,
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

/** Resolves the decoder's tensor names among the key layouts transformers has used. */
export function resolveDecoderNames(ctx: GraphCtx, cfg: LlamaTextConfig, bodyPrefixes: readonly string[], headPrefixes: readonly string[]): DecoderNames {
  const body = ctx.weights.findPrefix(bodyPrefixes, "embed_tokens.weight", "decoder");
  const head = headPrefixes.map((p) => `${p}lm_head.weight`).find((n) => ctx.weights.has(n));
  if (head) return { body, lmHead: head };
  if (!cfg.tieWordEmbeddings) {
    throw new LensInputError(ctx.weights.folder, `no lm_head.weight and tie_word_embeddings is false in config.json: the checkpoint is incomplete`);
  }
  return { body, lmHead: `${body}embed_tokens.weight` };
}

export interface DecoderGraphOptions {
  /** When set, positions holding this token id take their embedding from `image_features`. */
  imageTokenId?: number;
  /** Bias on q/k/v and on o_proj; each defaults to the config's attention_bias (Qwen2 has the first, not the second). */
  qkvBias?: boolean;
  outputBias?: boolean;
  /**
   * M-RoPE (Qwen2-VL): `position_ids` becomes `[axes, S]` and the first `mropeSection[0]` rotary
   * frequencies take axis 0's position, the next `mropeSection[1]` axis 1's, and so on.
   */
  mropeSection?: readonly number[];
}

export function buildLlamaDecoder(ctx: GraphCtx, cfg: LlamaTextConfig, names: DecoderNames, opts: DecoderGraphOptions, configFile: string): void {
  const { b } = ctx;
  const { hiddenSize: H, numHeads, numKvHeads, headDim: D, numLayers: L } = cfg;

  const inputIds = b.input("input_ids", "int64", ["seq"]);
  const mrope = opts.mropeSection;
  const positionIds = b.input("position_ids", "int64", mrope ? [mrope.length, "seq"] : ["seq"]);
  const outputPositions = b.input("output_positions", "int64", ["outputs"]);
  const past = Array.from({ length: L }, (_, i) => ({
    key: b.input(`past_key.${i}`, "float32", [numKvHeads, "past", D]),
    value: b.input(`past_value.${i}`, "float32", [numKvHeads, "past", D]),
  }));

  let h = b.scoped("embed", () => embed(ctx, cfg, names, inputIds, opts));

  // Causal mask for queries at absolute positions P..P+S-1 over keys 0..P+S-1.
  const allowed = b.scoped("mask", () => {
    const seqLen = b.op("Squeeze", [b.op("Shape", [inputIds])]);
    const pastLen = b.op("Squeeze", [b.op("Shape", [past[0].key], { start: 1, end: 2 })]);
    const total = b.op("Add", [pastLen, seqLen]);
    const qPos = b.op("Range", [pastLen, total, b.i64Scalar(1)]);
    const kPos = b.op("Range", [b.i64Scalar(0), total, b.i64Scalar(1)]);
    return b.op("LessOrEqual", [b.op("Unsqueeze", [kPos, b.i64(0)]), b.op("Unsqueeze", [qPos, b.i64(1)])], {}, "allowed");
  });
  const bias = b.scoped("mask", () => attentionBias(ctx, allowed, numHeads / numKvHeads));
  const { cos, sin } = b.scoped("rope", () =>
    mrope
      ? multiAxisRotaryTables(ctx, positionIds, defaultInvFreq(D, cfg.ropeTheta), mrope.flatMap((n, axis) => Array<number>(n).fill(axis)))
      : rotaryTables(ctx, positionIds, defaultInvFreq(D, cfg.ropeTheta)),
  );
  const qkvBias = opts.qkvBias ?? cfg.attentionBias;
  const outputBias = opts.outputBias ?? cfg.attentionBias;

  // Attention read-outs for the analysed queries: mass per key segment ([T, G] one-hot from
  // the caller) per head, and the head-averaged row over the image keys the caller lists.
  const keySegments = b.input("key_segments", "float32", ["total", "segments"]);
  const imageKeys = b.input("image_key_positions", "int64", ["image_keys"]);
  const headMask = b.input("head_mask", "float32", [L, numHeads]);
  const attentionMass: string[] = [];
  const imageAttention: string[] = [];
  const readAttention = (probs: string) => {
    const rows = b.op("Gather", [b.op("Reshape", [probs, b.i64(numHeads, -1, 0)], { allowzero: 0 }), outputPositions], { axis: 1 });
    attentionMass.push(b.op("MatMul", [rows, keySegments], {}, "attention_mass"));
    imageAttention.push(b.op("ReduceMean", [b.op("Gather", [rows, imageKeys], { axis: 2 })], { axes: [0], keepdims: 1 }, "image_attention"));
  };

  const collected: string[] = [];
  const collect = (x: string) => collected.push(b.op("Gather", [x, outputPositions], { axis: 0 }));
  // Per-layer pieces are joined along axis 0 and shaped once at the end (an Unsqueeze per
  // layer was one more node each; session creation grows faster than the node count).
  const headScales = b.op("Reshape", [headMask, b.i64(L, numHeads, 1, 1)]);
  collect(h);

  for (let i = 0; i < L; i++) {
    const p = `${names.body}layers.${i}.`;
    h = b.scoped(`layers.${i}`, () => {
      const x = rmsNorm(ctx, h, `${p}input_layernorm.weight`, H, cfg.rmsNormEps);
      // Queries and keys get their heads split and the rotary embedding together (one set of
      // nodes instead of two: session creation grows faster than the node count).
      const qk = splitHeads(
        ctx,
        b.op("Concat", [linear(ctx, x, `${p}self_attn.q_proj`, H, numHeads * D, qkvBias), linear(ctx, x, `${p}self_attn.k_proj`, H, numKvHeads * D, qkvBias)], { axis: 1 }),
        numHeads + numKvHeads,
        D,
      );
      const [q, k] = b.opMulti("Split", [applyRotary(ctx, qk, cos, sin, D), b.i64(numHeads, numKvHeads)], 2, { axis: 0 });
      const v = splitHeads(ctx, linear(ctx, x, `${p}self_attn.v_proj`, H, numKvHeads * D, qkvBias), numKvHeads, D);
      const keys = b.opNamed(`present_key.${i}`, "Concat", [past[i].key, k], { axis: 1 });
      const values = b.opNamed(`present_value.${i}`, "Concat", [past[i].value, v], { axis: 1 });
      b.output(keys, `present_key.${i}`, "float32", [numKvHeads, "total", D]);
      b.output(values, `present_value.${i}`, "float32", [numKvHeads, "total", D]);
      const { context, probs } = attentionCore(ctx, q, keys, values, {
        heads: numHeads,
        kvHeads: numKvHeads,
        headDim: D,
        scale: 1 / Math.sqrt(D),
        bias,
      });
      readAttention(probs);
      // Head masking scales each head's output before o_proj (1 = keep, 0 = zero it out).
      const scale = b.op("Gather", [headScales, b.i64Scalar(i)], { axis: 0 });
      const masked = b.op("Mul", [context, scale], {}, "head_mask");
      const attnOut = linear(ctx, mergeHeads(ctx, masked, numHeads, D), `${p}self_attn.o_proj`, numHeads * D, H, outputBias);
      const afterAttn = b.op("Add", [h, attnOut], {}, "residual_attn");
      const y = rmsNorm(ctx, afterAttn, `${p}post_attention_layernorm.weight`, H, cfg.rmsNormEps);
      const gate = activation(ctx, linear(ctx, y, `${p}mlp.gate_proj`, H, cfg.intermediateSize, cfg.mlpBias), cfg.hiddenAct, configFile);
      const up = linear(ctx, y, `${p}mlp.up_proj`, H, cfg.intermediateSize, cfg.mlpBias);
      const down = linear(ctx, b.op("Mul", [gate, up]), `${p}mlp.down_proj`, cfg.intermediateSize, H, cfg.mlpBias);
      return b.op("Add", [afterAttn, down], {}, "residual_mlp");
    });
    if (i < L - 1) collect(h);
  }

  b.scoped("head", () => {
    const normed = rmsNorm(ctx, h, `${names.body}norm.weight`, H, cfg.rmsNormEps);
    collect(normed);
    b.output(b.opNamed("hidden_states", "Reshape", [b.op("Concat", collected, { axis: 0 }), b.i64(L + 1, -1, H)]), "hidden_states", "float32", [L + 1, "outputs", H]);
    const segments = b.op("Slice", [b.op("Shape", [keySegments]), b.i64(1), b.i64(2)]);
    b.output(
      b.opNamed("attention_mass", "Reshape", [b.op("Concat", attentionMass, { axis: 0 }), b.op("Concat", [b.i64(L, numHeads, -1), segments], { axis: 0 })]),
      "attention_mass",
      "float32",
      [L, numHeads, "outputs", "segments"],
    );
    b.output(b.opNamed("image_attention", "Concat", imageAttention, { axis: 0 }), "image_attention", "float32", [L, "outputs", "image_keys"]);
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
    return table.type === "float32" ? rows : b.op("Cast", [rows], { to: 1 });
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
  const imageRows = b.op("Gather", [padded, featureRow], { axis: 0 });
  return b.op("Where", [b.op("Unsqueeze", [isImage, b.i64(1)]), imageRows, lookup(textIds)], {}, "inputs_embeds");
}
