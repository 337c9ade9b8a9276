/**
 * The parity tests every vision-language fixture shares (Qwen2-VL, Idefics3): image features,
 * hidden states and logits, greedy decoding, head masking, and a lens run, each against what
 * tools/reference recorded from transformers. A suite adds its own preprocessing and record
 * checks around them.
 */
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { readCaseFiles, readTensorIn, relativeError, type TensorRef } from "./fixtures";
import { expectImageAttentionMatches, expectLensMatches } from "./lensParity";

/** The case fields both fixture scripts write. */
export interface VlmCase {
  case: string;
  prompt: string;
  image: string;
  input_ids: number[];
  num_image_tokens: number;
  image_features: TensorRef;
  hidden_states: TensorRef;
  logits: TensorRef;
  greedy_tokens: number[];
  greedy_min_top2_gap: number;
  attention_image_mass: TensorRef;
  head_mask: Record<string, number[]>;
  masked_last_logits: TensorRef;
  masked_last_hidden_states: TensorRef;
  lens: { ids: number[]; top_k: number; topk_ids: TensorRef; topk_probs: TensorRef; entropy: TensorRef; kl: TensorRef; cosine: TensorRef };
}

export const BOUND = 1e-4;

/** A fixture folder (model/ and cases/), its cases, and its model opened once for the file. */
export interface VlmFixture<C extends VlmCase = VlmCase> {
  modelDir: string;
  casesDir: string;
  cases: C[];
  tensor: (ref: TensorRef) => Float32Array;
  open: () => Promise<LoadedModel>;
  imageOf: (c: VlmCase) => string;
}

export function vlmFixture<C extends VlmCase>(root: string): VlmFixture<C> {
  const modelDir = path.join(root, "model");
  const casesDir = path.join(root, "cases");
  let model: Promise<LoadedModel> | undefined;
  afterAll(async () => {
    if (model) await (await model).dispose();
  });
  return {
    modelDir,
    casesDir,
    cases: readCaseFiles<C>(casesDir),
    tensor: (ref) => readTensorIn(casesDir, ref),
    open: () => (model ??= LoadedModel.open(modelDir, { device: "cpu" })),
    imageOf: (c) => path.resolve(casesDir, c.image),
  };
}

type Fixture = VlmFixture;

/**
 * Image features, every hidden state and the logits within BOUND; the same greedy tokens; the
 * last position's logits and hidden states with heads masked, against transformers' o_proj hook.
 */
export function forwardParityTests(f: Fixture, c: VlmCase, label: string, names: { features: string; greedy: string }): void {
  const image = f.imageOf(c);
  it(`matches the ${names.features}, every hidden state and the logits (relative error <= ${BOUND})`, async () => {
    const m = await f.open();
    const prepared = await m.prepare({ prompt: c.prompt, image });
    const features = await m.imageFeaturesFor(prepared);
    expect(features!.dims).toEqual(c.image_features.shape);
    const featureError = relativeError(features!.data as Float32Array, f.tensor(c.image_features));
    const result = await m.forward(c.input_ids, { imageFeatures: features, positions: c.input_ids.map((_, i) => i) });
    const [layers, seq, hidden] = c.hidden_states.shape;
    expect(layers).toBe(m.info.numLayers + 1);
    const expected = f.tensor(c.hidden_states);
    expect(result.hiddenStates.length).toBe(expected.length);
    const perLayer = Array.from({ length: layers }, (_, l) => relativeError(result.hiddenStates, expected, l * seq * hidden, seq * hidden));
    const logitsError = relativeError(await m.logits(result), f.tensor(c.logits));
    console.log(`${label}: image features rel. error ${featureError.toExponential(2)}, hidden states max ${Math.max(...perLayer).toExponential(2)}, logits ${logitsError.toExponential(2)}`);
    expect(featureError).toBeLessThanOrEqual(BOUND);
    for (const e of perLayer) expect(e).toBeLessThanOrEqual(BOUND);
    expect(logitsError).toBeLessThanOrEqual(BOUND);
  });

  it(names.greedy, async () => {
    expect(c.greedy_min_top2_gap).toBeGreaterThan(1e-3);
    const m = await f.open();
    const prepared = await m.prepare({ prompt: c.prompt, image });
    expect(await m.generate(prepared, c.greedy_tokens.length)).toEqual(c.greedy_tokens);
  });

  it("logits and hidden states with heads masked match transformers' o_proj hook", async () => {
    const m = await f.open();
    const prepared = await m.prepare({ prompt: c.prompt, image });
    const nH = m.info.numHeads;
    const mask = new Float32Array(m.info.numLayers * nH).fill(1);
    for (const [layer, heads] of Object.entries(c.head_mask)) for (const h of heads) mask[Number(layer) * nH + h] = 0;
    const features = await m.imageFeaturesFor(prepared);
    const fwd = await m.forward(c.input_ids, { imageFeatures: features, positions: [c.input_ids.length - 1], headMask: mask });
    const logitsError = relativeError(await m.logits(fwd), f.tensor(c.masked_last_logits));
    const hiddenError = relativeError(fwd.hiddenStates, f.tensor(c.masked_last_hidden_states));
    console.log(`${label} masked: logits rel. error ${logitsError.toExponential(2)}, hidden states ${hiddenError.toExponential(2)}`);
    expect(logitsError).toBeLessThanOrEqual(BOUND);
    expect(hiddenError).toBeLessThanOrEqual(BOUND);
  });
}

