/**
 * What the panel draws, computed from a LensRecord without the DOM. `buildLensView` copies the
 * [layers, positions] blocks into typed arrays once per record; every lookup a hover needs is then
 * O(layers) (a token's rank at each layer) or O(1) (a cell). Whole-record reductions (means over
 * positions, attention averages) are computed on first use and cached on the view.
 *
 * Indexing: `l` is a lens layer 0..L (0 = embeddings), `b` a decoder block 0..L-1 (lens layer
 * b + 1), `p` an analysed-position index into record.positions (not a token index).
 */
import { type LensRecord, type NumericBlock, type Segment, SEGMENTS } from "../shared/lensRecord";
import type { GroupAggregate, SweepAggregates } from "../shared/sweep";
import type { TokenPiece, TrackedMessage } from "../shared/webviewProtocol";

// --- The per-record view ---------------------------------------------------------------------

export interface LensView {
  readonly record: LensRecord;
  /** Lens layers (L + 1). */
  readonly layers: number;
  /** Analysed positions. */
  readonly positions: number;
  readonly topK: number;
  /** [layers, positions, topK] */
  readonly topkIds: Int32Array;
  readonly topkProbs: Float32Array;
  /** [layers, positions] */
  readonly top1Ids: Int32Array;
  readonly top1Probs: Float32Array;
  readonly entropy: Float32Array;
  readonly kl: Float32Array;
  readonly cosine: Float32Array;
  readonly targetProb: Float32Array;
  readonly targetRank: Float32Array;
  /** Token id -> index into record.tracked.ids. */
  readonly trackedIndex: ReadonlyMap<number, number>;
  /** Per analysed position: the index of the generated token it predicts, or -1. */
  readonly predicts: Int32Array;
  /** [layers, positions]: 1 where the position predicts generated token t and this layer's top-1 is it, 0 where not, -1 where the position predicts no generated token. */
  readonly matches: Int8Array;
  /** Token index -> analysed-position index. */
  readonly analysedIndex: ReadonlyMap<number, number>;
  /** Lazily computed reductions, keyed by name. */
  readonly cache: Map<string, unknown>;
}

// The typed-array constructors copy an array in one pass; TypedArray.from walks an iterator (10x slower).
const toFloat32 = (block: NumericBlock): Float32Array => new Float32Array(block.data);

export function buildLensView(record: LensRecord): LensView {
  const layers = record.layerLabels.length;
  const positions = record.positions.length;
  const topK = record.lens.topK;
  const topkIds = new Int32Array(record.lens.topkIds.data);
  const topkProbs = toFloat32(record.lens.topkProbs);
  const cells = layers * positions;
  const top1Ids = new Int32Array(cells);
  const top1Probs = new Float32Array(cells);
  for (let i = 0; i < cells; i++) {
    top1Ids[i] = topkIds[i * topK];
    top1Probs[i] = topkProbs[i * topK];
  }
  const predicts = new Int32Array(positions).fill(-1);
  const { predictingPositions, matches: matchBlock, ids: generated } = record.generation;
  predictingPositions.forEach((p, t) => {
    if (p >= 0 && p < positions) predicts[p] = t;
  });
  const matches = new Int8Array(cells).fill(-1);
  const G = generated.length;
  for (let l = 0; l < layers; l++)
    for (let t = 0; t < G; t++) {
      const p = predictingPositions[t];
      if (p >= 0 && p < positions) matches[l * positions + p] = matchBlock.data[l * G + t] ? 1 : 0;
    }
  return {
    record,
    layers,
    positions,
    topK,
    topkIds,
    topkProbs,
    top1Ids,
    top1Probs,
    entropy: toFloat32(record.lens.entropy),
    kl: toFloat32(record.lens.kl),
    cosine: toFloat32(record.lens.cosine),
    targetProb: toFloat32(record.lens.targetProb),
    targetRank: toFloat32(record.lens.targetRank),
    trackedIndex: new Map(record.tracked.ids.map((id, m) => [id, m])),
    predicts,
    matches,
    analysedIndex: new Map(record.positions.map((t, p) => [t, p])),
    cache: new Map(),
  };
}

