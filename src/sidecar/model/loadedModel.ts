/**
 * A model folder opened for inference: the three parts of the runtime put together. The engine
 * (engine/engine.ts) owns the sessions, provider, weight plan and KV cache; input preparation
 * (inputPreparation.ts) renders, tokenizes and preprocesses; the lens read-outs
 * (lens/lensReadout.ts) turn decoder states into statistics. This class reads the folder,
 * wires them, and offers the steps of one run (prepare -> vision -> decoder prefill -> greedy
 * decode with the KV cache) that the lens run and the tests drive.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { findArchitecture } from "../arch";
import { isObject, type JsonObject } from "../arch/configUtil";
import type { ArchitecturePlan, ImagePipeline, ImageTokenGrid, PreparedImage } from "../arch/types";
import { Engine, type GpuMemory, type KvCache, type WebgpuCapabilities } from "../engine/engine";
import { LensInputError } from "../errors";
import type { RankMethod } from "../graph/lensGraph";
import type { RgbImage } from "../image/decode";
import { LensReadout, logitsBudgetFor, type LensStats } from "../lens/lensReadout";
import type { WeightPlan } from "../runtime/memoryEstimate";
import { type Device, type HostTensor, resolveDevice } from "../runtime/ort";
import { contextLengthOf } from "../text/limits";
import { TextProcessor } from "../text/textProcessor";
import { MIB, readInputFile } from "../util/readInput";
import type { DtypeChoice } from "../../shared/protocol";
import type { ComputeDtype } from "../graph/blocks";
import { adapterName, webgpuAdapter } from "../runtime/webgpuAdapter";
import { nvidiaGpu } from "../runtime/devices";
import type { DeviceDescription } from "../../shared/lensRecord";
import { InputPreparer, type PreparedInput } from "./inputPreparation";
import { readJsonObject, settledValue } from "./jsonFile";
import { WeightIndex } from "./safetensors";
import { ModelWeights } from "./weights";

export { compileGraphs, type KvCache } from "../engine/engine";
export type { LensStats } from "../lens/lensReadout";
export type { PreparedInput } from "./inputPreparation";

export interface OpenOptions {
  device?: Device;
  /** The GPU's free memory, instead of asking nvidia-smi. For tests. */
  gpuMemory?: GpuMemory;
  /** The WebGPU adapter's capabilities, instead of asking Dawn (a float16 graph's placement on SwiftShader, say). For tests. */
  webgpu?: WebgpuCapabilities;
  threads?: number;
  /** Prepack weights for onnxruntime's GEMM kernels (slower open; see bench:runtime). */
  prepackWeights?: boolean;
  /** Called with a short description of each loading stage. */
  onProgress?: (stage: string) => void;
  /** How the lens graph computes ranks (default: by vocabulary size); both are exact. For tests. */
  rankMethod?: RankMethod;
  /** Bytes of logits a lens run keeps in the graph at once (default logitsBudgetFor the provider); any bound gives the same record. For tests. */
  logitsBudget?: number;
  /**
   * How half-precision weights are held on the CPU (default: float32 copies when they fit in
   * the memory that is free, else a float16 checkpoint computes in float16 and a bfloat16 one
   * keeps its weights half, converted per use; see runtime/memoryEstimate). Given, it is kept.
   */
  weightPlan?: WeightPlan;
  /** Bytes of memory taken as free, instead of reading the machine's. For tests. */
  availableMemory?: number;
  /** The compute dtype (src/shared/protocol.ts DtypeChoice); default auto. */
  dtype?: DtypeChoice;
  /** Keep the KV cache in device memory between decoder calls where the provider can (WebGPU; default true). For bench:kvcache. */
  kvCacheOnDevice?: boolean;
  /**
   * When the CPU's float32 copies of half-precision weights are made, where they are planned:
   * "at-open" (default), or "in-background", after an open with the weights kept half (the
   * sidecar's choice: see Engine's EngineOptions.float32Copies and LoadedModel.float32Copies).
   */
  float32Copies?: "at-open" | "in-background";
}

/** Image features [tokens, hidden] and, per image in prompt order, the grid of its tokens. */
export interface ImageFeatures extends HostTensor {
  grids: readonly ImageTokenGrid[];
}

