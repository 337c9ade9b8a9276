/**
 * The engine: everything about where and in what form a model runs. It decides the weight plan
 * from the memory that is free, compiles the architecture's graphs for the provider, creates
 * the onnxruntime sessions (with their fed float32 weights), holds the KV cache between decoder
 * calls, and runs the graphs. Input preparation (model/inputPreparation.ts) and the lens run
 * (lens/) know nothing of providers, dtypes or sessions; adding a provider touches this file
 * and runtime/ort.ts, adding an architecture touches neither.
 */
import { readFileSync } from "node:fs";
import * as os from "node:os";
import type { ArchitectureModule, ArchitecturePlan, ImageTokenGrid, PreparedImage } from "../arch/types";
import type { JsonObject } from "../arch/configUtil";
import { LensInputError } from "../errors";
import { type ComputeDtype, type GraphCtx, type HalfWeights, halfProductsWidened } from "../graph/blocks";
import { buildLensGraph, buildUnembeddingGraph, type RankMethod } from "../graph/lensGraph";
import { GraphBuilder, type BuiltGraph, type FedWeight } from "../graph/onnxBuilder";
import type { WeightIndex } from "../model/safetensors";
import type { ModelWeights } from "../model/weights";
import { availableMemory, chooseCpuPlan, estimateMemory, formatGB, halfComputePlan, type MemoryEstimate, type ModelFootprint, type WeightPlan } from "../runtime/memoryEstimate";
import type { DeviceDescription } from "../../shared/lensRecord";
import { type Device, type DeviceTensor, type FeedTensor, type GraphSession, type HostTensor, intendedProvider, isDeviceTensor, openGraphSession, type SessionOptions } from "../runtime/ort";
import { contextLengthOf } from "../text/limits";
import { DTYPE_CHOICES, type DtypeChoice } from "../../shared/protocol";
import { Activity, StoppedError } from "./activity";
import { FedWeights } from "./fedWeights";

export interface EngineOptions {
  device?: Device;
  threads?: number;
  /** Prepack weights for onnxruntime's GEMM kernels (slower open; see bench:runtime). */
  prepackWeights?: boolean;
  /** How the lens graph computes ranks (default: by vocabulary size); both are exact. For tests. */
  rankMethod?: RankMethod;
  /** Bytes of logits a lens run keeps in the graph at once; sizes the memory estimate. */
  logitsBudget: number;
  /** How half-precision weights are held on the CPU (default: by the memory that is free). */
  weightPlan?: WeightPlan;
  /** Bytes of memory taken as free, instead of reading the machine's. For tests. */
  availableMemory?: number;
  /** The compute dtype; default auto. */
  dtype?: DtypeChoice;
  /** The GPU's free memory, where known (nvidia-smi); a model that cannot fit is refused before anything is allocated. */
  gpuMemory?: GpuMemory;
  /** The WebGPU adapter's capabilities, where known (float16 needs shader-f16). */
  webgpu?: WebgpuCapabilities;
  /** Keep the KV cache in device memory between decoder calls where the provider can (WebGPU; default true). false copies it to the host each call (bench:kvcache's baseline). */
  kvCacheOnDevice?: boolean;
  /**
   * When the CPU's float32 copies of half-precision weights are made, where the plan has them
   * (auto, when they fit): "at-open" (default), or "in-background": the engine opens with the
   * weights kept half (converted per use, the same float32 numbers), makes the copies while it
   * is not in use, and moves to them (Engine.float32Copies).
   */
  float32Copies?: "at-open" | "in-background";
}

/**
 * The keys and values of every position so far, per layer [1, kvHeads, length, headDim]. On
 * WebGPU they stay in device memory (DeviceTensor: no host data, fed back as they are), and the
 * engine holds them until they are released (Engine.releaseCache, a decode with consumeCache,
 * Engine.releaseCaches, or Engine.dispose); host tensors need no release.
 */
export interface KvCache {
  keys: FeedTensor[];
  values: FeedTensor[];
  length: number;
  /** What a later token adds to its index to get its rotary position (M-RoPE's rope_deltas; 0 otherwise). */
  positionDelta?: number;
}

/** One decoder call's inputs beside the token ids (see LoadedModel.forward for their meaning). */
export interface DecoderCall {
  cache: KvCache;
  positions: readonly number[];
  keySegments?: readonly number[];
  segmentCount: number;
  imageKeys: readonly number[];
  headMask?: Float32Array;
  /** Image features [tokens, hidden] for the image tokens in the ids, with their grids (M-RoPE needs them). */
  imageFeatures?: HostTensor;
  grids: readonly ImageTokenGrid[];
  /** A head whose whole attention rows to report (DecoderOutput.headRows); none by default. */
  patternHead?: number;
  /** The cache is not used again after this call (a decode loop moving on): its device memory is freed once the new cache exists. */
  consumeCache?: boolean;
}

