/**
 * Qwen2VLForConditionalGeneration: a ViT over 14x14x2 patches of a dynamically sized image
 * (2D rotary positions, full attention within each image), a PatchMerger that folds every 2x2
 * window into one token, and a Qwen2 decoder (LLaMA blocks with q/k/v bias and M-RoPE).
 *
 * Vision graph contract:
 *   inputs   pixel_values [N, C*T*P*P] (patch rows in merge-window order, as the processor
 *            writes them), vision_position_ids [N, 2] int64 (row, column of each patch on its
 *            image's patch grid), vision_segment_ids [N] int64 (patches attend only to patches
 *            with the same id: one id per image frame)
 *   outputs  image_features [N / merge^2, hidden]
 */
import { LensInputError } from "../errors";
import { type GraphCtx, activation, applyRotary, attentionCore, layerNorm, linear, mergeHeads, param } from "../graph/blocks";
import { parseQwen2VlProcessorConfig, preprocessQwen2Vl } from "../image/qwen2vlProcessor";
import type { HostTensor } from "../runtime/ort";
import { cfgNumber, cfgObject, cfgString, isObject, type JsonObject } from "./configUtil";
import { buildLlamaDecoder, defaultInvFreq, llamaLensSpec, parseLlamaConfig, resolveDecoderNames } from "./llama";
import type { ArchitectureModule, ImagePipeline, ImagePipelineSource, ImageTokenGrid, MultiAxisPositions } from "./types";

export interface Qwen2VisionConfig {
  depth: number;
  embedDim: number;
  /** Width of the merger's output: the decoder's hidden size. */
  hiddenSize: number;
  hiddenAct: string;
  mlpRatio: number;
  numHeads: number;
  inChannels: number;
  patchSize: number;
  spatialMergeSize: number;
  temporalPatchSize: number;
  ropeTheta: number;
}

export function parseQwen2VisionConfig(c: JsonObject, file: string): Qwen2VisionConfig {
  const embedDim = cfgNumber(c, "embed_dim", file, 1280);
  const numHeads = cfgNumber(c, "num_heads", file, 16);
  if (embedDim % numHeads !== 0 || (embedDim / numHeads) % 4 !== 0) {
    throw new LensInputError(file, `vision embed_dim ${embedDim} over num_heads ${numHeads} must give a head size divisible by 4 (2D rotary): fix the config`);
  }
  const rope = isObject(c["rope_parameters"]) ? c["rope_parameters"] : {};
  return {
    depth: cfgNumber(c, "depth", file, 32),
    embedDim,
    hiddenSize: cfgNumber(c, "hidden_size", file, 3584),
    hiddenAct: cfgString(c, "hidden_act", file, "quick_gelu"),
    mlpRatio: cfgNumber(c, "mlp_ratio", file, 4),
    numHeads,
    inChannels: cfgNumber(c, "in_channels", file, cfgNumber(c, "in_chans", file, 3)),
    patchSize: cfgNumber(c, "patch_size", file, 14),
    spatialMergeSize: cfgNumber(c, "spatial_merge_size", file, 2),
    temporalPatchSize: cfgNumber(c, "temporal_patch_size", file, 2),
    ropeTheta: cfgNumber(rope, "rope_theta", file, 10000),
  };
}

/**
 * The text config in LLaMA's terms, plus the M-RoPE sections. Older checkpoints keep the text
 * keys at the top level and rope settings as `rope_scaling: {type: "mrope", mrope_section}`;
 * transformers 5 nests them in text_config.rope_parameters with rope_type "default".
 */
