/**
 * The LensRecord: the one contract between the sidecar, the CLI, the extension, the webview and
 * every export. It is plain JSON. Large numeric blocks are columnar: a flat array plus the shape
 * it is laid out in (row-major), so a 33-layer x 600-position record stays compact and is read
 * without per-cell objects.
 *
 * Conventions (they matter for interpretation):
 *  - Layers are 0..L: 0 is the embedding output, l is the residual stream after block l. The
 *    lens of layer l < L is unembed(final_norm(h_l)); layer L is the model's own output
 *    distribution (transformers' last hidden state is already normed).
 *  - Positions are indices into `tokens`; "analysed positions" are those the lens ran on.
 *  - The lens at position p predicts the token at p + 1; for a generated token g_t the
 *    predicting position is the one before it.
 *  - Ranks are 1-based positions in a stable descending sort of the layer's logits (ties go to
 *    the lower token id); probabilities are softmax over the full vocabulary.
 *  - Entropy is in nats; KL is KL(final || layer) in nats; cosine is between h_l and h_L in
 *    transformers' convention (h_L normed).
 */

export const LENS_RECORD_VERSION = 1;

/** A block of numbers laid out row-major in `shape`. */
export interface NumericBlock {
  shape: number[];
  data: number[];
}

export type Segment = "bos" | "template" | "text" | "image" | "generated";
export const SEGMENTS: readonly Segment[] = ["bos", "template", "text", "image", "generated"];

export interface LensToken {
  id: number;
  /** How the token reads on its own (its decoded text, or its piece for byte fragments). */
  text: string;
  segment: Segment;
  /**
   * For image tokens: which image, and the patch's row and column on that image's grid. When the
   * image was cut into tiles (input.image.tiles), `index` is the tile and row/col are on the tile's grid.
   */
  image?: { index: number; row: number; col: number };
}

/**
 * The device a run really used: the execution provider, and the adapter where the system can
 * tell which one it is.
 */
export interface DeviceDescription {
  provider: "cpu" | "cuda" | "webgpu";
  /** The adapter as the system names it (the CPU's model, the CUDA GPU); absent when it cannot be known. */
  name?: string;
  /** The adapter's memory in bytes: the machine's for the CPU, the GPU's own for CUDA. */
  memoryBytes?: number;
  /** True when the adapter is known to be a software one (SwiftShader, llvmpipe). */
  software?: boolean;
  /** What else a reader should know, in one line: why auto chose it, or what could not be known. */
  note?: string;
}

