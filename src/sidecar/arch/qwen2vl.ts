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
import { type GraphCtx, activation, applyRotaryFloat32, attentionBias, attentionCore, computeInput, fusedSelfAttention, hasFusedSelfAttention, float32Output, layerNorm, linear, mergeHeads, weightProduct } from "../graph/blocks";
import { parseQwen2VlProcessorConfig, preprocessQwen2Vl } from "../image/qwen2vlProcessor";
import type { HostTensor } from "../runtime/ort";
import { ConfigSection, MAX_CONFIG_LAYERS } from "./configUtil";
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
  section: ConfigSection;
}

export function parseQwen2VisionConfig(c: ConfigSection): Qwen2VisionConfig {
  const embedDim = c.size("embed_dim", 1280);
  const numHeads = c.size("num_heads", 16);
  if (embedDim % numHeads !== 0 || (embedDim / numHeads) % 4 !== 0) {
    throw c.error("embed_dim", `${embedDim} over ${c.name("num_heads")} ${numHeads} must give a head size divisible by 4 (2D rotary): fix the config or re-download it`);
  }
  const rope = c.optionalSection("rope_parameters");
  const channelsKey = c.has("in_channels") || !c.has("in_chans") ? "in_channels" : "in_chans";
  return {
    depth: c.size("depth", 32, MAX_CONFIG_LAYERS),
    embedDim,
    hiddenSize: c.size("hidden_size", 3584),
    hiddenAct: c.string("hidden_act", "quick_gelu"),
    mlpRatio: c.positive("mlp_ratio", 4),
    numHeads,
    inChannels: c.size(channelsKey, 3),
    patchSize: c.size("patch_size", 14),
    spatialMergeSize: c.size("spatial_merge_size", 2),
    temporalPatchSize: c.size("temporal_patch_size", 2),
    ropeTheta: rope ? rope.positive("rope_theta", 10000) : 10000,
    section: c,
  };
}

/**
 * The text config in LLaMA's terms, plus the M-RoPE sections. Older checkpoints keep the text
 * keys at the top level and rope settings as `rope_scaling: {type: "mrope", mrope_section}`;
 * transformers 5 nests them in text_config.rope_parameters with rope_type "default".
 */
