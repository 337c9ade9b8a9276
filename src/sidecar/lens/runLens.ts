/**
 * One lens run, start to finish: prepare the input, encode the image, prefill the decoder
 * (hidden states and attention read-outs for the analysed positions), decode greedily with the
 * KV cache (one step per token, each reporting its own position), then run the lens graph over
 * every analysed position and assemble the LensRecord.
 */
import { createHash } from "node:crypto";
import { mulberry32 } from "../../shared/seededRandom";
import * as path from "node:path";
import { LENS_RECORD_VERSION, type LensRecord, type LensSettings, type NumericBlock, SEGMENTS } from "../../shared/lensRecord";
import { LensInputError } from "../errors";
import type { LoadedModel } from "../model/loadedModel";
import { segmentTokens } from "../text/segments";
import type { PatternSource } from "./attentionPattern";
import { checkFinite } from "./finiteCheck";
import { MAX_IMAGE_BYTES, readInputFile } from "../util/readInput";

/**
 * What a lens run needs of an opened model: input preparation (prepare, text), decoder calls
 * and image features, and the lens read-outs. Which provider, dtype or weight plan runs them
 * is the engine's business (engine/engine.ts), never the lens run's.
 */
export type LensRunModel = Pick<LoadedModel, "info" | "text" | "imageTokenId" | "eosTokenIds" | "prepare" | "imageFeaturesFor" | "forward" | "releaseCache" | "lens">;

export type HeadMaskSpec =
  | { heads: Record<string, number[]> }
  | { strategy: "random"; count: number; seed: number }
  | { strategy: "topImage"; count: number };

export interface LensRunRequest {
  prompt: string;
  /** An image file path, or its bytes. */
  image?: string | Uint8Array;
  settings?: Partial<LensSettings>;
  headMask?: HeadMaskSpec;
}

/** Thrown when a run is cancelled between stages or decode steps. */
export class LensCancelledError extends Error {
  override readonly name = "LensCancelledError";
  constructor() {
    super("the run was cancelled");
  }
}

export interface LensRunHooks {
  /** Polled between stages and decode steps; true stops the run with LensCancelledError. */
  isCancelled?: () => boolean;
  onStage?: (stage: string) => void;
  /** Receives the analysed positions' hidden states [L+1, P, H], e.g. to track more tokens later. */
  keepHidden?: (hidden: Float32Array, positions: number[]) => void;
  /** Receives what computing a head's whole attention pattern later needs (attentionPattern.ts). */
  keepPatternSource?: (source: PatternSource) => void;
}

export const DEFAULT_SETTINGS: LensSettings = { positions: "afterImage", topK: 10, maxNewTokens: 8 };

/** A record block; a plain loop (Array.from with a mapping function was 20 ms of each bench:lens run). */
const block = (shape: number[], data: ArrayLike<number | bigint>): NumericBlock => {
  const out = new Array<number>(data.length);
  if (data instanceof BigInt64Array) for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  else for (let i = 0; i < data.length; i++) out[i] = data[i] as number;
  return { shape, data: out };
};

