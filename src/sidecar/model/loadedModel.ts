/**
 * A model folder opened for inference: its config and weights compiled to ONNX graphs, the
 * sessions created, and the steps of one run (prepare -> vision -> decoder prefill -> greedy
 * decode with the KV cache).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { findArchitecture } from "../arch";
import { cfgNumber, isObject, type JsonObject } from "../arch/configUtil";
import type { ArchitectureModule, ArchitecturePlan, ImagePipeline, ImageTokenGrid, PreparedImage } from "../arch/types";
import { LensInputError } from "../errors";
import type { GraphCtx } from "../graph/blocks";
import { buildLensGraph, buildUnembeddingGraph, type RankMethod } from "../graph/lensGraph";
import { GraphBuilder, type BuiltGraph } from "../graph/onnxBuilder";
import { type ClipProcessorConfig, parseClipProcessorConfig, preprocessClip } from "../image/clipProcessor";
import { decodeImage, type RgbImage } from "../image/decode";
import { type Device, type GraphSession, type HostTensor, intendedProvider, openGraphSession, resolveDevice } from "../runtime/ort";
import { availableMemory, chooseCpuPlan, formatGB, type MemoryEstimate, type ModelFootprint, type WeightPlan } from "../runtime/memoryEstimate";
import { checkContextLength, contextLengthOf } from "../text/limits";
import { MIB, readInputFile } from "../util/readInput";
import { TextProcessor } from "../text/textProcessor";
import { DTYPE_CHOICES, type DtypeChoice } from "../../shared/protocol";
import type { DeviceDescription } from "../../shared/lensRecord";
import { readJsonObject, settledValue } from "./jsonFile";
import { WeightIndex } from "./safetensors";
import { ModelWeights } from "./weights";

export interface OpenOptions {
  device?: Device;
  threads?: number;
  /** Prepack weights for onnxruntime's GEMM kernels (slower open; see bench:runtime). */
  prepackWeights?: boolean;
  /** Called with a short description of each loading stage. */
  onProgress?: (stage: string) => void;
  /** How the lens graph computes ranks (default: by vocabulary size); both are exact. For tests. */
  rankMethod?: RankMethod;
  /** Bytes of logits a lens run keeps in the graph at once (default LOGITS_BUDGET); any bound gives the same record. For tests. */
  logitsBudget?: number;
  /**
   * How half-precision weights are held on the CPU (default: float32 copies when they fit in
   * the memory that is free, else kept half and converted per use; see runtime/memoryEstimate).
   */
  weightPlan?: WeightPlan;
  /** Bytes of memory taken as free, instead of reading the machine's. For tests. */
  availableMemory?: number;
  /** The compute dtype (src/shared/protocol.ts DtypeChoice); default auto. */
  dtype?: DtypeChoice;
}

export interface PreparedInput {
  renderedPrompt: string;
  inputIds: number[];
  /** transformers' pixel_values, when the input has an image: NCHW for LLaVA, [patches, C*T*P*P] for Qwen2-VL. */
  pixelValues?: { data: Float32Array; shape: number[] };
  /** The original image's size. */
  image?: { width: number; height: number };
  /** The preprocessed image: vision-graph inputs, size after resizing, image-token grid. */
  vision?: PreparedImage;
}

/** Image features [tokens, hidden] and, per image in prompt order, the grid of its tokens. */
export interface ImageFeatures extends HostTensor {
  grids: readonly ImageTokenGrid[];
}

export interface KvCache {
  keys: HostTensor[];
  values: HostTensor[];
  length: number;
  /** What a later token adds to its index to get its rotary position (M-RoPE's rope_deltas; 0 otherwise). */
  positionDelta?: number;
}

export interface ForwardResult {
  /** transformers' hidden_states for the requested positions: [L+1, K, hidden], flattened. */
  hiddenStates: Float32Array;
  /** Attention mass per layer, head, requested query and key segment: [L, heads, K, G]. */
  attentionMass: Float32Array;
  /** Head-averaged attention of each requested query on the given image keys: [L, K, NI]. */
  imageAttention: Float32Array;
  /** The greedy next token after the last requested position (its final layer's top-1); undefined without positions. */
  nextToken: number | undefined;
  positions: number[];
  cache: KvCache;
}

export interface ForwardOptions {
  cache?: KvCache;
  imageFeatures?: HostTensor | ImageFeatures;
  /** Indices into `ids` whose hidden states, next tokens and attention to report (default: the last). */
  positions?: readonly number[];
  /** Segment index (0..segmentCount-1) of every key: the cache's positions, then `ids`. Default: all 0. */
  keySegments?: readonly number[];
  segmentCount?: number;
  /** Absolute positions of image keys whose attention rows to report. */
  imageKeys?: readonly number[];
  /** [layers][heads]: 1 keeps a head, 0 zeroes its output. Default: all kept. */
  headMask?: Float32Array;
}

