/**
 * Layer-by-layer difference between two runs of the same model on the same input, typically
 * with heads masked and without (seed 004): how the target's probability and rank and the
 * lens entropy move at every layer and analysed position. Every delta is other - base.
 */
import type { LensRecord, NumericBlock } from "./lensRecord";

export interface RecordDiff {
  model: { id: string; configHash: string };
  /** Lens layer labels, L + 1 of them (rows of every delta block). */
  layers: string[];
  /** The analysed positions both records share (columns of every delta block). */
  positions: number[];
  /** Text of the token at each analysed position, in each record (generated tokens can differ). */
  baseTokens: string[];
  otherTokens: string[];
  /** Text of each position's target token, in each record. */
  baseTargets: string[];
  otherTargets: string[];
  /** Whether both records have the same token id at each position. */
  sameToken: boolean[];
  /**
   * Whether both records have the same tokens up to and including each position, i.e. the two
   * lenses there read the same context. False after the first generated token that differs.
   */
  sameContext: boolean[];
  /** Whether both records measured the same target token at each position. */
  sameTarget: boolean[];
  /** other - base, [L+1, P]: positive means the target became more likely. */
  targetProbDelta: NumericBlock;
  /** other - base, [L+1, P]: positive means the target fell down the ranking (1 is the top). */
  targetRankDelta: NumericBlock;
  /** other - base in nats, [L+1, P]: positive means the layer became less certain. */
  entropyDelta: NumericBlock;
  /** The deltas averaged over all analysed positions, one per layer. */
  meanTargetProbDelta: number[];
  meanTargetRankDelta: number[];
  meanEntropyDelta: number[];
  /** The heads each record had masked (decoder block -> heads), null for none. */
  baseHeadMask: Record<string, number[]> | null;
  otherHeadMask: Record<string, number[]> | null;
}

/** Refuses (throws) unless both records are of the same model, input and analysed positions. */
export function diffRecords(base: LensRecord, other: LensRecord): RecordDiff {
  const refuse = (why: string, what: string) => {
    throw new Error(`cannot diff records of ${why}: ${what}`);
  };
  if (base.model.configHash !== other.model.configHash) {
    refuse("different models", `config.json hashes differ (${base.model.id} ${base.model.configHash.slice(0, 12)}…, ${other.model.id} ${other.model.configHash.slice(0, 12)}…); compare runs of one checkpoint`);
  }
  if (base.input.prompt !== other.input.prompt) refuse("different inputs", `the prompts differ (${JSON.stringify(base.input.prompt)} vs ${JSON.stringify(other.input.prompt)})`);
  const baseImage = base.input.image?.sha256 ?? "no image";
  const otherImage = other.input.image?.sha256 ?? "no image";
  if (baseImage !== otherImage) refuse("different inputs", `the images differ (${baseImage.slice(0, 12)} vs ${otherImage.slice(0, 12)})`);
  if (base.positions.length !== other.positions.length || base.positions.some((p, j) => other.positions[j] !== p)) {
    refuse(
      "different analysed positions",
      `base has ${base.positions.length} and other ${other.positions.length}; the positions follow the settings and the number of generated tokens, so run both with the same settings (--max-new-tokens 0 compares the prompt alone)`,
    );
  }
  const promptLength = base.tokens.length - base.generation.ids.length;
  const otherPromptLength = other.tokens.length - other.generation.ids.length;
  const firstDifferent = base.tokens.slice(0, promptLength).findIndex((t, i) => t.id !== other.tokens[i]?.id);
  if (promptLength !== otherPromptLength || firstDifferent >= 0) {
    refuse("different inputs", `the prompt tokenizes differently (first difference at token ${firstDifferent >= 0 ? firstDifferent : Math.min(promptLength, otherPromptLength)}); were the tokenizer or chat template changed?`);
  }

  const layers = base.layerLabels.length;
  const P = base.positions.length;
  if (P === 0) refuse("no analysed positions", "there is nothing to compare");
  for (const [name, r] of [["base", base], ["other", other]] as const) {
    for (const key of ["targetProb", "targetRank", "entropy"] as const) {
      if (r.lens[key].data.length !== layers * P) throw new Error(`${name} record's lens.${key} does not hold [${layers}, ${P}] values: validate it with validateLensRecord first`);
    }
  }

  const delta = (key: "targetProb" | "targetRank" | "entropy"): NumericBlock => ({
    shape: [layers, P],
    data: base.lens[key].data.map((v, i) => other.lens[key].data[i] - v),
  });
  const meanPerLayer = (b: NumericBlock) =>
    Array.from({ length: layers }, (_, l) => {
      let sum = 0;
      for (let j = 0; j < P; j++) sum += b.data[l * P + j];
      return sum / P;
    });
  const textOf = (r: LensRecord, id: number) => r.tokenTexts[String(id)] ?? `<${id}>`;
  const tokenAt = (r: LensRecord, p: number) => r.tokens[p];

  let contextDiffersFrom = Infinity;
  for (let i = 0; i < Math.max(base.tokens.length, other.tokens.length); i++) {
    if (base.tokens[i]?.id !== other.tokens[i]?.id) {
      contextDiffersFrom = i;
      break;
    }
  }

  const targetProbDelta = delta("targetProb");
  const targetRankDelta = delta("targetRank");
  const entropyDelta = delta("entropy");
  return {
    model: { id: base.model.id, configHash: base.model.configHash },
    layers: [...base.layerLabels],
    positions: [...base.positions],
    baseTokens: base.positions.map((p) => tokenAt(base, p).text),
    otherTokens: other.positions.map((p) => tokenAt(other, p).text),
    baseTargets: base.lens.targetIds.map((id) => textOf(base, id)),
    otherTargets: other.lens.targetIds.map((id) => textOf(other, id)),
    sameToken: base.positions.map((p) => tokenAt(base, p).id === tokenAt(other, p).id),
    sameContext: base.positions.map((p) => p < contextDiffersFrom),
    sameTarget: base.lens.targetIds.map((id, j) => id === other.lens.targetIds[j]),
    targetProbDelta,
    targetRankDelta,
    entropyDelta,
    meanTargetProbDelta: meanPerLayer(targetProbDelta),
    meanTargetRankDelta: meanPerLayer(targetRankDelta),
    meanEntropyDelta: meanPerLayer(entropyDelta),
    baseHeadMask: base.headMask,
    otherHeadMask: other.headMask,
  };
}
