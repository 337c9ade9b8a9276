/**
 * One attention head, picked in the block x head matrix: its pattern over the key tokens for a
 * query (as CircuitsVis shows it), the same over the image patches, and what masking it does to
 * the answer, layer by layer. Pure functions over the records; headView.ts draws them.
 */
import type { LensRecord, NumericBlock } from "../shared/lensRecord";
import { answerPosition, type LensView, layerSeries, type OverlayGrid, overlayLayout, ranksAt, tokenText } from "./model";

/** A picked head: decoder block from 0 (lens layer block + 1), head from 0. */
export interface PickedHead {
  block: number;
  head: number;
}

/** The head's weights of query `p` (an index into record.positions) over every key token: row p of rows [P, T]. */
export function patternRow(rows: NumericBlock, p: number): Float32Array {
  const [P, T] = rows.shape;
  const out = new Float32Array(T);
  if (p < 0 || p >= P) return out;
  for (let t = 0; t < T; t++) out[t] = Number(rows.data[p * T + t]);
  return out;
}

/** The key tokens of a row, strongest first: the row's top `n` (weight > 0). */
export function strongestKeys(row: Float32Array, n = 5): { token: number; weight: number }[] {
  return Array.from(row, (weight, token) => ({ token, weight }))
    .filter((k) => k.weight > 0)
    .sort((a, b) => b.weight - a.weight || a.token - b.token)
    .slice(0, n);
}

/** A row's weights on the image tokens, on the picture's patch grid (NaN where no image token sits). */
export function headOverlay(record: LensRecord, row: Float32Array): OverlayGrid | null {
  const layout = overlayLayout(record);
  if (!layout) return null;
  const values = new Float32Array(layout.rows * layout.cols).fill(Number.NaN);
  let max = 0;
  for (const c of layout.cells) {
    if (c.row >= layout.rows || c.col >= layout.cols || c.token >= row.length) continue;
    const v = row[c.token];
    values[c.row * layout.cols + c.col] = v;
    if (v > max) max = v;
  }
  return { rows: layout.rows, cols: layout.cols, values, max };
}

/** The share of a row on the image tokens. */
export function imageShare(record: LensRecord, row: Float32Array): number {
  let s = 0;
  record.tokens.forEach((t, i) => {
    if (t.segment === "image" && i < row.length) s += row[i];
  });
  return s;
}

/** A record's head mask with one more head (blocks and heads sorted, no duplicates). */
export function withHead(mask: Readonly<Record<string, readonly number[]>> | null | undefined, head: PickedHead): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [b, hs] of Object.entries(mask ?? {})) out[b] = [...hs];
  const key = String(head.block);
  out[key] = [...new Set([...(out[key] ?? []), head.head])].sort((a, b) => a - b);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => Number(a) - Number(b)));
}

/** The answer's rank, probability and the entropy per layer, without and with a masked head. */
export interface MaskComparison {
  /** The answer token: the base run's final top-1 at its answer position (the first generated token). */
  answerId: number;
  answerText: string;
  /** Index into record.positions of the position that predicts the answer. */
  p: number;
  rank: { base: number[]; masked: number[] | null };
  prob: { base: number[]; masked: number[] | null };
  entropy: { base: number[]; masked: number[] };
  /** The masked run's own final top-1 there. */
  maskedTop1: string;
  summary: string;
}

export function maskComparison(base: LensView, masked: LensView, head: PickedHead): MaskComparison | null {
  if (masked.layers !== base.layers || masked.positions !== base.positions) return null;
  const p = answerPosition(base);
  const L = base.layers - 1;
  const answerId = base.top1Ids[L * base.positions + p];
  const b = ranksAt(base, answerId, p);
  if (!b) return null;
  const m = ranksAt(masked, answerId, p);
  const answerText = tokenText(base.record, answerId);
  const maskedTop1 = tokenText(masked.record, masked.top1Ids[L * masked.positions + p]);
  const fmt = (x: number) => (x >= 0.01 ? x.toFixed(2) : x.toExponential(1));
  const after = m ? `prob ${fmt(b.prob[L])} → ${fmt(m.prob[L])}, rank ${b.rank[L]} → ${m.rank[L]}` : `prob ${fmt(b.prob[L])} → below every top-k, rank ${b.rank[L]} → not tracked`;
  const settled = maskedTop1 === answerText ? "the answer stays" : `the final top-1 becomes “${maskedTop1}”`;
  return {
    answerId,
    answerText,
    p,
    rank: { base: b.rank, masked: m?.rank ?? null },
    prob: { base: b.prob, masked: m?.prob ?? null },
    entropy: { base: layerSeries(base, "entropy", p), masked: layerSeries(masked, "entropy", p) },
    maskedTop1,
    summary: `Masking block ${head.block + 1} head ${head.head}: “${answerText}” at the last layer ${after}; ${settled}.`,
  };
}
