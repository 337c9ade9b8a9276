/**
 * The CLIP vision tower, run only as far as the layers a VLM reads features from.
 *
 * transformers' CLIP hidden_states: entry 0 is pre_layrnorm(embeddings), entry k the output
 * of encoder layer k-1; post_layernorm is not part of them, so LLaVA never applies it.
 */
import { LensInputError } from "../errors";
import { type GraphCtx, activation, attentionCore, layerNorm, linear, mergeHeads, param, splitHeads } from "../graph/blocks";
import { cfgNumber, cfgString, type JsonObject } from "./configUtil";

/** The shape of a ViT-style vision tower (CLIP, SigLIP) as its config.json spells it. */
export interface VisionTowerConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  hiddenAct: string;
  layerNormEps: number;
}

export type ClipVisionConfig = VisionTowerConfig;

/** Reads a vision_config; `defaults` are the model family's transformers defaults for the keys that differ. */
export function parseVisionTowerConfig(c: JsonObject, file: string, defaults: { hiddenSize: number; numHeads: number; hiddenAct: string; layerNormEps: number }): VisionTowerConfig {
  const hiddenSize = cfgNumber(c, "hidden_size", file, defaults.hiddenSize);
  const numHeads = cfgNumber(c, "num_attention_heads", file, defaults.numHeads);
  if (hiddenSize % numHeads !== 0) throw new LensInputError(file, `vision hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}: fix the config`);
  return {
    hiddenSize,
    intermediateSize: cfgNumber(c, "intermediate_size", file, 3072),
    numLayers: cfgNumber(c, "num_hidden_layers", file, 12),
    numHeads,
    imageSize: cfgNumber(c, "image_size", file, 224),
    patchSize: cfgNumber(c, "patch_size", file, 32),
    numChannels: cfgNumber(c, "num_channels", file, 3),
    hiddenAct: cfgString(c, "hidden_act", file, defaults.hiddenAct),
    layerNormEps: cfgNumber(c, "layer_norm_eps", file, defaults.layerNormEps),
  };
}

export function parseClipVisionConfig(c: JsonObject, file: string): ClipVisionConfig {
  return parseVisionTowerConfig(c, file, { hiddenSize: 768, numHeads: 12, hiddenAct: "quick_gelu", layerNormEps: 1e-5 });
}

/**
 * Builds the tower on `pixels` ([1, C, H, W]) and returns the hidden states whose indices are
 * requested (transformers' numbering, 0..numLayers), each `[1 + patches, hidden]`.
 */
export function buildClipVision(ctx: GraphCtx, cfg: ClipVisionConfig, prefix: string, pixels: string, wanted: readonly number[], configFile: string): string[] {
  const { b } = ctx;
  const D = cfg.hiddenSize;
  const headDim = D / cfg.numHeads;
  const patches = (cfg.imageSize / cfg.patchSize) ** 2;
  const maxIndex = Math.max(...wanted);

  const states: string[] = [];
  let h = b.scoped("embeddings", () => {
    const conv = b.op(
      "Conv",
      [pixels, param(ctx, `${prefix}embeddings.patch_embedding.weight`, [D, cfg.numChannels, cfg.patchSize, cfg.patchSize])],
      { kernel_shape: [cfg.patchSize, cfg.patchSize], strides: [cfg.patchSize, cfg.patchSize] },
      "patch_embedding",
    );
    const grid = b.op("Transpose", [b.op("Reshape", [conv, b.i64(D, -1)])], { perm: [1, 0] });
    const cls = param(ctx, `${prefix}embeddings.class_embedding`, [D], [1, D]);
    const tokens = b.op("Concat", [cls, grid], { axis: 0 });
    const positions = param(ctx, `${prefix}embeddings.position_embedding.weight`, [patches + 1, D]);
    return layerNorm(ctx, b.op("Add", [tokens, positions]), `${prefix}pre_layrnorm`, D, cfg.layerNormEps);
  });
  states.push(h);

  for (let i = 0; i < maxIndex; i++) {
    const p = `${prefix}encoder.layers.${i}.`;
    h = b.scoped(`vision.layers.${i}`, () => {
      const x = layerNorm(ctx, h, `${p}layer_norm1`, D, cfg.layerNormEps);
      const q = splitHeads(ctx, linear(ctx, x, `${p}self_attn.q_proj`, D, D, "auto"), cfg.numHeads, headDim);
      const k = splitHeads(ctx, linear(ctx, x, `${p}self_attn.k_proj`, D, D, "auto"), cfg.numHeads, headDim);
      const v = splitHeads(ctx, linear(ctx, x, `${p}self_attn.v_proj`, D, D, "auto"), cfg.numHeads, headDim);
      const { context } = attentionCore(ctx, q, k, v, { heads: cfg.numHeads, kvHeads: cfg.numHeads, headDim, scale: 1 / Math.sqrt(headDim) });
      const attnOut = linear(ctx, mergeHeads(ctx, context, cfg.numHeads, headDim), `${p}self_attn.out_proj`, D, D, "auto");
      const afterAttn = b.op("Add", [h, attnOut]);
      const y = layerNorm(ctx, afterAttn, `${p}layer_norm2`, D, cfg.layerNormEps);
      const mlp = linear(
        ctx,
        activation(ctx, linear(ctx, y, `${p}mlp.fc1`, D, cfg.intermediateSize, "auto"), cfg.hiddenAct, configFile),
        `${p}mlp.fc2`,
        cfg.intermediateSize,
        D,
        "auto",
      );
      return b.op("Add", [afterAttn, mlp]);
    });
    states.push(h);
  }
  return wanted.map((i) => states[i]);
}
