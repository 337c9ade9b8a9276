/**
 * A synthetic but valid LensRecord of any size, for the webview benchmark (33 lens layers x 600
 * positions by default, the size of a LLaVA-7B run with positions "all"). Its statistics behave
 * like a real run's: each position's top-1 settles on its final token from some layer on,
 * entropy and KL fall and cosine rises with depth, attention rows sum to 1 over the segments a
 * query can see.
 *
 * The function is self-contained (no imports, no module-level helpers) because the benchmark
 * runs it inside the page through Function.prototype.toString: a 100 MB record is cheaper to
 * make there than to send through the DevTools protocol.
 */
import type { LensRecord } from "../src/shared/lensRecord";

export interface SyntheticOptions {
  /** Decoder blocks (lens layers are one more). */
  numLayers?: number;
  numHeads?: number;
  /** Analysed positions; the prompt is sized so that positions "all" gives exactly this many. */
  positions?: number;
  topK?: number;
  /** Image patch grid (rows, cols). */
  grid?: [number, number];
  generated?: number;
  /** How many distinct token ids the top-k lists draw from (the tracked block's last axis). */
  pool?: number;
  /** Include attention.imageRows ([blocks, positions, image tokens]). */
  imageRows?: boolean;
  seed?: number;
}

export function syntheticRecord(options: SyntheticOptions = {}): LensRecord {
  const L = options.numLayers ?? 32;
  const H = options.numHeads ?? 32;
  const P = options.positions ?? 600;
  const K = options.topK ?? 5;
  const [rows, cols] = options.grid ?? [24, 24];
  const G = options.generated ?? 8;
  const poolSize = options.pool ?? 240;
  const V = 32000;
  let state = (options.seed ?? 1) >>> 0 || 1;
  const rand = (): number => {
    // xorshift32: deterministic, so every run draws the same record
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
  const f32 = (v: number): number => Math.fround(v);

  // Tokens: bos, "USER:", the image, text, "ASSISTANT:", the answer; positions "all" analyses
  // every token but the last, so the prompt length is chosen to give exactly P positions.
  const imageTokens = rows * cols;
  const T = P + 1;
  const textTokens = T - G - 3 - imageTokens;
  if (textTokens < 1) throw new Error(`${P} positions cannot hold ${imageTokens} image tokens, ${G} generated tokens and a prompt: ask for more positions`);
  const syllables = ["ka", "lo", "mi", "re", "tu", "sa", "ne", "vo", "da", "pi", "gu", "fe", "ro", "zi", "ba", "ly"];
  const word = (i: number): string => ` ${syllables[i % 16]}${syllables[Math.floor(i / 16) % 16]}${i >= 256 ? syllables[Math.floor(i / 256) % 16] : ""}`;
  const tokenTexts: Record<string, string> = {};
  const name = (id: number, text: string): number => {
    tokenTexts[String(id)] = text;
    return id;
  };
  const BOS = name(1, "<s>");
  const USER = name(2, "USER:");
  const IMAGE = name(32000 - 1, "<image>");
  const ASSISTANT = name(3, "ASSISTANT:");
  const pool = Array.from({ length: poolSize }, (_, i) => name(1000 + i * 7, word(i)));
  const tokens: LensRecord["tokens"] = [{ id: BOS, text: "<s>", segment: "bos" }, { id: USER, text: "USER:", segment: "template" }];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) tokens.push({ id: IMAGE, text: "<image>", segment: "image", image: { index: 0, row: r, col: c } });
  for (let i = 0; i < textTokens; i++) {
    const id = pool[Math.floor(rand() * poolSize)];
    tokens.push({ id, text: tokenTexts[String(id)], segment: "text" });
  }
  tokens.push({ id: ASSISTANT, text: "ASSISTANT:", segment: "template" });
  const S = tokens.length;
  const generated = Array.from({ length: G }, () => pool[Math.floor(rand() * poolSize)]);
  for (const id of generated) tokens.push({ id, text: tokenTexts[String(id)], segment: "generated" });
  const positions = Array.from({ length: P }, (_, i) => i);
  const segmentOf = tokens.map((t) => ["bos", "template", "text", "image", "generated"].indexOf(t.segment));

  // Lens: the final top-1 is the next token where the prompt or answer goes on, else a pool word.
  const layers = L + 1;
  const finalTop = positions.map((p) => (p + 1 >= S ? tokens[p + 1].id : pool[Math.floor(rand() * poolSize)]));
  const settle = positions.map(() => Math.floor(L * (0.35 + 0.6 * rand())));
  const topkIds = new Array<number>(layers * P * K);
  const topkProbs = new Array<number>(layers * P * K);
  const entropy = new Array<number>(layers * P);
  const kl = new Array<number>(layers * P);
  const cosine = new Array<number>(layers * P);
  const targetProb = new Array<number>(layers * P);
  const targetRank = new Array<number>(layers * P);
  const maxEntropy = Math.log(V);
  for (let l = 0; l < layers; l++) {
    const depth = l / L;
    for (let p = 0; p < P; p++) {
      const cell = l * P + p;
      const ids: number[] = [];
      if (l >= settle[p]) ids.push(finalTop[p]);
      while (ids.length < K) {
        const id = pool[Math.floor(rand() * poolSize)];
        if (!ids.includes(id)) ids.push(id);
      }
      const confident = l >= settle[p] ? 0.3 + 0.65 * Math.min(1, (l - settle[p] + 1) / (L - settle[p] + 1)) : 0.02 + 0.25 * rand();
      let prob = confident;
      let left = 1 - prob;
      for (let j = 0; j < K; j++) {
        topkIds[cell * K + j] = ids[j];
        topkProbs[cell * K + j] = f32(prob);
        const next = Math.min(prob, left * (0.2 + 0.5 * rand()));
        left -= next;
        prob = next;
      }
      entropy[cell] = f32(Math.min(maxEntropy, (1 - confident) * maxEntropy * 0.7 + 0.05));
      kl[cell] = f32(l === L ? 0 : (1 - depth) * (3 + 4 * rand()));
      cosine[cell] = f32(l === L ? 1 : Math.min(1, 0.1 + 0.85 * depth * depth + 0.05 * rand()));
      const slot = ids.indexOf(finalTop[p]);
      targetProb[cell] = slot >= 0 ? topkProbs[cell * K + slot] : f32(topkProbs[cell * K + K - 1] * 0.5);
      targetRank[cell] = slot >= 0 ? slot + 1 : K + 1 + Math.floor((1 - depth) * 2000 * rand());
    }
  }

  // Tracked: every top-k id and target, with its rank and probability at every cell.
  const tracked = [...new Set([...topkIds, ...finalTop])].sort((a, b) => a - b);
  const M = tracked.length;
  const column = new Map(tracked.map((id, m) => [id, m]));
  const trackedRank = new Array<number>(layers * P * M);
  const trackedProb = new Array<number>(layers * P * M);
  for (let cell = 0; cell < layers * P; cell++) {
    const base = cell * M;
    const floor = topkProbs[cell * K + K - 1];
    for (let m = 0; m < M; m++) {
      trackedRank[base + m] = K + 1 + ((m * 37 + cell) % 5000);
      trackedProb[base + m] = f32(floor * 0.25);
    }
    const target = column.get(finalTop[cell % P]) as number;
    trackedRank[base + target] = targetRank[cell];
    trackedProb[base + target] = targetProb[cell];
    for (let j = 0; j < K; j++) {
      const m = column.get(topkIds[cell * K + j]) as number;
      trackedRank[base + m] = j + 1;
      trackedProb[base + m] = topkProbs[cell * K + j];
    }
  }

  // Attention: each query spreads over the segments before it; image rows by patch.
  const mass = new Array<number>(L * H * P * 5);
  const seen = positions.map((p) => {
    const v = [0, 0, 0, 0, 0];
    for (let i = 0; i <= p; i++) v[segmentOf[i]] = 1;
    return v;
  });
  for (let b = 0; b < L; b++)
    for (let h = 0; h < H; h++)
      for (let p = 0; p < P; p++) {
        const w = seen[p].map((s, i) => (s ? (i === 3 ? 1 + 3 * rand() : 0.2 + rand()) : 0));
        const sum = w.reduce((a, c) => a + c, 0);
        const base = ((b * H + h) * P + p) * 5;
        for (let s = 0; s < 5; s++) mass[base + s] = f32(w[s] / sum);
      }
  let imageRows: number[] | undefined;
  if (options.imageRows ?? true) {
    imageRows = new Array<number>(L * P * imageTokens);
    for (let b = 0; b < L; b++)
      for (let p = 0; p < P; p++) {
        const cr = (p * 7 + b) % rows;
        const cc = (p * 3 + b * 5) % cols;
        const base = (b * P + p) * imageTokens;
        for (let r = 0; r < rows; r++)
          for (let c = 0; c < cols; c++) {
            const d2 = (r - cr) * (r - cr) + (c - cc) * (c - cc);
            imageRows[base + r * cols + c] = f32((0.2 / imageTokens) * (1 + 20 * Math.exp(-d2 / 6)));
          }
      }
  }
  const patchIds = new Array<number>(layers * imageTokens);
  const patchProbs = new Array<number>(layers * imageTokens);
  for (let i = 0; i < patchIds.length; i++) {
    patchIds[i] = pool[(i * 13) % poolSize];
    patchProbs[i] = f32(0.05 + 0.9 * rand());
  }

  const predictingPositions = generated.map((_, t) => S - 1 + t);
  const matches: number[] = [];
  for (let l = 0; l < layers; l++) for (let t = 0; t < G; t++) matches.push(topkIds[(l * P + predictingPositions[t]) * K] === generated[t] ? 1 : 0);

  return {
    version: 1,
    model: { id: "synthetic-llava-7b", folder: "/models/synthetic", architecture: "LlavaForConditionalGeneration", configHash: "0".repeat(64), dtype: "float16", executionProvider: "cpu", numLayers: L, numHeads: H, vocabSize: V },
    input: {
      prompt: "Describe the image in detail.",
      renderedPrompt: "<s>USER: <image>\nDescribe the image in detail. ASSISTANT:",
      image: { sha256: "0".repeat(64), originalSize: [640, 480], processedSize: [336, 336], grid: [rows, cols] },
      settings: { positions: "all", topK: K, maxNewTokens: G, imageAttention: !!imageRows, patchLens: true },
    },
    tokens,
    tokenTexts,
    layerLabels: ["embeddings", ...Array.from({ length: L }, (_, b) => `block ${b + 1}`)],
    positions,
    lens: {
      topK: K,
      topkIds: { shape: [layers, P, K], data: topkIds },
      topkProbs: { shape: [layers, P, K], data: topkProbs },
      entropy: { shape: [layers, P], data: entropy },
      kl: { shape: [layers, P], data: kl },
      cosine: { shape: [layers, P], data: cosine },
      targetIds: finalTop,
      targetProb: { shape: [layers, P], data: targetProb },
      targetRank: { shape: [layers, P], data: targetRank },
    },
    tracked: { ids: tracked, rank: { shape: [layers, P, M], data: trackedRank }, prob: { shape: [layers, P, M], data: trackedProb } },
    attention: { segments: ["bos", "template", "text", "image", "generated"], mass: { shape: [L, H, P, 5], data: mass }, ...(imageRows ? { imageRows: { shape: [L, P, imageTokens], data: imageRows } } : {}) },
    patchLens: { topIds: { shape: [layers, imageTokens], data: patchIds }, topProbs: { shape: [layers, imageTokens], data: patchProbs } },
    headMask: null,
    generation: { ids: generated, stoppedBy: "maxNewTokens", predictingPositions, matches: { shape: [layers, G], data: matches } },
    timings: {},
  };
}
