/**
 * Lens parity with transformers: tools/reference/make_lens_fixtures.py records, from
 * transformers' own hidden states and attentions, the lens statistics of every layer at every
 * position of prompt + generated tokens. The whole runLens path (prefill, KV-cache decode,
 * lens graph) must reproduce them: top-k ids, targets and ranks identical (near ties aside),
 * probabilities, entropy, KL and cosine within 1e-4, attention segment masses within 1e-5,
 * and logits under a head mask within 1e-4.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { runLens } from "../../src/sidecar/lens/runLens";
import type { RankMethod } from "../../src/sidecar/graph/lensGraph";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { maxAbsDiff, relativeError } from "../helpers/fixtures";
import { attentionMassError, type LensFixtureBlob, type LensFixtureCase } from "../helpers/lensParity";

const LENS = path.resolve(__dirname, "../fixtures/lens");
type Blob = LensFixtureBlob;
type LensCase = LensFixtureCase;

const index = JSON.parse(fs.readFileSync(path.join(LENS, "index.json"), "utf8")) as { cases: string[] };
const cases = index.cases.map((f) => ({ file: path.join(LENS, f), c: JSON.parse(fs.readFileSync(path.join(LENS, f), "utf8")) as LensCase }));

function blob(file: string, b: Blob): Float32Array | Int32Array {
  const buf = fs.readFileSync(path.join(path.dirname(file), b.file));
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  return b.dtype === "int32" ? new Int32Array(ab) : new Float32Array(ab);
}

/** A lens case's model folder, and the prompt and image of the runtime case it was made from. */
function caseInput(file: string, c: LensCase): { modelDir: string; source: { prompt: string; image: string | null }; image: string | undefined } {
  const sourceFile = path.resolve(path.dirname(file), c.source_case);
  const source = JSON.parse(fs.readFileSync(sourceFile, "utf8")) as { prompt: string; image: string | null };
  return { modelDir: path.resolve(path.dirname(file), c.model_dir), source, image: source.image ? path.resolve(path.dirname(sourceFile), source.image) : undefined };
}

const models = new Map<string, Promise<LoadedModel>>();
const open = (dir: string, rankMethod?: RankMethod) => {
  const key = `${dir}|${rankMethod ?? "default"}`;
  if (!models.has(key)) models.set(key, LoadedModel.open(dir, { device: "cpu", rankMethod }));
  return models.get(key)!;
};
afterAll(async () => {
  for (const m of models.values()) await (await m).dispose();
});

const PROB = 1e-4;
const ATTENTION = 1e-5;
const RANK_MARGIN = 1e-5;
const TIE = 2e-6;

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