export interface LensStats {
  topK: number;
  topkIds: BigInt64Array;
  topkProbs: Float32Array;
  entropy: Float32Array;
  kl: Float32Array;
  cosine: Float32Array;
  targets: BigInt64Array;
  targetProb: Float32Array;
  targetRank: Int32Array;
  /** The tracked token ids, sorted: the columns of trackedProb and trackedRank. */
  tracked: number[];
  trackedProb: Float32Array;
  trackedRank: Int32Array;
}

/**
 * A lens run keeps the logits of all its rows inside the graph up to this size, so that every
 * row is unembedded once (bench:lens: 414 rows x 32000 tokens, 53 MB). Larger runs go in parts.
 */
const LOGITS_BUDGET = 256 * 2 ** 20;
/** Preprocessed image files kept per model (see LoadedModel.preparedImages). */
const PREPARED_IMAGES = 4;

export interface ModelInfo {
  folder: string;
  architecture: string;
  /** Storage dtype of the weights (the most common one). */
  dtype: string;
  /** The dtype the graphs compute in (the lens statistics are always accumulated in float32). */
  computeDtype: "float32";
  /** How the weights are held: as float32 (half ones converted at open), or half and converted per use. */
  weightPlan: WeightPlan;
  /** What the model was estimated to need before it opened, what was free then, and why this plan. */
  memory: { estimateBytes: number; availableBytes: number; reason: string };
  provider: string;
  /** The device behind the provider, with the adapter's name and memory where known. */
  device?: DeviceDescription;
  numLayers: number;
  numHeads: number;
  hiddenSize: number;
  vocabSize: number;
  weightBytes: number;
  /** SHA-256 of config.json. */
  configHash: string;
  /** Image-token grid of one image (rows, cols), and whether its first token is CLS; absent when it depends on the image (Qwen2-VL). */
  imageGrid?: { rows: number; cols: number; leadingCls: boolean };
  /** The decoder's context length and the config field it comes from; absent when config.json states none. */
  contextLength?: { length: number; field: string };
}

/** A model's three graphs (decoder, lens, vision tower if any), compiled from its config and weights; no session yet. */
export function compileGraphs(
  module: ArchitectureModule,
  config: JsonObject,
  configFile: string,
  weights: ModelWeights,
  opts: { rankMethod?: RankMethod; provider?: GraphCtx["provider"]; halfWeightsPerUse?: boolean } = {},
): { plan: ArchitecturePlan; decoder: BuiltGraph; lens: BuiltGraph; vision?: BuiltGraph } {
  const { provider, halfWeightsPerUse } = opts;
  const ctxOf = (b: GraphBuilder): GraphCtx => ({ b, weights, provider, halfWeightsPerUse });
  const decoderBuilder = new GraphBuilder("decoder");
  const plan = module.plan(config, configFile, ctxOf(decoderBuilder));
  plan.buildDecoder(ctxOf(decoderBuilder));
  const lensBuilder = new GraphBuilder("lens");
  buildLensGraph(ctxOf(lensBuilder), plan.lens, opts.rankMethod);
  let vision: BuiltGraph | undefined;
  if (plan.buildVision) {
    const visionCtx = ctxOf(new GraphBuilder("vision"));
    plan.buildVision(visionCtx);
    vision = visionCtx.b.build();
  }
  return { plan, decoder: decoderBuilder.build(), lens: lensBuilder.build(), vision };
}

export class LoadedModel {
  private constructor(
    readonly info: ModelInfo,
    readonly text: TextProcessor,
    private readonly plan: ArchitecturePlan,
    private readonly decoder: GraphSession,
    private readonly lensSession: GraphSession,
    private readonly vision: GraphSession | undefined,
    private readonly imagePipeline: ImagePipeline | undefined,
    readonly eosTokenIds: ReadonlySet<number>,
    readonly timings: { compileMs: number; sessionMs: number },
    private readonly openUnembedding: () => Promise<GraphSession>,
    private readonly logitsBudget: number,
  ) {}

  private unembedding?: Promise<GraphSession>;
  /**
   * The last few preprocessed image files, by path, modification time and size: a live preview
   * or a sweep runs one image with many prompts, and decoding plus resampling is 10-15 ms a run.
   */
  private readonly preparedImages = new Map<string, { rgb: { width: number; height: number }; vision: PreparedImage }>();

