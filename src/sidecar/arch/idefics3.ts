/**
 * Idefics3ForConditionalGeneration (SmolVLM): a SigLIP tower run on every tile of the image
 * (row-major crops, then the whole image downscaled), a connector that folds each
 * scale x scale window of patches into one token (pixel shuffle) and projects it without bias,
 * and a LLaMA decoder. Each tile's tokens sit between `<fake_token_around_image><row_r_col_c>`
 * markers in the prompt; the global image's after `<global-img>`.
 *
 * Vision graph contract:
 *   inputs   pixel_values [tiles, C, M, M] (the processor's tiles, global image last)
 *   outputs  image_features [tiles * (M / patch / scale)^2, hidden], tile by tile, each tile's
 *            tokens row-major on its (M / patch / scale)^2 grid
 */
import { LensInputError } from "../errors";
import { type GraphCtx, activation, attentionSoftmax, computeInput, float32Output, fusedSelfAttention, hasFusedSelfAttention, layerNorm, linear, param, scaledScores } from "../graph/blocks";
import { parseIdefics3ProcessorConfig, preprocessIdefics3 } from "../image/idefics3Processor";
import { checkVisionTowerWeights, parseVisionTowerConfig, type VisionTowerConfig } from "./clip";
import { ConfigSection } from "./configUtil";
import { buildLlamaDecoder, llamaLensSpec, parseLlamaConfig, resolveDecoderNames } from "./llama";
import type { ArchitectureModule, ImagePipeline, ImagePipelineSource } from "./types";

export type SiglipVisionConfig = VisionTowerConfig;

export function parseSiglipVisionConfig(c: ConfigSection): SiglipVisionConfig & { section: ConfigSection } {
  return parseVisionTowerConfig(c, { hiddenSize: 1152, numHeads: 16, hiddenAct: "gelu_pytorch_tanh", layerNormEps: 1e-6 });
}

export const idefics3: ArchitectureModule = {
  architectures: ["Idefics3ForConditionalGeneration"],
  plan(config, configFile, ctx) {
    const top = new ConfigSection(config, configFile);
    const textSection = top.section("text_config");
    const textType = textSection.json["model_type"];
    if (textType !== undefined && textType !== "llama") {
      throw new LensInputError(configFile, `text model "${String(textType)}" is not supported for Idefics3 (supported: llama)`);
    }
    const text = parseLlamaConfig(textSection, top.optionalBool("tie_word_embeddings"));
    const vision = parseSiglipVisionConfig(top.section("vision_config"));
    const scale = top.size("scale_factor", 2);
    const side = Math.floor(vision.imageSize / vision.patchSize);
    if (side % scale !== 0) {
      throw new LensInputError(configFile, `scale_factor ${scale} must be a positive integer dividing the ${side} patches per side: fix the config`);
    }
    const imageTokenId = top.index("image_token_id", 128257);
    if (imageTokenId >= text.vocabSize) {
      throw top.error("image_token_id", `${imageTokenId} is not a token of the ${text.vocabSize}-token vocabulary (text_config.vocab_size): fix the config or re-download it`);
    }
    const tokensPerTile = (side / scale) ** 2;

    const names = resolveDecoderNames(ctx, text, ["model.text_model.", "text_model."], ["", "model."]);
    const visionPrefix = ctx.weights.findPrefix(["model.vision_model.", "vision_model."], "embeddings.patch_embedding.weight", "vision tower");
    const positionRows = [side * side, `vision_config.image_size / patch_size = ${vision.imageSize} / ${vision.patchSize} (${side} x ${side} patches)`] as const;
    checkVisionTowerWeights(ctx, vision, visionPrefix, positionRows, vision.numLayers);
    const connectorPrefix = ctx.weights.findPrefix(["model.connector.", "connector."], "modality_projection.proj.weight", "connector");
    ctx.weights.checkShape(`${connectorPrefix}modality_projection.proj.weight`, [
      [text.hiddenSize, `text_config.hidden_size ${text.hiddenSize}`],
      [vision.hiddenSize * scale * scale, `vision_config.hidden_size x scale_factor^2 = ${vision.hiddenSize} x ${scale * scale}`],
    ]);
    ctx.weights.checkAbsent(`${connectorPrefix}modality_projection.proj.bias`, "Idefics3's connector projection has no bias");

    return {
      architecture: "Idefics3ForConditionalGeneration",
      decoder: { numLayers: text.numLayers, numHeads: text.numHeads, numKvHeads: text.numKvHeads, headDim: text.headDim, hiddenSize: text.hiddenSize, vocabSize: text.vocabSize },
      imageTokenId,
      lens: llamaLensSpec(text, names),
      buildDecoder: (c) => buildLlamaDecoder(c, text, names, { imageTokenId }, configFile),
      buildVision: (c) => {
        const features = buildSiglipTiles(c, vision, visionPrefix, configFile);
        const shuffled = pixelShuffle(c, features, side, vision.hiddenSize, scale);
        const inFeatures = vision.hiddenSize * scale * scale;
        const projected = c.b.scoped("connector", () => linear(c, shuffled, `${connectorPrefix}modality_projection.proj`, inFeatures, text.hiddenSize, false));
        float32Output(c, projected, "image_features", ["image_tokens", text.hiddenSize]);
      },
      imagePipeline: (source) => idefics3ImagePipeline(source, vision, side / scale, tokensPerTile, imageTokenId, configFile),
    };
  },
};