export interface LensRecord {
  version: typeof LENS_RECORD_VERSION;
  model: {
    /** Folder name or hub id. */
    id: string;
    folder: string;
    architecture: string;
    /** SHA-256 of config.json, so records from different checkpoints are never mixed up. */
    configHash: string;
    /** Storage dtype of the weights (see computeDtype). */
    dtype: string;
    executionProvider: string;
    /** The device behind the provider (absent in records made before it was recorded). */
    device?: DeviceDescription;
    /** The dtype the graphs computed in (absent in records made before it was recorded: float32). */
    computeDtype?: "float32" | "float16" | "bfloat16";
    /** How the weights were held in memory (see the schema). */
    weightPlan?: "float32" | "half-per-use" | "half";
    numLayers: number;
    numHeads: number;
    vocabSize: number;
  };
  input: {
    prompt: string;
    renderedPrompt: string;
    image: null | {
      path?: string;
      /** SHA-256 of the image file's bytes. */
      sha256: string;
      /** Size of the decoded image, and of the tensor after preprocessing (width, height). */
      originalSize: [number, number];
      processedSize: [number, number];
      /** The image-token grid (rows, cols) in the decoder's order; of one tile when the image was tiled. */
      grid: [number, number];
      /**
       * How the image was cut into tiles (SmolVLM / Idefics3): `rows x cols` crops row-major, then
       * the whole image downscaled (the global image), `count` in all; rows = cols = 0 when only the
       * global image was used. Absent for models that see the image whole.
       */
      tiles?: { rows: number; cols: number; count: number };
    };
    settings: LensSettings;
  };
  tokens: LensToken[];
  /** How every token id that appears anywhere in the record reads (top-k, tracked, targets, generated). */
  tokenTexts: Record<string, string>;
  /** "embeddings", then "block 1".."block L". */
  layerLabels: string[];
  /** Positions the lens ran on, in order; index i in the blocks below refers to positions[i]. */
  positions: number[];
  /**
   * Lens statistics, each [layers, positions] or [layers, positions, k]:
   * topkIds/topkProbs [L+1, P, k], entropy/kl/cosine [L+1, P],
   * target (per position) with targetProb/targetRank [L+1, P].
   */
  lens: {
    topK: number;
    topkIds: NumericBlock;
    topkProbs: NumericBlock;
    entropy: NumericBlock;
    kl: NumericBlock;
    cosine: NumericBlock;
    /** Target token id per analysed position (default: the final layer's top-1 there). */
    targetIds: number[];
    targetProb: NumericBlock;
    targetRank: NumericBlock;
    /** For a user target: every tokenization considered, and the id chosen per variant. */
    targetText?: { text: string; variants: { text: string; ids: number[] }[] };
    /** Probability (final layer, teacher-forced) of the whole target answer, when asked for. */
    answerProb?: number;
  };
  /** Ranks and probabilities of every token that is in some top-k, at every layer and position: [L+1, P, M]. */
  tracked: { ids: number[]; rank: NumericBlock; prob: NumericBlock };
  /**
   * Attention mass per decoder block (index l = block l + 1 in layerLabels), head and analysed
   * query position on each key segment (in `SEGMENTS` order): [L, heads, P, 5]. Rows sum to 1.
   */
  attention: {
    segments: Segment[];
    mass: NumericBlock;
    /** Head-averaged attention of each analysed query on the image tokens: [L, P, imageTokens], on request. */
    imageRows?: NumericBlock;
  };
  /** Per layer top-1 of each image token's residual on the patch grid: [L+1, imageTokens], on request. */
  patchLens?: { topIds: NumericBlock; topProbs: NumericBlock };
  /**
   * Heads whose outputs were zeroed for this run: decoder block (0-based) -> heads (0-based).
   * Block b's output is lens layer b + 1, so masking block b first shows at layer b + 1.
   */
  headMask: Record<string, number[]> | null;
  generation: {
    /** Generated token ids in order (also present in `tokens` with segment "generated"). */
    ids: number[];
    stoppedBy: "eos" | "maxNewTokens" | "none";
    /**
     * For generated token t, the analysed-position index of the position that predicted it,
     * and per layer whether that layer's top-1 equals it: matches [L+1, G] (1/0).
     */
    predictingPositions: number[];
    matches: NumericBlock;
  };
  timings: Record<string, number>;
  /**
   * What a reader should know before trusting the numbers, one line each: for example from
   * which layer and position the lens values stop being finite (NaN or infinite). Absent when
   * there is nothing to say.
   */
  warnings?: string[];
}

export interface LensSettings {
  /** Which positions the lens runs on. */
  positions: "afterImage" | "image" | "all";
  topK: number;
  maxNewTokens: number;
  /** A target answer given as text (its first token is the target everywhere). */
  target?: string;
  /** Also compute the probability of the whole target answer. */
  answerProb?: boolean;
  /** Extra token strings whose ranks to track. */
  trackTokens?: string[];
  imageAttention?: boolean;
  patchLens?: boolean;
}

/** Row-major index helper for NumericBlocks. */
export function at(block: NumericBlock, ...index: number[]): number {
  let flat = 0;
  for (let d = 0; d < block.shape.length; d++) flat = flat * block.shape[d] + (index[d] ?? 0);
  return block.data[flat];
}
