/** What an architecture module gives the runtime: graph builders plus the facts needed to drive them. */
import type { GraphCtx } from "../graph/blocks";
import type { LensHeadSpec } from "../graph/lensGraph";
import type { JsonObject } from "./configUtil";

export interface DecoderShape {
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  hiddenSize: number;
  vocabSize: number;
}

export interface VisionShape {
  /** Side of the square image the tower expects, in pixels. */
  imageSize: number;
  patchSize: number;
  numChannels: number;
  /** Image tokens the decoder receives per image. */
  tokensPerImage: number;
}

export interface ArchitecturePlan {
  architecture: string;
  decoder: DecoderShape;
  /** Token id whose positions take image features (models with a vision tower). */
  imageTokenId?: number;
  vision?: VisionShape;
  /** The final norm and unembedding the lens graph applies (graph/lensGraph.ts). */
  lens: LensHeadSpec;
  /** Builds the decoder graph (contract in arch/llama.ts). */
  buildDecoder(ctx: GraphCtx): void;
  /** Builds the vision graph: pixel_values [1, C, H, W] -> image_features [tokens, hidden]. */
  buildVision?(ctx: GraphCtx): void;
}

export interface ArchitectureModule {
  /** Names as they appear in config.json's "architectures". */
  readonly architectures: readonly string[];
  plan(config: JsonObject, configFile: string, ctx: GraphCtx): ArchitecturePlan;
}
