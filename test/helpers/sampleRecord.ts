/**
 * A small LensRecord made by hand, with every field filled: 2 decoder blocks (3 lens layers),
 * 2 heads, a 12-token vocabulary, 8 tokens (bos, template, 2 image patches, a text token that
 * holds a quote, a comma and a newline, template, 2 generated), 3 analysed positions, top-2,
 * a word target, tracked tokens, attention rows, a patch lens.
 *
 * The lens statistics are written out below; tracked ranks and probabilities, generation
 * matches, predicting positions and token texts are derived from them the way the sidecar
 * derives them, so a variant (another lens, a head mask, another generation) stays consistent.
 * Floating-point data goes through Float32Array, like the sidecar's.
 */
import type { LensRecord, LensToken, NumericBlock, Segment } from "../../src/shared/lensRecord";

/** Token id -> text. */
export const SAMPLE_VOCAB = ["<unk>", "<s>", "USER:", "<image>", 'say "hi",\nok', "ASSISTANT:", " red", "</s>", " blue", "  ", "=", "Red"];

/** Per layer, per analysed position: the top-k as [id, prob] (most likely first), and the other statistics. */
export interface SampleLens {
  topk: [number, number][][][];
  targetIds: number[];
  targetProb: number[][];
  targetRank: number[][];
  entropy: number[][];
  kl: number[][];
  cosine: number[][];
}

// Analysed positions 4 ('say "hi",\nok'), 5 ("ASSISTANT:") and 6 (" red"); the target is " red" (6).
export const SAMPLE_LENS: SampleLens = {
  topk: [
    [[[9, 0.25], [10, 0.125]], [[11, 0.5], [8, 0.25]], [[4, 0.375], [9, 0.0625]]],
    [[[5, 0.3], [10, 0.2]], [[6, 0.6], [8, 0.1]], [[7, 0.4], [6, 0.3]]],
    [[[5, 0.9], [8, 0.05]], [[6, 0.875], [11, 0.0625]], [[7, 0.99], [6, 0.001]]],
  ],
  targetIds: [6, 6, 6],
  targetProb: [
    [0.01, 0.02, 0.002],
    [0.05, 0.6, 0.3],
    [0.02, 0.875, 0.001],
  ],
  targetRank: [
    [5, 3, 9],
    [4, 1, 2],
    [3, 1, 2],
  ],
  entropy: [
    [2.25, 2.375, 2.4],
    [1.2, 1.1, 1.5],
    [0.4, 0.5, 0.1],
  ],
  kl: [
    [4.5, 3.25, 5],
    [0.75, 0.5, 0.6],
    [0, 0, 0],
  ],
  cosine: [
    [0.1, 0.2, -0.05],
    [0.6, 0.7, 0.8],
    [1, 1, 1],
  ],
};

/**
 * The same input with head 1 of decoder block 0 masked (headMask {"0": [1]}): the embeddings'
 * top-k stays, blocks 1 and 2 move. At block 1 the target loses position 5's top spot to " blue".
 */
export const MASKED_LENS: SampleLens = {
  topk: [
    SAMPLE_LENS.topk[0],
    [[[5, 0.3], [10, 0.2]], [[8, 0.5], [6, 0.25]], [[7, 0.4], [6, 0.3]]],
    [[[5, 0.85], [6, 0.06]], [[6, 0.75], [8, 0.125]], [[7, 0.99], [6, 0.001]]],
  ],
  targetIds: [6, 6, 6],
  targetProb: [
    [0.01, 0.02, 0.002],
    [0.1, 0.25, 0.3],
    [0.06, 0.75, 0.001],
  ],
  targetRank: [
    [5, 3, 9],
    [3, 2, 2],
    [2, 1, 2],
  ],
  entropy: [
    [2.25, 2.375, 2.4],
    [1.25, 1.35, 1.5],
    [0.55, 0.75, 0.1],
  ],
  kl: [
    [4.4, 3.5, 5],
    [0.5, 0.75, 0.6],
    [0, 0, 0],
  ],
  cosine: [
    [0.12, 0.18, -0.05],
    [0.65, 0.6, 0.8],
    [1, 1, 1],
  ],
};