  static async open(folder: string, opts: OpenOptions = {}): Promise<LoadedModel> {
    const progress = opts.onProgress ?? (() => {});
    const dir = path.resolve(folder);
    const stat = await fs.stat(dir).catch(() => undefined);
    if (!stat) throw new LensInputError(dir, "model folder does not exist: pass a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)");
    if (!stat.isDirectory()) throw new LensInputError(dir, "is a file, not a model folder: pass the folder that holds config.json");

    const t0 = performance.now();
    progress("reading config");
    const configFile = path.join(dir, "config.json");
    // The folder's small files are read at once, and the tokenizer built meanwhile; their
    // errors are still reported in this order.
    const processorRead = readJsonObject(path.join(dir, "processor_config.json"), "processor_config.json", true);
    const preprocessorFile = path.join(dir, "preprocessor_config.json");
    const reads = await Promise.allSettled([
      readJsonObject(configFile, "config.json"),
      WeightIndex.open(dir),
      processorRead,
      readJsonObject(path.join(dir, "generation_config.json"), "generation_config.json", true),
      readInputFile(configFile, { maxBytes: 64 * MIB, what: "config.json", fix: "re-download the model" }),
      readJsonObject(preprocessorFile, "preprocessor_config.json", true),
      processorRead.then((processorConfig) => TextProcessor.open(dir, processorConfig)),
    ] as const);
    const config = settledValue(reads[0]);
    const { module } = findArchitecture(config["architectures"], configFile);
    const weights = new ModelWeights(settledValue(reads[1]), configFile);
    const processorConfig = settledValue(reads[2]);
    const generationConfig = settledValue(reads[3]);
    const configHash = createHash("sha256").update(settledValue(reads[4])).digest("hex");
    const text = settledValue(reads[6]);

    progress("compiling graphs");
    // device (h-device): auto becomes the provider it really runs on before graphs are built for it
    const device = await resolveDevice(opts.device ?? "auto");
    const computeDtype = chooseComputeDtype(opts.dtype ?? "auto", dir);
    const compile = (halfWeightsPerUse: boolean) => compileGraphs(module, config, configFile, weights, { rankMethod: opts.rankMethod, provider: intendedProvider(device), halfWeightsPerUse });
    let { plan, decoder: decoderGraph, lens: lensGraph, vision: visionGraph } = compile(false);
    // dtype float32 always makes float32 copies (refused when they cannot fit)
    const forcedPlan: WeightPlan | undefined = opts.dtype === "float32" ? "float32" : opts.weightPlan;
    const memory = planMemory(weights.index, plan.decoder, contextLengthOf(config)?.length, opts.logitsBudget ?? LOGITS_BUDGET, { ...opts, weightPlan: forcedPlan });
    // the graphs are compiled again (tens of ms) when the weights stay half: each cast then waits for its layer
    if (memory.estimate.plan === "half-per-use") ({ plan, decoder: decoderGraph, lens: lensGraph, vision: visionGraph } = compile(true));

    let imagePipeline: ImagePipeline | undefined;
    if (plan.vision || plan.imagePipeline) {
      // Hub folders keep preprocessor_config.json; transformers 5 nests it in processor_config.json.
      const nested = processorConfig?.["image_processor"];
      const preprocessorConfig = settledValue(reads[5]); // its errors matter only to a vision model
      const imageProcessor = preprocessorConfig
        ? { json: preprocessorConfig, file: preprocessorFile }
        : isObject(nested)
          ? { json: nested, file: path.join(dir, "processor_config.json") }
          : { json: await readJsonObject(preprocessorFile, "preprocessor_config.json"), file: preprocessorFile }; // throws: missing
      imagePipeline = plan.imagePipeline
        ? plan.imagePipeline({ folder: dir, imageProcessor, processorConfig, text })
        : clipImagePipeline(plan, parseClipProcessorConfig(imageProcessor.json, imageProcessor.file), processorConfig, text, dir);
    }
    const t1 = performance.now();

    progress("creating sessions");
    // No memory arena for the decoder and vision tower: the weights are memory-mapped, so
    // activations are what an arena would pin; returning them after each run halves the peak
    // (bench:lens). The lens graph's working set is bounded (LOGITS_BUDGET, then one position's
    // statistics at a time), and an arena of its own keeps those blocks instead of leaving the
    // C allocator to hold on to freed chunks (bench:lens peak RSS 650-870 MiB without it,
    // 660-730 with it).
    const sessionOptions = {
      weightsFolder: weights.index.dataFolder,
      device,
      threads: opts.threads,
      prepackWeights: opts.prepackWeights,
      memoryArena: false,
      foldConstants: memory.estimate.plan === "float32",
    };
    // The NaN/Inf scan of the small tensors (weights.ts) runs beside session creation; its
    // error, if any, wins, and the sessions made meanwhile are released.
    const opened = await Promise.allSettled([
      openGraphSession(decoderGraph, sessionOptions),
      openGraphSession(lensGraph, { ...sessionOptions, memoryArena: true }),
      visionGraph ? openGraphSession(visionGraph, sessionOptions) : Promise.resolve(undefined),
      weights.scanSmallTensors(),
    ] as const);
    if (opened.some((r) => r.status === "rejected")) {
      const sessions = [opened[0], opened[1], opened[2]].flatMap((r) => (r.status === "fulfilled" && r.value ? [r.value] : []));
      await Promise.all(sessions.map((session) => session.release()));
      const scan = opened[3];
      throw scan.status === "rejected" ? scan.reason : opened.find((r) => r.status === "rejected")!.reason;
    }
    const [decoder, lensSession, vision] = [settledValue(opened[0]), settledValue(opened[1]), settledValue(opened[2])];
    const t2 = performance.now();

    const eos = eosIds(generationConfig, config, text);
    const info: ModelInfo = {
      folder: dir,
      architecture: plan.architecture,
      dtype: dominantDtype(weights.index),
      computeDtype,
      weightPlan: memory.estimate.plan,
      memory: { estimateBytes: memory.estimate.totalBytes, availableBytes: memory.available, reason: memory.reason },
      provider: decoder.provider,
      device: decoder.device,
      numLayers: plan.decoder.numLayers,
      numHeads: plan.decoder.numHeads,
      hiddenSize: plan.decoder.hiddenSize,
      vocabSize: plan.decoder.vocabSize,
      weightBytes: weights.index.totalBytes(),
      configHash,
      contextLength: contextLengthOf(config),
      imageGrid: plan.vision && {
        rows: plan.vision.imageSize / plan.vision.patchSize,
        cols: plan.vision.imageSize / plan.vision.patchSize,
        leadingCls: plan.vision.tokensPerImage === (plan.vision.imageSize / plan.vision.patchSize) ** 2 + 1,
      },
    };
    // Full logits are for callers that want whole distributions (parity checks); a lens run
    // never needs them, so their session (a second mapping of the unembedding) opens on first use.
    const openUnembedding = () => {
      const unembedBuilder = new GraphBuilder("unembedding");
      buildUnembeddingGraph({ b: unembedBuilder, weights }, plan.lens);
      return openGraphSession(unembedBuilder.build(), sessionOptions);
    };
    return new LoadedModel(info, text, plan, decoder, lensSession, vision, imagePipeline, eos, { compileMs: t1 - t0, sessionMs: t2 - t1 }, openUnembedding, opts.logitsBudget ?? LOGITS_BUDGET);
  }

