/**
 * The bundled model on pictures it never trained on: test/fixtures/other-scenes, drawn by
 * tools/train/other_renderer.py (not scenes.py, whose scenes train the model): plain and
 * gradient grounds, objects filling 10-80% of the frame, other picture sizes, RGBA files, and
 * characters in TrueType fonts. Run through this project's runtime, like bundledModel.test.ts.
 * The bundled model answers 80% of these 70 (10 per question type, seed 12) and 90-92.6% of three
 * 350-item sets of the same renderer (seeds 11, 12 and 13; media/models/lens-scenes-tiny/README.md):
 * the check here is the 70's figure less one standard error's worth of slack (75%), so that a
 * model that falls back to the earlier one's 31% fails it.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExperiment } from "../../src/shared/experiment";
import { runLens } from "../../src/sidecar/lens/runLens";
import { runSweep, type SweepResult } from "../../src/sidecar/experiment/sweep";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";

const OTHER = path.resolve(__dirname, "../fixtures/other-scenes");
const BUNDLED = path.resolve(__dirname, "../../media/models/lens-scenes-tiny");

interface Row { image: string; question: string; answer: string; group: string; size: string; mode: string }
const manifest: Row[] = fs.readFileSync(path.join(OTHER, "questions.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Row);

let model: LoadedModel;
let result: SweepResult;

beforeAll(async () => {
  model = await LoadedModel.open(BUNDLED, { device: "cpu" });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-other-"));
  const file = path.join(dir, "other.lens.json");
  fs.writeFileSync(file, JSON.stringify({
    inputs: [{ manifest: path.join(OTHER, "questions.jsonl") }],
    prompts: ["{question}"],
    target: "{answer}",
    generation: { maxNewTokens: 4 },
    groupBy: ["group"],
    output: { folder: "out" },
  }));
  result = await runSweep(model, parseExperiment(fs.readFileSync(file, "utf8"), file), file, { outDir: path.join(dir, "out") });
}, 120_000);

afterAll(async () => {
  await model?.dispose();
});

describe("the bundled model on another renderer's scenes", () => {
  it("the held-out set spans the sizes, RGBA files and every question type", () => {
    expect(manifest.length).toBeGreaterThanOrEqual(50);
    expect(new Set(manifest.map((r) => r.size)).size).toBeGreaterThanOrEqual(5);
    expect(manifest.filter((r) => r.mode === "RGBA").length).toBeGreaterThanOrEqual(3);
    expect(new Set(manifest.map((r) => r.group))).toEqual(new Set(["color_main", "shape_main", "color_of_shape", "shape_of_color", "count", "left_right", "ocr"]));
  });

  it("runs every picture, of every size and mode, to an answer", () => {
    expect(result.rows.length).toBe(manifest.length);
    for (const r of result.rows) expect(r.generated.trim(), r.image ?? r.id).not.toBe("");
  });

  it("answers at least 75% of them right, and at least half of every question type", () => {
    const right = result.rows.filter((r) => r.correct).length;
    expect(right / result.rows.length, `${right} of ${result.rows.length}`).toBeGreaterThanOrEqual(0.75);
    for (const group of new Set(manifest.map((r) => r.group))) {
      const rows = result.rows.filter((r) => r.groups["group"] === group);
      expect(rows.filter((r) => r.correct).length / rows.length, group).toBeGreaterThanOrEqual(0.5);
    }
  });

  it("sees an RGBA file as that picture composited on white", async () => {
    const rgba = manifest.find((r) => r.mode === "RGBA")!;
    const twin = path.join(OTHER, rgba.image.replace(".png", ".on-white.png"));
    const a = await runLens(model, { prompt: rgba.question, image: path.join(OTHER, rgba.image), settings: { maxNewTokens: 2 } });
    const b = await runLens(model, { prompt: rgba.question, image: twin, settings: { maxNewTokens: 2 } });
    expect(Array.from(a.lens.topkIds.data)).toEqual(Array.from(b.lens.topkIds.data));
    const pa = Array.from(a.lens.topkProbs.data), pb = Array.from(b.lens.topkProbs.data);
    pa.forEach((p, i) => expect(p).toBeCloseTo(pb[i], 6));
    expect(a.generation.ids).toEqual(b.generation.ids);
  });
});
