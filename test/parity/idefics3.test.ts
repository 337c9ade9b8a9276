/**
 * SmolVLM / Idefics3 parity with Hugging Face transformers: tools/reference/make_idefics3_fixtures.py
 * records transformers' own outputs on a tiny random Idefics3ForConditionalGeneration. The
 * TypeScript runtime must reproduce them: the expanded prompt and token ids identical, every
 * tile's pixel values within 1e-6, the connector's features, every hidden state and the logits
 * within relative error 1e-4, greedy tokens identical, and a lens run whose record validates,
 * whose image tokens carry their tile, row and column, and whose statistics match transformers'.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { idefics3PromptText } from "../../src/sidecar/arch/idefics3";
import { longestEdgeSize, tileMultipleSize } from "../../src/sidecar/image/idefics3Processor";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { maxAbsDiff, readCaseFiles, readTensorIn, relativeError, type TensorRef } from "../helpers/fixtures";
import { expectImageAttentionMatches, expectLensMatches } from "../helpers/lensParity";

const ROOT = path.resolve(__dirname, "../fixtures/idefics3-tiny");
const MODEL_DIR = path.join(ROOT, "model");
const CASES_DIR = path.join(ROOT, "cases");

interface IdeficsCase {
  case: string;
  prompt: string;
  image: string;
  image_size: [number, number];
  image_mode: string;
  rendered_prompt: string;
  expanded_prompt: string;
  input_ids: number[];
  num_image_tokens: number;
  image_seq_len: number;
  tile_rows: number;
  tile_cols: number;
  pixel_values: TensorRef;
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

const cases = readCaseFiles<IdeficsCase>(CASES_DIR);

const tensor = (ref: TensorRef): Float32Array => readTensorIn(CASES_DIR, ref);

let model: Promise<LoadedModel> | undefined;
const open = () => (model ??= LoadedModel.open(MODEL_DIR, { device: "cpu" }));
afterAll(async () => {
  if (model) await (await model).dispose();
});

const BOUND = 1e-4;
const TILE = 48;
const GRID = 3;

it("has Idefics3 reference cases: landscape, portrait, a downscaled wide image and an RGBA image", () => {
  expect(cases.map((c) => c.case)).toEqual(["landscape", "portrait", "rgba", "wide"]);
  expect(cases.find((c) => c.case === "rgba")?.image_mode).toBe("RGBA");
  expect(cases.every((c) => c.tile_rows * c.tile_cols > 1)).toBe(true);
});

it("full tiles take SigLIP positions 0..n*n-1 in transformers (the graph relies on it)", () => {
  const ref = JSON.parse(fs.readFileSync(path.join(ROOT, "vision_position_ids.json"), "utf8")) as { cases: { patches_per_side: number; is_arange: boolean }[] };
  expect(ref.cases.map((c) => c.patches_per_side)).toContain(27);
  for (const c of ref.cases) expect(c.is_arange, `${c.patches_per_side} patches per side`).toBe(true);
});

describe("resize arithmetic", () => {
  it("longest edge: the short side truncated, then made even; small images grow", () => {
    expect(longestEdgeSize(80, 120, 96)).toEqual({ height: 64, width: 96 });
    expect(longestEdgeSize(90, 40, 96)).toEqual({ height: 96, width: 42 });
    expect(longestEdgeSize(130, 400, 96)).toEqual({ height: 32, width: 96 });
    expect(longestEdgeSize(61, 97, 1536)).toEqual({ height: 966, width: 1536 });
  });
  it("tile multiples: both sides rounded up to the tile size", () => {
    expect(tileMultipleSize(64, 96, 48)).toEqual({ height: 96, width: 96 });
    expect(tileMultipleSize(96, 42, 48)).toEqual({ height: 96, width: 48 });
    expect(tileMultipleSize(32, 96, 48)).toEqual({ height: 48, width: 96 });
  });
  it("an unsplit image is only the global image", () => {
    const text = idefics3PromptText(0, 0, 2, "<image>");
    expect(text).toBe("<fake_token_around_image><global-img><image><image><fake_token_around_image>");
  });
});

describe.each(cases.map((c) => [c.case, c] as [string, IdeficsCase]))("idefics3-tiny/%s", (_name, c) => {
  const image = path.resolve(CASES_DIR, c.image);
  const tiles = c.tile_rows * c.tile_cols + 1;

  it("renders and expands the prompt, tokenizes it and tiles the image as transformers does", async () => {
    const m = await open();
    const prepared = await m.prepare({ prompt: c.prompt, image });
    expect(prepared.renderedPrompt).toBe(c.expanded_prompt);
    expect(prepared.renderedPrompt.replace(idefics3PromptText(c.tile_rows, c.tile_cols, c.image_seq_len, "<image>"), "<image>")).toBe(c.rendered_prompt);
    expect(prepared.inputIds).toEqual(c.input_ids);
    expect(prepared.inputIds.filter((t) => t === m.imageTokenId).length).toBe(c.num_image_tokens);
    expect(prepared.vision?.tiles).toEqual({ rows: c.tile_rows, cols: c.tile_cols, count: tiles });
    expect(prepared.vision?.grid).toEqual({ frames: tiles, rows: GRID, cols: GRID, leadingCls: false });
    expect(prepared.vision?.processedSize).toEqual({ width: c.tile_cols * TILE, height: c.tile_rows * TILE });
    expect(prepared.pixelValues?.shape).toEqual(c.pixel_values.shape);
    const err = maxAbsDiff(prepared.pixelValues!.data, tensor(c.pixel_values));
    console.log(`idefics3-tiny/${c.case}: pixel_values (${tiles} tiles) max abs error ${err.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(1e-6);
  });

  it(`matches the connector's image features, every hidden state and the logits (relative error <= ${BOUND})`, async () => {
    const m = await open();
    const prepared = await m.prepare({ prompt: c.prompt, image });
    const features = await m.imageFeaturesFor(prepared);
    expect(features!.dims).toEqual(c.image_features.shape);
    const featureError = relativeError(features!.data as Float32Array, tensor(c.image_features));
    const result = await m.forward(c.input_ids, { imageFeatures: features, positions: c.input_ids.map((_, i) => i) });
    const [layers, seq, hidden] = c.hidden_states.shape;
    expect(layers).toBe(m.info.numLayers + 1);
    const expected = tensor(c.hidden_states);
    expect(result.hiddenStates.length).toBe(expected.length);
    const perLayer = Array.from({ length: layers }, (_, l) => relativeError(result.hiddenStates, expected, l * seq * hidden, seq * hidden));
    const logitsError = relativeError(await m.logits(result), tensor(c.logits));
    console.log(
      `idefics3-tiny/${c.case}: image features rel. error ${featureError.toExponential(2)}, hidden states max ${Math.max(...perLayer).toExponential(2)}, logits ${logitsError.toExponential(2)}`,
    );
    expect(featureError).toBeLessThanOrEqual(BOUND);
    for (const e of perLayer) expect(e).toBeLessThanOrEqual(BOUND);
    expect(logitsError).toBeLessThanOrEqual(BOUND);
  });

  it("generates the same greedy tokens", async () => {
    expect(c.greedy_min_top2_gap).toBeGreaterThan(1e-3);
    const m = await open();
    const prepared = await m.prepare({ prompt: c.prompt, image });
    expect(await m.generate(prepared, c.greedy_tokens.length)).toEqual(c.greedy_tokens);
  });

  it("logits and hidden states with heads masked match transformers' o_proj hook", async () => {
    const m = await open();
    const prepared = await m.prepare({ prompt: c.prompt, image });
    const L = m.info.numLayers;
    const nH = m.info.numHeads;
    const mask = new Float32Array(L * nH).fill(1);
    for (const [layer, heads] of Object.entries(c.head_mask)) for (const h of heads) mask[Number(layer) * nH + h] = 0;
    const features = await m.imageFeaturesFor(prepared);
    const fwd = await m.forward(c.input_ids, { imageFeatures: features, positions: [c.input_ids.length - 1], headMask: mask });
    const logitsError = relativeError(await m.logits(fwd), tensor(c.masked_last_logits));
    const hiddenError = relativeError(fwd.hiddenStates, tensor(c.masked_last_hidden_states));
    console.log(`idefics3-tiny/${c.case} masked: logits rel. error ${logitsError.toExponential(2)}, hidden states ${hiddenError.toExponential(2)}`);
    expect(logitsError).toBeLessThanOrEqual(BOUND);
    expect(hiddenError).toBeLessThanOrEqual(BOUND);
  });

  describe("lens run", () => {
    let record: Promise<LensRecord> | undefined;
    const getRecord = () =>
      (record ??= open().then((m) => runLens(m, { prompt: c.prompt, image, settings: { positions: "all", topK: c.lens.top_k, maxNewTokens: c.greedy_tokens.length } })));

    it("produces a valid LensRecord; image tokens carry their tile, row and column; markers are template", async () => {
      const r = await getRecord();
      assertLensRecord(r);
      expect(r.model.architecture).toBe("Idefics3ForConditionalGeneration");
      expect(r.tokens.map((t) => t.id)).toEqual([...c.lens.ids, c.greedy_tokens[c.greedy_tokens.length - 1]]);
      expect(r.generation.ids).toEqual(c.greedy_tokens);
      expect(r.positions).toEqual(c.lens.ids.map((_, i) => i));
      expect(r.input.image?.grid).toEqual([GRID, GRID]);
      expect(r.input.image?.tiles).toEqual({ rows: c.tile_rows, cols: c.tile_cols, count: tiles });
      expect(r.input.image?.originalSize).toEqual(c.image_size);
      const imageTokens = r.tokens.filter((t) => t.segment === "image");
      expect(imageTokens.length).toBe(c.num_image_tokens);
      const perTile = GRID * GRID;
      expect(imageTokens.map((t) => t.image)).toEqual(
        Array.from({ length: c.num_image_tokens }, (_, i) => ({ index: Math.floor(i / perTile), row: Math.floor((i % perTile) / GRID), col: i % GRID })),
      );
      const markers = r.tokens.slice(0, c.input_ids.length).filter((t) => /^<(fake_token_around_image|global-img|row_\d+_col_\d+)>$/.test(t.text));
      expect(markers.length).toBe(2 * tiles + 1);
      expect(new Set(markers.map((t) => t.segment))).toEqual(new Set(["template"]));
      // Each tile's tokens follow its <row_r_col_c> marker; the global image's follow <global-img>.
      const firstOfTile = (tile: number) => r.tokens.findIndex((t) => t.segment === "image" && t.image?.index === tile);
      for (let tile = 0; tile < tiles - 1; tile++) {
        expect(r.tokens[firstOfTile(tile) - 1].text).toBe(`<row_${Math.floor(tile / c.tile_cols) + 1}_col_${(tile % c.tile_cols) + 1}>`);
      }
      expect(r.tokens[firstOfTile(tiles - 1) - 1].text).toBe("<global-img>");
      expect(r.tokens.some((t) => t.segment === "text")).toBe(true);
    });

    it("attention mass on the image tokens per layer, head and prompt query matches transformers' attentions (<= 1e-5)", async () => {
      expectImageAttentionMatches(await getRecord(), tensor(c.attention_image_mass), c.attention_image_mass.shape, `idefics3-tiny/${c.case}`);
    });

    it("lens statistics match transformers' (probabilities, entropy, KL, cosine within 1e-4; top-k ids up to near ties)", async () => {
      const ref = { topK: c.lens.top_k, topkIds: tensor(c.lens.topk_ids), topkProbs: tensor(c.lens.topk_probs), entropy: tensor(c.lens.entropy), kl: tensor(c.lens.kl), cosine: tensor(c.lens.cosine) };
      expectLensMatches(await getRecord(), ref, `idefics3-tiny/${c.case}`, BOUND);
    });
  });
});

it("runs the lens with the default settings, image attention, patch lens, a target and a head mask", async () => {
  const m = await open();
  const c = cases[0];
  const r = await runLens(m, {
    prompt: c.prompt,
    image: path.resolve(CASES_DIR, c.image),
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

/**
 * The layout SmolVLM checkpoints on the hub use (transformers 4.46-4.57): rope_theta at the top
 * of text_config with rope_scaling null, and the image processor in its own
 * preprocessor_config.json beside a processor_config.json that only holds image_seq_len.
 */