  get hasVision(): boolean {
    return this.vision !== undefined;
  }

  /** Renders, expands and tokenizes the prompt, and preprocesses the image, as transformers' processor does. */
  async prepare(input: { prompt: string; image?: string | Uint8Array | RgbImage; maxNewTokens?: number }): Promise<PreparedInput> {
    if (input.image !== undefined && !this.vision) {
      throw new LensInputError(this.info.folder, `${this.info.architecture} is a text-only model and cannot take an image: drop --image or pick a vision-language model`);
    }
    let rendered = await this.text.renderPrompt(input.prompt, input.image !== undefined);
    const fits = (ids: number[], imageTokens: number) => {
      checkContextLength({ promptTokens: ids.length, imageTokens, maxNewTokens: input.maxNewTokens ?? 0, context: this.info.contextLength, configFile: path.join(this.info.folder, "config.json") });
      return ids;
    };
    if (input.image === undefined || !this.imagePipeline) return { renderedPrompt: rendered, inputIds: fits(this.text.encodePrompt(rendered), 0) };
    const { rgb, vision } = await this.preprocessImage(input.image, this.imagePipeline);
    const token = this.imagePipeline.imageToken;
    rendered = rendered.split(token).join(vision.promptText ?? token.repeat(vision.tokenCount));
    return {
      renderedPrompt: rendered,
      inputIds: fits(this.text.encodePrompt(rendered), vision.tokenCount),
      pixelValues: vision.pixelValues,
      image: { width: rgb.width, height: rgb.height },
      vision,
    };
  }

  private async preprocessImage(image: string | Uint8Array | RgbImage, pipeline: ImagePipeline): Promise<{ rgb: { width: number; height: number }; vision: PreparedImage }> {
    if (isRgbImage(image) || typeof image !== "string") {
      const rgb = isRgbImage(image) ? image : await decodeImage(image);
      return { rgb, vision: pipeline.preprocess(rgb) };
    }
    const stat = await fs.stat(image).catch(() => undefined);
    const key = stat && `${path.resolve(image)}|${stat.mtimeMs}|${stat.size}`;
    const hit = key && this.preparedImages.get(key);
    if (hit) return hit;
    const rgb = await decodeImage(image);
    const prepared = { rgb: { width: rgb.width, height: rgb.height }, vision: pipeline.preprocess(rgb) };
    if (key) {
      this.preparedImages.set(key, prepared);
      if (this.preparedImages.size > PREPARED_IMAGES) this.preparedImages.delete(this.preparedImages.keys().next().value!);
    }
    return prepared;
  }