function cached<T>(view: LensView, key: string, make: () => T): T {
  if (view.cache.has(key)) return view.cache.get(key) as T;
  const value = make();
  view.cache.set(key, value);
  return value;
}

// --- Token text ------------------------------------------------------------------------------

/** How a token id reads, from the record's table (`#id` when the record does not hold it). */
export function tokenText(record: LensRecord, id: number): string {
  return record.tokenTexts[String(id)] ?? `#${id}`;
}

/**
 * Token text with whitespace and control characters made visible, for chips, cells, lists and
 * exported figures ("" reads as "∅"): other C0 controls and DEL as their Control Pictures
 * (U+000B as "␋"), U+FFFE, U+FFFF and lone surrogates as "\uXXXX".
 */
export function visibleToken(text: string): string {
  if (text === "") return "∅";
  return text
    .replace(/ /gu, "·")
    .replace(/\n/gu, "↵")
    .replace(/\r/gu, "␍")
    .replace(/\t/gu, "⇥")
    .replace(/[\u0000-\u001F\u007F]/gu, (c) => String.fromCharCode(c === "\u007F" ? 0x2421 : 0x2400 + c.charCodeAt(0)))
    .replace(/[\uFFFE\uFFFF\uD800-\uDFFF]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

// --- Heatmap ---------------------------------------------------------------------------------

export const METRICS = ["prob", "entropy", "targetRank", "kl"] as const;
export type Metric = (typeof METRICS)[number];
export const METRIC_LABELS: Record<Metric, string> = {
  prob: "Top-1 probability",
  entropy: "Entropy (nats)",
  targetRank: "Target rank (log)",
  kl: "KL(final ‖ layer) (nats)",
};

export function isMetric(value: unknown): value is Metric {
  return typeof value === "string" && (METRICS as readonly string[]).includes(value);
}

/** What the colour of each metric says: its title on the colour bar. */
export const METRIC_BAR_TITLES: Record<Metric, string> = {
  prob: "top-1 probability",
  entropy: "entropy (nats)",
  targetRank: "target rank (log scale)",
  kl: "KL(final ‖ layer) (nats)",
};

/**
 * A metric over the heatmap's cells, with each cell's colour intensity in [0, 1] where 1 is the
 * most confident reading, drawn darkest: probability is sequential on [0, 1]; entropy and KL are
 * reversed on [0, max] (0 nats is darkest); the target rank is reversed on a log scale (rank 1
 * darkest). The range (max) is taken over the decoder blocks only unless `withEmbeddings`: the
 * embeddings row's entropy and KL are often several times the rest, and would wash every block
 * out to one colour. Values past the range are clamped.
 */
export interface MetricScale {
  metric: Metric;
  /** [layers, positions] raw values. */
  values: Float32Array;
  /** [layers, positions] in [0, 1]; 1 = most confident (darkest). */
  intensity: Float32Array;
  min: number;
  max: number;
  log: boolean;
  reversed: boolean;
  /** Whether the embeddings row counted for the range. */
  withEmbeddings: boolean;
}

function metricValues(view: LensView, metric: Metric): Float32Array {
  return metric === "prob" ? view.top1Probs : metric === "entropy" ? view.entropy : metric === "kl" ? view.kl : view.targetRank;
}

export function metricScale(view: LensView, metric: Metric, withEmbeddings = false): MetricScale {
  return cached(view, `scale:${metric}:${withEmbeddings}`, () => {
    const values = metricValues(view, metric);
    const n = values.length;
    const intensity = new Float32Array(n);
    // With a single layer there is no block to take the range from.
    const from = withEmbeddings || view.layers < 2 ? 0 : view.positions;
    let max = 0;
    for (let i = from; i < n; i++) if (values[i] > max) max = values[i];
    if (metric === "targetRank") {
      const top = Math.max(1, max);
      const logTop = Math.log(top);
      for (let i = 0; i < n; i++) intensity[i] = logTop > 0 ? Math.max(0, 1 - Math.log(Math.max(1, values[i])) / logTop) : 1;
      return { metric, values, intensity, min: 1, max: top, log: true, reversed: true, withEmbeddings };
    }
    if (metric === "prob") {
      for (let i = 0; i < n; i++) intensity[i] = Math.min(1, Math.max(0, values[i]));
      return { metric, values, intensity, min: 0, max: 1, log: false, reversed: false, withEmbeddings };
    }
    for (let i = 0; i < n; i++) intensity[i] = max > 0 ? 1 - Math.min(1, Math.max(0, values[i] / max)) : 1;
    return { metric, values, intensity, min: 0, max, log: false, reversed: true, withEmbeddings };
  });
}

/** A tick on a metric's colour bar: its value, its place along the bar (0 = light end, 1 = dark end) and its label. */
export interface ColourBarTick {
  value: number;
  at: number;
  label: string;
}

const tickLabel = (v: number): string => (Math.abs(v) >= 1000 ? `${Number((v / 1000).toPrecision(3))}k` : String(Number(v.toPrecision(3))));

/** "Nice" linear steps (1, 2, 5 x 10^k) from 0 to max, about `count` of them. */
function niceTicks(max: number, count: number): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = 0; v <= max * (1 + 1e-9); v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/**
 * The ticks of a metric's colour bar, light end first: probability 0..1, entropy and KL from
 * their range's maximum down to 0, the rank from its worst down to 1 at powers of ten. The
 * range's end is always a tick, so the bar says where the clamping starts.
 */
export function colourBarTicks(scale: MetricScale): ColourBarTick[] {
  const { max } = scale;
  if (scale.metric === "prob") return [0, 0.25, 0.5, 0.75, 1].map((v) => ({ value: v, at: v, label: String(v) }));
  if (scale.log) {
    const logTop = Math.log(max);
    const values = [1];
    for (let v = 10; v < max; v *= 10) values.push(v);
    if (max > 1) values.push(max);
    const ticks = values.map((v) => ({ value: v, at: logTop > 0 ? 1 - Math.log(v) / logTop : 1, label: tickLabel(v) }));
    // the worst rank's label would sit on a power of ten's when they are close
    return ticks.filter((t, i) => i === ticks.length - 1 || i === 0 || Math.abs(t.at - ticks[ticks.length - 1].at) > 0.12).reverse();
  }
  const values = niceTicks(max, 4);
  if (max > 0 && values[values.length - 1] < max * 0.999) {
    if (max - values[values.length - 1] < max * 0.12) values.pop();
    values.push(max);
  }
  return values.map((v) => ({ value: v, at: max > 0 ? 1 - v / max : 1, label: tickLabel(v) })).reverse();
}

/**
 * The analysed position the first screen opens on: the one that predicts the first generated
 * token (the prompt's last token), else the last analysed position before the answer, else the
 * last one.
 */
export function answerPosition(view: LensView): number {
  const first = view.record.generation.predictingPositions[0];
  if (first !== undefined && first >= 0 && first < view.positions) return first;
  const promptEnd = view.record.tokens.length - view.record.generation.ids.length - 1;
  const p = view.analysedIndex.get(promptEnd);
  return p ?? Math.max(0, view.positions - 1);
}

export interface HeatmapCell {
  layer: number;
  /** Analysed-position index, and the token index it stands for. */
  p: number;
  token: number;
  top1Id: number;
  top1Text: string;
  top1Prob: number;
  value: number;
  intensity: number;
  /** Whether this layer's top-1 is the generated token this position predicts; null when it predicts none. */
  matchesGenerated: boolean | null;
}

/** One cell, O(1). */
export function heatmapCell(view: LensView, metric: Metric, layer: number, p: number): HeatmapCell {
  const scale = metricScale(view, metric);
  const i = layer * view.positions + p;
  const m = view.matches[i];
  return {
    layer,
    p,
    token: view.record.positions[p],
    top1Id: view.top1Ids[i],
    top1Text: tokenText(view.record, view.top1Ids[i]),
    top1Prob: view.top1Probs[i],
    value: scale.values[i],
    intensity: scale.intensity[i],
    matchesGenerated: m < 0 ? null : m === 1,
  };
}

/** Every cell, layer-major (for exports and tests; the canvas reads the typed arrays). */
export function heatmapCells(view: LensView, metric: Metric): HeatmapCell[] {
  const out: HeatmapCell[] = [];
  for (let l = 0; l < view.layers; l++) for (let p = 0; p < view.positions; p++) out.push(heatmapCell(view, metric, l, p));
  return out;
}

/** The top-k of one cell, most likely first. */
export function topkAt(view: LensView, layer: number, p: number): { id: number; text: string; prob: number }[] {
  const base = (layer * view.positions + p) * view.topK;
  return Array.from({ length: view.topK }, (_, j) => {
    const id = view.topkIds[base + j];
    return { id, text: tokenText(view.record, id), prob: view.topkProbs[base + j] };
  });
}

/**
 * Per analysed position, the first layer from which the top-1 equals the final layer's top-1 up
 * to the last layer (the layer where the prediction settles; the sweep's convergenceLayer).
 */
export function convergenceLayers(view: LensView): Int32Array {
  return cached(view, "convergence", () => {
    const { layers, positions: P, top1Ids } = view;
    const out = new Int32Array(P);
    for (let p = 0; p < P; p++) {
      const final = top1Ids[(layers - 1) * P + p];
      let l = layers - 1;
      while (l > 0 && top1Ids[(l - 1) * P + p] === final) l--;
      out[p] = l;
    }
    return out;
  });
}

/**
 * Where one token settles: the first layer from which it is the top-1 (rank 1) at every layer up
 * to the last, or -1 when it is not the final layer's top-1. (A token that is top-1 at block 1
 * and ranked 11th at block 8 has not settled at block 1.)
 */
export function settlesAt(rank: readonly number[]): number {
  let l = rank.length;
  while (l > 0 && rank[l - 1] === 1) l--;
  return l === rank.length ? -1 : l;
}

/**
 * Which layer indices a chart's axis names, so that names like "embeddings" and "block 12" never
 * overlap: at most one per `room` pixels of a `width`-pixel axis, always the first and the last,
 * evenly spaced in between at a round step (1, 2, 4, 5, 8, 10, ...).
 */
export function layerTicks(count: number, width: number, room = 56): number[] {
  if (count <= 0) return [];
  if (count === 1) return [0];
  const fit = Math.max(2, Math.floor(width / room));
  const last = count - 1;
  const step = [1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 40, 50, 64, 100, 128, 200, 256].find((k) => Math.ceil(last / k) + 1 <= fit) ?? Math.ceil(last / (fit - 1));
  const out: number[] = [];
  for (let i = 0; i < last; i += step) out.push(i);
  // the last layer is always named; the tick before it gives way when their labels would touch
  if (out.length > 1 && ((last - out[out.length - 1]) * width) / last < room) out.pop();
  out.push(last);
  return out;
}

// --- Ranks of one token ----------------------------------------------------------------------

export interface LayerRanks {
  id: number;
  text: string;
  /** Per lens layer. */
  rank: number[];
  prob: number[];
}

/** A token's rank and probability at every layer of one position, from record.tracked; null when the record does not track it. O(layers). */
export function ranksAt(view: LensView, id: number, p: number): LayerRanks | null {
  const m = view.trackedIndex.get(id);
  if (m === undefined) return null;
  const { rank, prob, ids } = view.record.tracked;
  const M = ids.length;
  const P = view.positions;
  const r = new Array<number>(view.layers);
  const q = new Array<number>(view.layers);
  for (let l = 0; l < view.layers; l++) {
    const i = (l * P + p) * M + m;
    r[l] = rank.data[i];
    q[l] = prob.data[i];
  }
  return { id, text: tokenText(view.record, id), rank: r, prob: q };
}

/** The same from a TrackedMessage (token `j` of the message). */
export function trackedRanks(message: TrackedMessage, j: number, p: number): LayerRanks {
  const [layers, P, n] = message.rank.shape;
  const rank = new Array<number>(layers);
  const prob = new Array<number>(layers);
  for (let l = 0; l < layers; l++) {
    const i = (l * P + p) * n + j;
    rank[l] = message.rank.data[i];
    prob[l] = message.prob.data[i];
  }
  return { id: message.ids[j], text: message.texts[j], rank, prob };
}

/** Tracked token ids whose text is `text` (exactly, or after trimming both), so a track request can be answered from the record. */
export function findTrackedIds(record: LensRecord, text: string): number[] {
  const exact = record.tracked.ids.filter((id) => record.tokenTexts[String(id)] === text);
  if (exact.length) return exact;
  const want = text.trim();
  if (!want) return [];
  return record.tracked.ids.filter((id) => (record.tokenTexts[String(id)] ?? "").trim() === want);
}

// --- Tracked tokens --------------------------------------------------------------------------

/** One token the user asked to track, with its ranks over the whole run (kept across answers). */
export interface TrackedToken {
  id: number;
  text: string;
  /** What the user typed (or the picked token's text). */
  asked: string;
  /** How `asked` splits into tokens; the first is the one tracked (one piece when picked by id). */
  pieces: TokenPiece[];
  /** Whether the tracked piece is the tokenizer's unknown token. */
  unknown: boolean;
  /** [layers, positions], layer-major. */
  rank: number[];
  prob: number[];
  layers: number;
  positions: number;
}

/** Splits a host answer into one TrackedToken per asked token. */
export function trackedTokens(message: TrackedMessage): TrackedToken[] {
  const [layers, P, n] = message.rank.shape;
  return message.ids.map((id, j) => {
    const rank = new Array<number>(layers * P);
    const prob = new Array<number>(layers * P);
    for (let i = 0; i < layers * P; i++) {
      rank[i] = message.rank.data[i * n + j];
      prob[i] = message.prob.data[i * n + j];
    }
    const text = message.texts[j] ?? `#${id}`;
    return { id, text, asked: message.asked?.[j] ?? text, pieces: message.pieces?.[j] ?? [], unknown: message.unknown?.[j] ?? false, rank, prob, layers, positions: P };
  });
}

/** The list with `add` appended; a token already there is replaced and moves to the end; at most `limit` kept (the oldest go). */
export function addTracked(list: readonly TrackedToken[], add: readonly TrackedToken[], limit = 8): TrackedToken[] {
  const ids = new Set(add.map((t) => t.id));
  return [...list.filter((t) => !ids.has(t.id)), ...add].slice(-limit);
}

/** One tracked token's rank and probability per layer at position p. */
export function trackedTokenRanks(t: TrackedToken, p: number): LayerRanks {
  const rank = new Array<number>(t.layers);
  const prob = new Array<number>(t.layers);
  for (let l = 0; l < t.layers; l++) {
    rank[l] = t.rank[l * t.positions + p];
    prob[l] = t.prob[l * t.positions + p];
  }
  return { id: t.id, text: t.text, rank, prob };
}

const quoted = (s: string): string => `“${visibleToken(s)}”`;

/**
 * Why the token tracked is not simply what was asked, or null when it is: the text is not in the
 * vocabulary, or splits into several tokens (the first is tracked; a word-start marker alone
 * reads as nothing).
 */
export function trackExplanation(t: TrackedToken): string | null {
  const pieces = t.pieces;
  if (t.unknown) return `${quoted(t.asked)} is not in the model's vocabulary: it becomes the unknown token ${pieces[0]?.piece ?? ""}; track a word the model knows.`;
  if (pieces.length <= 1) return null;
  const split = pieces.map((q) => q.piece).join(" · ");
  const first = pieces[0];
  const lone = first.text.trim() === "" ? ` (a word-start marker alone, which reads as ${quoted(first.text)})` : "";
  return `${quoted(t.asked)} is not one token: it splits into ${pieces.length}, ${split}; tracking the first, ${first.piece}${lone}.`;
}

/** A tracked token's chip: the token, and when it is one piece of what was asked, which ("banana → ▁ (1st of 3)"). */
export function trackLabel(t: TrackedToken): string {
  if (t.unknown) return `${visibleToken(t.asked)} → ${t.pieces[0]?.piece ?? visibleToken(t.text)} (unknown)`;
  return t.pieces.length > 1 ? `${visibleToken(t.asked)} → ${t.pieces[0].piece} (1st of ${t.pieces.length})` : visibleToken(t.text);
}

// --- Per-layer series ------------------------------------------------------------------------

export const SERIES = ["entropy", "targetProb", "targetRank", "cosine", "kl"] as const;
export type SeriesMetric = (typeof SERIES)[number];
export const SERIES_LABELS: Record<SeriesMetric, string> = {
  entropy: "Entropy (nats)",
  targetProb: "Target probability",
  targetRank: "Target rank",
  cosine: "Cosine to final",
  kl: "KL(final ‖ layer)",
};

export type PositionChoice = number | "mean";

/** A [layers, positions] statistic at one position, or its mean over the analysed positions. */
export function layerSeries(view: LensView, metric: SeriesMetric, p: PositionChoice): number[] {
  const values = view[metric];
  const { layers, positions: P } = view;
  if (p !== "mean") return Array.from({ length: layers }, (_, l) => values[l * P + p]);
  return cached(view, `mean:${metric}`, () =>
    Array.from({ length: layers }, (_, l) => {
      let s = 0;
      for (let j = 0; j < P; j++) s += values[l * P + j];
      return P ? s / P : Number.NaN;
    }),
  );
}

// --- Attention -------------------------------------------------------------------------------

/** record.attention.mass, [blocks, heads, positions, segments], read in place (it can hold millions of values). */
function attentionMass(view: LensView): readonly number[] {
  return view.record.attention.mass.data;
}

export interface AttentionBreakdown {
  segments: Segment[];
  /** [blocks][segments]: mean over heads (and over positions for "mean"). */
  shares: number[][];
}

export function attentionBreakdown(view: LensView, p: PositionChoice): AttentionBreakdown {
  const make = (): AttentionBreakdown => {
    const mass = attentionMass(view);
    const [blocks, heads, P, S] = view.record.attention.mass.shape;
    const from = p === "mean" ? 0 : p;
    const to = p === "mean" ? P : p + 1;
    const count = heads * (to - from);
    const shares = Array.from({ length: blocks }, (_, b) => {
      const row = new Array<number>(S).fill(0);
      for (let h = 0; h < heads; h++)
        for (let j = from; j < to; j++) {
          const base = ((b * heads + h) * P + j) * S;
          for (let s = 0; s < S; s++) row[s] += mass[base + s];
        }
      return row.map((v) => (count ? v / count : 0));
    });
    return { segments: view.record.attention.segments, shares };
  };
  return p === "mean" ? cached(view, "attention:mean", make) : make();
}

export interface HeadMatrix {
  blocks: number;
  heads: number;
  /** [blocks, heads] share of attention on `segment`. */
  values: Float32Array;
}

/** Per decoder block and head, the share of attention on one key segment (default the image) at a position or averaged over positions. */
export function headShare(view: LensView, p: PositionChoice, segment: Segment = "image"): HeadMatrix {
  const make = (): HeadMatrix => {
    const mass = attentionMass(view);
    const [blocks, heads, P, S] = view.record.attention.mass.shape;
    const s = view.record.attention.segments.indexOf(segment);
    const values = new Float32Array(blocks * heads);
    if (s < 0) return { blocks, heads, values };
    const from = p === "mean" ? 0 : p;
    const to = p === "mean" ? P : p + 1;
    for (let b = 0; b < blocks; b++)
      for (let h = 0; h < heads; h++) {
        let sum = 0;
        for (let j = from; j < to; j++) sum += mass[((b * heads + h) * P + j) * S + s];
        values[b * heads + h] = to > from ? sum / (to - from) : 0;
      }
    return { blocks, heads, values };
  };
  return p === "mean" ? cached(view, `heads:mean:${segment}`, make) : make();
}

// --- Image overlay ---------------------------------------------------------------------------

export interface ImageCell {
  /** Index among the record's image tokens (the last axis of imageRows and patchLens). */
  j: number;
  token: number;
  row: number;
  col: number;
}

/** The image tokens of image `index`, with their place on its grid. */
export function imageCells(record: LensRecord, index = 0): ImageCell[] {
  const out: ImageCell[] = [];
  let j = 0;
  record.tokens.forEach((t, token) => {
    if (t.segment !== "image") return;
    if (t.image && t.image.index === index) out.push({ j, token, row: t.image.row, col: t.image.col });
    j++;
  });
  return out;
}

export interface OverlayGrid {
  rows: number;
  cols: number;
  /** [rows, cols], NaN where no image token sits. */
  values: Float32Array;
  max: number;
  /** Patch lens: the top-1 token text per cell ("" where none). */
  labels?: string[];
}

/**
 * Where image tokens land on the picture. A split input (input.image.tiles: SmolVLM / Idefics3
 * crops in row-major order, then the whole image downscaled) puts each crop's grid in its place,
 * so the overlay covers the picture at the crops' resolution; an unsplit tiled input uses its one
 * (global) image; other models their one grid.
 */
export interface OverlayLayout {
  rows: number;
  cols: number;
  /** Every image token on the layout: j (its index among image tokens), and its cell. */
  cells: ImageCell[];
  /** Whether the layout covers the whole picture (tiles) rather than the processor's kept region. */
  wholePicture: boolean;
}

export function overlayLayout(record: LensRecord): OverlayLayout | null {
  const image = record.input.image;
  if (!image) return null;
  const [gr, gc] = image.grid;
  const tiles = image.tiles;
  if (tiles && tiles.rows > 0 && tiles.cols > 0 && tiles.count === tiles.rows * tiles.cols + 1) {
    const cells: ImageCell[] = [];
    let j = 0;
    record.tokens.forEach((t, token) => {
      if (t.segment !== "image") return;
      const at = t.image;
      if (at && at.index < tiles.rows * tiles.cols) {
        cells.push({ j, token, row: Math.floor(at.index / tiles.cols) * gr + at.row, col: (at.index % tiles.cols) * gc + at.col });
      }
      j++;
    });
    return { rows: tiles.rows * gr, cols: tiles.cols * gc, cells, wholePicture: true };
  }
  const index = tiles && tiles.count > 0 ? tiles.count - 1 : 0;
  return { rows: gr, cols: gc, cells: imageCells(record, index), wholePicture: tiles !== undefined };
}

function emptyGrid(layout: OverlayLayout): OverlayGrid {
  return { rows: layout.rows, cols: layout.cols, values: new Float32Array(layout.rows * layout.cols).fill(Number.NaN), max: 0 };
}

/**
 * Head-averaged attention of a query (or the mean over analysed queries) on each image patch at
 * lens layer `layer` (the output of block layer - 1); null for layer 0, or when the record has
 * no image attention.
 */
export function attentionOverlay(view: LensView, layer: number, p: PositionChoice): OverlayGrid | null {
  const rowsBlock = view.record.attention.imageRows;
  const layout = overlayLayout(view.record);
  if (!rowsBlock || !layout || layer < 1) return null;
  const grid = emptyGrid(layout);
  const [blocks, P, I] = rowsBlock.shape;
  const b = layer - 1;
  if (b >= blocks) return null;
  const from = p === "mean" ? 0 : p;
  const to = p === "mean" ? P : p + 1;
  for (const c of layout.cells) {
    if (c.row >= grid.rows || c.col >= grid.cols || c.j >= I) continue;
    let s = 0;
    for (let q = from; q < to; q++) s += rowsBlock.data[(b * P + q) * I + c.j];
    const v = to > from ? s / (to - from) : 0;
    grid.values[c.row * grid.cols + c.col] = v;
    if (v > grid.max) grid.max = v;
  }
  return grid;
}

/** The patch lens at one lens layer: each patch's top-1 probability, with its token text as label. */
export function patchLensOverlay(view: LensView, layer: number): OverlayGrid | null {
  const lens = view.record.patchLens;
  const layout = overlayLayout(view.record);
  if (!lens || !layout) return null;
  const grid = emptyGrid(layout);
  const [layers, I] = lens.topIds.shape;
  if (layer < 0 || layer >= layers) return null;
  const labels = new Array<string>(grid.rows * grid.cols).fill("");
  for (const c of layout.cells) {
    if (c.row >= grid.rows || c.col >= grid.cols || c.j >= I) continue;
    const i = c.row * grid.cols + c.col;
    const v = lens.topProbs.data[layer * I + c.j];
    grid.values[i] = v;
    labels[i] = tokenText(view.record, lens.topIds.data[layer * I + c.j]);
    if (v > grid.max) grid.max = v;
  }
  return { ...grid, labels };
}

// --- Token strip -----------------------------------------------------------------------------

export interface StripChip {
  segment: Segment;
  /** Token index range [start, end). */
  start: number;
  end: number;
  label: string;
  /** Analysed-position index of the chip's token (-1 when not analysed, or for a collapsed run). */
  p: number;
}

/** An image token's place: its patch row and column ("r2 c5"), on its tile when the image was cut into tiles ("tile 3 r2 c5", "global r2 c5"). */
export function imageTokenLabel(record: LensRecord, at: { index: number; row: number; col: number }): string {
  const tiles = record.input.image?.tiles;
  const where = `r${at.row} c${at.col}`;
  if (!tiles || tiles.count <= 1) return where;
  return at.index === tiles.count - 1 ? `global ${where}` : `tile ${at.index + 1} ${where}`;
}

/** The prompt and answer as chips; with `collapseImages`, each run of image tokens is one "<image> × N" chip. */
export function tokenStrip(view: LensView, collapseImages: boolean): StripChip[] {
  const { tokens } = view.record;
  const out: StripChip[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (collapseImages && t.segment === "image") {
      let end = i + 1;
      while (end < tokens.length && tokens[end].segment === "image" && tokens[end].image?.index === t.image?.index) end++;
      out.push({ segment: "image", start: i, end, label: `<image> × ${end - i}`, p: -1 });
      i = end - 1;
      continue;
    }
    out.push({ segment: t.segment, start: i, end: i + 1, label: t.segment === "image" && t.image ? imageTokenLabel(view.record, t.image) : visibleToken(t.text), p: view.analysedIndex.get(i) ?? -1 });
  }
  return out;
}

// --- Comparison view (sweep aggregates) ------------------------------------------------------

/** Grouping keys in the aggregates, "all" first. */
export function comparisonKeys(aggregates: SweepAggregates): string[] {
  const keys = [...new Set(aggregates.groups.map((g) => g.key))];
  return [...keys.filter((k) => k === "all"), ...keys.filter((k) => k !== "all")];
}

export type ComparisonField = "meanEntropy" | "meanTargetProb" | "meanTargetRank" | "meanKl" | "meanImageShare" | "convergenceShare";

export interface ComparisonSeries {
  label: string;
  variant: string;
  value: string;
  n: number;
  values: number[];
}

export function groupLabel(g: GroupAggregate): string {
  return g.key === "all" ? g.variant : `${g.variant} · ${g.key}=${g.value}`;
}

/** One series per (variant, value) of a grouping key; "convergenceShare" is the histogram over n. */
export function comparisonSeries(aggregates: SweepAggregates, field: ComparisonField, key: string): ComparisonSeries[] {
  return aggregates.groups
    .filter((g) => g.key === key)
    .map((g) => ({
      label: groupLabel(g),
      variant: g.variant,
      value: g.value,
      n: g.n,
      values: field === "convergenceShare" ? g.convergenceHistogram.map((c) => (g.n ? c / g.n : 0)) : [...g[field]],
    }));
}

export function comparisonAccuracy(aggregates: SweepAggregates, key: string): { label: string; accuracy: number | null; scored: number; n: number; medianConvergenceLayer: number }[] {
  return aggregates.groups
    .filter((g) => g.key === key)
    .map((g) => ({ label: groupLabel(g), accuracy: g.accuracy, scored: g.scored, n: g.n, medianConvergenceLayer: g.medianConvergenceLayer }));
}

export { SEGMENTS };