function parseText(config: JsonObject, file: string) {
  const text = isObject(config["text_config"]) ? config["text_config"] : config;
  const rope = [text["rope_parameters"], text["rope_scaling"], config["rope_scaling"]].find(isObject) ?? {};
  const ropeType = String(rope["rope_type"] ?? rope["type"] ?? "default");
  if (ropeType !== "default" && ropeType !== "mrope") {
    throw new LensInputError(file, `rope type "${ropeType}" is not supported for Qwen2-VL (supported: default, mrope): use a model with plain M-RoPE`);
  }
  if (text["use_sliding_window"] === true) {
    throw new LensInputError(file, "use_sliding_window is true: sliding-window attention is not supported; set it to false (Qwen2-VL checkpoints ship with it off)");
  }
  const theta = typeof rope["rope_theta"] === "number" ? rope["rope_theta"] : cfgNumber(text, "rope_theta", file, 1000000);
  const topTie = typeof config["tie_word_embeddings"] === "boolean" ? (config["tie_word_embeddings"] as boolean) : undefined;
  const cfg = parseLlamaConfig({ ...text, rope_parameters: { rope_type: "default", rope_theta: theta }, rope_scaling: null }, file, topTie);
  const section = rope["mrope_section"] ?? [16, 24, 24];
  if (!Array.isArray(section) || !section.every((n) => Number.isInteger(n) && (n as number) >= 0) || section.reduce((a: number, n) => a + (n as number), 0) !== cfg.headDim / 2) {
    throw new LensInputError(file, `mrope_section ${JSON.stringify(section)} must be non-negative integers summing to head_dim / 2 = ${cfg.headDim / 2}: fix the config`);
  }
  return { cfg, mropeSection: section as number[] };
}

/**
 * transformers' get_rope_index for one sequence: text tokens count up on all three axes; a run
 * of image tokens takes (frame, row, column) of its merged grid, each offset by the position the
 * run starts at, and the text after it resumes at that start + max(rows, cols). `delta` is
 * (largest position + 1) - length, what a decode step adds to its index.
 */
export function mropePositions(ids: readonly number[], imageTokenId: number, grids: readonly ImageTokenGrid[]): { positions: number[][]; delta: number } {
  const positions: number[][] = [[], [], []];
  let next = 0;
  let image = 0;
  for (let i = 0; i < ids.length; ) {
    if (ids[i] !== imageTokenId) {
      for (const axis of positions) axis.push(next);
      next++;
      i++;
      continue;
    }
    let end = i;
    while (end < ids.length && ids[end] === imageTokenId) end++;
    const grid = grids[image++];
    const count = grid ? grid.frames * grid.rows * grid.cols : 0;
    if (!grid || end - i !== count) {
      throw new LensInputError(undefined, `the prompt has a run of ${end - i} image tokens but the image gives ${count}: use the model's chat template, with one image`);
    }
    for (let t = 0; t < grid.frames; t++)
      for (let r = 0; r < grid.rows; r++)
        for (let c = 0; c < grid.cols; c++) {
          positions[0].push(next + t);
          positions[1].push(next + r);
          positions[2].push(next + c);
        }
    next += Math.max(grid.rows, grid.cols);
    i = end;
  }
  let max = -1;
  for (const axis of positions) for (const p of axis) if (p > max) max = p;
  return { positions, delta: max + 1 - ids.length };
}

export const qwen2vl: ArchitectureModule = {
  architectures: ["Qwen2VLForConditionalGeneration"],
  plan(config, configFile, ctx) {
    const { cfg: text, mropeSection } = parseText(config, configFile);
    const vision = parseQwen2VisionConfig(cfgObject(config, "vision_config", configFile), configFile);
    if (vision.hiddenSize !== text.hiddenSize) {
      throw new LensInputError(configFile, `vision_config.hidden_size ${vision.hiddenSize} differs from the decoder's hidden_size ${text.hiddenSize}: fix the config`);
    }
    const imageTokenId = cfgNumber(config, "image_token_id", configFile, 151655);
    const names = resolveDecoderNames(ctx, text, ["model.language_model.", "model."], [""]);
    const visionPrefix = ctx.weights.findPrefix(["model.visual.", "visual."], "patch_embed.proj.weight", "vision tower");
    const positions: MultiAxisPositions = { axes: 3, prefill: (ids, grids) => mropePositions(ids, imageTokenId, grids) };

    return {
      architecture: "Qwen2VLForConditionalGeneration",
      decoder: { numLayers: text.numLayers, numHeads: text.numHeads, numKvHeads: text.numKvHeads, headDim: text.headDim, hiddenSize: text.hiddenSize, vocabSize: text.vocabSize },
      imageTokenId,
      lens: llamaLensSpec(text, names),
      positions,
      buildDecoder: (c) => buildLlamaDecoder(c, text, names, { imageTokenId, qkvBias: true, outputBias: false, mropeSection }, configFile),
      buildVision: (c) => buildQwen2Vision(c, vision, visionPrefix, configFile),
      imagePipeline: (source) => qwen2vlImagePipeline(source, vision, imageTokenId, configFile),
    };
  },
};

