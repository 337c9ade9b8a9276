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
import { idefics3PromptText } from "../../src/sidecar/arch/idefics3";
import { longestEdgeSize, tileMultipleSize } from "../../src/sidecar/image/idefics3Processor";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { maxAbsDiff, relativeError, type TensorRef } from "../helpers/fixtures";
import { BOUND, forwardParityTests, fullOptionsRunTest, lensRunTests, type VlmCase, vlmFixture } from "../helpers/vlmParity";

const ROOT = path.resolve(__dirname, "../fixtures/idefics3-tiny");

interface IdeficsCase extends VlmCase {
  image_size: [number, number];
  image_mode: string;
  rendered_prompt: string;
  expanded_prompt: string;
  image_seq_len: number;
  tile_rows: number;
  tile_cols: number;
  pixel_values: TensorRef;
}

const fixture = vlmFixture<IdeficsCase>(ROOT);
const { cases, tensor, open } = fixture;
const MODEL_DIR = fixture.modelDir;
const CASES_DIR = fixture.casesDir;

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

  forwardParityTests(fixture, c, `idefics3-tiny/${c.case}`, { features: "connector's image features", greedy: "generates the same greedy tokens" });

  lensRunTests(fixture, c, `idefics3-tiny/${c.case}`, "Idefics3ForConditionalGeneration", {
    title: "produces a valid LensRecord; image tokens carry their tile, row and column; markers are template",
    check: (r) => {
      expect(r.input.image?.grid).toEqual([GRID, GRID]);
      expect(r.input.image?.tiles).toEqual({ rows: c.tile_rows, cols: c.tile_cols, count: tiles });
      expect(r.input.image?.originalSize).toEqual(c.image_size);
      const imageTokens = r.tokens.filter((t) => t.segment === "image");
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
    },
  });
});

fullOptionsRunTest(fixture, cases[0]);

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