  /** Projected image features [tokens, hidden] for a preprocessed image. */
  async encodeImage(image: PreparedImage): Promise<ImageFeatures> {
    if (!this.vision) throw new Error("encodeImage called on a model without a vision tower");
    const out = await this.vision.run(image.feeds, ["image_features"]);
    const { frames, rows, cols } = image.grid;
    return { ...out["image_features"], grids: [{ frames, rows, cols }] };
  }

  emptyCache(): KvCache {
    const { numLayers, numKvHeads, headDim } = this.plan.decoder;
    const empty = (): HostTensor => ({ data: new Float32Array(0), dims: [1, numKvHeads, 0, headDim] });
    return { keys: Array.from({ length: numLayers }, empty), values: Array.from({ length: numLayers }, empty), length: 0, positionDelta: 0 };
  }

  get numHeads(): number {
    return this.plan.decoder.numHeads;
  }

  get imageTokenId(): number | undefined {
    return this.plan.imageTokenId;
  }

  /** One decoder call over `ids` (at positions cache.length..), reporting what `opts.positions` asks for. */
  async forward(ids: readonly number[], opts: ForwardOptions = {}): Promise<ForwardResult> {
    const cache = opts.cache ?? this.emptyCache();
    const positions = opts.positions ?? [ids.length - 1];
    const { numLayers, numHeads } = this.plan.decoder;
    const total = cache.length + ids.length;
    const segmentCount = opts.segmentCount ?? 1;
    const segments = new Float32Array(total * segmentCount);
    for (let t = 0; t < total; t++) segments[t * segmentCount + (opts.keySegments?.[t] ?? 0)] = 1;
    const imageKeys = opts.imageKeys ?? [];
    const feeds: Record<string, HostTensor> = {
      input_ids: { data: BigInt64Array.from(ids, BigInt), dims: [ids.length] },
      output_positions: { data: BigInt64Array.from(positions, BigInt), dims: [positions.length] },
      key_segments: { data: segments, dims: [total, segmentCount] },
      image_key_positions: { data: BigInt64Array.from(imageKeys, BigInt), dims: [imageKeys.length] },
      head_mask: { data: opts.headMask ?? new Float32Array(numLayers * numHeads).fill(1), dims: [numLayers, numHeads] },
    };
    if (this.plan.imageTokenId !== undefined) {
      const expected = ids.filter((t) => t === this.plan.imageTokenId).length;
      const features = opts.imageFeatures ?? { data: new Float32Array(0), dims: [0, this.plan.decoder.hiddenSize] };
      // A decode step without features embeds a generated image token as text (the graph does).
      const decoding = cache.length > 0 && opts.imageFeatures === undefined;
      if (!decoding && features.dims[0] !== expected) {
        throw new LensInputError(this.text.chatTemplate?.file, `the prompt holds ${expected} image tokens but the image gives ${features.dims[0]} features: the chat template must place exactly one image`);
      }
      feeds["image_features"] = { data: features.data, dims: features.dims };
    }
    let positionDelta = cache.positionDelta ?? 0;
    const multi = this.plan.positions;
    if (multi && cache.length === 0) {
      const grids = opts.imageFeatures && "grids" in opts.imageFeatures ? opts.imageFeatures.grids : [];
      const prefill = multi.prefill(ids, grids);
      positionDelta = prefill.delta;
      feeds["position_ids"] = { data: BigInt64Array.from(prefill.positions.flat(), BigInt), dims: [multi.axes, ids.length] };
    } else {
      const row = Array.from(ids, (_, i) => cache.length + i + positionDelta);
      const axes = multi?.axes ?? 1;
      feeds["position_ids"] = { data: BigInt64Array.from(Array<number[]>(axes).fill(row).flat(), BigInt), dims: multi ? [axes, ids.length] : [ids.length] };
    }
    for (let i = 0; i < numLayers; i++) {
      feeds[`past_key.${i}`] = cache.keys[i];
      feeds[`past_value.${i}`] = cache.values[i];
    }
    const out = await this.decoder.run(feeds);
    const hiddenStates = out["hidden_states"].data as Float32Array;
    // The next token, from the lens graph's unembedding of the last position's final state.
    const H = this.plan.decoder.hiddenSize;
    const K = positions.length;
    const nextToken = K ? await this.greedyNext(hiddenStates.slice((numLayers * K + K - 1) * H, (numLayers * K + K) * H)) : undefined;
    return {
      hiddenStates,
      attentionMass: out["attention_mass"].data as Float32Array,
      imageAttention: out["image_attention"].data as Float32Array,
      nextToken,
      positions: [...positions],
      cache: {
        keys: cache.keys.map((_, i) => out[`present_key.${i}`]),
        values: cache.values.map((_, i) => out[`present_value.${i}`]),
        length: total,
        positionDelta,
      },
    };
  }