describe.each(cases.map(({ file, c }) => [`${c.model}/${c.case}`, file, c] as [string, string, LensCase]))("%s", (_name, file, c) => {
  const { modelDir, source, image } = caseInput(file, c);
  const L = c.num_layers;
  const N = c.ids.length;
  let record: Promise<LensRecord> | undefined;
  const getRecord = () =>
    (record ??= open(modelDir).then((m) =>
      runLens(m, { prompt: source.prompt, image, settings: { positions: "all", topK: c.top_k, maxNewTokens: c.greedy_tokens.length } }),
    ));

  it("runs prompt + greedy generation over the same positions and tokens, and the record validates", async () => {
    const r = await getRecord();
    assertLensRecord(r);
    expect(r.tokens.map((t) => t.id)).toEqual([...c.ids, c.greedy_tokens[c.greedy_tokens.length - 1]]);
    expect(r.generation.ids).toEqual(c.greedy_tokens);
    expect(r.positions).toEqual(c.ids.map((_, i) => i));
  });

  it("top-k ids (near ties aside) and probabilities match", async () => {
    const r = await getRecord();
    const refIds = blob(file, c["topk_ids"] as Blob);
    const refProbs = blob(file, c["topk_probs"] as Blob);
    const K = c.top_k;
    expect(maxAbs(r.lens.topkProbs.data, refProbs)).toBeLessThanOrEqual(PROB);
    let tolerated = 0;
    for (let row = 0; row < (L + 1) * N; row++)
      for (let k = 0; k < K; k++) {
        const i = row * K + k;
        if (r.lens.topkIds.data[i] === refIds[i]) continue;
        // A swap is only acceptable where the reference itself has two (near-)equal probabilities.
        const tiedBefore = k > 0 && Math.abs(refProbs[i] - refProbs[i - 1]) <= TIE;
        const tiedAfter = k < K - 1 ? Math.abs(refProbs[i] - refProbs[i + 1]) <= TIE : Math.abs(r.lens.topkProbs.data[i] - refProbs[i]) <= TIE;
        expect(tiedBefore || tiedAfter, `layer ${Math.floor(row / N)} position ${row % N} k ${k}`).toBe(true);
        tolerated++;
      }
    expect(tolerated).toBeLessThanOrEqual(4);
  });

  it("entropy, KL to the final layer and cosine to the final state match", async () => {
    const r = await getRecord();
    const errors = {
      topkProb: maxAbs(r.lens.topkProbs.data, blob(file, c["topk_probs"] as Blob)),
      entropy: maxAbs(r.lens.entropy.data, blob(file, c["entropy"] as Blob)),
      kl: maxAbs(r.lens.kl.data, blob(file, c["kl"] as Blob)),
      cosine: maxAbs(r.lens.cosine.data, blob(file, c["cosine"] as Blob)),
    };
    console.log(`${c.model}/${c.case} lens max abs error: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")}`);
    for (const e of Object.values(errors)) expect(e).toBeLessThanOrEqual(PROB);
  });

  it("targets (the final top-1) with their probability and rank at every layer", async () => {
    const r = await getRecord();
    expect(r.lens.targetIds).toEqual(c.target_ids);
    expect(maxAbs(r.lens.targetProb.data, blob(file, c["target_prob"] as Blob))).toBeLessThanOrEqual(PROB);
    const ranks = blob(file, c["target_rank"] as Blob);
    const margins = blob(file, c["target_rank_margin"] as Blob);
    r.lens.targetRank.data.forEach((rank, i) => expect(Math.abs(rank - ranks[i])).toBeLessThanOrEqual(margins[i] <= RANK_MARGIN ? 1 : 0));
  });

  it("marks the layers whose top-1 equals each generated token", async () => {
    const r = await getRecord();
    const refIds = blob(file, c["topk_ids"] as Blob);
    const G = c.greedy_tokens.length;
    for (let l = 0; l <= L; l++)
      c.greedy_tokens.forEach((g, t) => {
        const predicting = c.prompt_length - 1 + t;
        expect(r.generation.matches.data[l * G + t]).toBe(refIds[(l * N + predicting) * c.top_k] === g ? 1 : 0);
      });
  });

  it("ranks of arbitrary tracked tokens", async () => {
    const m = await open(modelDir);
    const prepared = await m.prepare({ prompt: source.prompt, image });
    const fwd = await m.forward(c.ids, { imageFeatures: await m.imageFeaturesFor(prepared), positions: c.ids.map((_, i) => i) });
    const stats = await m.lens(fwd.hiddenStates, { topK: c.top_k, tracked: c.tracked_ids });
    // The lens reports tracked tokens sorted by id; the fixture keeps the order it was given.
    const M = c.tracked_ids.length;
    expect(stats.tracked).toEqual([...new Set(c.tracked_ids)].sort((a, b) => a - b));
    const column = c.tracked_ids.map((id) => stats.tracked.indexOf(id));
    const ours = <A extends Float32Array | Int32Array>(x: A) => Array.from({ length: (x.length / stats.tracked.length) * M }, (_, i) => Number(x[Math.floor(i / M) * stats.tracked.length + column[i % M]]));
    expect(maxAbs(Float32Array.from(ours(stats.trackedProb)), blob(file, c["tracked_prob"] as Blob))).toBeLessThanOrEqual(PROB);
    const ranks = blob(file, c["tracked_rank"] as Blob);
    const margins = blob(file, c["tracked_rank_margin"] as Blob);
    ours(stats.trackedRank).forEach((rank, i) => expect(Math.abs(rank - ranks[i])).toBeLessThanOrEqual(margins[i] <= RANK_MARGIN ? 1 : 0));
  });

  it(`attention mass per layer, head, query and segment matches transformers' attentions (<= ${ATTENTION})`, async () => {
    const r = await getRecord();
    const worst = attentionMassError(r, blob(file, c["attentions"] as Blob), L, c.num_heads, c.prompt_length);
    console.log(`${c.model}/${c.case} attention segment mass max abs error: ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(ATTENTION);
  });

  it("logits and hidden states with heads masked match transformers' o_proj hook", async () => {
    const m = await open(modelDir);
    const prepared = await m.prepare({ prompt: source.prompt, image });
    const S = c.prompt_length;
    const mask = new Float32Array(L * c.num_heads).fill(1);
    for (const [layer, heads] of Object.entries(c.head_mask)) for (const h of heads) mask[Number(layer) * c.num_heads + h] = 0;
    const fwd = await m.forward(prepared.inputIds, { imageFeatures: await m.imageFeaturesFor(prepared), positions: prepared.inputIds.map((_, i) => i), headMask: mask });
    expect(prepared.inputIds).toEqual(c.ids.slice(0, S));
    const logitsError = relativeError(await m.logits(fwd), blob(file, c["masked_logits"] as Blob));
    const hiddenError = relativeError(fwd.hiddenStates, blob(file, c["masked_hidden_states"] as Blob));
    console.log(`${c.model}/${c.case} masked: logits rel. error ${logitsError.toExponential(2)}, hidden states ${hiddenError.toExponential(2)}`);
    expect(logitsError).toBeLessThanOrEqual(PROB);
    expect(hiddenError).toBeLessThanOrEqual(PROB);
    // And the mask really changed something.
    const unmasked = await m.forward(prepared.inputIds, { imageFeatures: await m.imageFeaturesFor(prepared), positions: [S - 1] });
    expect(maxAbs(await m.logits(unmasked), (await m.logits(fwd)).subarray((S - 1) * m.info.vocabSize))).toBeGreaterThan(0.1);
  });
});

// The fixtures' vocabularies are small, so the suite above ranks by sorting; the counting path
// that large vocabularies take must give the very same record.
describe.each(cases.map(({ file, c }) => [`${c.model}/${c.case}`, file, c] as [string, string, LensCase]))("%s, ranks by binning", (_name, file, c) => {
  it("gives the same ranks, top-k and probabilities as ranking by sorting", async () => {
    const { modelDir, source, image } = caseInput(file, c);
    const request = { prompt: source.prompt, image, settings: { positions: "all" as const, topK: c.top_k, maxNewTokens: c.greedy_tokens.length, target: "the" } };
    const [sorted, binned] = await Promise.all([open(modelDir, "sort"), open(modelDir, "bins")]).then(([a, b]) => Promise.all([runLens(a, request), runLens(b, request)]));
    expect(binned.tracked.ids.length).toBeGreaterThan(10);
    expect(binned.tracked.rank.data).toEqual(sorted.tracked.rank.data);
    expect(binned.tracked.prob.data).toEqual(sorted.tracked.prob.data);
    expect(binned.lens.targetRank.data).toEqual(sorted.lens.targetRank.data);
    expect(binned.lens.topkIds.data).toEqual(sorted.lens.topkIds.data);
  });
});

// A lens run keeps every row's logits in the graph; past a memory budget it goes in parts, with
// a first pass for the tokens to track. The smallest budget (one position per part) must give
// the very same record.
describe.each(cases.map(({ file, c }) => [`${c.model}/${c.case}`, file, c] as [string, string, LensCase]))("%s, in parts of one position", (_name, file, c) => {
  it("gives the same record as one pass over every row", async () => {
    const { modelDir, source, image } = caseInput(file, c);
    const request = { prompt: source.prompt, image, settings: { positions: "all" as const, topK: c.top_k, maxNewTokens: c.greedy_tokens.length, trackTokens: ["the"] } };
    const small = await LoadedModel.open(modelDir, { device: "cpu", logitsBudget: 1 });
    try {
      const [whole, parts] = [await runLens(await open(modelDir), request), await runLens(small, request)];
      expect(whole.positions.length).toBeGreaterThan(1);
      expect(parts.tracked.ids).toEqual(whole.tracked.ids);
      expect(parts.tracked.rank.data).toEqual(whole.tracked.rank.data);
      expect(maxAbsDiff(parts.tracked.prob.data, whole.tracked.prob.data)).toBeLessThanOrEqual(1e-6);
      expect(parts.lens.topkIds.data).toEqual(whole.lens.topkIds.data);
      expect(parts.lens.targetRank.data).toEqual(whole.lens.targetRank.data);
      for (const key of ["topkProbs", "entropy", "kl", "cosine", "targetProb"] as const) expect(maxAbsDiff(parts.lens[key].data, whole.lens[key].data)).toBeLessThanOrEqual(1e-5);
    } finally {
      await small.dispose();
    }
  });
});

// The whole answer's probability comes from the lens graph's final-layer target probabilities;
// here it is recomputed from full logits (a separate unembedding session) and a softmax in JS.
describe("answerProb", () => {
  it("equals the product of the final layer's softmax over the teacher-forced answer tokens", async () => {
    const { file, c } = cases.find(({ c }) => c.model.startsWith("llava"))!;
    const { modelDir, source, image } = caseInput(file, c);
    const m = await open(modelDir);
    const answer = "blue sky over the sea";
    const r = await runLens(m, { prompt: source.prompt, image, settings: { maxNewTokens: 0, target: answer, answerProb: true } });

    const ids = m.text.encodeContinuation(` ${answer}`);
    expect(ids.length).toBeGreaterThan(1);
    const prepared = await m.prepare({ prompt: source.prompt, image });
    const prefill = await m.forward(prepared.inputIds, { imageFeatures: await m.imageFeaturesFor(prepared) });
    const rest = await m.forward(ids.slice(0, -1), { cache: prefill.cache, positions: ids.slice(0, -1).map((_, i) => i) });
    const V = m.info.vocabSize;
    const rows = [await m.logits(prefill), await m.logits(rest)];
    const logSoftmaxAt = (logits: Float32Array, id: number) => {
      let max = -Infinity;
      for (const v of logits) max = Math.max(max, v);
      let sum = 0;
      for (const v of logits) sum += Math.exp(v - max);
      return logits[id] - max - Math.log(sum);
    };
    let logProb = logSoftmaxAt(rows[0], ids[0]);
    for (let i = 1; i < ids.length; i++) logProb += logSoftmaxAt(rows[1].subarray((i - 1) * V, i * V), ids[i]);
    expect(r.lens.answerProb).toBeGreaterThan(0);
    expect(Math.abs(r.lens.answerProb! - Math.exp(logProb)) / Math.exp(logProb)).toBeLessThanOrEqual(1e-4);
  });
});

describe("forward", () => {
  it("reports nothing, and fails nothing, when asked for no positions (a cache-only prefill)", async () => {
    const { file, c } = cases.find(({ c }) => c.model.startsWith("llama"))!;
    const m = await open(caseInput(file, c).modelDir);
    const r = await m.forward(c.ids.slice(0, 5), { positions: [] });
    expect(r.hiddenStates.length).toBe(0);
    expect(r.nextToken).toBeUndefined();
    expect(r.cache.length).toBe(5);
  });
});