export interface DecoderOutput {
  /** transformers' hidden_states for the requested positions: [L+1, K, hidden], flattened. */
  hiddenStates: Float32Array;
  attentionMass: Float32Array;
  imageAttention: Float32Array;
  /** With DecoderCall.patternHead: that head's attention of each requested query over every key, [L, K, total]. */
  headRows?: Float32Array;
  cache: KvCache;
}

/** A model's three graphs (decoder, lens, vision tower if any), compiled from its config and weights; no session yet. */
export function compileGraphs(
  module: ArchitectureModule,
  config: JsonObject,
  configFile: string,
  weights: ModelWeights,
  opts: { rankMethod?: RankMethod; provider?: GraphCtx["provider"]; halfWeights?: HalfWeights; compute?: ComputeDtype } = {},
): { plan: ArchitecturePlan; decoder: BuiltGraph; lens: BuiltGraph; vision?: BuiltGraph } {
  const { provider, halfWeights, compute } = opts;
  const ctxOf = (b: GraphBuilder): GraphCtx => ({ b, weights, provider, halfWeights, compute });
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

/**
 * How half-precision weights reach the graphs for a weight plan on a provider. The CPU widens
 * them itself and feeds the copies ("fed"); a GPU provider needs them as initializers on the
 * device, so there they stay a Cast that onnxruntime folds at load.
 */
function halfWeightsFor(plan: WeightPlan, provider: "cpu" | "cuda" | "webgpu"): HalfWeights {
  if (plan === "half-per-use") return "per-use";
  return provider === "cpu" ? "fed" : "cast";
}

/** A model's graphs and memory plan, before any session exists. */
export interface PlannedEngine extends ReturnType<typeof compileGraphs> {
  memory: { estimate: MemoryEstimate; available: number; reason: string };
  halfWeights: HalfWeights;
  computeDtype: ComputeDtype;
  /** Loads what the graphs need and creates the sessions; `stage` hears "converting ..." (float32 copies) and "creating sessions". */
  start(beside: () => Promise<unknown>, stage?: (stage: string) => void): Promise<Engine>;
}

/** A model's sessions in one weight plan, with the float32 copies they are fed. */
interface Tier {
  weightPlan: WeightPlan;
  /** Why the weights are held so (the memory plan's reason). */
  reason: string;
  decoder: GraphSession;
  lensSession: GraphSession;
  vision: GraphSession | undefined;
  /** Opens the full-logits session, on first use. */
  openUnembedding: () => Promise<GraphSession>;
  unembedding?: Promise<GraphSession>;
  fed: FedWeights;
}

/** The float32 copies an engine makes after it opened (EngineOptions.float32Copies "in-background"). */
interface Upgrade {
  done: Promise<boolean>;
  /** Why they are not in use, once making them failed. */
  failure?: string;
  /** Milliseconds from the open to the copies in use, and of that, widening and creating sessions. */
  timings?: { readyMs: number; widenMs: number; sessionMs: number };
}

export class Engine {
  private constructor(
    readonly plan: ArchitecturePlan,
    private readonly estimate: { estimateBytes: number; availableBytes: number },
    readonly computeDtype: ComputeDtype,
    private tier: Tier,
    /** Milliseconds spent widening fed weights, and creating sessions. */
    readonly timings: { widenMs: number; sessionMs: number },
  ) {}

  /** Caches with device tensors that are not released yet: freed by releaseCaches and dispose whatever callers forgot. */
  private readonly liveCaches = new Set<KvCache>();
  private readonly activity = new Activity();
  private upgrade?: Upgrade;
  private disposed?: Promise<void>;

  /**
   * Compiles the graphs and plans memory, refusing a model that cannot fit before anything is
   * allocated. The sessions open with `start` on what this returns.
   */
  static plan(module: ArchitectureModule, config: JsonObject, configFile: string, weights: ModelWeights, opts: EngineOptions): PlannedEngine {
    const device = opts.device ?? "auto";
    const provider = intendedProvider(device);
    let computeDtype = chooseComputeDtype(opts.dtype ?? "auto", weights.index, provider, opts.webgpu);
    const compile = (halfWeights: HalfWeights) => compileGraphs(module, config, configFile, weights, { rankMethod: opts.rankMethod, provider, halfWeights, compute: computeDtype });
    // float32 copies made later (EngineOptions.float32Copies): the engine opens kept half, whose
    // sessions compute the same float32 numbers (test/parity/halfWeights.test.ts)
    const background = opts.float32Copies === "in-background" && opts.weightPlan === undefined && provider === "cpu" && computeDtype === "float32" && halfStorageDtype(weights.index) !== undefined;
    // the plan's shapes come from a first compile; it is compiled again (tens of ms) when the plan calls for another form of the half weights
    const firstForm = computeDtype === "float32" ? (background ? "per-use" : halfWeightsFor("float32", provider)) : "cast";
    let compiled = compile(firstForm);
    // dtype float32 always makes float32 copies (refused when they cannot fit); half compute holds the weights in its dtype
    const forcedPlan: WeightPlan | undefined = computeDtype !== "float32" ? "half" : opts.dtype === "float32" ? "float32" : opts.weightPlan;
    const planFor = (compute: ComputeDtype, forced: WeightPlan | undefined) =>
      planMemory(weights.index, compiled.plan.decoder, contextLengthOf(config)?.length, opts.logitsBudget, forced, opts.availableMemory, compute, provider, provider === "cpu" ? undefined : opts.gpuMemory);
    let memory = planFor(computeDtype, forcedPlan);
    // auto on the CPU, a float16 checkpoint whose float32 copies do not fit: it computes in its own
    // float16 (the kept-half plan's memory less a float32 KV cache; bench:real on LLaVA-1.5-7B:
    // 1.23x the files of RSS against 1.34x, and a little faster). A bfloat16 checkpoint stays in
    // float32 compute: its activations may not fit float16's range.
    if ((opts.dtype ?? "auto") === "auto" && opts.weightPlan === undefined && provider === "cpu" && memory.estimate.plan === "half-per-use" && halfStorageDtype(weights.index) === "F16") {
      const kept = { memory, compiled };
      computeDtype = "float16";
      compiled = compile("cast");
      try {
        memory = planFor("float16", "half");
        const why = `as float32 they would need about ${formatGB(estimateMemory(kept.memory.footprint, "float32").totalBytes)} and ${formatGB(kept.memory.available)} is free`;
        memory = { ...memory, reason: `auto computes in the checkpoint's float16 (${why}), each weight product widened to float32 where it runs; needs about ${formatGB(memory.estimate.totalBytes)}` };
      } catch {
        // it fits kept half but not in float16 (never seen: float16 needs less): keep the first plan
        ({ memory, compiled } = kept);
        computeDtype = "float32";
      }
    }
    const halfWeights = computeDtype === "float32" ? halfWeightsFor(memory.estimate.plan, provider) : "cast";
    if (background && halfWeights === "fed") {
      const kept = compiled;
      const needs = `needs about ${formatGB(memory.estimate.totalBytes)}`;
      const opening = { ...memory, reason: `half-precision weights kept half until their float32 copies are made, in the background; ${needs}` };
      const later = `half-precision weights converted to float32 after the open, in the background; ${needs}`;
      return {
        ...kept,
        memory: opening,
        halfWeights: "per-use",
        computeDtype,
        start: async (beside, stage) => {
          const engine = await Engine.start(kept, weights, opts, opening, { weightPlan: "half-per-use", halfWeights: "per-use" }, computeDtype, beside, stage ?? (() => {}));
          engine.makeCopiesLater(() => compile("fed"), weights, opts, later);
          return engine;
        },
      };
    }
    if (halfWeights !== firstForm) compiled = compile(halfWeights);
    return { ...compiled, memory, halfWeights, computeDtype, start: (beside, stage) => Engine.start(compiled, weights, opts, memory, { weightPlan: memory.estimate.plan, halfWeights }, computeDtype, beside, stage ?? (() => {})) };
  }

  /**
   * Widens the fed weights and opens the sessions. `beside` runs while the sessions are created
   * (the NaN/Inf scan of small tensors); its error wins over theirs, and sessions made meanwhile
   * are released.
   */
  private static async start(
    compiled: ReturnType<typeof compileGraphs>,
    weights: ModelWeights,
    opts: EngineOptions,
    memory: PlannedEngine["memory"],
    form: { weightPlan: WeightPlan; halfWeights: HalfWeights },
    computeDtype: ComputeDtype,
    beside: () => Promise<unknown>,
    stage: (stage: string) => void,
  ): Promise<Engine> {
    const { tier, timings } = await openTier(compiled, weights, opts, form, memory.reason, computeDtype, { beside, stage });
    return new Engine(compiled.plan, { estimateBytes: memory.estimate.totalBytes, availableBytes: memory.available }, computeDtype, tier, timings);
  }

  /**
   * Makes the float32 copies and their sessions while the engine is quiet (engine/activity.ts),
   * then moves to them, between uses, and releases the kept-half sessions. The numbers do not
   * change: both compute in float32 over the same widened values.
   */
  private makeCopiesLater(compile: () => ReturnType<typeof compileGraphs>, weights: ModelWeights, opts: EngineOptions, reason: string): void {
    const t0 = performance.now();
    const upgrade: Upgrade = { done: Promise.resolve(false) };
    const quiet = async () => {
      do await this.activity.whenQuiet();
      while (!this.activity.quietNow);
    };
    upgrade.done = (async () => {
      try {
        await quiet();
        const { tier, timings } = await openTier(compile(), weights, opts, { weightPlan: "float32", halfWeights: "fed" }, reason, this.computeDtype, { gate: quiet, pausedFlag: this.activity.pausedFlag });
        try {
          await quiet();
        } catch (e) {
          await releaseTier(tier);
          throw e;
        }
        const kept = this.tier;
        this.tier = tier;
        upgrade.timings = { readyMs: performance.now() - t0, ...timings };
        await releaseTier(kept);
        return true;
      } catch (e) {
        if (!(e instanceof StoppedError) && !this.activity.stopped) upgrade.failure = e instanceof Error ? e.message : String(e);
        return false;
      }
    })();
    this.upgrade = upgrade;
  }

  /** How the weights are held now. */
  get weightPlan(): WeightPlan {
    return this.tier.weightPlan;
  }

  /** What the model was estimated to need before it opened, what was free then, and why it holds its weights as it does now. */
  get memory(): { estimateBytes: number; availableBytes: number; reason: string } {
    return { ...this.estimate, reason: this.tier.reason };
  }

  /** The plan the engine moves to once its float32 copies exist, while they are being made. */
  get pendingWeightPlan(): WeightPlan | undefined {
    return this.upgrade && this.tier.weightPlan !== "float32" && this.upgrade.failure === undefined && !this.activity.stopped ? "float32" : undefined;
  }

  /** Why the float32 copies made in the background are not in use, if making them failed. */
  get copiesFailure(): string | undefined {
    return this.upgrade?.failure;
  }

  /** Milliseconds until the background float32 copies were in use, once they are. */
  get copiesTimings(): Upgrade["timings"] {
    return this.upgrade?.timings;
  }

  /**
   * Resolves true once the float32 copies made in the background are in use, false when there
   * are none to wait for (none planned, failed: copiesFailure, or disposed). `hurry`: make them
   * now, whatever the use (a caller that has many runs to do).
   */
  float32Copies(opts: { hurry?: boolean } = {}): Promise<boolean> {
    if (!this.upgrade) return Promise.resolve(false);
    if (opts.hurry) this.activity.hurry();
    // the background work's own timers do not keep a process alive; a caller waiting for it does
    const alive = setInterval(() => {}, 2 ** 30);
    return this.upgrade.done.finally(() => clearInterval(alive));
  }

  /** Marks the engine in use until the returned function is called: background work waits (a request of many runs). */
  busy(): () => void {
    return this.activity.begin();
  }

  /** The execution provider the decoder really runs on. */
  get provider(): string {
    return this.tier.decoder.provider;
  }

  /** The device behind the provider (adapter name and memory where known). */
  get device(): DeviceDescription {
    return this.tier.decoder.device;
  }

  /** Bytes of float32 copies of half-precision weights the engine made and feeds (the CPU's float32 plan). */
  get fedBytes(): number {
    return this.tier.fed.bytes;
  }

  get hasVision(): boolean {
    return this.tier.vision !== undefined;
  }

  /** Projected image features [tokens, hidden] for a preprocessed image. */
  async encodeImage(image: PreparedImage): Promise<HostTensor> {
    const { vision } = this.tier;
    if (!vision) throw new Error("encodeImage called on a model without a vision tower");
    return (await this.activity.during(() => vision.run(image.feeds, ["image_features"])))["image_features"];
  }

  emptyCache(): KvCache {
    const { numLayers, numKvHeads, headDim } = this.plan.decoder;
    // the cache's dtype is the decoder's (arch/llama.ts): float16 in float16 compute, else float32
    const empty = (): HostTensor =>
      this.computeDtype === "float16" ? { data: new Uint16Array(0), type: "float16", dims: [1, numKvHeads, 0, headDim] } : { data: new Float32Array(0), dims: [1, numKvHeads, 0, headDim] };
    return { keys: Array.from({ length: numLayers }, empty), values: Array.from({ length: numLayers }, empty), length: 0, positionDelta: 0 };
  }

  /** One decoder call over `ids` (at positions cache.length..), returning the new cache. */
  async decode(ids: readonly number[], call: DecoderCall): Promise<DecoderOutput> {
    const { cache, positions, segmentCount } = call;
    const { numLayers, numHeads } = this.plan.decoder;
    const total = cache.length + ids.length;
    const segments = new Float32Array(total * segmentCount);
    for (let t = 0; t < total; t++) segments[t * segmentCount + (call.keySegments?.[t] ?? 0)] = 1;
    const feeds: Record<string, FeedTensor> = {
      input_ids: { data: BigInt64Array.from(ids, BigInt), dims: [ids.length] },
      output_positions: { data: BigInt64Array.from(positions, BigInt), dims: [positions.length] },
      key_segments: { data: segments, dims: [total, segmentCount] },
      image_key_positions: { data: BigInt64Array.from(call.imageKeys, BigInt), dims: [call.imageKeys.length] },
      head_mask: { data: call.headMask ?? new Float32Array(numLayers * numHeads).fill(1), dims: [numLayers, numHeads] },
      pattern_head: { data: BigInt64Array.of(BigInt(call.patternHead ?? 0)), dims: [1] },
    };
    if (this.plan.imageTokenId !== undefined) {
      const features = call.imageFeatures ?? { data: new Float32Array(0), dims: [0, this.plan.decoder.hiddenSize] };
      feeds["image_features"] = { data: features.data, dims: features.dims };
    }
    let positionDelta = cache.positionDelta ?? 0;
    const multi = this.plan.positions;
    if (multi && cache.length === 0) {
      const prefill = multi.prefill(ids, call.grids);
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
    // head_rows is fetched only when asked for: [L, K, total] would be copied out on every call
    const { decoder } = this.tier;
    const fetches = call.patternHead === undefined ? decoder.outputNames.filter((n) => n !== "head_rows") : decoder.outputNames;
    const { host, device } = await this.activity.during(() => decoder.runWithDeviceOutputs(feeds, fetches));
    const present = (name: string): FeedTensor => device[name] ?? host[name];
    const next: KvCache = {
      keys: cache.keys.map((_, i) => present(`present_key.${i}`)),
      values: cache.values.map((_, i) => present(`present_value.${i}`)),
      length: total,
      positionDelta,
    };
    if (Object.keys(device).length > 0) this.liveCaches.add(next);
    if (call.consumeCache) this.releaseCache(cache, next);
    return {
      hiddenStates: host["hidden_states"].data as Float32Array,
      attentionMass: host["attention_mass"].data as Float32Array,
      imageAttention: host["image_attention"].data as Float32Array,
      ...(call.patternHead !== undefined ? { headRows: host["head_rows"].data as Float32Array } : {}),
      cache: next,
    };
  }

  /**
   * Frees a cache's device tensors (none on the CPU); decoding from it afterwards fails saying so.
   * Tensors that `kept` also holds stay (a cache that was passed through unchanged).
   */
  releaseCache(cache: KvCache, kept?: KvCache): void {
    const keep = new Set<FeedTensor>(kept ? [...kept.keys, ...kept.values] : []);
    for (const t of [...cache.keys, ...cache.values]) if (isDeviceTensor(t) && !keep.has(t)) t.dispose();
    this.liveCaches.delete(cache);
  }

  /** Frees every cache that still holds device memory (at the end of a run, and on dispose). */
  releaseCaches(): void {
    for (const cache of [...this.liveCaches]) this.releaseCache(cache);
  }

  /** Device tensors of caches not released yet (for tests and diagnostics). */
  get heldCacheTensors(): DeviceTensor[] {
    return [...this.liveCaches].flatMap((c) => [...c.keys, ...c.values].filter(isDeviceTensor)).filter((t) => !t.disposed);
  }

  /** One run of the lens graph (its inputs are documented in lensGraph.ts). */
  runLensGraph(states: HostTensor, targets: HostTensor, opts: { topK: number; full: boolean; tracked: readonly number[]; trackTopK: boolean }): Promise<Record<string, HostTensor>> {
    const { lensSession } = this.tier;
    return this.activity.during(() =>
      lensSession.run({
        hidden_states: states,
        top_k: { data: BigInt64Array.of(BigInt(opts.topK)), dims: [1] },
        target_ids: targets,
        tracked_ids: { data: BigInt64Array.from(opts.tracked, BigInt), dims: [opts.tracked.length] },
        track_topk: { data: Uint8Array.of(opts.trackTopK ? 1 : 0), dims: [] },
        full: { data: Uint8Array.of(opts.full ? 1 : 0), dims: [] },
      }),
    );
  }

  /** Full logits [K, vocab] of final states [K, hidden]. */
  async unembed(finalStates: HostTensor): Promise<Float32Array> {
    const tier = this.tier;
    const out = await this.activity.during(async () => (await (tier.unembedding ??= tier.openUnembedding())).run({ final_states: finalStates }));
    return out["logits"].data as Float32Array;
  }

  /** Releases the sessions and copies, after ending background work; once, however often it is called. */
  dispose(): Promise<void> {
    this.disposed ??= (async () => {
      this.activity.stop();
      await this.upgrade?.done;
      this.releaseCaches();
      await releaseTier(this.tier);
    })();
    return this.disposed;
  }
}

/** The fed weights of a model's graphs. */
function fedWeightsOf(compiled: ReturnType<typeof compileGraphs>): FedWeight[] {
  return [compiled.decoder, compiled.lens, compiled.vision].flatMap((g) => g?.fedWeights ?? []);
}

/**
 * A tier's fed weights widened (engine/fedWeights.ts) and its sessions opened. At open, `beside`
 * runs while the sessions are created and its error wins over theirs; in the background, `gate`
 * and `pausedFlag` hold the widening while the engine is in use. Whatever fails, nothing made
 * is kept.
 */
async function openTier(
  compiled: ReturnType<typeof compileGraphs>,
  weights: ModelWeights,
  opts: EngineOptions,
  { weightPlan, halfWeights }: { weightPlan: WeightPlan; halfWeights: HalfWeights },
  reason: string,
  computeDtype: ComputeDtype,
  how: { beside?: () => Promise<unknown>; stage?: (stage: string) => void; gate?: () => Promise<void>; pausedFlag?: Int32Array },
): Promise<{ tier: Tier; timings: { widenMs: number; sessionMs: number } }> {
  const device = opts.device ?? "auto";
  const provider = intendedProvider(device);
  const stage = how.stage ?? (() => {});
  const { plan, decoder: decoderGraph, lens: lensGraph, vision: visionGraph } = compiled;
  const t0 = performance.now();
  const fed = new FedWeights(weights.index);
  const fedWeights = fedWeightsOf(compiled);
  // the float32 copies take most of such an open (seconds per GB here): say so, with their size
  const fedEntries = fed.toLoad(fedWeights);
  if (fedEntries.length > 0) {
    const halfBytes = fedEntries.reduce((n, e) => n + e.byteLength, 0);
    const dtypes = [...new Set(fedEntries.map((e) => (e.dtype === "BF16" ? "bfloat16" : "float16")))].join(" and ");
    stage(`converting ${formatGB(halfBytes)} of ${dtypes} weights to float32 copies (${formatGB(2 * halfBytes)})`);
  }
  await fed.load(fedWeights, { gate: how.gate, pausedFlag: how.pausedFlag });
  if (how.gate) {
    try {
      await how.gate();
    } catch (e) {
      fed.release();
      throw e;
    }
  }
  const t1 = performance.now();
  stage("creating sessions");

  // No memory arena for the decoder and vision tower: the weights are memory-mapped, so
  // activations are what an arena would pin; returning them after each run halves the peak
  // (bench:lens). The lens graph's working set is bounded (the logits budget, then one
  // position's statistics at a time), and an arena of its own keeps those blocks instead of
  // leaving the C allocator to hold on to freed chunks (bench:lens peak RSS 650-870 MiB
  // without it, 660-730 with it).
  const sessionOptions: SessionOptions = {
    weightsFolder: weights.index.dataFolder,
    device,
    threads: opts.threads,
    prepackWeights: opts.prepackWeights,
    memoryArena: false,
    // a weight converted per use must not be folded into a resident copy at load (onnxruntime
    // folds inside an If's branches too): the half-per-use plan and float16 on the CPU
    foldConstants: weightPlan !== "half-per-use" && !halfProductsWidened(provider, computeDtype),
  };
  const open = (graph: BuiltGraph, options: SessionOptions) => openGraphSession(graph, options).then((s) => withFedWeights(s, fed.feeds(graph.fedWeights)));
  const opened = await Promise.allSettled([
    // the KV cache (present_*, fed back as past_*) stays on the device; everything the host reads comes back
    open(decoderGraph, { ...sessionOptions, deviceOutputs: opts.kvCacheOnDevice === false ? [] : kvOutputNames(plan.decoder.numLayers) }),
    open(lensGraph, { ...sessionOptions, memoryArena: true }),
    visionGraph ? open(visionGraph, sessionOptions) : Promise.resolve(undefined),
    (how.beside ?? (async () => undefined))(),
  ] as const);
  if (opened.some((r) => r.status === "rejected")) {
    const sessions = [opened[0], opened[1], opened[2]].flatMap((r) => (r.status === "fulfilled" && r.value ? [r.value] : []));
    await Promise.all(sessions.map((session) => session.release()));
    fed.release();
    const scan = opened[3];
    throw scan.status === "rejected" ? scan.reason : opened.find((r) => r.status === "rejected")!.reason;
  }
  const value = <T>(r: PromiseSettledResult<T>): T => (r as PromiseFulfilledResult<T>).value;
  const t2 = performance.now();
  // Full logits are for callers that want whole distributions (parity checks); a lens run
  // never needs them, so their session (a second mapping of the unembedding) opens on first use.
  const openUnembedding = async () => {
    const b = new GraphBuilder("unembedding");
    buildUnembeddingGraph({ b, weights, provider, halfWeights, compute: computeDtype }, plan.lens);
    const graph = b.build();
    await fed.load(graph.fedWeights);
    return open(graph, sessionOptions);
  };
  const tier: Tier = { weightPlan, reason, decoder: value(opened[0]), lensSession: value(opened[1]), vision: value(opened[2]), openUnembedding, fed };
  return { tier, timings: { widenMs: t1 - t0, sessionMs: t2 - t1 } };
}

/** Releases a tier's sessions and float32 copies. */
async function releaseTier(tier: Tier): Promise<void> {
  await tier.decoder.release();
  await tier.lensSession.release();
  await tier.vision?.release();
  await (await tier.unembedding?.catch(() => undefined))?.release();
  tier.fed.release();
}

/** The decoder's cache outputs (arch/llama.ts), the ones kept on the device. */
function kvOutputNames(numLayers: number): string[] {
  return Array.from({ length: numLayers }, (_, i) => [`present_key.${i}`, `present_value.${i}`]).flat();
}

/** A session whose every run is also fed `weights` (the float32 copies the engine made). */
function withFedWeights(session: GraphSession, weights: Record<string, HostTensor>): GraphSession {
  if (Object.keys(weights).length === 0) return session;
  const fedNames = new Set(Object.keys(weights));
  return {
    provider: session.provider,
    device: session.device,
    inputNames: session.inputNames.filter((n) => !fedNames.has(n)),
    outputNames: session.outputNames,
    deviceOutputs: session.deviceOutputs,
    run: (feeds, fetches) => session.run({ ...feeds, ...weights }, fetches),
    runWithDeviceOutputs: (feeds, fetches) => session.runWithDeviceOutputs({ ...feeds, ...weights }, fetches),
    release: () => session.release(),
  };
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
  weightPlan: WeightPlan | undefined,
  availableBytes: number | undefined,
  compute: ComputeDtype,
  provider: "cpu" | "cuda" | "webgpu",
  gpu?: GpuMemory,
): { estimate: MemoryEstimate; available: number; reason: string; footprint: ModelFootprint } {
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
    availableBytes ??
    availableMemory((file) => {
      try {
        return readFileSync(file, "utf8");
      } catch {
        return undefined;
      }
    }, os.freemem);
  // float16 on the CPU widens each weight product where it runs (blocks.ts widensHalfProducts)
  const choice = compute === "float32" ? chooseCpuPlan(footprint, available, weightPlan) : halfComputePlan(footprint, available, compute, "free", halfProductsWidened(provider, compute));
  if ("refused" in choice) throw new LensInputError(index.folder, choice.refused);
  let reason = `${choice.reason}; needs about ${formatGB(choice.estimate.totalBytes)}`;
  if (gpu) {
    const onDevice = checkGpuMemory(footprint, compute, gpu);
    if ("refused" in onDevice) throw new LensInputError(index.folder, onDevice.refused);
    reason += `; ${onDevice.reason}`;
  }
  return { estimate: choice.estimate, available, reason, footprint };
}

/** The GPU's memory where it is known (nvidia-smi: CUDA, or WebGPU on an NVIDIA adapter). */
export interface GpuMemory {
  name: string;
  freeBytes: number;
}

/**
 * Whether the weights, KV cache and activations fit in the GPU's free memory in the compute
 * dtype; refused with one line that says what would fit (float16 where the model computes in
 * float32, else a bigger GPU or the CPU).
 */
export function checkGpuMemory(footprint: ModelFootprint, compute: ComputeDtype, gpu: GpuMemory): { reason: string } | { refused: string } {
  const need = estimateMemory(footprint, compute === "float32" ? "float32" : "half").totalBytes;
  // a twentieth of the GPU stays free for the driver, the display and other programs
  if (need <= gpu.freeBytes * 0.95) return { reason: `${formatGB(need)} of the ${formatGB(gpu.freeBytes)} free on ${gpu.name}` };
  const half = estimateMemory(footprint, "half").totalBytes;
  const fix = compute === "float32" && half <= gpu.freeBytes * 0.95 ? `use dtype float16 (about ${formatGB(half)})` : compute === "float32" ? `use dtype float16 and a GPU with ${formatGB(half / 0.95)}, or device cpu` : `use a GPU with ${formatGB(need / 0.95)}, or device cpu`;
  return { refused: `needs about ${formatGB(need)} of GPU memory in ${compute} and ${formatGB(gpu.freeBytes)} is free on ${gpu.name}: ${fix}` };
}

/**
 * The dtype the graphs compute in for a dtype choice on a provider.
 * - auto: float32 on the CPU (whose half-precision weights are widened, or kept half and
 *   converted per use when float32 copies do not fit; Engine.plan then moves a float16
 *   checkpoint to float16 compute); on a GPU the checkpoint's own half
 *   precision (bfloat16 becomes float16 on WebGPU, which has no bfloat16 kernels), float32 for
 *   a float32 checkpoint.
 * - float16: on every provider. The CPU provider has no float16 kernels for matrix products on
 *   x64: onnxruntime casts around them to float32 and drops the cast pairs between such nodes,
 *   so on the CPU a float16 graph computes in float32 over weights and inputs rounded to
 *   float16 (test/parity/halfCompute.test.ts states the bounds this gives against transformers).
 * - bfloat16: CUDA only; onnxruntime's CPU and WebGPU providers have no bfloat16 kernels.
 * On a WebGPU adapter without shader-f16 auto is float32 and float16 is refused.
 */
export function chooseComputeDtype(
  choice: DtypeChoice,
  index: Pick<WeightIndex, "folder" | "names" | "get">,
  provider: "cpu" | "cuda" | "webgpu",
  webgpu: WebgpuCapabilities = {},
): ComputeDtype {
  if (!(DTYPE_CHOICES as readonly string[]).includes(choice)) throw new LensInputError(undefined, `unknown dtype "${String(choice)}": choose one of ${DTYPE_CHOICES.join(", ")}`);
  // WebGPU computes float16 only on an adapter with shader-f16 (SwiftShader has none)
  const noF16 = provider === "webgpu" && webgpu.shaderF16 === false;
  switch (choice) {
    case "float32":
      return choice;
    case "float16":
      if (noF16) throw new LensInputError(index.folder, `dtype float16 on WebGPU needs an adapter with shader-f16, and ${webgpu.adapter ?? "this adapter"} has none: use dtype float32 (or auto), or device cpu`);
      return choice;
    case "bfloat16":
      if (provider === "cuda") return "bfloat16";
      throw new LensInputError(index.folder, `dtype bfloat16 computes only on CUDA: onnxruntime's ${provider === "cpu" ? "CPU" : "WebGPU"} provider has no bfloat16 kernels; use dtype float16 or float32 (or auto)`);
    case "auto": {
      if (provider === "cpu" || noF16) return "float32";
      const half = halfStorageDtype(index);
      if (!half) return "float32";
      return half === "BF16" && provider === "cuda" ? "bfloat16" : "float16";
    }
  }
}

/** What the WebGPU adapter can do, where it is known (runtime/webgpuAdapter.ts). */
export interface WebgpuCapabilities {
  shaderF16?: boolean;
  adapter?: string;
}

/** The half-precision dtype most of a checkpoint's bytes are stored in, if most are half. */
function halfStorageDtype(index: Pick<WeightIndex, "names" | "get">): "F16" | "BF16" | undefined {
  const bytes = { F16: 0, BF16: 0, other: 0 };
  for (const name of index.names()) {
    const e = index.get(name);
    if (e.dtype === "F16" || e.dtype === "BF16") bytes[e.dtype] += e.byteLength;
    else bytes.other += e.byteLength;
  }
  if (bytes.F16 + bytes.BF16 <= bytes.other) return undefined;
  return bytes.BF16 > bytes.F16 ? "BF16" : "F16";
}
