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
import { mropePositions } from "../../src/sidecar/arch/qwen2vl";
import { pythonRound, smartResize } from "../../src/sidecar/image/qwen2vlProcessor";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { maxAbsDiff, relativeError, type TensorRef } from "../helpers/fixtures";
import { BOUND, forwardParityTests, fullOptionsRunTest, lensRunTests, type VlmCase, vlmFixture } from "../helpers/vlmParity";

const ROOT = path.resolve(__dirname, "../fixtures/qwen2vl-tiny");

interface QwenCase extends VlmCase {
  rendered_prompt: string;
  image_grid_thw: [number, number, number];
  position_ids: number[][];
  rope_delta: number;
  pixel_values: TensorRef;
}

const fixture = vlmFixture<QwenCase>(ROOT);
const { cases, tensor, open } = fixture;
const MODEL_DIR = fixture.modelDir;
const CASES_DIR = fixture.casesDir;

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

  it("keeps each frame's patches to themselves: two frames encoded together give what each gives alone", async () => {
    // An image is one frame, whose mask allows everything (the vision graph skips adding it);
    // several frames attend block-diagonally, as transformers' cu_seqlens. Split the image's
    // patches at a merge window into two frames: each frame's features must be what its
    // patches give on their own, and must differ from the one-frame encoding of all patches.
    const m = await open();
    const v = (await m.prepare({ prompt: c.prompt, image })).vision!;
    const pixels = v.feeds["pixel_values"];
    const [n, features] = pixels.dims;
    const positions = v.feeds["vision_position_ids"].data as BigInt64Array;
    const cut = 4 * Math.floor(n / 8);
    const encode = async (from: number, to: number, segment: (i: number) => number) => {
      const seg = BigInt64Array.from({ length: to - from }, (_, i) => BigInt(segment(from + i)));
      const feeds = {
        pixel_values: { data: (pixels.data as Float32Array).slice(from * features, to * features), dims: [to - from, features] },
        vision_position_ids: { data: positions.slice(2 * from, 2 * to), dims: [to - from, 2] },
        vision_segment_ids: { data: seg, dims: [to - from] },
      };
      return (await m.encodeImage({ ...v, feeds })).data as Float32Array;
    };
    const together = await encode(0, n, (i) => (i < cut ? 0 : 1));
    const first = await encode(0, cut, () => 0);
    const second = await encode(cut, n, () => 0);
    const hidden = first.length / (cut / 4);
    expect(relativeError(together.subarray(0, first.length), first)).toBeLessThan(1e-5);
    expect(relativeError(together.subarray(first.length), second)).toBeLessThan(1e-5);
    expect(together.length).toBe((n / 4) * hidden);
    const oneFrame = await encode(0, n, () => 0);
    expect(relativeError(oneFrame.subarray(0, first.length), first)).toBeGreaterThan(1e-3);
  });

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

  forwardParityTests(fixture, c, `qwen2vl-tiny/${c.case}`, { features: "merged image features", greedy: "generates the same greedy tokens (decode positions = index + rope delta)" });

  lensRunTests(fixture, c, `qwen2vl-tiny/${c.case}`, "Qwen2VLForConditionalGeneration", {
    title: "produces a valid LensRecord over prompt + generated tokens, image tokens on the merged grid",
    check: (r) => {
      const [, gh, gw] = c.image_grid_thw;
      const rows = gh / 2;
      const cols = gw / 2;
      expect(r.input.image?.grid).toEqual([rows, cols]);
      expect(r.input.image?.processedSize).toEqual([gw * 14, gh * 14]);
      const imageTokens = r.tokens.filter((t) => t.segment === "image");
      expect(imageTokens.map((t) => t.image)).toEqual(Array.from({ length: rows * cols }, (_, i) => ({ index: 0, row: Math.floor(i / cols), col: i % cols })));
      const first = r.tokens.findIndex((t) => t.segment === "image");
      expect(r.tokens[first - 1].text).toBe("<|vision_start|>");
      expect(r.tokens[first - 1].segment).toBe("template");
      expect(r.tokens[first + c.num_image_tokens].text).toBe("<|vision_end|>");
      expect(r.tokens[first + c.num_image_tokens].segment).toBe("template");
    },
  });
});

fullOptionsRunTest(fixture, cases[1]);

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
