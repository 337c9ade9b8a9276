/**
 * Qwen2-VL parity with Hugging Face transformers: tools/reference/make_qwen2vl_fixtures.py
 * records transformers' own outputs on a tiny random Qwen2VLForConditionalGeneration. The
 * TypeScript runtime must reproduce them: smart_resize sizes, token ids, patches (within 1e-6),
 * image grid and M-RoPE position ids identical, image features, every hidden state and the
 * logits within relative error 1e-4, greedy tokens (KV-cache decode with rope_deltas)
 * identical, and a lens run whose record validates and whose statistics match transformers'.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { mropePositions } from "../../src/sidecar/arch/qwen2vl";
import { pythonRound, smartResize } from "../../src/sidecar/image/qwen2vlProcessor";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { maxAbsDiff, readCaseFiles, readTensorIn, relativeError, type TensorRef } from "../helpers/fixtures";
import { expectImageAttentionMatches, expectLensMatches } from "../helpers/lensParity";

const ROOT = path.resolve(__dirname, "../fixtures/qwen2vl-tiny");
const MODEL_DIR = path.join(ROOT, "model");
const CASES_DIR = path.join(ROOT, "cases");

interface QwenCase {
  case: string;
  prompt: string;
  image: string;
  rendered_prompt: string;
  input_ids: number[];
  num_image_tokens: number;
  image_grid_thw: [number, number, number];
  position_ids: number[][];
  rope_delta: number;
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

const cases = readCaseFiles<QwenCase>(CASES_DIR);

const tensor = (ref: TensorRef): Float32Array => readTensorIn(CASES_DIR, ref);

let model: Promise<LoadedModel> | undefined;
const open = () => (model ??= LoadedModel.open(MODEL_DIR, { device: "cpu" }));
afterAll(async () => {
  if (model) await (await model).dispose();
});

const BOUND = 1e-4;
const IMAGE_PAD = "<|image_pad|>";
const collapse = (s: string) => s.replace(/(<\|image_pad\|>)+/g, IMAGE_PAD);

describe("smart_resize", () => {
  const ref = JSON.parse(fs.readFileSync(path.join(ROOT, "smart_resize.json"), "utf8")) as {
    factor: number;
    min_pixels: number;
    max_pixels: number;
    cases: { height: number; width: number; resized: [number, number] }[];
  };
  it("rounds half to even, as Python's round", () => {
    expect([0.5, 1.5, 2.5, 3.5, -0.5, 2.4999, 2.5001].map(pythonRound)).toEqual([0, 2, 2, 4, 0, 2, 3]);
    // 70 px / 28 = 2.5: Python keeps 2 windows (56 px) where Math.round would give 3 (84 px).
    expect(smartResize(70, 98, 28, 28 * 28, 28 * 28 * 100)).toEqual({ height: 56, width: 112 });
  });
  it("gives transformers' sizes", () => {
    for (const c of ref.cases) {
      const got = smartResize(c.height, c.width, ref.factor, ref.min_pixels, ref.max_pixels);
      expect([got.height, got.width], `${c.height}x${c.width}`).toEqual(c.resized);
    }
  });
});

it("has Qwen2-VL reference cases", () => {
  expect(cases.map((c) => c.case)).toEqual(["landscape", "portrait"]);
});

describe.each(cases.map((c) => [c.case, c] as [string, QwenCase]))("qwen2vl-tiny/%s", (_name, c) => {
  const image = path.resolve(CASES_DIR, c.image);

  it("renders, expands and tokenizes the prompt and patchifies the image as transformers does", async () => {
    const m = await open();
    const prepared = await m.prepare({ prompt: c.prompt, image });
    expect(collapse(prepared.renderedPrompt)).toBe(c.rendered_prompt);
    expect(prepared.inputIds).toEqual(c.input_ids);
    expect(prepared.inputIds.filter((t) => t === m.imageTokenId).length).toBe(c.num_image_tokens);
    const [, gh, gw] = c.image_grid_thw;
    expect(prepared.vision?.grid).toEqual({ frames: c.image_grid_thw[0], rows: gh / 2, cols: gw / 2, leadingCls: false });
    expect(prepared.vision?.processedSize).toEqual({ width: gw * 14, height: gh * 14 });
    expect(prepared.pixelValues?.shape).toEqual(c.pixel_values.shape);
    expect(maxAbsDiff(prepared.pixelValues!.data, tensor(c.pixel_values))).toBeLessThanOrEqual(1e-6);
  });

  it("computes transformers' M-RoPE position ids and rope delta", () => {
    const [t, gh, gw] = c.image_grid_thw;
    const imageTokenId = (JSON.parse(fs.readFileSync(path.join(MODEL_DIR, "config.json"), "utf8")) as { image_token_id: number }).image_token_id;
    const { positions, delta } = mropePositions(c.input_ids, imageTokenId, [{ frames: t, rows: gh / 2, cols: gw / 2 }]);
    expect(positions).toEqual(c.position_ids);
    expect(delta).toBe(c.rope_delta);
  });

  it(`matches the merged image features, every hidden state and the logits (relative error <= ${BOUND})`, async () => {
    const m = await open();
    const prepared = await m.prepare({ prompt: c.prompt, image });
    const features = await m.imageFeaturesFor(prepared);
    const featureError = relativeError(features!.data as Float32Array, tensor(c.image_features));
    const result = await m.forward(c.input_ids, { imageFeatures: features, positions: c.input_ids.map((_, i) => i) });
    const [layers, seq, hidden] = c.hidden_states.shape;
    expect(layers).toBe(m.info.numLayers + 1);
    const expected = tensor(c.hidden_states);
    expect(result.hiddenStates.length).toBe(expected.length);
    const perLayer = Array.from({ length: layers }, (_, l) => relativeError(result.hiddenStates, expected, l * seq * hidden, seq * hidden));
    const logitsError = relativeError(await m.logits(result), tensor(c.logits));
    console.log(
      `qwen2vl-tiny/${c.case}: image features rel. error ${featureError.toExponential(2)}, hidden states max ${Math.max(...perLayer).toExponential(2)}, logits ${logitsError.toExponential(2)}`,
    );
    expect(featureError).toBeLessThanOrEqual(BOUND);
    for (const e of perLayer) expect(e).toBeLessThanOrEqual(BOUND);
    expect(logitsError).toBeLessThanOrEqual(BOUND);
  });

  it("generates the same greedy tokens (decode positions = index + rope delta)", async () => {
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
    const last = [c.input_ids.length - 1];
    const fwd = await m.forward(c.input_ids, { imageFeatures: features, positions: last, headMask: mask });
    const logitsError = relativeError(await m.logits(fwd), tensor(c.masked_last_logits));
    const hiddenError = relativeError(fwd.hiddenStates, tensor(c.masked_last_hidden_states));
    console.log(`qwen2vl-tiny/${c.case} masked: logits rel. error ${logitsError.toExponential(2)}, hidden states ${hiddenError.toExponential(2)}`);
    expect(logitsError).toBeLessThanOrEqual(BOUND);
    expect(hiddenError).toBeLessThanOrEqual(BOUND);
  });

  describe("lens run", () => {
    let record: Promise<LensRecord> | undefined;
    const getRecord = () =>
      (record ??= open().then((m) => runLens(m, { prompt: c.prompt, image, settings: { positions: "all", topK: c.lens.top_k, maxNewTokens: c.greedy_tokens.length } })));

    it("produces a valid LensRecord over prompt + generated tokens, image tokens on the merged grid", async () => {
      const r = await getRecord();
      assertLensRecord(r);
      expect(r.model.architecture).toBe("Qwen2VLForConditionalGeneration");
      expect(r.tokens.map((t) => t.id)).toEqual([...c.lens.ids, c.greedy_tokens[c.greedy_tokens.length - 1]]);
      expect(r.generation.ids).toEqual(c.greedy_tokens);
      expect(r.positions).toEqual(c.lens.ids.map((_, i) => i));
      const [, gh, gw] = c.image_grid_thw;
      const rows = gh / 2;
      const cols = gw / 2;
      expect(r.input.image?.grid).toEqual([rows, cols]);
      expect(r.input.image?.processedSize).toEqual([gw * 14, gh * 14]);
      const imageTokens = r.tokens.filter((t) => t.segment === "image");
      expect(imageTokens.length).toBe(c.num_image_tokens);
      expect(imageTokens.map((t) => t.image)).toEqual(Array.from({ length: rows * cols }, (_, i) => ({ index: 0, row: Math.floor(i / cols), col: i % cols })));
      const first = r.tokens.findIndex((t) => t.segment === "image");
      expect(r.tokens[first - 1].text).toBe("<|vision_start|>");
      expect(r.tokens[first - 1].segment).toBe("template");
      expect(r.tokens[first + c.num_image_tokens].text).toBe("<|vision_end|>");
      expect(r.tokens[first + c.num_image_tokens].segment).toBe("template");
      expect(r.tokens.some((t) => t.segment === "text")).toBe(true);
    });

    it("attention mass on the image tokens per layer, head and prompt query matches transformers' attentions (<= 1e-5)", async () => {
      expectImageAttentionMatches(await getRecord(), tensor(c.attention_image_mass), c.attention_image_mass.shape, `qwen2vl-tiny/${c.case}`);
    });

    it("lens statistics match transformers' (probabilities, entropy, KL, cosine within 1e-4; top-k ids up to near ties)", async () => {
      const ref = { topK: c.lens.top_k, topkIds: tensor(c.lens.topk_ids), topkProbs: tensor(c.lens.topk_probs), entropy: tensor(c.lens.entropy), kl: tensor(c.lens.kl), cosine: tensor(c.lens.cosine) };
      expectLensMatches(await getRecord(), ref, `qwen2vl-tiny/${c.case}`, BOUND);
    });
  });
});

it("runs the lens with the default settings, image attention, patch lens, a target and a head mask", async () => {
  const m = await open();
  const c = cases[1];
  const r = await runLens(
    m,
    { prompt: c.prompt, image: path.resolve(CASES_DIR, c.image), settings: { imageAttention: true, patchLens: true, target: "red", answerProb: true }, headMask: { strategy: "topImage", count: 2 } },
  );
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
 * The same checkpoint in the layouts other transformers versions write: 4.45-4.49 keep the text
 * keys at the top of config.json with `rope_scaling: {type: "mrope"}` (Qwen/Qwen2-VL-2B-Instruct
 * on the hub), 4.52-4.57 store tensors as `model.language_model.*` and `model.visual.*`.
 */
