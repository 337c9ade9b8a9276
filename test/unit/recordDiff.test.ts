/** Diffs of real records (masked vs unmasked) and of hand-edited copies, plus the refusals. */
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { diffRecords } from "../../src/shared/recordDiff";
import { assertLensRecord, validateLensRecord } from "../../src/shared/validateRecord";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { FIXTURES } from "../helpers/fixtures";

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

describe("diffRecords", () => {
  it("is zero for a record against itself", () => {
    const d = diffRecords(base, base);
    expect(d.targetProbDelta.data.every((v) => v === 0)).toBe(true);
    expect(d.meanEntropyDelta.every((v) => v === 0)).toBe(true);
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
    // Masking heads of decoder layers 1 and 2 leaves the embeddings and block 1 untouched
    // wherever both runs saw the same token (a generated token may differ).
    d.sameToken.forEach((same, j) => {
      if (!same) return;
      expect(d.targetProbDelta.data[j]).toBe(0);
      expect(d.targetProbDelta.data[P + j]).toBe(0);
    });
    expect(d.sameToken.filter(Boolean).length).toBeGreaterThanOrEqual(P - 1);
    expect(d.meanEntropyDelta.slice(2).some((v) => v !== 0)).toBe(true);
    expect(d.otherHeadMask).toEqual({ "1": [0, 1, 2, 3], "2": [0, 1] });
  });

  it("refuses records of different inputs or positions", () => {
    expect(() => diffRecords(base, { ...masked, input: { ...masked.input, prompt: "other" } })).toThrow(/different inputs/);
    expect(() => diffRecords(base, { ...masked, model: { ...masked.model, configHash: "0".repeat(64) } })).toThrow(/different models/);
    expect(() => diffRecords(base, { ...masked, positions: masked.positions.slice(1) })).toThrow(/different analysed positions/);
  });
});

describe("validateLensRecord", () => {
  const broken = (edit: (r: LensRecord) => void): string[] => {
    const r = structuredClone(base);
    edit(r);
    const v = validateLensRecord(r);
    return v.ok ? [] : v.errors;
  };

  it("accepts a real record", () => {
    expect(validateLensRecord(base).ok).toBe(true);
  });

  it.each([
    ["a wrong version", (r: LensRecord) => ((r as { version: number }).version = 2), /\/version/],
    ["an unknown segment", (r: LensRecord) => ((r.tokens[0] as { segment: string }).segment = "caption"), /\/tokens\/0\/segment/],
    ["data that does not fill its shape", (r: LensRecord) => r.lens.entropy.data.pop(), /\/lens\/entropy\/data: has/],
    ["a block of the wrong layer count", (r: LensRecord) => (r.lens.kl.shape[0] = 3), /\/lens\/kl/],
    ["a position past the tokens", (r: LensRecord) => (r.positions[r.positions.length - 1] = 999), /\/positions\/\d+: 999 is not a token index/],
    ["positions out of order", (r: LensRecord) => r.positions.reverse(), /strictly increasing/],
    ["a missing field", (r: LensRecord) => delete (r as Partial<LensRecord>).tracked, /must have required property 'tracked'/],
    ["an extra field", (r: LensRecord) => ((r as unknown as Record<string, unknown>).extra = 1), /must NOT have additional properties/],
    ["a top-k block of the wrong k", (r: LensRecord) => (r.lens.topK = 3), /\/lens\/topkIds\/shape\/2: must be 3/],
    ["attention of the wrong head count", (r: LensRecord) => (r.model.numHeads = 8), /\/attention\/mass\/shape\/1: must be 8/],
    ["generation that disagrees with the tokens", (r: LensRecord) => r.generation.ids.push(5), /\/generation/],
    ["a masked head outside the model", (r: LensRecord) => (r.headMask = { "1": [7] }), /\/headMask\/1\/0: head 7/],
  ])("rejects %s", (_name, edit, message) => {
    const errors = broken(edit);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.join("\n")).toMatch(message);
  });
});