export interface SampleOptions {
  lens?: SampleLens;
  headMask?: Record<string, number[]> | null;
  /** The two generated token ids (default " red", "</s>"). */
  generated?: number[];
}

const PROMPT: { id: number; segment: Segment }[] = [
  { id: 1, segment: "bos" },
  { id: 2, segment: "template" },
  { id: 3, segment: "image" },
  { id: 3, segment: "image" },
  { id: 4, segment: "text" },
  { id: 5, segment: "template" },
];
const L = 2;
const HEADS = 2;
const K = 2;
const TRACK_TOKENS = [8]; // " blue", asked for with trackTokens

/** LensRecord with every optional field required (arrays left alone), so a field added to the type must be added here. */
type Complete<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]-?: Complete<T[K]> } : T;

const f32 = (values: number[]): number[] => Array.from(Float32Array.from(values));
const block = (shape: number[], data: number[]): NumericBlock => ({ shape, data });

export function sampleRecord(options: SampleOptions = {}): LensRecord {
  const lens = structuredClone(options.lens ?? SAMPLE_LENS);
  const generated = options.generated ?? [6, 7];
  const S = PROMPT.length;
  const G = generated.length;

  let patch = 0;
  const tokens: LensToken[] = [
    ...PROMPT.map(({ id, segment }): LensToken => ({
      id,
      text: SAMPLE_VOCAB[id],
      segment,
      ...(segment === "image" ? { image: { index: 0, row: 0, col: patch++ } } : {}),
    })),
    ...generated.map((id): LensToken => ({ id, text: SAMPLE_VOCAB[id], segment: "generated" })),
  ];
  // After the image, then the position before each generated token but the first.
  const positions = [4, 5, ...generated.slice(1).map((_, t) => S + t)];
  const P = positions.length;
  const predictingPositions = generated.map((_, t) => positions.indexOf(S - 1 + t));

  const topkIds = lens.topk.flat().flatMap((row) => row.map(([id]) => id));
  const topkProbs = lens.topk.flat().flatMap((row) => row.map(([, p]) => p));

  // Tracked: every top-k id, the target and the requested tokens, sorted. Each one's rank and
  // probability comes from the top-k where it is there, from the target statistics where it is
  // the target, and otherwise from the ranks after the top-k that the target does not hold.
  const trackedIds = [...new Set([...topkIds, ...lens.targetIds, ...TRACK_TOKENS])].sort((a, b) => a - b);
  const trackedRank: number[] = [];
  const trackedProb: number[] = [];
  for (let l = 0; l <= L; l++)
    for (let j = 0; j < P; j++) {
      const top = lens.topk[l][j];
      let next = K + 1;
      for (const id of trackedIds) {
        const slot = top.findIndex(([t]) => t === id);
        if (slot >= 0) {
          trackedRank.push(slot + 1);
          trackedProb.push(top[slot][1]);
        } else if (id === lens.targetIds[j]) {
          trackedRank.push(lens.targetRank[l][j]);
          trackedProb.push(lens.targetProb[l][j]);
        } else {
          if (next === lens.targetRank[l][j]) next++;
          trackedRank.push(next++);
          trackedProb.push(0.0005);
        }
      }
    }

  // Attention: prompt queries cannot see generated keys; the generated query sees itself.
  const mass: number[] = [];
  for (let l = 0; l < L; l++)
    for (let h = 0; h < HEADS; h++)
      for (let j = 0; j < P; j++) {
        const generatedQuery = positions[j] >= S;
        if (h === 0) mass.push(...(generatedQuery ? [0.5, 0.125, 0.125, 0.125, 0.125] : [0.5, 0.125, 0.125, 0.25, 0]));
        else mass.push(...(generatedQuery ? [0.25, 0.125, 0.125, 0.375, 0.125] : [0.25, 0.125, 0.125, 0.5, 0]));
      }
  const imageRows = Array.from({ length: L * P }, (_, i) => [0.25, 0.0625 * (1 + (i % 3))]).flat();

  const matches: number[] = [];
  for (let l = 0; l <= L; l++) generated.forEach((g, t) => matches.push(lens.topk[l][predictingPositions[t]][0][0] === g ? 1 : 0));

  const patchIds = [3, 3, 8, 11, 11, 8];
  const used = [...tokens.map((t) => t.id), ...trackedIds, ...patchIds, ...generated];
  const tokenTexts = Object.fromEntries([...new Set(used)].sort((a, b) => a - b).map((id) => [String(id), SAMPLE_VOCAB[id]]));

  const record: Complete<LensRecord> = {
    version: 1,
    model: {
      id: "tiny-llava",
      folder: "/models/tiny-llava",
      architecture: "LlavaForConditionalGeneration",
      configHash: "0123456789abcdef".repeat(4),
      dtype: "float32",
      executionProvider: "cpu",
      device: { provider: "cpu", name: "Sample CPU (2 threads)", memoryBytes: 8 * 2 ** 30, software: false, note: "device auto took the CPU: the CUDA provider libraries are not installed" },
      computeDtype: "float32",
      weightPlan: "float32",
      numLayers: L,
      numHeads: HEADS,
      vocabSize: SAMPLE_VOCAB.length,
    },
    input: {
      prompt: 'say "hi",\nok',
      renderedPrompt: '<s>USER: <image><image>say "hi",\nok ASSISTANT:',
      image: { path: "/data/images/circle.png", sha256: "ab".repeat(32), originalSize: [64, 48], processedSize: [28, 28], grid: [1, 2], tiles: { rows: 0, cols: 0, count: 1 } },
      settings: { positions: "afterImage", topK: K, maxNewTokens: 4, target: "red", answerProb: true, trackTokens: [" blue"], imageAttention: true, patchLens: true },
    },
    tokens,
    tokenTexts,
    layerLabels: ["embeddings", "block 1", "block 2"],
    positions,
    lens: {
      topK: K,
      topkIds: block([L + 1, P, K], topkIds),
      topkProbs: block([L + 1, P, K], f32(topkProbs)),
      entropy: block([L + 1, P], f32(lens.entropy.flat())),
      kl: block([L + 1, P], f32(lens.kl.flat())),
      cosine: block([L + 1, P], f32(lens.cosine.flat())),
      targetIds: lens.targetIds,
      targetProb: block([L + 1, P], f32(lens.targetProb.flat())),
      targetRank: block([L + 1, P], lens.targetRank.flat()),
      targetText: { text: "red", variants: [{ text: " red", ids: [6] }, { text: "Red", ids: [11] }] },
      answerProb: f32([0.875])[0],
    },
    tracked: { ids: trackedIds, rank: block([L + 1, P, trackedIds.length], trackedRank), prob: block([L + 1, P, trackedIds.length], f32(trackedProb)) },
    attention: { segments: ["bos", "template", "text", "image", "generated"], mass: block([L, HEADS, P, 5], f32(mass)), imageRows: block([L, P, 2], f32(imageRows)) },
    patchLens: { topIds: block([L + 1, 2], patchIds), topProbs: block([L + 1, 2], f32([0.5, 0.5, 0.25, 0.125, 0.375, 0.25])) },
    headMask: options.headMask ?? null,
    generation: { ids: generated, stoppedBy: generated[G - 1] === 7 ? "eos" : "maxNewTokens", predictingPositions, matches: block([L + 1, G], matches) },
    timings: { prepare: 1.5, vision: 2.25, prefill: 3, decode: 4, lens: 0.5 },
    warnings: ["a sample warning: the record is made up"],
  };
  return record;
}