describe("other checkpoint layouts give the same logits", () => {
  const c = cases[0];
  const temp: string[] = [];
  afterAll(() => {
    for (const dir of temp) fs.rmSync(dir, { recursive: true, force: true });
  });

  function variant(rewriteConfig: (config: Record<string, unknown>) => Record<string, unknown>, renameKey: (key: string) => string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qwen2vl-layout-"));
    temp.push(dir);
    for (const f of fs.readdirSync(MODEL_DIR)) fs.copyFileSync(path.join(MODEL_DIR, f), path.join(dir, f));
    const config = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, "config.json"), "utf8")) as Record<string, unknown>;
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(rewriteConfig(config), null, 2));
    // Safetensors: 8-byte header length, JSON header, data; offsets are relative to the data, so
    // renaming tensors only rewrites the header.
    const buf = fs.readFileSync(path.join(MODEL_DIR, "model.safetensors"));
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, unknown>;
    const renamed = Object.fromEntries(Object.entries(header).map(([k, v]) => [k === "__metadata__" ? k : renameKey(k), v]));
    let json = JSON.stringify(renamed);
    json += " ".repeat((8 - (json.length % 8)) % 8);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(path.join(dir, "model.safetensors"), Buffer.concat([length, Buffer.from(json, "utf8"), buf.subarray(8 + n)]));
    return dir;
  }

  async function logitsError(dir: string): Promise<number> {
    const m = await LoadedModel.open(dir, { device: "cpu" });
    try {
      const prepared = await m.prepare({ prompt: c.prompt, image: path.resolve(CASES_DIR, c.image) });
      expect(prepared.inputIds).toEqual(c.input_ids);
      const result = await m.forward(c.input_ids, { imageFeatures: await m.imageFeaturesFor(prepared), positions: c.input_ids.map((_, i) => i) });
      return relativeError(await m.logits(result), tensor(c.logits));
    } finally {
      await m.dispose();
    }
  }

  it("flat 4.45 config with rope_scaling {type: mrope}", async () => {
    const dir = variant(
      (config) => {
        const { text_config: text, vision_config: vision, ...rest } = config as { text_config: Record<string, unknown>; vision_config: Record<string, unknown> };
        const { rope_parameters: rope, ...textRest } = text as { rope_parameters: { rope_theta: number; mrope_section: number[] } };
        const visionRest = { ...vision };
        delete visionRest["rope_parameters"];
        return {
          ...rest,
          ...textRest,
          model_type: "qwen2_vl",
          rope_theta: rope.rope_theta,
          rope_scaling: { type: "mrope", mrope_section: rope.mrope_section },
          vision_config: { ...visionRest, model_type: "qwen2_vl" },
        };
      },
      (key) => key,
    );
    expect(await logitsError(dir)).toBeLessThanOrEqual(BOUND);
  });

  it("4.52 tensor names (model.language_model.*, model.visual.*)", async () => {
    const dir = variant(
      (config) => config,
      (key) => (key.startsWith("visual.") ? `model.${key}` : key.replace(/^model\./, "model.language_model.")),
    );
    expect(await logitsError(dir)).toBeLessThanOrEqual(BOUND);
  });
});