function qwen2vlImagePipeline(source: ImagePipelineSource, v: Qwen2VisionConfig, imageTokenId: number, file: string): ImagePipeline {
  const merge = v.spatialMergeSize;
  const pc = parseQwen2VlProcessorConfig(source.imageProcessor.json, source.imageProcessor.file);
  if (pc.patchSize !== v.patchSize || pc.mergeSize !== merge || pc.temporalPatchSize !== v.temporalPatchSize) {
    throw new LensInputError(
      source.imageProcessor.file,
      `patch ${pc.patchSize}, merge ${pc.mergeSize}, temporal patch ${pc.temporalPatchSize} differ from the vision tower's ${v.patchSize}, ${merge}, ${v.temporalPatchSize} in ${file}: the processor does not belong to this model`,
    );
  }
  const imageToken = typeof source.processorConfig?.["image_token"] === "string" ? source.processorConfig["image_token"] : "<|image_pad|>";
  const tokenId = source.text.tokenToId(imageToken);
  if (tokenId !== imageTokenId) {
    throw new LensInputError(`${source.folder}/tokenizer.json`, `the image token ${imageToken} has id ${tokenId} but config.json says ${imageTokenId}: the tokenizer does not belong to this model`);
  }
  return {
    imageToken,
    preprocess: (img) => {
      const p = preprocessQwen2Vl(img, pc);
      const [frames, gh, gw] = p.gridThw;
      const patches = frames * gh * gw;
      return {
        feeds: {
          pixel_values: { data: p.pixelValues, dims: p.shape },
          ...visionLayoutFeeds(frames, gh, gw, merge),
        },
        pixelValues: { data: p.pixelValues, shape: p.shape },
        processedSize: p.resized,
        tokenCount: patches / (merge * merge),
        grid: { frames, rows: gh / merge, cols: gw / merge, leadingCls: false },
      };
    },
  };
}

/**
 * Each patch's (row, column) on its image's patch grid, in the processor's merge-window order
 * (transformers' get_vision_position_ids), and its attention segment (one per frame, as
 * transformers' cu_seqlens).
 */
export function visionLayoutFeeds(frames: number, gh: number, gw: number, merge: number): Record<string, HostTensor> {
  const n = frames * gh * gw;
  const pos = new BigInt64Array(n * 2);
  const seg = new BigInt64Array(n);
  let i = 0;
  for (let t = 0; t < frames; t++)
    for (let wy = 0; wy < gh / merge; wy++)
      for (let wx = 0; wx < gw / merge; wx++)
        for (let my = 0; my < merge; my++)
          for (let mx = 0; mx < merge; mx++, i++) {
            pos[2 * i] = BigInt(wy * merge + my);
            pos[2 * i + 1] = BigInt(wx * merge + mx);
            seg[i] = BigInt(t);
          }
  return { vision_position_ids: { data: pos, dims: [n, 2] }, vision_segment_ids: { data: seg, dims: [n] } };
}