function parseText(top: ConfigSection) {
  const text = top.optionalSection("text_config") ?? top;
  const ropeSection = text.optionalSection("rope_parameters") ?? text.optionalSection("rope_scaling") ?? top.optionalSection("rope_scaling");
  const rope = ropeSection?.json ?? {};
  const ropeType = String(rope["rope_type"] ?? rope["type"] ?? "default");
  if (ropeType !== "default" && ropeType !== "mrope") {
    throw new LensInputError(top.file, `rope type "${ropeType}" is not supported for Qwen2-VL (supported: default, mrope): use a model with plain M-RoPE`);
  }
  if (text.json["use_sliding_window"] === true) {
    throw new LensInputError(top.file, "use_sliding_window is true: sliding-window attention is not supported; set it to false (Qwen2-VL checkpoints ship with it off)");
  }
  const theta = ropeSection?.has("rope_theta") ? ropeSection.positive("rope_theta") : text.positive("rope_theta", 1000000);
  const plain = new ConfigSection({ ...text.json, rope_parameters: { rope_type: "default", rope_theta: theta }, rope_scaling: null }, text.file, text.path);
  // Qwen2's attention has q/k/v biases and none on o_proj, whatever attention_bias says.
  const cfg = parseLlamaConfig(plain, top.optionalBool("tie_word_embeddings"), { qkv: true, output: false });
  const section = rope["mrope_section"] ?? [16, 24, 24];
  if (!Array.isArray(section) || !section.every((n) => Number.isInteger(n) && (n as number) >= 0) || section.reduce((a: number, n) => a + (n as number), 0) !== cfg.headDim / 2) {
    throw new LensInputError(top.file, `mrope_section ${JSON.stringify(section)} must be non-negative integers summing to head_dim / 2 = ${cfg.headDim / 2}: fix the config`);
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
    const top = new ConfigSection(config, configFile);
    const { cfg: text, mropeSection } = parseText(top);
    const vision = parseQwen2VisionConfig(top.section("vision_config"));
    if (vision.hiddenSize !== text.hiddenSize) {
      throw new LensInputError(configFile, `vision_config.hidden_size ${vision.hiddenSize} differs from the decoder's hidden_size ${text.hiddenSize}: fix the config`);
    }
    const imageTokenId = top.index("image_token_id", 151655);
    if (imageTokenId >= text.vocabSize) {
      throw top.error("image_token_id", `${imageTokenId} is not a token of the ${text.vocabSize}-token vocabulary (${text.section.name("vocab_size")}): fix the config or re-download it`);
    }
    const names = resolveDecoderNames(ctx, text, ["model.language_model.", "model."], [""]);
    const visionPrefix = ctx.weights.findPrefix(["model.visual.", "visual."], "patch_embed.proj.weight", "vision tower");
    checkQwen2VisionWeights(ctx, vision, visionPrefix);
    const positions: MultiAxisPositions = { axes: 3, prefill: (ids, grids) => mropePositions(ids, imageTokenId, grids) };

    return {
      architecture: "Qwen2VLForConditionalGeneration",
      decoder: { numLayers: text.numLayers, numHeads: text.numHeads, numKvHeads: text.numKvHeads, headDim: text.headDim, hiddenSize: text.hiddenSize, vocabSize: text.vocabSize },
      imageTokenId,
      lens: llamaLensSpec(text, names),
      positions,
      buildDecoder: (c) => buildLlamaDecoder(c, text, names, { imageTokenId, mropeSection }, configFile),
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

/** The tower's tensors against vision_config, before anything is built from it. */
function checkQwen2VisionWeights(ctx: GraphCtx, cfg: Qwen2VisionConfig, prefix: string): void {
  const w = ctx.weights;
  const c = cfg.section;
  const says = (key: string, v: number) => [v, `${c.name(key)} ${v}`] as const;
  const embed = says("embed_dim", cfg.embedDim);
  const patch = says("patch_size", cfg.patchSize);
  w.checkShape(`${prefix}patch_embed.proj.weight`, [embed, says("in_channels", cfg.inChannels), says("temporal_patch_size", cfg.temporalPatchSize), patch, patch]);
  w.checkLayerCount(`${prefix}blocks.`, "norm1.weight", cfg.depth, `${c.name("depth")} ${cfg.depth}`, true);
  const mlpDim = Math.trunc(cfg.embedDim * cfg.mlpRatio);
  w.checkShape(`${prefix}blocks.0.mlp.fc1.weight`, [[mlpDim, `${c.name("embed_dim")} x mlp_ratio = ${cfg.embedDim} x ${cfg.mlpRatio}`], embed]);
  const m2 = cfg.spatialMergeSize * cfg.spatialMergeSize;
  w.checkShape(`${prefix}merger.mlp.2.weight`, [says("hidden_size", cfg.hiddenSize), [cfg.embedDim * m2, `${c.name("embed_dim")} x spatial_merge_size^2 = ${cfg.embedDim} x ${m2}`]]);
}

function buildQwen2Vision(ctx: GraphCtx, cfg: Qwen2VisionConfig, prefix: string, configFile: string): void {
  const { b } = ctx;
  const D = cfg.embedDim;
  const heads = cfg.numHeads;
  const headDim = D / heads;
  const patchFeatures = cfg.inChannels * cfg.temporalPatchSize * cfg.patchSize * cfg.patchSize;
  const pixels = computeInput(ctx, "pixel_values", ["patches", patchFeatures]);
  const positionIds = b.input("vision_position_ids", "int64", ["patches", 2]);
  const segmentIds = b.input("vision_segment_ids", "int64", ["patches"]);

  // Conv3d with kernel = stride over exactly one patch is a matrix product with the flattened kernel.
  let h = b.scoped("patch_embed", () => {
    const kernel = `${prefix}patch_embed.proj.weight`;
    return weightProduct(ctx, pixels, kernel, [D, cfg.inChannels, cfg.temporalPatchSize, cfg.patchSize, cfg.patchSize], { view: [D, patchFeatures], hint: "patch_embed" });
  });

  // 2D rotary: the first quarter of the frequencies turn with the row, the next with the column,
  // and the half repeats (cat(freqs, freqs)), as transformers' VisionRotaryEmbedding.
  // The tables are computed on the CPU under WebGPU (see GraphBuilder.onCpu).
  const { cos, sin } = b.scoped("rope", () => b.onCpu(() => {
    const invFreq = defaultInvFreq(headDim / 2, cfg.ropeTheta);
    const pos = b.op("Cast", [positionIds], { to: 1 });
    const axis = (i: number) => b.op("Mul", [b.op("Slice", [pos, b.i64(i), b.i64(i + 1), b.i64(1)]), b.constant("float32", invFreq, [1, invFreq.length])]);
    const hw = b.op("Concat", [axis(0), axis(1)], { axis: -1 });
    const emb = b.op("Concat", [hw, hw], { axis: -1 });
    return { cos: b.op("Cos", [emb], {}, "cos"), sin: b.op("Sin", [emb], {}, "sin") };
  }));
  // Patches attend within their own frame (transformers' cu_seqlens): a block-diagonal mask,
  // made once (an image is one frame, whose mask allows everything).
  const frameMask = () => attentionBias(ctx, b.op("Equal", [b.op("Unsqueeze", [segmentIds, b.i64(1)]), b.op("Unsqueeze", [segmentIds, b.i64(0)])], {}, "same_image"), 1);
  // Fused on the CPU (hasFusedSelfAttention), where the mask is made and added only when there
  // are several frames (Ifs): with the mask the kernel is 4x slower (6.4 s against 1.7 s for the
  // tower's attention on a 640 x 480 picture). Elsewhere the mask is always added.
  const fusedMha = hasFusedSelfAttention(ctx);
  const segmentSpan = (op: string) => b.op(op, [segmentIds], { keepdims: 0 });
  const severalFrames = fusedMha ? b.op("Not", [b.op("Equal", [segmentSpan("ReduceMin"), segmentSpan("ReduceMax")])], {}, "several_frames") : undefined;
  const bias = severalFrames
    ? b.ifElse(severalFrames, ["float32"], () => [b.op("Unsqueeze", [frameMask(), b.i64(0, 1)])], () => [b.constant("float32", [0], [1, 1, 1, 1])], "frame_mask")[0]
    : frameMask();
  const cosBsnh = fusedMha ? b.op("Unsqueeze", [cos, b.i64(1)]) : cos;
  const sinBsnh = fusedMha ? b.op("Unsqueeze", [sin, b.i64(1)]) : sin;

  const mlpDim = Math.trunc(D * cfg.mlpRatio);
  for (let i = 0; i < cfg.depth; i++) {
    const p = `${prefix}blocks.${i}.`;
    h = b.scoped(`vision.blocks.${i}`, () => {
      const x = layerNorm(ctx, h, `${p}norm1`, D, 1e-6);
      // Fused qkv: [N, 3D] -> [N, 3, heads, headDim]; the rotary in float32, as transformers' apply_rotary_pos_emb_vision.
      const qkv = b.op("Reshape", [linear(ctx, x, `${p}attn.qkv`, D, 3 * D, true), b.i64(-1, 3, heads, headDim)]);
      let merged: string;
      if (fusedMha) {
        // [N, heads, headDim]: the rotary's tables broadcast over the heads
        const part = (j: number) => b.op("Gather", [qkv, b.i64Scalar(j)], { axis: 1 });
        const q = applyRotaryFloat32(ctx, part(0), cosBsnh, sinBsnh, headDim);
        const k = applyRotaryFloat32(ctx, part(1), cosBsnh, sinBsnh, headDim);
        const attend = (bias?: string) => [fusedSelfAttention(ctx, q, k, part(2), { heads, headDim, bias })];
        [merged] = b.ifElse(severalFrames!, ["float32"], () => attend(bias), () => attend(), "frames");
      } else {
        // [3, heads, N, headDim]
        const byHead = b.op("Transpose", [qkv], { perm: [1, 2, 0, 3] });
        const part = (j: number) => b.op("Gather", [byHead, b.i64Scalar(j)], { axis: 0 });
        const q = applyRotaryFloat32(ctx, part(0), cos, sin, headDim);
        const k = applyRotaryFloat32(ctx, part(1), cos, sin, headDim);
        const { context } = attentionCore(ctx, q, k, part(2), { heads, kvHeads: heads, headDim, scale: 1 / Math.sqrt(headDim), bias });
        merged = mergeHeads(ctx, context, heads, headDim);
      }
      const afterAttn = b.op("Add", [h, linear(ctx, merged, `${p}attn.proj`, D, D, true)]);
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
  float32Output(ctx, merged, "image_features", ["image_tokens", cfg.hiddenSize]);
}