  /**
   * The logit lens over hidden states [L+1, K, H] (transformers' convention): top-k, entropy,
   * KL to the final layer, cosine to the final state, probability and rank of targets ([K, T];
   * -1 = the final top-1), and probability and rank of the tracked tokens: `tracked` and, with
   * `trackTopK`, every token that is some row's top-k (`LensStats.tracked`, sorted).
   *
   * Every row is unembedded once: the logits of all rows stay inside the graph while it finds
   * the tokens to track and works out the statistics a position at a time. Only past
   * LOGITS_BUDGET does it split the rows into parts, and then, when it tracks the top-k, it
   * unembeds twice: once for the top-k of every part, once for the statistics.
   */
  async lens(hiddenStates: Float32Array, opts: { topK: number; targets?: readonly (readonly number[])[]; tracked?: readonly number[]; trackTopK?: boolean }): Promise<LensStats> {
    const { numLayers, hiddenSize: H, vocabSize: V } = this.plan.decoder;
    const layers = numLayers + 1;
    const K = hiddenStates.length / (layers * H);
    const topK = Math.min(opts.topK, V);
    const T = opts.targets?.[0]?.length ?? 1;
    const perPosition = layers * V;
    const partSize = Math.max(1, Math.floor(this.logitsBudget / (perPosition * 4)));
    const run = (start: number, n: number, mode: { full: boolean; tracked: readonly number[]; trackTopK: boolean }) => {
      const states = new Float32Array(layers * n * H);
      for (let l = 0; l < layers; l++) states.set(hiddenStates.subarray((l * K + start) * H, (l * K + start + n) * H), l * n * H);
      const targets = new BigInt64Array(n * T);
      for (let p = 0; p < n; p++) for (let t = 0; t < T; t++) targets[p * T + t] = BigInt(opts.targets?.[start + p]?.[t] ?? -1);
      return this.runLensGraph({ data: states, dims: [layers, n, H] }, { data: targets, dims: [n, T] }, { topK, ...mode });
    };
    const starts = Array.from({ length: Math.ceil(K / partSize) }, (_, i) => i * partSize);
    let tracked = opts.tracked ?? [];
    let trackTopK = opts.trackTopK ?? false;
    if (trackTopK && starts.length > 1) {
      const union = new Set(tracked);
      for (const start of starts) for (const id of (await run(start, Math.min(partSize, K - start), { full: false, tracked: [], trackTopK: false }))["topk_ids"].data as BigInt64Array) union.add(Number(id));
      tracked = [...union].sort((a, b) => a - b);
      trackTopK = false;
    }
    const parts: Record<string, HostTensor>[] = [];
    for (const start of starts) parts.push(await run(start, Math.min(partSize, K - start), { full: true, tracked, trackTopK }));
    const trackedIds = Array.from(parts[0]["tracked"].data as BigInt64Array, Number);
    const M = trackedIds.length;
    const join = <A extends Float32Array | BigInt64Array | Int32Array>(name: string, perRow: number, byLayer: boolean): A => {
      const first = parts[0][name].data as A;
      const out = new (first.constructor as new (n: number) => A)(byLayer ? layers * K * perRow : K * perRow);
      if (perRow === 0) return out;
      let offset = 0;
      for (const part of parts) {
        const data = part[name].data as A;
        const n = byLayer ? data.length / (layers * perRow) : data.length / perRow;
        if (byLayer) {
          for (let l = 0; l < layers; l++) out.set(data.subarray(l * n * perRow, (l + 1) * n * perRow) as never, (l * K + offset) * perRow);
        } else {
          out.set(data as never, offset * perRow);
        }
        offset += n;
      }
      return out;
    };
    return {
      topK,
      topkIds: join("topk_ids", topK, true),
      topkProbs: join("topk_probs", topK, true),
      entropy: join("entropy", 1, true),
      kl: join("kl", 1, true),
      cosine: join("cosine", 1, true),
      targets: join("targets", T, false),
      targetProb: join("target_prob", T, true),
      targetRank: join<Int32Array>("target_rank", T, true),
      tracked: trackedIds,
      trackedProb: join("tracked_prob", M, true),
      trackedRank: join<Int32Array>("tracked_rank", M, true),
    };
  }

  /** The greedy next token from one final-layer state [H]: the lens graph's top-1 over that single row. */
  private async greedyNext(finalState: Float32Array): Promise<number> {
    const states = { data: finalState, dims: [1, 1, this.plan.decoder.hiddenSize] };
    const out = await this.runLensGraph(states, { data: new BigInt64Array(1), dims: [1, 1] }, { topK: 1, full: false, tracked: [], trackTopK: false });
    return Number((out["topk_ids"].data as BigInt64Array)[0]);
  }