function idefics3ImagePipeline(source: ImagePipelineSource, v: SiglipVisionConfig, gridSide: number, tokensPerTile: number, imageTokenId: number, file: string): ImagePipeline {
  const pc = parseIdefics3ProcessorConfig(source.imageProcessor.json, source.imageProcessor.file);
  // SigLIP's positions are bucketized from the tile's patch grid; for a full grid of the tower's
  // own size they are 0..n*n-1 (checked against transformers for n up to 36), which is what
  // the graph adds. Another tile size would need the bucketing.
  if (Math.floor(pc.tileSize / v.patchSize) !== Math.floor(v.imageSize / v.patchSize)) {
    throw new LensInputError(
      source.imageProcessor.file,
      `max_image_size.longest_edge ${pc.tileSize} gives tiles of ${Math.floor(pc.tileSize / v.patchSize)} patches per side, but the vision tower in ${file} takes ${Math.floor(v.imageSize / v.patchSize)}: the processor does not belong to this model`,
    );
  }
  const seqLen = source.processorConfig?.["image_seq_len"];
  if (seqLen !== undefined && seqLen !== tokensPerTile) {
    throw new LensInputError(`${source.folder}/processor_config.json`, `image_seq_len ${JSON.stringify(seqLen)} differs from the ${tokensPerTile} tokens per tile the vision tower yields: the processor config does not match config.json`);
  }
  const imageToken = "<image>";
  const tokenId = source.text.tokenToId(imageToken);
  if (tokenId !== imageTokenId) {
    throw new LensInputError(`${source.folder}/tokenizer.json`, `the image token ${imageToken} has id ${tokenId} but config.json says ${imageTokenId}: the tokenizer does not belong to this model`);
  }
  for (const marker of ["<fake_token_around_image>", "<global-img>"]) {
    if (source.text.tokenToId(marker) === undefined) {
      throw new LensInputError(`${source.folder}/tokenizer.json`, `has no ${marker} token, which Idefics3 prompts need: the tokenizer does not belong to this model`);
    }
  }
  return {
    imageToken,
    preprocess: (img) => {
      const p = preprocessIdefics3(img, pc);
      const count = p.shape[0];
      return {
        feeds: { pixel_values: { data: p.pixelValues, dims: p.shape } },
        pixelValues: { data: p.pixelValues, shape: p.shape },
        processedSize: p.resized,
        tokenCount: count * tokensPerTile,
        grid: { frames: count, rows: gridSide, cols: gridSide, leadingCls: false },
        promptText: idefics3PromptText(p.rows, p.cols, tokensPerTile, imageToken),
        tiles: { rows: p.rows, cols: p.cols, count },
      };
    },
  };
}

/** Idefics3Processor's replacement for one image placeholder. */
export function idefics3PromptText(rows: number, cols: number, tokensPerTile: number, imageToken: string): string {
  const fake = "<fake_token_around_image>";
  const tokens = imageToken.repeat(tokensPerTile);
  const global = `${fake}<global-img>${tokens}${fake}`;
  if (rows === 0 && cols === 0) return global;
  let out = "";
  for (let r = 1; r <= rows; r++) {
    for (let c = 1; c <= cols; c++) out += `${fake}<row_${r}_col_${c}>${tokens}`;
    out += "\n";
  }
  return `${out}\n${global}`;
}

