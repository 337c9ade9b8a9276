/**
 * Parity with Hugging Face transformers: every fixture case recorded by
 * tools/reference/make_fixtures.py (transformers' own outputs on tiny random checkpoints)
 * must be reproduced by the TypeScript runtime: token ids and greedy tokens identical,
 * pixel values within 1e-6, every hidden state and the logits within relative error 1e-4.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { listCases, maxAbsDiff, readTensor, relativeError, type ReferenceCase } from "../helpers/fixtures";

const cases = listCases();
const models = new Map<string, Promise<LoadedModel>>();
const open = (dir: string) => {
  let m = models.get(dir);
  if (!m) models.set(dir, (m = LoadedModel.open(dir, { device: "cpu" })));
  return m;
};
afterAll(async () => {
  for (const m of models.values()) await (await m).dispose();
});

/** Float32 compute over the checkpoint's weights must match transformers' float32 run this closely. */
const F32_BOUND = 1e-4;
/** Against transformers computing natively in bfloat16 we only report the distance (and bound it loosely). */
const NATIVE_BF16_BOUND = 0.1;

it("has reference fixtures to compare against", () => {
  expect(cases.length).toBeGreaterThanOrEqual(8);
  const archs = new Set(cases.map((c) => c.architecture));
  expect(archs).toEqual(new Set(["LlamaForCausalLM", "LlavaForConditionalGeneration"]));
});

describe.each(cases.map((c) => [`${c.model}/${c.case}`, c] as [string, ReferenceCase]))("%s", (_name, c) => {
  const bound = c.compute_dtype === "float32" ? F32_BOUND : NATIVE_BF16_BOUND;

  it("tokenizes, expands the image tokens and preprocesses the image as transformers does", async () => {
    const model = await open(c.modelDir);
    const prepared = await model.prepare({ prompt: c.prompt, image: c.imagePath ?? undefined });
    expect(prepared.renderedPrompt.replaceAll("<image>", "")).toBe(c.rendered_prompt.replaceAll("<image>", ""));
    expect(prepared.inputIds).toEqual(c.input_ids);
    if (c.pixel_values) {
      expect(prepared.pixelValues?.shape).toEqual(c.pixel_values.shape);
      expect(maxAbsDiff(prepared.pixelValues!.data, readTensor(c, c.pixel_values))).toBeLessThanOrEqual(1e-6);
    } else {
      expect(prepared.pixelValues).toBeUndefined();
    }
  });

  it(`matches every hidden state and the logits (relative error <= ${bound})`, async () => {
    const model = await open(c.modelDir);
    const prepared = await model.prepare({ prompt: c.prompt, image: c.imagePath ?? undefined });
    const positions = c.input_ids.map((_, i) => i);
    const result = await model.forward(c.input_ids, { imageFeatures: await model.imageFeaturesFor(prepared), positions });
    const [layers, seq, hidden] = c.hidden_states.shape;
    expect(layers).toBe(model.info.numLayers + 1);
    const expectedHidden = readTensor(c, c.hidden_states);
    expect(result.hiddenStates.length).toBe(expectedHidden.length);
    const perLayer = Array.from({ length: layers }, (_, l) => relativeError(result.hiddenStates, expectedHidden, l * seq * hidden, seq * hidden));
    const logitsError = relativeError(await model.logits(result), readTensor(c, c.logits));
    console.log(`${c.model}/${c.case} [${c.compute_dtype}]: hidden-state rel. error max ${Math.max(...perLayer).toExponential(2)}, logits ${logitsError.toExponential(2)}`);
    for (const e of perLayer) expect(e).toBeLessThanOrEqual(bound);
    expect(logitsError).toBeLessThanOrEqual(bound);
  });

  it.runIf(c.compute_dtype === "float32")("generates the same greedy tokens", async () => {
    expect(c.greedy_min_top2_gap).toBeGreaterThan(1e-3);
    const model = await open(c.modelDir);
    const prepared = await model.prepare({ prompt: c.prompt, image: c.imagePath ?? undefined });
    expect(await model.generate(prepared, c.greedy_tokens.length)).toEqual(c.greedy_tokens);
  });
});

// A live preview runs one image with many prompts: the preprocessed image is kept per file
// (path, modification time, size), and a file that changes is read again.
describe("preprocessed images", () => {
  it("are reused for the same file and read again when the file changes", async () => {
    const c = cases.find((x) => x.imagePath)!;
    const model = await open(c.modelDir);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-image-"));
    try {
      const file = path.join(dir, "picture.png");
      fs.copyFileSync(c.imagePath!, file);
      const first = await model.prepare({ prompt: c.prompt, image: file });
      const again = await model.prepare({ prompt: c.prompt, image: file });
      expect(again.pixelValues!.data).toBe(first.pixelValues!.data);
      expect(maxAbsDiff(first.pixelValues!.data, readTensor(c, c.pixel_values!))).toBeLessThanOrEqual(1e-6);

      const other = cases.find((x) => x.imagePath && x.imagePath !== c.imagePath)!;
      fs.copyFileSync(other.imagePath!, file);
      fs.utimesSync(file, new Date(), new Date(Date.now() + 5000));
      const changed = await model.prepare({ prompt: c.prompt, image: file });
      expect(changed.pixelValues!.data).not.toBe(first.pixelValues!.data);
      expect(maxAbsDiff(changed.pixelValues!.data, readTensor(other, other.pixel_values!))).toBeLessThanOrEqual(1e-6);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