export interface ForwardResult {
  /** transformers' hidden_states for the requested positions: [L+1, K, hidden], flattened. */
  hiddenStates: Float32Array;
  /** Attention mass per layer, head, requested query and key segment: [L, heads, K, G]. */
  attentionMass: Float32Array;
  /** Head-averaged attention of each requested query on the given image keys: [L, K, NI]. */
  imageAttention: Float32Array;
  /** With ForwardOptions.patternHead: that head's attention of each requested query over every key, [L, K, keys]. */
  headRows?: Float32Array;
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
  /** A head whose whole attention rows to report, at every layer (ForwardResult.headRows). */
  patternHead?: number;
  /** `cache` is not used again (a decode loop moving on): its device memory is freed once the new cache exists. */
  consumeCache?: boolean;
}

export interface ModelInfo {
  folder: string;
  architecture: string;
  /** Storage dtype of the weights (the most common one). */
  dtype: string;
  /** The dtype the graphs compute in (the lens statistics are always accumulated in float32). */
  computeDtype: ComputeDtype;
  /** How the weights are held now: as float32 (half ones converted at open), or half and converted per use. */
  readonly weightPlan: WeightPlan;
  /** What the model was estimated to need before it opened, what was free then, and why the weights are held as they are now. */
  readonly memory: { estimateBytes: number; availableBytes: number; reason: string };
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

export class LoadedModel {
  private constructor(
    readonly info: ModelInfo,
    readonly engine: Engine,
    readonly inputs: InputPreparer,
    readonly readout: LensReadout,
    readonly eosTokenIds: ReadonlySet<number>,
    readonly timings: { compileMs: number; sessionMs: number },
  ) {}

