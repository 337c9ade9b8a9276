/**
 * Checks shared by the parity suites of the vision-language architectures: a record's attention
 * mass on the image and its lens statistics against what tools/reference computed from
 * transformers' own attentions and hidden states.
 */
import { expect } from "vitest";
import { type LensRecord, SEGMENTS } from "../../src/shared/lensRecord";
import { maxAbsDiff } from "./fixtures";

/** A tensor a lens fixture (tools/reference/make_lens_fixtures.py) keeps in a file of its own. */
export interface LensFixtureBlob {
  file: string;
  dtype: "float32" | "int32";
  shape: number[];
}

/** A lens fixture's case: the record of prompt + greedy tokens against transformers' hidden states and attentions; its tensors are blobs by key. */
export interface LensFixtureCase {
  model: string;
  case: string;
  model_dir: string;
  source_case: string;
  num_layers: number;
  num_heads: number;
  prompt_length: number;
  greedy_tokens: number[];
  ids: number[];
  top_k: number;
  target_ids: number[];
  tracked_ids: number[];
  head_mask: Record<string, number[]>;
  [blob: string]: unknown;
}

/** `ref` is transformers' attention mass on the image tokens, [L, heads, S] over the first S analysed positions. */
export function expectImageAttentionMatches(r: LensRecord, ref: Float32Array, shape: number[], label: string, bound = 1e-5): void {
  const [L, nH, S] = shape;
  const P = r.positions.length;
  const G = SEGMENTS.length;
  const image = SEGMENTS.indexOf("image");
  let worst = 0;
  for (let l = 0; l < L; l++)
    for (let h = 0; h < nH; h++)
      for (let q = 0; q < S; q++) worst = Math.max(worst, Math.abs(r.attention.mass.data[((l * nH + h) * P + q) * G + image] - ref[(l * nH + h) * S + q]));
  console.log(`${label} image attention mass max abs error: ${worst.toExponential(2)}`);
  expect(worst).toBeLessThanOrEqual(bound);
}

export interface LensReference {
  topK: number;
  topkIds: Float32Array;
  topkProbs: Float32Array;
  entropy: Float32Array;
  kl: Float32Array;
  cosine: Float32Array;
}

/** Probabilities, entropy, KL and cosine within `bound`; top-k ids equal except where transformers' own probabilities tie. */
export function expectLensMatches(r: LensRecord, ref: LensReference, label: string, bound = 1e-4): void {
  const errors = {
    topkProb: maxAbsDiff(r.lens.topkProbs.data, ref.topkProbs),
    entropy: maxAbsDiff(r.lens.entropy.data, ref.entropy),
    kl: maxAbsDiff(r.lens.kl.data, ref.kl),
    cosine: maxAbsDiff(r.lens.cosine.data, ref.cosine),
  };
  console.log(`${label} lens max abs error: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")}`);
  for (const e of Object.values(errors)) expect(e).toBeLessThanOrEqual(bound);
  let swapped = 0;
  r.lens.topkIds.data.forEach((id, i) => {
    if (id === ref.topkIds[i]) return;
    // only where transformers' own probabilities tie (the order of equal values is arbitrary)
    const p = ref.topkProbs;
    const tied = [i - 1, i + 1].some((j) => j >= 0 && j < p.length && Math.floor(j / ref.topK) === Math.floor(i / ref.topK) && Math.abs(p[j] - p[i]) <= 2e-6);
    expect(tied, `top-k entry ${i}`).toBe(true);
    swapped++;
  });
  expect(swapped).toBeLessThanOrEqual(8);
}

/**
 * The largest difference between the record's attention mass per layer, head, query and segment
 * and the same sums over transformers' attention probabilities ([L, heads, S, S], the prompt's
 * S positions analysed first in the record).
 */
export function attentionMassError(r: LensRecord, att: ArrayLike<number>, layers: number, heads: number, S: number): number {
  const G = SEGMENTS.length;
  const P = r.positions.length;
  const seg = r.tokens.map((t) => SEGMENTS.indexOf(t.segment));
  let worst = 0;
  for (let l = 0; l < layers; l++)
    for (let h = 0; h < heads; h++)
      for (let q = 0; q < S; q++) {
        const expected = new Array<number>(G).fill(0);
        for (let k = 0; k < S; k++) expected[seg[k]] += att[((l * heads + h) * S + q) * S + k];
        for (let g = 0; g < G; g++) worst = Math.max(worst, Math.abs(r.attention.mass.data[((l * heads + h) * P + q) * G + g] - expected[g]));
      }
  return worst;
}