  /** One run of the lens graph (its inputs are documented in lensGraph.ts). */
  private runLensGraph(states: HostTensor, targets: HostTensor, opts: { topK: number; full: boolean; tracked: readonly number[]; trackTopK: boolean }): Promise<Record<string, HostTensor>> {
    return this.lensSession.run({
      hidden_states: states,
      top_k: { data: BigInt64Array.of(BigInt(opts.topK)), dims: [1] },
      target_ids: targets,
      tracked_ids: { data: BigInt64Array.from(opts.tracked, BigInt), dims: [opts.tracked.length] },
      track_topk: { data: Uint8Array.of(opts.trackTopK ? 1 : 0), dims: [] },
      full: { data: Uint8Array.of(opts.full ? 1 : 0), dims: [] },
    });
  }

  /** The final logits [K, vocab] of a forward result's positions (hidden states [L+1, K, H]). */
  async logits(forward: Pick<ForwardResult, "hiddenStates" | "positions">): Promise<Float32Array> {
    const { numLayers, hiddenSize: H } = this.plan.decoder;
    const K = forward.positions.length;
    this.unembedding ??= this.openUnembedding();
    const out = await (await this.unembedding).run({ final_states: { data: forward.hiddenStates.slice(numLayers * K * H), dims: [K, H] } });
    return out["logits"].data as Float32Array;
  }

  /** Image features for a prepared input (none for text-only input). */
  async imageFeaturesFor(prepared: PreparedInput): Promise<ImageFeatures | undefined> {
    return prepared.vision ? this.encodeImage(prepared.vision) : undefined;
  }

  /**
   * Greedy decoding with the KV cache: one prefill, then one decoder step per new token,
   * stopping after `maxNewTokens` or at an end-of-sequence token (which is kept, as
   * transformers' generate keeps it).
   */
  async generate(prepared: PreparedInput, maxNewTokens: number, imageFeatures?: HostTensor | ImageFeatures): Promise<number[]> {
    const features = imageFeatures ?? (await this.imageFeaturesFor(prepared));
    let step = await this.forward(prepared.inputIds, { imageFeatures: features });
    const tokens: number[] = [];
    for (let n = 0; n < maxNewTokens; n++) {
      const token = step.nextToken!;
      tokens.push(token);
      if (this.eosTokenIds.has(token) || n === maxNewTokens - 1) break;
      step = await this.forward([token], { cache: step.cache });
    }
    return tokens;
  }

  async dispose(): Promise<void> {
    await this.decoder.release();
    await this.lensSession.release();
    await this.vision?.release();
    await (await this.unembedding)?.release();
  }
}

/** Index of the largest value; the first one on ties, as torch.argmax. */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function isRgbImage(x: unknown): x is RgbImage {
  return isObject(x) && x["data"] instanceof Uint8Array && typeof x["width"] === "number";
}

/**
 * LLaVA's image pipeline: CLIP preprocessing to one NCHW image, and the placeholder expanded as
 * LlavaProcessor computes it: (H // patch) * (W // patch) + num_additional_image_tokens, minus
 * one for the "default" strategy (which drops CLS). It must agree with what the vision graph yields.
 */
function clipImagePipeline(
  plan: ArchitecturePlan,
  imageConfig: ClipProcessorConfig,
  processorConfig: JsonObject | undefined,
  text: TextProcessor,
  dir: string,
): ImagePipeline {
  const { imageToken, imageTokensPerImage } = imageTokenLayout(plan, imageConfig, processorConfig, text, dir);
  const vision = plan.vision!;
  const side = vision.imageSize / vision.patchSize;
  return {
    imageToken,
    preprocess: (rgb) => {
      const { pixelValues, shape } = preprocessClip(rgb, imageConfig);
      return {
        feeds: { pixel_values: { data: pixelValues, dims: shape } },
        pixelValues: { data: pixelValues, shape },
        processedSize: { width: shape[3], height: shape[2] },
        tokenCount: imageTokensPerImage,
        grid: { frames: 1, rows: side, cols: side, leadingCls: vision.tokensPerImage === side * side + 1 },
      };
    },
  };
}

function imageTokenLayout(
  plan: ArchitecturePlan,
  imageConfig: ClipProcessorConfig,
  processorConfig: JsonObject | undefined,
  text: TextProcessor,
  dir: string,
): { imageToken: string; imageTokensPerImage: number } {
  const file = path.join(dir, "processor_config.json");
  const pc = processorConfig ?? {};
  const vision = plan.vision!;
  const imageToken = typeof pc["image_token"] === "string" ? pc["image_token"] : "<image>";
  const tokenId = text.tokenToId(imageToken);
  if (tokenId !== plan.imageTokenId) {
    throw new LensInputError(path.join(dir, "tokenizer.json"), `the image token ${imageToken} has id ${tokenId} but config.json says ${plan.imageTokenId}: the tokenizer does not belong to this model`);
  }
  const patch = cfgNumber(pc, "patch_size", file, vision.patchSize);
  const additional = cfgNumber(pc, "num_additional_image_tokens", file, 1);
  const strategy = typeof pc["vision_feature_select_strategy"] === "string" ? pc["vision_feature_select_strategy"] : "default";
  const crop = imageConfig.doCenterCrop ? imageConfig.cropSize : "height" in imageConfig.size ? imageConfig.size : { height: vision.imageSize, width: vision.imageSize };
  const count = Math.floor(crop.height / patch) * Math.floor(crop.width / patch) + additional - (strategy === "default" ? 1 : 0);
  if (count !== vision.tokensPerImage) {
    throw new LensInputError(file, `the processor expands an image to ${count} tokens but the vision tower yields ${vision.tokensPerImage}: the processor config does not match config.json`);
  }
  return { imageToken, imageTokensPerImage: count };
}