export async function runLens(model: LensRunModel, request: LensRunRequest, hooks: LensRunHooks = {}): Promise<LensRecord> {
  const settings = knownSettings(request.settings);
  if (!Number.isInteger(settings.topK) || settings.topK < 1) throw new LensInputError(undefined, `topK must be a positive integer, got ${settings.topK}`);
  if (!Number.isInteger(settings.maxNewTokens) || settings.maxNewTokens < 0) throw new LensInputError(undefined, `maxNewTokens must be 0 or more, got ${settings.maxNewTokens}`);
  const timings: Record<string, number> = {};
  const checkCancelled = () => {
    if (hooks.isCancelled?.()) throw new LensCancelledError();
  };
  const time = async <T>(stage: string, f: () => Promise<T>): Promise<T> => {
    checkCancelled();
    hooks.onStage?.(stage);
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      timings[stage] = (timings[stage] ?? 0) + performance.now() - t0;
    }
  };
  const { info, text } = model;
  const L = info.numLayers;
  const H = info.hiddenSize;

  const prepared = await time("prepare", () => model.prepare({ prompt: request.prompt, image: request.image, maxNewTokens: settings.maxNewTokens }));
  const ids = prepared.inputIds;
  const S = ids.length;
  const tokens = segmentTokens({
    ids,
    prompt: request.prompt,
    bosId: text.bosToken === undefined ? undefined : text.tokenToId(text.bosToken),
    imageTokenId: model.imageTokenId,
    imageGrid: prepared.vision?.grid ?? info.imageGrid,
    decode: (x) => text.decode(x),
    label: (id) => text.tokenLabel(id),
  });
  const segmentIndex = (i: number) => SEGMENTS.indexOf(tokens[i].segment);
  const imagePositions = tokens.flatMap((t, i) => (t.segment === "image" ? [i] : []));
  const lastImage = imagePositions.length ? imagePositions[imagePositions.length - 1] : -1;
  const promptPositions =
    settings.positions === "all" ? ids.map((_, i) => i) : settings.positions === "image" ? [...imagePositions] : ids.map((_, i) => i).filter((i) => i > lastImage);
  if (!promptPositions.includes(S - 1)) promptPositions.push(S - 1);
  const patchPositions = settings.patchLens ? imagePositions : [];
  const prefillPositions = [...new Set([...promptPositions, ...patchPositions])].sort((a, b) => a - b);
  const imageKeys = settings.imageAttention ? imagePositions : [];

  const features = await time("vision", () => model.imageFeaturesFor(prepared));
  const headMask = await time("headMask", () => resolveHeadMask(model, request.headMask, { ids, features, positions: promptPositions, keySegments: ids.map((_, i) => segmentIndex(i)) }));
  const maskArray = headMask ? maskToArray(headMask, L, info.numHeads) : undefined;

  const keySegments = ids.map((_, i) => segmentIndex(i));
  const prefill = await time("prefill", () =>
    model.forward(ids, { imageFeatures: features, positions: prefillPositions, keySegments, segmentCount: SEGMENTS.length, imageKeys, headMask: maskArray }),
  );
  const rowOf = new Map(prefillPositions.map((p, i) => [p, i]));

  // Greedy decoding: the first token comes from the prefill's last row; each further step
  // feeds the previous token and reports the lens rows of its own position.
  const V = info.vocabSize;
  const generated: number[] = [];
  const stepHidden: Float32Array[] = [];
  const stepAttention: Float32Array[] = [];
  const stepImageAttention: Float32Array[] = [];
  let stoppedBy: LensRecord["generation"]["stoppedBy"] = settings.maxNewTokens === 0 ? "none" : "maxNewTokens";
  // The whole-answer probability branches from the prefill's cache after decoding, so the loop
  // keeps it then; every other cache is freed as the loop moves on (device memory on WebGPU).
  const keepPrefill = Boolean(settings.answerProb && settings.target);
  let answerProb: number | undefined;
  try {
    await time("decode", async () => {
      let token = prefill.nextToken!;
      let cache = prefill.cache;
      try {
        for (let n = 0; n < settings.maxNewTokens; n++) {
          checkCancelled();
          generated.push(token);
          keySegments.push(SEGMENTS.indexOf("generated"));
          if (model.eosTokenIds.has(token)) {
            stoppedBy = "eos";
            break;
          }
          if (n === settings.maxNewTokens - 1) break;
          const consumeCache = cache !== prefill.cache || !keepPrefill;
          const step = await model.forward([token], { cache, positions: [0], keySegments, segmentCount: SEGMENTS.length, imageKeys, headMask: maskArray, consumeCache });
          stepHidden.push(step.hiddenStates);
          stepAttention.push(step.attentionMass);
          stepImageAttention.push(step.imageAttention);
          token = step.nextToken!;
          cache = step.cache;
        }
      } finally {
        if (cache !== prefill.cache) model.releaseCache(cache);
        if (!keepPrefill) model.releaseCache(prefill.cache);
      }
    });
    if (keepPrefill) answerProb = await time("answer", () => wholeAnswerProbability(model, settings.target!, prefill, rowOf.get(S - 1)!, maskArray, keySegments.slice(0, S)));
  } finally {
    model.releaseCache(prefill.cache);
  }

  // Analysed positions: the prompt's, then every position that predicted a generated token.
  const positions = [...promptPositions.sort((a, b) => a - b), ...stepHidden.map((_, t) => S + t)];
  const P = positions.length;
  const hidden = new Float32Array((L + 1) * P * H);
  const Kp = promptPositions.length;
  const Kf = prefillPositions.length;
  for (let l = 0; l <= L; l++) {
    promptPositions.forEach((p, j) => hidden.set(prefill.hiddenStates.subarray((l * Kf + rowOf.get(p)!) * H, (l * Kf + rowOf.get(p)! + 1) * H), (l * P + j) * H));
    stepHidden.forEach((h, t) => hidden.set(h.subarray(l * H, (l + 1) * H), (l * P + Kp + t) * H));
  }

  hooks.keepHidden?.(hidden, positions);
  // the tokens every analysed position saw: the prompt, then each generated token that was fed back
  const seen = [...ids, ...generated.slice(0, stepHidden.length)];
  hooks.keepPatternSource?.({ ids: seen, positions, keySegments: keySegments.slice(0, seen.length), imageFeatures: features, headMask: maskArray });

  const target = settings.target ? targetVariants(model, settings.target) : undefined;
  const trackedExtra = (settings.trackTokens ?? []).map((t) => firstTokenOf(model, t));
  // Tracked: every token that is top-k anywhere in the record (which includes each position's
  // final top-1, the default target), the word target's variants and the user's tokens.
  const stats = await time("lens", () => model.lens(hidden, { topK: settings.topK, targets: target && positions.map(() => target.ids), tracked: [...(target?.ids ?? []), ...trackedExtra], trackTopK: true }));

  // A word target covers several tokenizations; per position keep the variant the final layer likes best.
  const T = target?.ids.length ?? 1;
  const chosen = positions.map((_, j) => {
    let best = 0;
    for (let v = 1; v < T; v++) if (stats.targetProb[(L * P + j) * T + v] > stats.targetProb[(L * P + j) * T + best]) best = v;
    return best;
  });
  const targetIds = positions.map((_, j) => Number(stats.targets[j * T + chosen[j]]));
  const perLayer = (src: Float32Array | BigInt64Array | Int32Array) => block([L + 1, P], Array.from({ length: (L + 1) * P }, (_, i) => Number(src[i * T + chosen[i % P]])));

  // Attention mass: prompt rows from the prefill, then one row per decode step.
  const G = SEGMENTS.length;
  const nH = info.numHeads;
  const mass = new Float32Array(L * nH * P * G);
  for (let l = 0; l < L; l++)
    for (let h = 0; h < nH; h++) {
      promptPositions.forEach((p, j) => mass.set(prefill.attentionMass.subarray(((l * nH + h) * Kf + rowOf.get(p)!) * G, ((l * nH + h) * Kf + rowOf.get(p)! + 1) * G), ((l * nH + h) * P + j) * G));
      stepAttention.forEach((a, t) => mass.set(a.subarray((l * nH + h) * G, (l * nH + h + 1) * G), ((l * nH + h) * P + Kp + t) * G));
    }
  let imageRows: NumericBlock | undefined;
  if (settings.imageAttention) {
    const NI = imageKeys.length;
    const rows = new Float32Array(L * P * NI);
    for (let l = 0; l < L; l++) {
      promptPositions.forEach((p, j) => rows.set(prefill.imageAttention.subarray((l * Kf + rowOf.get(p)!) * NI, (l * Kf + rowOf.get(p)! + 1) * NI), (l * P + j) * NI));
      stepImageAttention.forEach((a, t) => rows.set(a.subarray(l * NI, (l + 1) * NI), (l * P + Kp + t) * NI));
    }
    imageRows = block([L, P, NI], rows);
  }

  let patchLens: LensRecord["patchLens"];
  if (patchPositions.length) {
    const NI = patchPositions.length;
    const ph = new Float32Array((L + 1) * NI * H);
    for (let l = 0; l <= L; l++) patchPositions.forEach((p, j) => ph.set(prefill.hiddenStates.subarray((l * Kf + rowOf.get(p)!) * H, (l * Kf + rowOf.get(p)! + 1) * H), (l * NI + j) * H));
    const s = await time("patchLens", () => model.lens(ph, { topK: 1 }));
    patchLens = { topIds: block([L + 1, NI], s.topkIds), topProbs: block([L + 1, NI], s.topkProbs) };
  }

  const predictingPositions = generated.map((_, t) => (t === 0 ? positions.indexOf(S - 1) : Kp + t - 1));
  const matches = new Array<number>((L + 1) * generated.length).fill(0);
  for (let l = 0; l <= L; l++) generated.forEach((g, t) => (matches[l * generated.length + t] = Number(stats.topkIds[(l * P + predictingPositions[t]) * stats.topK]) === g ? 1 : 0));

  const tokenTexts: Record<string, string> = {};
  for (const id of [...ids, ...generated, ...stats.tracked, ...targetIds, ...(patchLens?.topIds.data ?? [])]) tokenTexts[String(id)] ??= text.tokenLabel(id);

  const imageInput = request.image === undefined ? null : await describeImage(request.image, prepared);
  return checkFinite({
    version: LENS_RECORD_VERSION,
    model: {
      id: path.basename(info.folder),
      folder: info.folder,
      architecture: info.architecture,
      configHash: info.configHash,
      dtype: info.dtype,
      executionProvider: info.provider,
      ...(info.device ? { device: info.device } : {}),
      computeDtype: info.computeDtype,
      weightPlan: info.weightPlan,
      numLayers: L,
      numHeads: nH,
      vocabSize: V,
    },
    input: { prompt: request.prompt, renderedPrompt: prepared.renderedPrompt, image: imageInput, settings },
    tokens: [...tokens, ...generated.map((id) => ({ id, text: text.tokenLabel(id), segment: "generated" as const }))],
    tokenTexts,
    layerLabels: Array.from({ length: L + 1 }, (_, l) => (l === 0 ? "embeddings" : `block ${l}`)),
    positions,
    lens: {
      topK: stats.topK,
      topkIds: block([L + 1, P, stats.topK], stats.topkIds),
      topkProbs: block([L + 1, P, stats.topK], stats.topkProbs),
      entropy: block([L + 1, P], stats.entropy),
      kl: block([L + 1, P], stats.kl),
      cosine: block([L + 1, P], stats.cosine),
      targetIds,
      targetProb: perLayer(stats.targetProb),
      targetRank: perLayer(stats.targetRank),
      ...(target ? { targetText: { text: settings.target!, variants: target.variants } } : {}),
      ...(answerProb !== undefined ? { answerProb } : {}),
    },
    tracked: { ids: stats.tracked, rank: block([L + 1, P, stats.tracked.length], stats.trackedRank), prob: block([L + 1, P, stats.tracked.length], stats.trackedProb) },
    attention: { segments: [...SEGMENTS], mass: block([L, nH, P, G], mass), ...(imageRows ? { imageRows } : {}) },
    ...(patchLens ? { patchLens } : {}),
    headMask,
    generation: { ids: generated, stoppedBy, predictingPositions, matches: block([L + 1, generated.length], matches) },
    timings,
  });
}

