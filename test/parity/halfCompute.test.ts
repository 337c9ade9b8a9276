/**
 * Half-precision compute (dtype float16) against transformers computing natively in float16 and
 * bfloat16 (tools/reference/make_half_fixtures.py: one case of each architecture, weights
 * rounded from the float32 checkpoints). On the CPU each weight product is a float32 product of
 * the float16 values, rounded to float16 (the graph widens it itself: blocks.ts
 * widensHalfProducts), and onnxruntime computes some other float16 ops in float32 between
 * casts of its own (test/unit/dtypeChoice.test.ts), where torch rounds every op's output to
 * float16, so the bounds are those of that difference:
 *
 * - token ids identical (the same tokenizer and prompt; pixel values are float32 before the cast);
 * - hidden states and logits within relative error 5e-3 of transformers' float16 run (measured
 *   2.0e-3 at most: the same size as transformers' own float16 against its float32, 1.3-1.9e-3);
 * - greedy tokens identical up to the first step whose top-2 gap is under 0.05 (the largest logit
 *   error is far below it);
 * - the lens at every layer and prompt position (norm and unembedding in float16, statistics in
 *   float32): top-k probabilities within 5e-3 (measured 1.9e-3 at most), entropy within 0.02
 *   nats (8.9e-3) and KL within 0.04 nats (2.7e-2, Qwen2-VL): the logits' own error, about 0.02
 *   in float16, moves them that much. Top-k ids equal except where transformers' own
 *   probabilities are within 5e-3 of each other.
 *
 * Against transformers' bfloat16 run (bfloat16 computes only on CUDA here) the float16 record is
 * reported and loosely bounded: bfloat16's 8-bit mantissa alone moves its states by about 1e-2.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { maxAbsDiff, relativeError, type TensorRef } from "../helpers/fixtures";

const HALF = path.resolve(__dirname, "../fixtures/half");
const F16_BOUND = 5e-3;
/** Top-k probabilities; entropy and KL are in nats (a tiny model's entropy is about 6 nats). */
const LENS_BOUND = { topkProb: 5e-3, entropy: 2e-2, kl: 4e-2 };
const GAP = 0.05;
const BF16_BOUND = 0.05;

interface HalfCase {
  model: string;
  case: string;
  architecture: string;
  compute_dtype: "float16" | "bfloat16";
  model_dir: string;
  prompt: string;
  image: string | null;
  input_ids: number[];
  greedy_tokens: number[];
  greedy_top2_gaps: number[];
  hidden_states: TensorRef;
  logits: TensorRef;
  lens: { top_k: number; topk_ids: TensorRef; topk_probs: TensorRef; entropy: TensorRef; kl: TensorRef };
  dir: string;
}

const index = JSON.parse(fs.readFileSync(path.join(HALF, "index.json"), "utf8")) as { cases: string[] };
const cases: HalfCase[] = index.cases.map((f) => ({ ...(JSON.parse(fs.readFileSync(path.join(HALF, f), "utf8")) as HalfCase), dir: path.dirname(path.join(HALF, f)) }));
const tensor = (c: HalfCase, ref: TensorRef) => {
  const buf = fs.readFileSync(path.join(c.dir, ref.file));
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
};

const models = new Map<string, Promise<LoadedModel>>();
const openHalf = (c: HalfCase) => {
  const dir = path.resolve(c.dir, c.model_dir);
  let m = models.get(dir);
  if (!m) models.set(dir, (m = LoadedModel.open(dir, { device: "cpu", dtype: "float16" })));
  return m;
};
afterAll(async () => {
  for (const m of models.values()) await (await m).dispose();
});

it("has float16 and bfloat16 references for every architecture", () => {
  const archs = ["LlamaForCausalLM", "LlavaForConditionalGeneration", "Qwen2VLForConditionalGeneration", "Idefics3ForConditionalGeneration"];
  for (const dtype of ["float16", "bfloat16"]) expect(new Set(cases.filter((c) => c.compute_dtype === dtype).map((c) => c.architecture))).toEqual(new Set(archs));
});

async function promptForward(c: HalfCase) {
  const model = await openHalf(c);
  const prepared = await model.prepare({ prompt: c.prompt, image: c.image ? path.resolve(c.dir, c.image) : undefined });
  expect(prepared.inputIds).toEqual(c.input_ids);
  const positions = c.input_ids.map((_, i) => i);
  const result = await model.forward(c.input_ids, { imageFeatures: await model.imageFeaturesFor(prepared), positions });
  return { model, prepared, result };
}

function errors(c: HalfCase, hidden: Float32Array, logits: Float32Array) {
  const [layers, seq, width] = c.hidden_states.shape;
  const expected = tensor(c, c.hidden_states);
  const perLayer = Array.from({ length: layers }, (_, l) => relativeError(hidden, expected, l * seq * width, seq * width));
  return { hidden: Math.max(...perLayer), logits: relativeError(logits, tensor(c, c.logits)), logitsAbs: maxAbsDiff(logits, tensor(c, c.logits)) };
}