/**
 * A lens run over every position with the fixture's greedy tokens: a valid record over prompt
 * and generated tokens (plus `checkRecord`, the suite's own layout checks), attention mass on the
 * image and the lens statistics against transformers'.
 */
export function lensRunTests(f: Fixture, c: VlmCase, label: string, architecture: string, checkRecord: { title: string; check: (r: LensRecord) => void }): void {
  describe("lens run", () => {
    let record: Promise<LensRecord> | undefined;
    const getRecord = () =>
      (record ??= f.open().then((m) => runLens(m, { prompt: c.prompt, image: f.imageOf(c), settings: { positions: "all", topK: c.lens.top_k, maxNewTokens: c.greedy_tokens.length } })));

    it(checkRecord.title, async () => {
      const r = await getRecord();
      assertLensRecord(r);
      expect(r.model.architecture).toBe(architecture);
      expect(r.tokens.map((t) => t.id)).toEqual([...c.lens.ids, c.greedy_tokens[c.greedy_tokens.length - 1]]);
      expect(r.generation.ids).toEqual(c.greedy_tokens);
      expect(r.positions).toEqual(c.lens.ids.map((_, i) => i));
      expect(r.tokens.filter((t) => t.segment === "image").length).toBe(c.num_image_tokens);
      expect(r.tokens.some((t) => t.segment === "text")).toBe(true);
      checkRecord.check(r);
    });

    it("attention mass on the image tokens per layer, head and prompt query matches transformers' attentions (<= 1e-5)", async () => {
      expectImageAttentionMatches(await getRecord(), f.tensor(c.attention_image_mass), c.attention_image_mass.shape, label);
    });

    it("lens statistics match transformers' (probabilities, entropy, KL, cosine within 1e-4; top-k ids up to near ties)", async () => {
      const ref = { topK: c.lens.top_k, topkIds: f.tensor(c.lens.topk_ids), topkProbs: f.tensor(c.lens.topk_probs), entropy: f.tensor(c.lens.entropy), kl: f.tensor(c.lens.kl), cosine: f.tensor(c.lens.cosine) };
      expectLensMatches(await getRecord(), ref, label, BOUND);
    });
  });
}

/** The lens with its default positions plus image attention, patch lens, a target and a head mask picked by strategy. */
export function fullOptionsRunTest(f: Fixture, c: VlmCase): void {
  it("runs the lens with the default settings, image attention, patch lens, a target and a head mask", async () => {
    const m = await f.open();
    const r = await runLens(m, {
      prompt: c.prompt,
      image: f.imageOf(c),
      settings: { imageAttention: true, patchLens: true, target: "red", answerProb: true },
      headMask: { strategy: "topImage", count: 2 },
    });
    assertLensRecord(r);
    const S = c.input_ids.length;
    const lastImage = c.input_ids.lastIndexOf(m.imageTokenId!);
    expect(r.positions.slice(0, S - 1 - lastImage)).toEqual(Array.from({ length: S - 1 - lastImage }, (_, i) => lastImage + 1 + i));
    expect(r.attention.imageRows?.shape).toEqual([m.info.numLayers, r.positions.length, c.num_image_tokens]);
    expect(r.patchLens?.topIds.shape).toEqual([m.info.numLayers + 1, c.num_image_tokens]);
    expect(Object.values(r.headMask ?? {}).flat().length).toBe(2);
    expect(r.lens.answerProb).toBeGreaterThan(0);
  });
}