const SETTING_KEYS: readonly (keyof LensSettings)[] = ["positions", "topK", "maxNewTokens", "target", "answerProb", "trackTokens", "imageAttention", "patchLens"];

/** Defaults plus the caller's known settings; anything else (from a JSON-RPC client, say) is dropped, not recorded. */
function knownSettings(given: Partial<LensSettings> | undefined): LensSettings {
  const settings: LensSettings = { ...DEFAULT_SETTINGS };
  for (const key of SETTING_KEYS) if (given?.[key] !== undefined) (settings as unknown as Record<string, unknown>)[key] = given[key];
  if (!["afterImage", "image", "all"].includes(settings.positions)) throw new LensInputError(undefined, `positions must be afterImage, image or all, got ${JSON.stringify(settings.positions)}`);
  return settings;
}

/** The first token of every way the model could write `word`: with or without a leading space, in several cases. */
export function targetVariants(model: LensRunModel, word: string): { ids: number[]; variants: { text: string; ids: number[] }[] } {
  const trimmed = word.trim();
  if (!trimmed) throw new LensInputError(undefined, "the target is empty: give the expected answer as a word");
  const forms = new Set<string>();
  for (const w of [trimmed, trimmed.toLowerCase(), trimmed[0].toUpperCase() + trimmed.slice(1), trimmed.toUpperCase()]) {
    forms.add(w);
    forms.add(` ${w}`);
  }
  const variants = [...forms].map((f) => ({ text: f, ids: model.text.encodeContinuation(f) })).filter((v) => v.ids.length > 0);
  // Whole-word vocabulary pieces too, with and without the tokenizer's space marker: "red", "▁red", "Ġred".
  for (const w of forms) {
    if (w.startsWith(" ")) continue;
    for (const piece of [w, `\u2581${w}`, `\u0120${w}`]) {
      const id = model.text.tokenToId(piece);
      if (id !== undefined) variants.push({ text: piece, ids: [id] });
    }
  }
  // A variant that starts with a bare space piece says nothing about the word; keep those only if nothing else is left.
  const meaningful = variants.filter((v) => model.text.decode([v.ids[0]]).trim() !== "");
  const kept = meaningful.length ? meaningful : variants;
  return { ids: [...new Set(kept.map((v) => v.ids[0]))], variants: kept };
}