describe.each(cases.filter((c) => c.compute_dtype === "float16").map((c) => [`${c.model}/${c.case}`, c] as const))("%s: float16 compute against transformers' float16", (name, c) => {
  it(`opens in float16 with the weights as stored, the same token ids, every hidden state and the logits within ${F16_BOUND}`, async () => {
    const { model, result } = await promptForward(c);
    expect([model.info.computeDtype, model.info.weightPlan]).toEqual(["float16", "half"]);
    expect(result.hiddenStates.length).toBe(tensor(c, c.hidden_states).length);
    const e = errors(c, result.hiddenStates, await model.logits(result));
    console.log(`${name} float16: hidden-state rel. error max ${e.hidden.toExponential(2)}, logits ${e.logits.toExponential(2)} (abs ${e.logitsAbs.toExponential(2)})`);
    expect(e.hidden).toBeLessThanOrEqual(F16_BOUND);
    expect(e.logits).toBeLessThanOrEqual(F16_BOUND);
    // the top-2 gap the greedy comparison relies on is far above the logits' error
    expect(e.logitsAbs).toBeLessThan(GAP / 2);
  });

  it(`generates transformers' float16 greedy tokens up to the first top-2 gap under ${GAP}`, async () => {
    const model = await openHalf(c);
    const prepared = await model.prepare({ prompt: c.prompt, image: c.image ? path.resolve(c.dir, c.image) : undefined });
    const firstClose = c.greedy_top2_gaps.findIndex((g) => g < GAP);
    const comparable = firstClose === -1 ? c.greedy_tokens.length : firstClose + 1;
    const tokens = await model.generate(prepared, c.greedy_tokens.length);
    console.log(`${name} float16: ${comparable} of ${c.greedy_tokens.length} greedy steps comparable (gaps ${c.greedy_top2_gaps.map((g) => g.toFixed(3)).join(", ")})`);
    expect(comparable).toBeGreaterThanOrEqual(1);
    expect(tokens.slice(0, comparable)).toEqual(c.greedy_tokens.slice(0, comparable));
  });

  it(`computes the lens at every layer and prompt position within ${JSON.stringify(LENS_BOUND)} of transformers' float16 head`, async () => {
    const model = await openHalf(c);
    const r = await runLens(model, { prompt: c.prompt, image: c.image ? path.resolve(c.dir, c.image) : undefined, settings: { positions: "all", topK: c.lens.top_k, maxNewTokens: 0 } });
    expect(r.model.computeDtype).toBe("float16");
    const S = c.input_ids.length;
    const [L1, , K] = c.lens.topk_probs.shape;
    expect(r.positions).toEqual(c.input_ids.map((_, i) => i));
    const P = r.positions.length;
    // the record's rows are [layers, positions(, k)] like the fixture's, over the same S positions
    const pick = (data: ArrayLike<number>, width: number) => Float32Array.from({ length: L1 * S * width }, (_, i) => data[Math.floor(i / (S * width)) * P * width + (i % (S * width))]);
    const e = {
      topkProb: maxAbsDiff(pick(r.lens.topkProbs.data, K), tensor(c, c.lens.topk_probs)),
      entropy: maxAbsDiff(pick(r.lens.entropy.data, 1), tensor(c, c.lens.entropy)),
      kl: maxAbsDiff(pick(r.lens.kl.data, 1), tensor(c, c.lens.kl)),
    };
    console.log(`${name} float16 lens max abs error: topkProb ${e.topkProb.toExponential(2)}, entropy ${e.entropy.toExponential(2)}, kl ${e.kl.toExponential(2)}`);
    for (const k of ["topkProb", "entropy", "kl"] as const) expect(e[k], k).toBeLessThanOrEqual(LENS_BOUND[k]);
    const ids = pick(r.lens.topkIds.data, K);
    const refIds = tensor(c, c.lens.topk_ids);
    const refProbs = tensor(c, c.lens.topk_probs);
    let swapped = 0;
    ids.forEach((id, i) => {
      if (id === refIds[i]) return;
      // a different id only where transformers' own neighbouring probabilities are within the bound
      const row = Math.floor(i / K);
      const close = [i - 1, i + 1].some((j) => Math.floor(j / K) === row && j >= 0 && Math.abs(refProbs[j] - refProbs[i]) <= LENS_BOUND.topkProb);
      expect(close, `top-k entry ${i} of ${name}`).toBe(true);
      swapped++;
    });
    expect(swapped).toBeLessThanOrEqual(ids.length / 20);
  });
});

describe.each(cases.filter((c) => c.compute_dtype === "bfloat16").map((c) => [`${c.model}/${c.case}`, c] as const))("%s: float16 compute against transformers' bfloat16", (name, c) => {
  it(`stays within ${BF16_BOUND} (reported: bfloat16 computes only on CUDA)`, async () => {
    const { model, result } = await promptForward(c);
    const e = errors(c, result.hiddenStates, await model.logits(result));
    console.log(`${name}: our float16 against transformers' bfloat16: hidden-state rel. error max ${e.hidden.toExponential(2)}, logits ${e.logits.toExponential(2)}`);
    expect(e.hidden).toBeLessThanOrEqual(BF16_BOUND);
    expect(e.logits).toBeLessThanOrEqual(BF16_BOUND);
  });
});
