/**
 * Every supported vision-language architecture through the same experiment path the CLI and
 * the extension use: a sweep over two images with a head-mask variant, records kept. The
 * records validate, their image tokens carry positions on the picture (tile, row, column within
 * the grid the record declares), the attention breakdown has image mass, and the aggregates
 * cover both variants. (Numerical parity with transformers is in test/parity.)
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseExperiment } from "../../src/shared/experiment";
import { at, type LensRecord } from "../../src/shared/lensRecord";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { runSweep } from "../../src/sidecar/experiment/sweep";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";

const FIXTURES = path.resolve(__dirname, "../fixtures");
const MODELS = [
  ["LlavaForConditionalGeneration", path.join(FIXTURES, "models", "llava-gqa-f32", "model")],
  ["Qwen2VLForConditionalGeneration", path.join(FIXTURES, "qwen2vl-tiny", "model")],
  ["Idefics3ForConditionalGeneration", path.join(FIXTURES, "idefics3-tiny", "model")],
] as const;

describe.each(MODELS)("%s through an experiment", (architecture, folder) => {
  it("runs, and its records and aggregates have the shape every view reads", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-arch-"));
    const file = path.join(dir, "sweep.lens.json");
    const images = [path.join(FIXTURES, "images", "photo-120x80.png"), path.join(FIXTURES, "images", "noise-40x90.png")];
    fs.writeFileSync(
      file,
      JSON.stringify({
        version: 1,
        model: folder,
        inputs: images.map((images) => ({ images })),
        prompts: ["Describe it."],
        generation: { maxNewTokens: 2 },
        lens: { imageAttention: true, patchLens: true },
        variants: [{ name: "baseline" }, { name: "top-image-2", topImage: { count: 2 } }],
        output: { folder: "out", records: true },
      }),
    );
    const model = await LoadedModel.open(folder, { device: "cpu" });
    try {
      expect(model.info.architecture).toBe(architecture);
      const result = await runSweep(model, parseExperiment(fs.readFileSync(file, "utf8"), file), file, { outDir: path.join(dir, "out") });
      expect(result.rows).toHaveLength(4);
      const records: LensRecord[] = fs
        .readFileSync(path.join(dir, "out", "records.jsonl"), "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => assertLensRecord((JSON.parse(l) as { record: unknown }).record));
      for (const r of records) {
        expect(r.model.architecture).toBe(architecture);
        const [rows, cols] = r.input.image!.grid;
        const imageTokens = r.tokens.filter((t) => t.segment === "image");
        expect(imageTokens.length).toBeGreaterThan(0);
        for (const t of imageTokens) {
          expect(t.image!.row).toBeLessThan(rows);
          expect(t.image!.col).toBeLessThan(cols);
          expect(t.image!.index).toBeLessThan(r.input.image!.tiles?.count ?? 1);
        }
        expect(r.attention.imageRows!.shape[2]).toBe(imageTokens.length);
        expect(r.patchLens!.topIds.shape[1]).toBe(imageTokens.length);
        // the attention on image keys is real: some head of the first block looks at the image
        const image = r.attention.segments.indexOf("image");
        const [, heads, P] = r.attention.mass.shape;
        let most = 0;
        for (let h = 0; h < heads; h++) for (let p = 0; p < P; p++) most = Math.max(most, at(r.attention.mass, 0, h, p, image));
        expect(most).toBeGreaterThan(0);
      }
      expect(new Set(result.aggregates.groups.map((g) => g.variant))).toEqual(new Set(["baseline", "top-image-2"]));
      expect(records.filter((r) => r.headMask !== null)).toHaveLength(2);
    } finally {
      await model.dispose();
    }
  });
});
