// A picked head: its pattern row, its weights on the picture, the mask it adds, and the
// before/after of masking it, against the hand-made sample records (every figure read off
// SAMPLE_LENS and MASKED_LENS by hand).
import { describe, expect, it } from "vitest";
import { headOverlay, imageShare, maskComparison, patternRow, strongestKeys, withHead } from "../../src/webview/headModel";
import { buildLensView } from "../../src/webview/model";
import { MASKED_LENS, sampleRecord } from "../helpers/sampleRecord";

// [P = 3 queries, T = 8 keys]; query 1 (position 5) sees keys 0-5
const rows = {
  shape: [3, 8],
  data: [
    [0.5, 0.5, 0, 0, 0, 0, 0, 0],
    [0.1, 0.05, 0.4, 0.2, 0.15, 0.1, 0, 0],
    [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4, 0],
  ].flat(),
};

describe("a head's pattern", () => {
  it("reads one query's row, and its strongest keys", () => {
    expect(Array.from(patternRow(rows, 1))).toEqual(Array.from(Float32Array.from([0.1, 0.05, 0.4, 0.2, 0.15, 0.1, 0, 0])));
    expect(Array.from(patternRow(rows, 7))).toEqual(new Array(8).fill(0));
    expect(strongestKeys(patternRow(rows, 1), 3).map((k) => k.token)).toEqual([2, 3, 4]);
    // ties go to the earlier token; zero weights are not keys
    expect(strongestKeys(patternRow(rows, 0), 5).map((k) => k.token)).toEqual([0, 1]);
  });

  it("puts the image tokens' weights on the patch grid, and sums the share on the image", () => {
    const record = sampleRecord();
    const grid = headOverlay(record, patternRow(rows, 1))!;
    // the sample's image is a 1 x 2 grid: tokens 2 and 3
    expect([grid.rows, grid.cols]).toEqual([1, 2]);
    expect(Array.from(grid.values)).toEqual(Array.from(Float32Array.from([0.4, 0.2])));
    expect(grid.max).toBeCloseTo(0.4, 6);
    expect(imageShare(record, patternRow(rows, 1))).toBeCloseTo(0.6, 6);
    expect(imageShare(record, patternRow(rows, 0))).toBe(0);
  });

  it("adds a head to a mask, sorted and once", () => {
    expect(withHead(null, { block: 1, head: 0 })).toEqual({ "1": [0] });
    expect(withHead({ "3": [2], "1": [1] }, { block: 1, head: 0 })).toEqual({ "1": [0, 1], "3": [2] });
    expect(withHead({ "1": [0] }, { block: 1, head: 0 })).toEqual({ "1": [0] });
  });
});

describe("maskComparison", () => {
  it("gives the answer's rank, probability and the entropy per layer with and without the head", () => {
    const base = buildLensView(sampleRecord());
    const masked = buildLensView(sampleRecord({ lens: MASKED_LENS, headMask: { "0": [1] } }));
    const c = maskComparison(base, masked, { block: 0, head: 1 })!;
    // the answer position predicts the first generated token: position 5 (index 1); its final top-1 is " red"
    expect(c.p).toBe(1);
    expect(c.answerId).toBe(6);
    expect(c.answerText).toBe(" red");
    expect(c.rank.base).toEqual([3, 1, 1]);
    expect(c.rank.masked).toEqual([3, 2, 1]);
    expect(c.prob.base.map((x) => Number(x.toFixed(4)))).toEqual([0.02, 0.6, 0.875]);
    expect(c.prob.masked!.map((x) => Number(x.toFixed(4)))).toEqual([0.02, 0.25, 0.75]);
    expect(c.entropy.base.map((x) => Number(x.toFixed(4)))).toEqual([2.375, 1.1, 0.5]);
    expect(c.entropy.masked.map((x) => Number(x.toFixed(4)))).toEqual([2.375, 1.35, 0.75]);
    expect(c.maskedTop1).toBe(" red");
    expect(c.summary).toBe("Masking block 1 head 1: “ red” at the last layer prob 0.88 → 0.75, rank 1 → 1; the answer stays.");
  });

  it("says when the masked run changes the answer", () => {
    const base = buildLensView(sampleRecord());
    // the masked run's final top-1 at position 5 is " blue" (8): " red" falls to rank 2
    const lens = structuredClone(MASKED_LENS);
    lens.topk[2][1] = [[8, 0.7], [6, 0.2]];
    lens.targetRank[2][1] = 2;
    lens.targetProb[2][1] = 0.2;
    const c = maskComparison(base, buildLensView(sampleRecord({ lens, headMask: { "0": [1] } })), { block: 0, head: 1 })!;
    expect(c.rank.masked![2]).toBe(2);
    expect(c.summary).toContain("the final top-1 becomes “ blue”");
  });
});