  static async open(folder: string, opts: OpenOptions = {}): Promise<LoadedModel> {
    const progress = opts.onProgress ?? (() => {});
    const dir = path.resolve(folder);
    const stat = await fs.stat(dir).catch(() => undefined);
    if (!stat) throw new LensInputError(dir, "model folder does not exist: pass a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)");
    if (!stat.isDirectory()) throw new LensInputError(dir, "is a file, not a model folder: pass the folder that holds config.json");

    const t0 = performance.now();
    progress("reading config");
    const configFile = path.join(dir, "config.json");
    // The folder's small files are read at once. The text side (its tokenizer files read on a
    // worker thread when they are large) is built meanwhile and awaited only beside session
    // creation, so that it overlaps the graphs' compilation and the sessions. Errors still come
    // in the order of the reads, then the text side's, then the rest's: a failure after the
    // reads waits for the text side, whose error wins.
    const processorRead = readJsonObject(path.join(dir, "processor_config.json"), "processor_config.json", true);
    const textOpen = processorRead.then((processorConfig) => TextProcessor.open(dir, processorConfig));
    textOpen.catch(() => undefined);
    const reads = await Promise.allSettled([
      readJsonObject(configFile, "config.json"),
      WeightIndex.open(dir),
      processorRead,
      readJsonObject(path.join(dir, "generation_config.json"), "generation_config.json", true),
      readInputFile(configFile, { maxBytes: 64 * MIB, what: "config.json", fix: "re-download the model" }),
      readJsonObject(path.join(dir, "preprocessor_config.json"), "preprocessor_config.json", true),
    ] as const);
    const config = settledValue(reads[0]);
    const { module } = findArchitecture(config["architectures"], configFile);
    const weights = new ModelWeights(settledValue(reads[1]), configFile);
    const processorConfig = settledValue(reads[2]);
    const generationConfig = settledValue(reads[3]);
    const configHash = createHash("sha256").update(settledValue(reads[4])).digest("hex");

    let plan: ArchitecturePlan;
    let imagePipeline: Promise<ImagePipeline | undefined>;
    let engine: Engine;
    let logitsBudget: number;
    let t1 = 0;
    try {
      progress("compiling graphs");
      // auto becomes the provider it really runs on before graphs are built for it
      const device = await resolveDevice(opts.device ?? "auto");
      logitsBudget = opts.logitsBudget ?? logitsBudgetFor(device);
      const planned = Engine.plan(module, config, configFile, weights, {
        ...opts,
        device,
        logitsBudget,
        webgpu: device === "webgpu" ? (opts.webgpu ?? (await webgpuCapabilities())) : undefined,
        gpuMemory: opts.gpuMemory ?? (device === "cpu" ? undefined : await gpuMemoryOf(device)),
      });
      plan = planned.plan;
      imagePipeline = textOpen.then((text) => InputPreparer.imagePipelineFor(planned.plan, dir, text, processorConfig, () => settledValue(reads[5])));
      imagePipeline.catch(() => undefined);
      t1 = performance.now();
      // Beside session creation: the text side and the image pipeline, then the NaN/Inf scan of
      // the small tensors (weights.ts); their errors, in that order, win over the sessions'.
      const beside = () => Promise.allSettled([imagePipeline, weights.scanSmallTensors()]).then(([pipeline, scan]) => [settledValue(pipeline), settledValue(scan)]);
      engine = await planned.start(beside, progress);
    } catch (e) {
      const text = (await Promise.allSettled([textOpen]))[0];
      if (text.status === "fulfilled") text.value.close();
      throw text.status === "rejected" ? text.reason : e;
    }
    const t2 = performance.now();
    const text = await textOpen;

    const info: ModelInfo = {
      folder: dir,
      architecture: plan.architecture,
      dtype: dominantDtype(weights.index),
      computeDtype: engine.computeDtype,
      // the engine's now: it moves to float32 copies made in the background (float32Copies)
      get weightPlan() {
        return engine.weightPlan;
      },
      get memory() {
        return engine.memory;
      },
      provider: engine.provider,
      device: engine.device,
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
    const inputs = new InputPreparer(text, await imagePipeline, { folder: dir, architecture: plan.architecture, contextLength: info.contextLength, hasVision: engine.hasVision });
    const readout = new LensReadout(engine, plan.decoder, logitsBudget);
    return new LoadedModel(info, engine, inputs, readout, eosIds(generationConfig, config, text), { compileMs: t1 - t0, sessionMs: t2 - t1 });
  }

  get text(): TextProcessor {
    return this.inputs.text;
  }

  get hasVision(): boolean {
    return this.engine.hasVision;
  }

  /** Renders, expands and tokenizes the prompt, and preprocesses the image, as transformers' processor does. */
  prepare(input: { prompt: string; image?: string | Uint8Array | RgbImage; maxNewTokens?: number }): Promise<PreparedInput> {
    return this.inputs.prepare(input);
  }

  /** Projected image features [tokens, hidden] for a preprocessed image. */
  async encodeImage(image: PreparedImage): Promise<ImageFeatures> {
    const features = await this.engine.encodeImage(image);
    const { frames, rows, cols } = image.grid;
    return { ...features, grids: [{ frames, rows, cols }] };
  }

  /** Image features for a prepared input (none for text-only input). */
  async imageFeaturesFor(prepared: PreparedInput): Promise<ImageFeatures | undefined> {
    return prepared.vision ? this.encodeImage(prepared.vision) : undefined;
  }

  emptyCache(): KvCache {
    return this.engine.emptyCache();
  }

  get numHeads(): number {
    return this.engine.plan.decoder.numHeads;
  }

  get imageTokenId(): number | undefined {
    return this.engine.plan.imageTokenId;
  }

  /** One decoder call over `ids` (at positions cache.length..), reporting what `opts.positions` asks for. */
  async forward(ids: readonly number[], opts: ForwardOptions = {}): Promise<ForwardResult> {
    const cache = opts.cache ?? this.engine.emptyCache();
    const positions = opts.positions ?? [ids.length - 1];
    const imageTokenId = this.engine.plan.imageTokenId;
    if (imageTokenId !== undefined) {
      const expected = ids.filter((t) => t === imageTokenId).length;
      const given = opts.imageFeatures?.dims[0] ?? 0;
      // A decode step without features embeds a generated image token as text (the graph does).
      const decoding = cache.length > 0 && opts.imageFeatures === undefined;
      if (!decoding && given !== expected) {
        throw new LensInputError(this.text.chatTemplate?.file, `the prompt holds ${expected} image tokens but the image gives ${given} features: the chat template must place exactly one image`);
      }
    }
    const out = await this.engine.decode(ids, {
      cache,
      positions,
      keySegments: opts.keySegments,
      segmentCount: opts.segmentCount ?? 1,
      imageKeys: opts.imageKeys ?? [],
      headMask: opts.headMask,
      imageFeatures: opts.imageFeatures,
      grids: opts.imageFeatures && "grids" in opts.imageFeatures ? opts.imageFeatures.grids : [],
      patternHead: opts.patternHead,
      consumeCache: opts.consumeCache,
    });
    // The next token, from the lens graph's unembedding of the last position's final state.
    const { numLayers, hiddenSize: H } = this.engine.plan.decoder;
    const K = positions.length;
    const nextToken = K ? await this.readout.greedyNext(out.hiddenStates.slice((numLayers * K + K - 1) * H, (numLayers * K + K) * H)) : undefined;
    return { ...out, nextToken, positions: [...positions] };
  }

  /** The logit lens over hidden states [L+1, K, H] (see LensReadout.lens). */
  lens(hiddenStates: Float32Array, opts: { topK: number; targets?: readonly (readonly number[])[]; tracked?: readonly number[]; trackTopK?: boolean }): Promise<LensStats> {
    return this.readout.lens(hiddenStates, opts);
  }

  /** The final logits [K, vocab] of a forward result's positions (hidden states [L+1, K, H]). */
  logits(forward: Pick<ForwardResult, "hiddenStates" | "positions">): Promise<Float32Array> {
    return this.readout.logits(forward.hiddenStates, forward.positions.length);
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
    try {
      for (let n = 0; n < maxNewTokens; n++) {
        const token = step.nextToken!;
        tokens.push(token);
        if (this.eosTokenIds.has(token) || n === maxNewTokens - 1) break;
        step = await this.forward([token], { cache: step.cache, consumeCache: true });
      }
    } finally {
      this.releaseCache(step.cache);
    }
    return tokens;
  }

  /** Frees a cache's device memory (a no-op on the CPU); decoding from it afterwards fails. */
  releaseCache(cache: KvCache): void {
    this.engine.releaseCache(cache);
  }

  /** Frees every cache still held in device memory (Engine.releaseCaches). */
  releaseCaches(): void {
    this.engine.releaseCaches();
  }

  /**
   * Resolves true once float32 copies made in the background are in use (OpenOptions
   * float32Copies), false when there are none to wait for. `hurry`: make them now, even while the
   * model is in use (before many runs, whose every one they make faster).
   */
  float32Copies(opts: { hurry?: boolean } = {}): Promise<boolean> {
    return this.engine.float32Copies(opts);
  }

  /** Marks the model in use until the returned function is called: background work (the float32 copies) waits. */
  busy(): () => void {
    return this.engine.busy();
  }

  dispose(): Promise<void> {
    this.inputs.text.close();
    return this.engine.dispose();
  }
}

/** Index of the largest value; the first one on ties, as torch.argmax. */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
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

function dominantDtype(index: WeightIndex): string {
  const bytes = new Map<string, number>();
  for (const name of index.names()) {
    const e = index.get(name);
    bytes.set(e.dtype, (bytes.get(e.dtype) ?? 0) + e.byteLength);
  }
  return [...bytes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "unknown";
}

/** shader-f16 and the name of the WebGPU adapter, as Dawn answers (nothing when it cannot say). */
async function webgpuCapabilities(): Promise<{ shaderF16?: boolean; adapter?: string }> {
  const answer = await webgpuAdapter();
  return "adapter" in answer ? { shaderF16: answer.adapter.shaderF16, adapter: adapterName(answer.adapter) } : {};
}

/** The free memory of the GPU a provider runs on, where nvidia-smi can say (CUDA, or WebGPU on an NVIDIA adapter). */
async function gpuMemoryOf(provider: "cuda" | "webgpu"): Promise<GpuMemory | undefined> {
  if (provider === "webgpu") {
    const answer = await webgpuAdapter();
    if (!("adapter" in answer) || !/nvidia/i.test(answer.adapter.vendor)) return undefined;
  }
  const gpu = await nvidiaGpu();
  return gpu?.freeBytes !== undefined ? { name: gpu.name, freeBytes: gpu.freeBytes } : undefined;
}
