/**
 * One head's whole attention pattern in a finished run: for every analysed query (the record's
 * positions) its attention over every key token, at every layer. A record keeps only the
 * per-segment mass of each head; the full rows of all heads would be L x heads x P x T numbers
 * (hundreds of millions at 7B), so a head's rows are computed when asked for, by one decoder call
 * over the tokens the run saw (the prompt, then the generated tokens that were fed back), which
 * gives the same causal attention as the run's prefill and decode steps.
 */
import { SEGMENTS } from "../../shared/lensRecord";
import type { ImageFeatures, LoadedModel } from "../model/loadedModel";

/** What runLens hands over (LensRunHooks.keepPatternSource) for patterns asked for later. */
export interface PatternSource {
  /** Token ids every analysed position saw. */
  ids: number[];
  /** The record's analysed positions, as indices into `ids`. */
  positions: number[];
  /** Segment index of every key (SEGMENTS). */
  keySegments: number[];
  imageFeatures: ImageFeatures | undefined;
  /** The run's head mask [layers x heads], if any: a masked head still attends, and later layers see its absence. */
  headMask: Float32Array | undefined;
}

/** `head`'s attention at every layer: [L, P, T] with P the record's positions and T = ids.length. */
export async function headPattern(model: Pick<LoadedModel, "forward" | "releaseCache">, source: PatternSource, head: number): Promise<Float32Array> {
  const out = await model.forward(source.ids, {
    imageFeatures: source.imageFeatures,
    positions: source.positions,
    keySegments: source.keySegments,
    segmentCount: SEGMENTS.length,
    imageKeys: [],
    headMask: source.headMask,
    patternHead: head,
  });
  model.releaseCache(out.cache);
  if (!out.headRows) throw new Error("the decoder returned no head_rows");
  return out.headRows;
}

/** One layer's rows [P, T] out of a head's pattern [L, P, T]. */
export function patternLayer(pattern: Float32Array, layer: number, positions: number, keys: number): Float32Array {
  return pattern.subarray(layer * positions * keys, (layer + 1) * positions * keys);
}
