/** What an architecture module gives the runtime: graph builders plus the facts needed to drive them. */
import type { GraphCtx } from "../graph/blocks";
import type { LensHeadSpec } from "../graph/lensGraph";
import type { RgbImage } from "../image/decode";
import type { HostTensor } from "../runtime/ort";
import type { TextProcessor } from "../text/textProcessor";
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

/** One image's image tokens in the decoder, laid out as a grid (frames x rows x cols, row-major). */
export interface ImageTokenGrid {
  frames: number;
  rows: number;
  cols: number;
}

/** One image, preprocessed for the vision graph. */
export interface PreparedImage {
  /** The vision graph's inputs. */
  feeds: Record<string, HostTensor>;
  /** transformers' pixel_values for this image, for parity checks. */
  pixelValues: { data: Float32Array; shape: number[] };
  /** Size after resizing and cropping, in pixels. */
  processedSize: { width: number; height: number };
  /** Image tokens the placeholder expands to. */
  tokenCount: number;
  /**
   * Their grid, after a leading CLS token when `leadingCls`. With several frames (or tiles), the
   * tokens run frame by frame, each frame `rows x cols` row-major.
   */
  grid: ImageTokenGrid & { leadingCls: boolean };
  /**
   * What the placeholder expands to, when it is more than `tokenCount` copies of itself
   * (Idefics3 wraps each tile's image tokens in marker tokens).
   */
  promptText?: string;
  /** How the image was cut into tiles (Idefics3): grid.frames counts them, the global image last. */
  tiles?: { rows: number; cols: number; count: number };
}

/** The model folder's files an image pipeline may read. */
export interface ImagePipelineSource {
  folder: string;
  /** preprocessor_config.json, or processor_config.json's nested image_processor, with its file. */
  imageProcessor: { json: JsonObject; file: string };
  processorConfig: JsonObject | undefined;
  text: TextProcessor;
}

/** How an image becomes vision-graph inputs and image tokens. */
export interface ImagePipeline {
  /** The placeholder the chat template writes, expanded to `tokenCount` copies. */
  imageToken: string;
  preprocess(image: RgbImage): PreparedImage;
}

/**
 * Position ids on several rotary axes (Qwen2-VL's M-RoPE). The prompt's come from the token ids
 * and the image grids; each later token's is its index plus `delta` on every axis.
 */
export interface MultiAxisPositions {
  axes: number;
  prefill(ids: readonly number[], grids: readonly ImageTokenGrid[]): { positions: number[][]; delta: number };
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
  /** Builds the vision graph: pixel_values [1, C, H, W] (or the pipeline's feeds) -> image_features [tokens, hidden]. */
  buildVision?(ctx: GraphCtx): void;
  /** The model's own image preprocessing; without it the runtime uses LLaVA's CLIP pipeline. */
  imagePipeline?(source: ImagePipelineSource): ImagePipeline;
  /** Multi-axis position ids; without it position_ids is [S] = cache length + index. */
  positions?: MultiAxisPositions;
}

export interface ArchitectureModule {
  /** Names as they appear in config.json's "architectures". */
  readonly architectures: readonly string[];
  plan(config: JsonObject, configFile: string, ctx: GraphCtx): ArchitecturePlan;
}
