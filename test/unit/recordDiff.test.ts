/** Diffs of hand-made records with hand-computed deltas, of real runs (masked vs unmasked), and the refusals. */
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { diffRecords } from "../../src/shared/recordDiff";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { FIXTURES } from "../helpers/fixtures";
import { MASKED_LENS, sampleRecord } from "../helpers/sampleRecord";

/** Row-major [L+1, P] from rows, for comparing with a delta block. */
const expectBlock = (actual: { shape: number[]; data: number[] }, rows: number[][]) => {
  expect(actual.shape).toEqual([rows.length, rows[0].length]);
  rows.flat().forEach((v, i) => expect(actual.data[i], `data[${i}]`).toBeCloseTo(v, 6));
};
const expectClose = (actual: number[], expected: number[]) => {
  expect(actual).toHaveLength(expected.length);
  expected.forEach((v, i) => expect(actual[i], `[${i}]`).toBeCloseTo(v, 6));
};

describe("diffRecords on hand-made records", () => {
  const base = assertLensRecord(sampleRecord());
  const masked = assertLensRecord(sampleRecord({ lens: MASKED_LENS, headMask: { "0": [1] } }));

  it("is zero for a record against itself", () => {
    const d = diffRecords(base, base);
    for (const block of [d.targetProbDelta, d.targetRankDelta, d.entropyDelta]) expect(block.data.every((v) => v === 0)).toBe(true);
    expect([...d.meanTargetProbDelta, ...d.meanTargetRankDelta, ...d.meanEntropyDelta].every((v) => v === 0)).toBe(true);
  });

  it("gives other - base per layer and position, and the means over positions", () => {
    const d = diffRecords(base, masked);
    expect(d.layers).toEqual(["embeddings", "block 1", "block 2"]);
    expect(d.positions).toEqual([4, 5, 6]);
    // Target " red": block 1 at position 5 drops it from 0.6 (top-1) to 0.25 (top-2), and so on.
    expectBlock(d.targetProbDelta, [
      [0, 0, 0],
      [0.1 - 0.05, 0.25 - 0.6, 0],
      [0.06 - 0.02, 0.75 - 0.875, 0],
    ]);
    expectBlock(d.targetRankDelta, [
      [0, 0, 0],
      [3 - 4, 2 - 1, 0],
      [2 - 3, 0, 0],
    ]);
    expectBlock(d.entropyDelta, [
      [0, 0, 0],
      [1.25 - 1.2, 1.35 - 1.1, 0],
      [0.55 - 0.4, 0.75 - 0.5, 0],
    ]);
    expectClose(d.meanTargetProbDelta, [0, (0.05 - 0.35) / 3, (0.04 - 0.125) / 3]);
    expectClose(d.meanTargetRankDelta, [0, 0, -1 / 3]);
    expectClose(d.meanEntropyDelta, [0, (0.05 + 0.25) / 3, (0.15 + 0.25) / 3]);
    // Ranks are integers, so their deltas are exact.
    expect(d.targetRankDelta.data).toEqual([0, 0, 0, -1, 1, 0, -1, 0, 0]);
  });

  it("says which heads each record masked, and what each position read and aimed at", () => {
    const d = diffRecords(base, masked);
    expect(d.baseHeadMask).toBeNull();
    expect(d.otherHeadMask).toEqual({ "0": [1] });
    expect(d.model).toEqual({ id: "tiny-llava", configHash: base.model.configHash });
    expect(d.baseTokens).toEqual(['say "hi",\nok', "ASSISTANT:", " red"]);
    expect(d.otherTokens).toEqual(d.baseTokens);
    expect(d.baseTargets).toEqual([" red", " red", " red"]);
    expect(d.sameToken).toEqual([true, true, true]);
    expect(d.sameContext).toEqual([true, true, true]);
    expect(d.sameTarget).toEqual([true, true, true]);
  });

  it("flags positions whose context differs once the generations part", () => {
    const other = assertLensRecord(sampleRecord({ generated: [8, 7] })); // " blue" instead of " red"
    const d = diffRecords(base, other);
    expect(d.otherTokens).toEqual(['say "hi",\nok', "ASSISTANT:", " blue"]);
    expect(d.sameToken).toEqual([true, true, false]);
    expect(d.sameContext).toEqual([true, true, false]);
  });

  it("flags positions whose target differs", () => {
    const other = sampleRecord();
    other.lens.targetIds[0] = 8;
    const d = diffRecords(base, other);
    expect(d.sameTarget).toEqual([false, true, true]);
    expect(d.otherTargets[0]).toBe(" blue");
  });

  it.each<[string, (r: LensRecord) => void, RegExp]>([
    ["another checkpoint", (r) => (r.model.configHash = "f".repeat(64)), /^cannot diff records of different models: config.json hashes differ/],
    ["another prompt", (r) => (r.input.prompt = "hi"), /^cannot diff records of different inputs: the prompts differ \("say \\"hi\\",\\nok" vs "hi"\)/],
    ["another image", (r) => (r.input.image!.sha256 = "cd".repeat(32)), /^cannot diff records of different inputs: the images differ \(abababababab vs cdcdcdcdcdcd\)/],
    ["no image against an image", (r) => (r.input.image = null), /^cannot diff records of different inputs: the images differ \(abababababab vs no image\)/],
    ["other analysed positions", (r) => (r.positions = [4, 5]), /^cannot diff records of different analysed positions: base has 3 and other 2.*--max-new-tokens 0/],
    ["another tokenization of the prompt", (r) => (r.tokens[1].id = 10), /^cannot diff records of different inputs: the prompt tokenizes differently \(first difference at token 1\)/],
    ["a malformed block", (r) => r.lens.entropy.data.pop(), /other record's lens.entropy does not hold \[3, 3\] values: validate it/],
  ])("refuses %s", (_name, edit, message) => {
    const other = sampleRecord({ lens: MASKED_LENS });
    edit(other);
    expect(() => diffRecords(base, other)).toThrow(message);
  });
});

describe("diffRecords on real runs", () => {
  let model: LoadedModel;
  let base: LensRecord;
  let masked: LensRecord;
  const request = { prompt: "What color is the circle?", image: path.join(FIXTURES, "images/portrait.png"), settings: { target: "red", maxNewTokens: 2 } };
  beforeAll(async () => {
    model = await LoadedModel.open(path.join(FIXTURES, "llava-gqa-f32/model"), { device: "cpu" });
    base = assertLensRecord(await runLens(model, request));
    masked = assertLensRecord(await runLens(model, { ...request, headMask: { heads: { "1": [0, 1, 2, 3], "2": [0, 1] } } }));
  });
  afterAll(async () => {
    await model.dispose();
  });

  it("per layer and position deltas, and their means, for masked vs unmasked", () => {
    const d = diffRecords(base, masked);
    const P = base.positions.length;
    expect(d.targetProbDelta.shape).toEqual([4, P]);
    const i = 2 * P + 3;
    expect(d.targetProbDelta.data[i]).toBeCloseTo(masked.lens.targetProb.data[i] - base.lens.targetProb.data[i], 12);
    expect(d.targetRankDelta.data[i]).toBe(masked.lens.targetRank.data[i] - base.lens.targetRank.data[i]);
    const layer3 = d.entropyDelta.data.slice(3 * P, 4 * P);
    expect(d.meanEntropyDelta[3]).toBeCloseTo(layer3.reduce((a, b) => a + b, 0) / P, 12);
    // Masking heads of decoder blocks 1 and 2 (0-based) leaves the embeddings and block 1's
    // output untouched wherever both runs read the same context.
    d.sameContext.forEach((same, j) => {
      if (!same) return;
      expect(d.targetProbDelta.data[j]).toBe(0);
      expect(d.targetProbDelta.data[P + j]).toBe(0);
    });
    expect(d.sameContext.filter(Boolean).length).toBeGreaterThanOrEqual(P - 1);
    expect(d.meanEntropyDelta.slice(2).some((v) => v !== 0)).toBe(true);
    expect(d.otherHeadMask).toEqual({ "1": [0, 1, 2, 3], "2": [0, 1] });
  });
});
