/**
 * Layer-by-layer difference between two runs of the same model on the same input — typically
 * heads masked vs not (seed 004): how the target's probability and rank and the entropy move.
 */
import type { LensRecord, NumericBlock } from "./lensRecord";

export interface RecordDiff {
  layers: string[];
  positions: number[];
  /** other - base, [L+1, P] each. */
  targetProbDelta: NumericBlock;
  targetRankDelta: NumericBlock;
  entropyDelta: NumericBlock;
  /** Means over positions, one per layer. */
  meanTargetProbDelta: number[];
  meanTargetRankDelta: number[];
  meanEntropyDelta: number[];
  baseHeadMask: Record<string, number[]> | null;
  otherHeadMask: Record<string, number[]> | null;
  /** Whether the two runs measured the same target token at each position. */
  sameTarget: boolean[];
  /** Whether the two runs had the same token at each position (generated tokens can differ). */
  sameToken: boolean[];
}

export function diffRecords(base: LensRecord, other: LensRecord): RecordDiff {
  if (base.model.configHash !== other.model.configHash) throw new Error("cannot diff records of different models (config.json differs)");
  if (base.input.prompt !== other.input.prompt || (base.input.image?.sha256 ?? null) !== (other.input.image?.sha256 ?? null)) {
    throw new Error("cannot diff records of different inputs (prompt or image differs)");
  }
  if (base.positions.join() !== other.positions.join()) throw new Error("cannot diff records with different analysed positions: run both with the same settings");
  const layers = base.layerLabels.length;
  const P = base.positions.length;
  const delta = (key: "targetProb" | "targetRank" | "entropy"): NumericBlock => ({
    shape: [layers, P],
    data: base.lens[key].data.map((v, i) => other.lens[key].data[i] - v),
  });
  const mean = (b: NumericBlock) => Array.from({ length: layers }, (_, l) => b.data.slice(l * P, (l + 1) * P).reduce((a, v) => a + v, 0) / P);
  const targetProbDelta = delta("targetProb");
  const targetRankDelta = delta("targetRank");
  const entropyDelta = delta("entropy");
  return {
    layers: base.layerLabels,
    positions: base.positions,
    targetProbDelta,
    targetRankDelta,
    entropyDelta,
    meanTargetProbDelta: mean(targetProbDelta),
    meanTargetRankDelta: mean(targetRankDelta),
    meanEntropyDelta: mean(entropyDelta),
    baseHeadMask: base.headMask,
    otherHeadMask: other.headMask,
    sameTarget: base.lens.targetIds.map((t, i) => t === other.lens.targetIds[i]),
    sameToken: base.positions.map((p) => base.tokens[p]?.id === other.tokens[p]?.id),
  };
}