function buildQwen2Vision(ctx: GraphCtx, cfg: Qwen2VisionConfig, prefix: string, configFile: string): void {
  const { b } = ctx;
  const D = cfg.embedDim;
  const heads = cfg.numHeads;
  const headDim = D / heads;
  const patchFeatures = cfg.inChannels * cfg.temporalPatchSize * cfg.patchSize * cfg.patchSize;
  const pixels = b.input("pixel_values", "float32", ["patches", patchFeatures]);
  const positionIds = b.input("vision_position_ids", "int64", ["patches", 2]);
  const segmentIds = b.input("vision_segment_ids", "int64", ["patches"]);

  // Conv3d with kernel = stride over exactly one patch is a matrix product with the flattened kernel.
  let h = b.scoped("patch_embed", () => {
    const kernel = param(ctx, `${prefix}patch_embed.proj.weight`, [D, cfg.inChannels, cfg.temporalPatchSize, cfg.patchSize, cfg.patchSize], [D, patchFeatures]);
    return b.op("Gemm", [pixels, kernel], { transB: 1 }, "patch_embed");
  });

  // 2D rotary: the first quarter of the frequencies turn with the row, the next with the column,
  // and the half repeats (cat(freqs, freqs)), as transformers' VisionRotaryEmbedding.
  const { cos, sin } = b.scoped("rope", () => {
    const invFreq = defaultInvFreq(headDim / 2, cfg.ropeTheta);
    const pos = b.op("Cast", [positionIds], { to: 1 });
    const axis = (i: number) => b.op("Mul", [b.op("Slice", [pos, b.i64(i), b.i64(i + 1), b.i64(1)]), b.constant("float32", invFreq, [1, invFreq.length])]);
    const hw = b.op("Concat", [axis(0), axis(1)], { axis: -1 });
    const emb = b.op("Concat", [hw, hw], { axis: -1 });
    return { cos: b.op("Cos", [emb], {}, "cos"), sin: b.op("Sin", [emb], {}, "sin") };
  });
  const allowed = b.op("Equal", [b.op("Unsqueeze", [segmentIds, b.i64(1)]), b.op("Unsqueeze", [segmentIds, b.i64(0)])], {}, "same_image");

  const mlpDim = Math.trunc(D * cfg.mlpRatio);
  for (let i = 0; i < cfg.depth; i++) {
    const p = `${prefix}blocks.${i}.`;
    h = b.scoped(`vision.blocks.${i}`, () => {
      const x = layerNorm(ctx, h, `${p}norm1`, D, 1e-6);
      // Fused qkv: [N, 3D] -> [3, heads, N, headDim].
      const qkv = b.op("Transpose", [b.op("Reshape", [linear(ctx, x, `${p}attn.qkv`, D, 3 * D, true), b.i64(-1, 3, heads, headDim)])], { perm: [1, 2, 0, 3] });
      const part = (j: number) => b.op("Gather", [qkv, b.i64Scalar(j)], { axis: 0 });
      const q = applyRotary(ctx, part(0), cos, sin, headDim);
      const k = applyRotary(ctx, part(1), cos, sin, headDim);
      const { context } = attentionCore(ctx, q, k, part(2), { heads, kvHeads: heads, headDim, scale: 1 / Math.sqrt(headDim), allowed });
      const afterAttn = b.op("Add", [h, linear(ctx, mergeHeads(ctx, context, heads, headDim), `${p}attn.proj`, D, D, true)]);
      const y = layerNorm(ctx, afterAttn, `${p}norm2`, D, 1e-6);
      const mlp = linear(ctx, activation(ctx, linear(ctx, y, `${p}mlp.fc1`, D, mlpDim, true), cfg.hiddenAct, configFile), `${p}mlp.fc2`, mlpDim, D, true);
      return b.op("Add", [afterAttn, mlp]);
    });
  }

  const merged = b.scoped("merger", () => {
    const m2 = cfg.spatialMergeSize * cfg.spatialMergeSize;
    const windows = b.op("Reshape", [layerNorm(ctx, h, `${prefix}merger.ln_q`, D, 1e-6), b.i64(-1, D * m2)]);
    const hidden = activation(ctx, linear(ctx, windows, `${prefix}merger.mlp.0`, D * m2, D * m2, true), "gelu", configFile);
    return linear(ctx, hidden, `${prefix}merger.mlp.2`, D * m2, cfg.hiddenSize, true);
  });
  b.output(merged, "image_features", "float32", ["image_tokens", cfg.hiddenSize]);
}