/**
 * The SigLIP tower over every tile at once: [tiles, C, M, M] -> post-layernormed states
 * [tiles * n * n, D], tile by tile, patches row-major. Attention stays within each tile
 * ([tiles, heads, n*n, n*n] scores; on the CPU in float32 the fused kernel with the tiles as its
 * batch), so the cost grows with the tile count, not its square.
 */
function buildSiglipTiles(ctx: GraphCtx, cfg: SiglipVisionConfig, prefix: string, configFile: string): string {
  const { b } = ctx;
  const D = cfg.hiddenSize;
  const heads = cfg.numHeads;
  const headDim = D / heads;
  const side = Math.floor(cfg.imageSize / cfg.patchSize);
  const patches = side * side;
  const pixels = computeInput(ctx, "pixel_values", ["tiles", cfg.numChannels, "height", "width"]);

  let h = b.scoped("embeddings", () => {
    const conv = b.op(
      "Conv",
      [
        pixels,
        param(ctx, `${prefix}embeddings.patch_embedding.weight`, [D, cfg.numChannels, cfg.patchSize, cfg.patchSize]),
        param(ctx, `${prefix}embeddings.patch_embedding.bias`, [D]),
      ],
      { kernel_shape: [cfg.patchSize, cfg.patchSize], strides: [cfg.patchSize, cfg.patchSize] },
      "patch_embedding",
    );
    const grid = b.op("Transpose", [b.op("Reshape", [conv, b.i64(-1, D, patches)])], { perm: [0, 2, 1] });
    const positions = param(ctx, `${prefix}embeddings.position_embedding.weight`, [patches, D]);
    return b.op("Reshape", [b.op("Add", [grid, positions]), b.i64(-1, D)]);
  });

  // [tiles * n*n, D] -> [tiles, heads, n*n, headDim]
  const split = (x: string) => b.op("Transpose", [b.op("Reshape", [x, b.i64(-1, patches, heads, headDim)])], { perm: [0, 2, 1, 3] });
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `${prefix}encoder.layers.${i}.`;
    h = b.scoped(`vision.layers.${i}`, () => {
      const x = layerNorm(ctx, h, `${p}layer_norm1`, D, cfg.layerNormEps);
      const [q, k, v] = ["q_proj", "k_proj", "v_proj"].map((m) => linear(ctx, x, `${p}self_attn.${m}`, D, D, true));
      let merged: string;
      if (hasFusedSelfAttention(ctx)) {
        // each tile one item of the fused kernel's batch
        merged = fusedSelfAttention(ctx, q, k, v, { heads, headDim, group: patches });
      } else {
        const scores = scaledScores(ctx, split(q), split(k), 1 / Math.sqrt(headDim), 4);
        const context = b.op("MatMul", [attentionSoftmax(ctx, scores).probsCompute, split(v)]);
        merged = b.op("Reshape", [b.op("Transpose", [context], { perm: [0, 2, 1, 3] }), b.i64(-1, D)]);
      }
      const afterAttn = b.op("Add", [h, linear(ctx, merged, `${p}self_attn.out_proj`, D, D, true)]);
      const y = layerNorm(ctx, afterAttn, `${p}layer_norm2`, D, cfg.layerNormEps);
      const mlp = linear(ctx, activation(ctx, linear(ctx, y, `${p}mlp.fc1`, D, cfg.intermediateSize, true), cfg.hiddenAct, configFile), `${p}mlp.fc2`, cfg.intermediateSize, D, true);
      return b.op("Add", [afterAttn, mlp]);
    });
  }
  return layerNorm(ctx, h, `${prefix}post_layernorm`, D, cfg.layerNormEps);
}

/**
 * transformers' Idefics3Connector.pixel_shuffle on [tiles * n*n, D]: each tile's n x n grid
 * becomes (n/s) x (n/s) tokens of s*s*D features, laid out by the same reshapes and transposes,
 * so the feature order within a token is transformers'.
 */
function pixelShuffle(ctx: GraphCtx, x: string, n: number, D: number, s: number): string {
  const { b } = ctx;
  return b.scoped("pixel_shuffle", () => {
    const byColumns = b.op("Transpose", [b.op("Reshape", [x, b.i64(-1, n, n / s, D * s)])], { perm: [0, 2, 1, 3] });
    const byRows = b.op("Transpose", [b.op("Reshape", [byColumns, b.i64(-1, n / s, n / s, D * s * s)])], { perm: [0, 2, 1, 3] });
    return b.op("Reshape", [byRows, b.i64(-1, D * s * s)]);
  });
}
