/**
 * The CLIP vision tower, run only as far as the layers a VLM reads features from.
 *
 * transformers' CLIP hidden_states: entry 0 is pre_layrnorm(embeddings), entry k the output
 * of encoder layer k-1; post_layernorm is not part of them, so LLaVA never applies it.
 * Every linear layer of CLIP has a bias (transformers' CLIPAttention and CLIPMLP have no
 * switch for it), so a missing one is an error, never "no bias".
 */
import { type GraphCtx, activation, attentionCore, fusedSelfAttention, hasFusedSelfAttention, layerNorm, linear, mergeHeads, param, splitHeads } from "../graph/blocks";
import { type ConfigSection, MAX_CONFIG_LAYERS } from "./configUtil";

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
export function parseVisionTowerConfig(c: ConfigSection, defaults: { hiddenSize: number; numHeads: number; hiddenAct: string; layerNormEps: number }): VisionTowerConfig & { section: ConfigSection } {
  const hiddenSize = c.size("hidden_size", defaults.hiddenSize);
  const numHeads = c.size("num_attention_heads", defaults.numHeads);
  if (hiddenSize % numHeads !== 0) {
    throw c.error("hidden_size", `${hiddenSize} is not divisible by ${c.name("num_attention_heads")} ${numHeads}: fix the config or re-download it`);
  }
  const imageSize = c.size("image_size", 224);
  const patchSize = c.size("patch_size", 32);
  if (patchSize > imageSize) throw c.error("patch_size", `${patchSize} is larger than ${c.name("image_size")} ${imageSize}: fix the config or re-download it`);
  return {
    hiddenSize,
    intermediateSize: c.size("intermediate_size", 3072),
    numLayers: c.size("num_hidden_layers", 12, MAX_CONFIG_LAYERS),
    numHeads,
    imageSize,
    patchSize,
    numChannels: c.size("num_channels", 3),
    hiddenAct: c.string("hidden_act", defaults.hiddenAct),
    layerNormEps: c.nonNegative("layer_norm_eps", defaults.layerNormEps),
    section: c,
  };
}

export function parseClipVisionConfig(c: ConfigSection): ClipVisionConfig & { section: ConfigSection } {
  const cfg = parseVisionTowerConfig(c, { hiddenSize: 768, numHeads: 12, hiddenAct: "quick_gelu", layerNormEps: 1e-5 });
  if (cfg.imageSize % cfg.patchSize !== 0) {
    throw c.error("image_size", `${cfg.imageSize} is not a multiple of ${c.name("patch_size")} ${cfg.patchSize}: fix the config or re-download it`);
  }
  return cfg;
}

/**
 * The tower's tensors against its config, before anything is built: patch and position
 * embeddings, the first layer's widths, and the layer count (the weights must hold the `used`
 * layers and none past num_hidden_layers; a tower read at layer -2 may lack its last).
 * `positions` is the position-embedding rows the config implies, with how it got them.
 */
export function checkVisionTowerWeights(ctx: GraphCtx, cfg: VisionTowerConfig & { section: ConfigSection }, prefix: string, positions: readonly [number, string], used: number): void {
  const w = ctx.weights;
  const c = cfg.section;
  const hidden = [cfg.hiddenSize, `${c.name("hidden_size")} ${cfg.hiddenSize}`] as const;
  const patch = [cfg.patchSize, `${c.name("patch_size")} ${cfg.patchSize}`] as const;
  w.checkShape(`${prefix}embeddings.patch_embedding.weight`, [hidden, [cfg.numChannels, `${c.name("num_channels")} ${cfg.numChannels}`], patch, patch]);
  w.checkShape(`${prefix}embeddings.position_embedding.weight`, [positions, hidden]);
  const layers = `${prefix}encoder.layers.`;
  if (used > 0) {
    const layerCount = `${c.name("num_hidden_layers")} ${cfg.numLayers}`;
    w.checkLayerCount(layers, "layer_norm1.weight", used, used === cfg.numLayers ? layerCount : `${layerCount}, of which the features need ${used}`, false);
    w.checkShape(`${layers}0.mlp.fc1.weight`, [[cfg.intermediateSize, `${c.name("intermediate_size")} ${cfg.intermediateSize}`], hidden]);
  }
  const extra = `${layers}${cfg.numLayers}.layer_norm1.weight`;
  if (w.has(extra)) w.checkAbsent(extra, w.says(`${c.name("num_hidden_layers")} ${cfg.numLayers}`));
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
      const [q, k, v] = ["q_proj", "k_proj", "v_proj"].map((m) => linear(ctx, x, `${p}self_attn.${m}`, D, D, true));
      const heads = cfg.numHeads;
      const merged = hasFusedSelfAttention(ctx)
        ? fusedSelfAttention(ctx, q, k, v, { heads, headDim })
        : (() => {
            const split = (t: string) => splitHeads(ctx, t, heads, headDim);
            const { context } = attentionCore(ctx, split(q), split(k), split(v), { heads, kvHeads: heads, headDim, scale: 1 / Math.sqrt(headDim) });
            return mergeHeads(ctx, context, heads, headDim);
          })();
      const attnOut = linear(ctx, merged, `${p}self_attn.out_proj`, D, D, true);
      const afterAttn = b.op("Add", [h, attnOut]);
      const y = layerNorm(ctx, afterAttn, `${p}layer_norm2`, D, cfg.layerNormEps);
      const mlp = linear(
        ctx,
        activation(ctx, linear(ctx, y, `${p}mlp.fc1`, D, cfg.intermediateSize, true), cfg.hiddenAct, configFile),
        `${p}mlp.fc2`,
        cfg.intermediateSize,
        D,
        true,
      );
      return b.op("Add", [afterAttn, mlp]);
    });
    states.push(h);
  }
  return wanted.map((i) => states[i]);
}