function eosIds(generationConfig: JsonObject | undefined, config: JsonObject, text: TextProcessor): Set<number> {
  const textConfig = isObject(config["text_config"]) ? config["text_config"] : {};
  for (const source of [generationConfig?.["eos_token_id"], config["eos_token_id"], textConfig["eos_token_id"]]) {
    if (typeof source === "number") return new Set([source]);
    if (Array.isArray(source)) return new Set(source.filter((x): x is number => typeof x === "number"));
  }
  const fromTokenizer = text.eosTokenId;
  return new Set(fromTokenizer === undefined ? [] : [fromTokenizer]);
}

/**
 * The weight plan and memory estimate of a model about to open; refuses with one line when the
 * model cannot fit, before any session allocates. Tokens: the context length up to 2,048 (a
 * LLaVA-1.5 record is about 600, Qwen2-VL's grow with the image).
 */
function planMemory(
  index: WeightIndex,
  decoder: ArchitecturePlan["decoder"],
  contextLength: number | undefined,
  logitsBudget: number,
  opts: OpenOptions,
): { estimate: MemoryEstimate; available: number; reason: string } {
  let f32Bytes = 0;
  let halfBytes = 0;
  let largestHalfBytes = 0;
  let intermediate = 0;
  for (const name of index.names()) {
    const e = index.get(name);
    if (e.dtype === "F16" || e.dtype === "BF16") {
      halfBytes += e.byteLength;
      largestHalfBytes = Math.max(largestHalfBytes, e.byteLength);
    } else f32Bytes += e.byteLength;
    if (/\.mlp\.(up_proj|fc1|gate_proj)\.weight$/.test(name) && e.shape.length === 2) intermediate = Math.max(intermediate, e.shape[0]);
  }
  const footprint: ModelFootprint = {
    f32Bytes,
    halfBytes,
    largestHalfBytes,
    layers: decoder.numLayers,
    kvHeads: decoder.numKvHeads,
    headDim: decoder.headDim,
    hidden: decoder.hiddenSize,
    intermediate: intermediate || 4 * decoder.hiddenSize,
    vocab: decoder.vocabSize,
    tokens: Math.min(contextLength ?? 2048, 2048),
    logitsBudget,
  };
  const available =
    opts.availableMemory ??
    availableMemory((file) => {
      try {
        return readFileSync(file, "utf8");
      } catch {
        return undefined;
      }
    }, os.freemem);
  const choice = chooseCpuPlan(footprint, available, opts.weightPlan);
  if ("refused" in choice) throw new LensInputError(index.folder, choice.refused);
  return { estimate: choice.estimate, available, reason: `${choice.reason}; needs about ${formatGB(choice.estimate.totalBytes)}` };
}

/**
 * The dtype the graphs compute in for a dtype choice: float32 for auto and float32. Half
 * precision does not compute in half here: onnxruntime's CPU provider has no float16 kernels
 * for Gemm or MatMul on x64 (it inserts casts to float32 around them, and drops a Cast pair
 * float32 -> float16 -> float32 as redundant, so even rounding the activations does not happen:
 * seen with onnxruntime-node 1.30, a float16 product of 1.0001 x 1 gave 1.0001), and none at all
 * for bfloat16. So both are refused with what to use instead; on a GPU they are not built yet.
 */
function chooseComputeDtype(choice: DtypeChoice, folder: string): "float32" {
  if (!(DTYPE_CHOICES as readonly string[]).includes(choice)) throw new LensInputError(undefined, `unknown dtype "${String(choice)}": choose one of ${DTYPE_CHOICES.join(", ")}`);
  if (choice === "float16" || choice === "bfloat16") {
    throw new LensInputError(
      folder,
      `dtype ${choice} cannot compute in ${choice} here: onnxruntime has no ${choice} kernels for matrix products on this provider; use dtype auto (half-precision weights stay half in memory when float32 copies do not fit, and compute in float32)`,
    );
  }
  return "float32";
}

function dominantDtype(index: WeightIndex): string {
  const bytes = new Map<string, number>();
  for (const name of index.names()) {
    const e = index.get(name);
    bytes.set(e.dtype, (bytes.get(e.dtype) ?? 0) + e.byteLength);
  }
  return [...bytes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "unknown";
}