describe("the hub's 4.x folder layout", () => {
  const c = cases[0];
  const temp: string[] = [];
  afterAll(() => {
    for (const dir of temp) fs.rmSync(dir, { recursive: true, force: true });
  });

  function hubLayout(imageSeqLen: number): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "idefics3-layout-"));
    temp.push(dir);
    for (const f of fs.readdirSync(MODEL_DIR)) fs.copyFileSync(path.join(MODEL_DIR, f), path.join(dir, f));
    const config = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, "config.json"), "utf8")) as { text_config: Record<string, unknown> };
    const { rope_parameters: rope, ...text } = config.text_config as { rope_parameters: { rope_theta: number } };
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, text_config: { ...text, rope_theta: rope.rope_theta, rope_scaling: null } }, null, 2));
    const processor = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, "processor_config.json"), "utf8")) as { image_processor: Record<string, unknown> };
    fs.writeFileSync(path.join(dir, "preprocessor_config.json"), JSON.stringify({ ...processor.image_processor, processor_class: "Idefics3Processor" }, null, 2));
    fs.writeFileSync(path.join(dir, "processor_config.json"), JSON.stringify({ image_seq_len: imageSeqLen, processor_class: "Idefics3Processor" }, null, 2));
    return dir;
  }

  it("gives the same ids and logits", async () => {
    const m = await LoadedModel.open(hubLayout(c.image_seq_len), { device: "cpu" });
    try {
      const prepared = await m.prepare({ prompt: c.prompt, image: path.resolve(CASES_DIR, c.image) });
      expect(prepared.inputIds).toEqual(c.input_ids);
      const result = await m.forward(c.input_ids, { imageFeatures: await m.imageFeaturesFor(prepared), positions: c.input_ids.map((_, i) => i) });
      expect(relativeError(await m.logits(result), tensor(c.logits))).toBeLessThanOrEqual(BOUND);
    } finally {
      await m.dispose();
    }
  });

  it("refuses an image_seq_len the vision tower does not yield, naming the file", async () => {
    await expect(LoadedModel.open(hubLayout(c.image_seq_len + 1), { device: "cpu" })).rejects.toThrow(/processor_config\.json.*image_seq_len 10 differs from the 9 tokens per tile/);
  });
});
