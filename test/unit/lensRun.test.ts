/**
 * The parts of a lens run that transformers has no reference for: which segment each token is
 * in, how a word target is tokenized, how head-mask strategies pick heads, and bad requests.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SEGMENTS } from "../../src/shared/lensRecord";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { LensInputError } from "../../src/sidecar/errors";
import { runLens, targetVariants } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { writeFileAtomic } from "../../src/sidecar/util/atomicWrite";
import { FIXTURES } from "../helpers/fixtures";

const MODEL = path.join(FIXTURES, "llava-gqa-f32/model");
const IMAGE = path.join(FIXTURES, "images/square.png");
const PROMPT = "What color is the circle?";
let model: LoadedModel;
beforeAll(async () => {
  model = await LoadedModel.open(MODEL, { device: "cpu" });
});
afterAll(async () => {
  await model.dispose();
});

describe("token segments", () => {
  it("splits BOS, template, image patches on their grid, the user's text and generated tokens", async () => {
    const r = await runLens(model, { prompt: PROMPT, image: IMAGE, settings: { maxNewTokens: 3 } });
    const segs = r.tokens.map((t) => t.segment);
    expect(segs[0]).toBe("bos");
    const image = r.tokens.filter((t) => t.segment === "image");
    expect(image).toHaveLength(36);
    // 42 px / patch 7 = a 6 x 6 grid, row-major.
    expect(image.map((t) => [t.image!.row, t.image!.col])).toEqual(Array.from({ length: 36 }, (_, i) => [Math.floor(i / 6), i % 6]));
    const text = r.tokens.filter((t) => t.segment === "text").map((t) => t.text).join("");
    expect(text.replace(/\s+/g, "")).toBe(PROMPT.replace(/\s+/g, ""));
    // "USER:" before the image and "ASSISTANT:" after the text are the template's.
    expect(r.tokens.slice(1, 3).every((t) => t.segment === "template")).toBe(true);
    expect(segs[r.tokens.length - 4]).toBe("template");
    expect(segs.slice(-3)).toEqual(["generated", "generated", "generated"]);
  });

  it("attention mass rows sum to one over the five segments", async () => {
    const r = await runLens(model, { prompt: PROMPT, image: IMAGE, settings: { maxNewTokens: 2 } });
    const G = SEGMENTS.length;
    for (let i = 0; i < r.attention.mass.data.length; i += G) {
      expect(r.attention.mass.data.slice(i, i + G).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    }
  });
});

describe("targets", () => {
  it("a word covers its spellings with and without a leading space and in other cases", () => {
    const t = targetVariants(model, "red");
    const texts = t.variants.map((v) => v.text);
    for (const form of ["red", " red"]) expect(texts).toContain(form);
    // This small vocabulary spells "Red" as a bare "▁" then "R"...: a first token that says
    // nothing about the word, so that variant is dropped rather than made the target.
    expect(model.text.idToToken(model.text.encodeContinuation("Red")[0])).toBe("\u2581");
    expect(texts).not.toContain("Red");
    for (const id of t.ids) expect(model.text.decode([id]).trim()).not.toBe("");
  });

  it("reports the target's probability and rank at every layer, and the whole answer's probability", async () => {
    const r = await runLens(model, { prompt: PROMPT, image: IMAGE, settings: { target: "red", answerProb: true, maxNewTokens: 0 } });
    const variantFirstIds = new Set(r.lens.targetText!.variants.map((v) => v.ids[0]));
    for (const id of r.lens.targetIds) expect(variantFirstIds.has(id)).toBe(true);
    expect(r.lens.answerProb).toBeGreaterThan(0);
    expect(r.lens.answerProb).toBeLessThan(1);
    for (const rank of r.lens.targetRank.data) expect(rank).toBeGreaterThanOrEqual(1);
  });

  it("an empty target is refused", () => {
    expect(() => targetVariants(model, "  ")).toThrow(LensInputError);
  });
});

describe("head masks", () => {
  it("random N heads with a seed is reproducible and has N heads", async () => {
    const a = await runLens(model, { prompt: PROMPT, image: IMAGE, settings: { maxNewTokens: 0 }, headMask: { strategy: "random", count: 5, seed: 7 } });
    const b = await runLens(model, { prompt: PROMPT, image: IMAGE, settings: { maxNewTokens: 0 }, headMask: { strategy: "random", count: 5, seed: 7 } });
    const c = await runLens(model, { prompt: PROMPT, image: IMAGE, settings: { maxNewTokens: 0 }, headMask: { strategy: "random", count: 5, seed: 8 } });
    expect(a.headMask).toEqual(b.headMask);
    expect(Object.values(a.headMask!).flat()).toHaveLength(5);
    expect(c.headMask).not.toEqual(a.headMask);
  });

  it("top N by image attention picks the heads with the largest share on the image", async () => {
    const base = await runLens(model, { prompt: PROMPT, image: IMAGE, settings: { maxNewTokens: 0 } });
    const masked = await runLens(model, { prompt: PROMPT, image: IMAGE, settings: { maxNewTokens: 0 }, headMask: { strategy: "topImage", count: 2 } });
    const { numLayers: L, numHeads: nH } = base.model;
    const P = base.positions.length;
    const G = SEGMENTS.length;
    const img = SEGMENTS.indexOf("image");
    const share = Array.from({ length: L * nH }, (_, lh) => {
      let s = 0;
      for (let p = 0; p < P; p++) s += base.attention.mass.data[(lh * P + p) * G + img];
      return s / P;
    });
    const top = share.map((s, i) => [s, i] as const).sort((x, y) => y[0] - x[0]).slice(0, 2).map(([, i]) => `${Math.floor(i / nH)}:${i % nH}`);
    const chosen = Object.entries(masked.headMask!).flatMap(([l, hs]) => hs.map((h) => `${l}:${h}`));
    expect(new Set(chosen)).toEqual(new Set(top));
    // Zeroing heads changes what the model predicts somewhere.
    expect(masked.lens.targetProb.data).not.toEqual(base.lens.targetProb.data);
  });

  it("a head or layer outside the model is refused with the valid range", async () => {
    await expect(runLens(model, { prompt: PROMPT, image: IMAGE, headMask: { heads: { "9": [0] } } })).rejects.toThrow(/layers 0\.\.2/);
    await expect(runLens(model, { prompt: PROMPT, image: IMAGE, headMask: { heads: { "1": [4] } } })).rejects.toThrow(/heads 0\.\.3/);
  });
});

describe("settings", () => {
  it("drops keys it does not know, so the record still validates, and refuses a bad positions value", async () => {
    const settings = { topK: 2, maxNewTokens: 0, bogus: true } as unknown as Record<string, unknown>;
    const r = assertLensRecord(await runLens(model, { prompt: PROMPT, image: IMAGE, settings }));
    expect(r.input.settings).toEqual({ positions: "afterImage", topK: 2, maxNewTokens: 0 });
    await expect(runLens(model, { prompt: PROMPT, image: IMAGE, settings: { positions: "middle" as never } })).rejects.toThrow(/positions must be afterImage, image or all/);
  });
});

describe("atomic writes", () => {
  it("replaces the file whole and leaves no temporary file behind", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-atomic-"));
    const file = path.join(dir, "out.csv");
    fs.writeFileSync(file, "old");
    await writeFileAtomic(file, "new content");
    expect(fs.readFileSync(file, "utf8")).toBe("new content");
    expect(fs.readdirSync(dir)).toEqual(["out.csv"]);
  });

  it("a missing folder is a one-line input error", async () => {
    await expect(writeFileAtomic(path.join(os.tmpdir(), "no-such-dir-lens", "x.json"), "{}")).rejects.toThrow(LensInputError);
  });
});
