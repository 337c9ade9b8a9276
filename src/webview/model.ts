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
import type { TrackedMessage } from "../shared/webviewProtocol";

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

/**
 * A metric over the heatmap's cells, with each cell's colour intensity in [0, 1]: 1 is the
 * strongest colour. Probability, entropy and KL are linear from 0 to their maximum (probability
 * to 1); the target rank is logarithmic and reversed, so rank 1 is the strongest.
 */
export interface MetricScale {
  metric: Metric;
  /** [layers, positions] raw values. */
  values: Float32Array;
  /** [layers, positions] in [0, 1]. */
  intensity: Float32Array;
  min: number;
  max: number;
  log: boolean;
  reversed: boolean;
}

export function metricScale(view: LensView, metric: Metric): MetricScale {
  return cached(view, `scale:${metric}`, () => {
    const values = metric === "prob" ? view.top1Probs : metric === "entropy" ? view.entropy : metric === "kl" ? view.kl : view.targetRank;
    const n = values.length;
    const intensity = new Float32Array(n);
    let max = 0;
    for (let i = 0; i < n; i++) if (values[i] > max) max = values[i];
    if (metric === "targetRank") {
      const top = Math.max(1, max);
      const logTop = Math.log(top);
      for (let i = 0; i < n; i++) intensity[i] = logTop > 0 ? 1 - Math.log(Math.max(1, values[i])) / logTop : 1;
      return { metric, values, intensity, min: 1, max: top, log: true, reversed: true };
    }
    const top = metric === "prob" ? 1 : max;
    for (let i = 0; i < n; i++) intensity[i] = top > 0 ? Math.min(1, Math.max(0, values[i] / top)) : 0;
    return { metric, values, intensity, min: 0, max: top, log: false, reversed: false };
  });
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
 * to the last layer (the layer where the prediction settles).
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