export function firstTokenOf(model: LensRunModel, s: string): number {
  const ids = model.text.encodeContinuation(s);
  if (!ids.length) throw new LensInputError(undefined, `the token string ${JSON.stringify(s)} tokenizes to nothing: give a non-empty string`);
  return ids[0];
}

/** The final layer's probability of the whole answer, teacher-forced after the prompt. */
async function wholeAnswerProbability(
  model: LensRunModel,
  answer: string,
  prefill: Awaited<ReturnType<LoadedModel["forward"]>>,
  lastRow: number,
  headMask: Float32Array | undefined,
  keySegments: number[],
): Promise<number> {
  const ids = model.text.encodeContinuation(` ${answer.trim()}`);
  const { numLayers: L, hiddenSize: H } = model.info;
  // The states that predict each answer token, as [states [L+1, K, H], K, row]: the prompt's
  // last, then the answer's own but the last.
  const sources: [Float32Array, number, number][] = [[prefill.hiddenStates, prefill.positions.length, lastRow]];
  if (ids.length > 1) {
    const rest = ids.slice(0, -1);
    const segs = [...keySegments, ...rest.map(() => SEGMENTS.indexOf("generated"))];
    const step = await model.forward(rest, { cache: prefill.cache, positions: rest.map((_, i) => i), keySegments: segs, segmentCount: SEGMENTS.length, headMask });
    model.releaseCache(step.cache);
    rest.forEach((_, i) => sources.push([step.hiddenStates, rest.length, i]));
  }
  const n = sources.length;
  const hidden = new Float32Array((L + 1) * n * H);
  sources.forEach(([states, K, row], j) => {
    for (let l = 0; l <= L; l++) hidden.set(states.subarray((l * K + row) * H, (l * K + row + 1) * H), (l * n + j) * H);
  });
  const stats = await model.lens(hidden, { topK: 1, targets: ids.map((id) => [id]) });
  let logProb = 0;
  for (let j = 0; j < n; j++) logProb += Math.log(stats.targetProb[L * n + j]);
  return Math.exp(logProb);
}

async function resolveHeadMask(
  model: LensRunModel,
  spec: HeadMaskSpec | undefined,
  run: { ids: number[]; features: Awaited<ReturnType<LoadedModel["imageFeaturesFor"]>>; positions: number[]; keySegments: number[] },
): Promise<Record<string, number[]> | null> {
  if (!spec) return null;
  const L = model.info.numLayers;
  const nH = model.info.numHeads;
  if ("heads" in spec) {
    for (const [layer, heads] of Object.entries(spec.heads)) {
      const l = Number(layer);
      if (!Number.isInteger(l) || l < 0 || l >= L) throw new LensInputError(undefined, `head mask names layer ${layer}, but the model has layers 0..${L - 1}`);
      for (const h of heads) if (!Number.isInteger(h) || h < 0 || h >= nH) throw new LensInputError(undefined, `head mask names head ${h} in layer ${layer}, but layers have heads 0..${nH - 1}`);
    }
    return normaliseMask(spec.heads);
  }
  const total = L * nH;
  if (!Number.isInteger(spec.count) || spec.count < 1 || spec.count > total) throw new LensInputError(undefined, `head mask count must be 1..${total}, got ${spec.count}`);
  let order: number[];
  if (spec.strategy === "random") {
    const rand = mulberry32(spec.seed);
    order = Array.from({ length: total }, (_, i) => i);
    for (let i = total - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
  } else {
    // Rank heads by their attention share on image tokens, averaged over the analysed positions (seed 004).
    const r = await model.forward(run.ids, { imageFeatures: run.features, positions: run.positions, keySegments: run.keySegments, segmentCount: SEGMENTS.length });
    model.releaseCache(r.cache);
    const G = SEGMENTS.length;
    const img = SEGMENTS.indexOf("image");
    const K = run.positions.length;
    const share = Array.from({ length: total }, (_, lh) => {
      let s = 0;
      for (let k = 0; k < K; k++) s += r.attentionMass[(lh * K + k) * G + img];
      return s / K;
    });
    order = share.map((_, i) => i).sort((a, b) => share[b] - share[a] || a - b);
  }
  const heads: Record<string, number[]> = {};
  for (const lh of order.slice(0, spec.count)) (heads[String(Math.floor(lh / nH))] ??= []).push(lh % nH);
  return normaliseMask(heads);
}

function normaliseMask(heads: Record<string, number[]>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const layer of Object.keys(heads).map(Number).sort((a, b) => a - b)) out[String(layer)] = [...new Set(heads[String(layer)])].sort((a, b) => a - b);
  return out;
}

function maskToArray(heads: Record<string, number[]>, layers: number, nH: number): Float32Array {
  const m = new Float32Array(layers * nH).fill(1);
  for (const [layer, hs] of Object.entries(heads)) for (const h of hs) m[Number(layer) * nH + h] = 0;
  return m;
}


async function describeImage(image: string | Uint8Array, prepared: Awaited<ReturnType<LensRunModel["prepare"]>>): Promise<NonNullable<LensRecord["input"]["image"]>> {
  const bytes = typeof image === "string" ? await readInputFile(image, { what: "image", maxBytes: MAX_IMAGE_BYTES }) : image;
  const { processedSize, grid, tiles } = prepared.vision!;
  return {
    ...(typeof image === "string" ? { path: path.resolve(image) } : {}),
    sha256: createHash("sha256").update(bytes).digest("hex"),
    originalSize: [prepared.image!.width, prepared.image!.height],
    processedSize: [processedSize.width, processedSize.height],
    grid: [grid.rows, grid.cols],
    ...(tiles ? { tiles: { rows: tiles.rows, cols: tiles.cols, count: tiles.count } } : {}),
  };
}
