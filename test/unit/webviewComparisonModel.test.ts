/** What the comparison view reads from a sweep's aggregates: intervals, masked heads, the variants table, the item filter. */
import { describe, expect, it } from "vitest";
import { aggregateRows, type SweepAggregates, type SweepRow } from "../../src/shared/sweep";
import { comparisonItems } from "../../src/shared/sweepCompare";
import { accuracyBars, baselineOf, differenceSeries, filterItems, maskText, variantLines } from "../../src/webview/comparisonModel";

function row(index: number, variant: string, correct: boolean, headMask: Record<string, number[]> | null = null): SweepRow {
  return {
    v: 1, id: `${index}`, index, image: `${index >> 1}.png`, imageSha256: null, promptName: "q", prompt: "Q", variant, groups: {},
    expected: "red", generated: correct ? "red" : "blue", correct, headMask, answerPosition: 5, targetId: 7, targetText: "red", finalId: 7, finalText: "red",
    entropy: [1, 0], targetProb: [0.5, correct ? 0.9 : 0.2], targetRank: [2, 1], kl: [1, 0], cosine: [1, 1], top1: [7, 7], finalRank: [1, 1],
    convergenceLayer: 1, imageShare: [0.5], seconds: 0,
  };
}

describe("the comparison model", () => {
  const rows = [row(0, "base", true), row(1, "mask", false, { "4": [3, 1], "0": [2] }), row(2, "base", true), row(3, "mask", true, { "0": [2], "4": [1, 3] })];
  const a = aggregateRows(rows, []);

  it("names masked heads by block from 1, in order, and says when they vary per item", () => {
    expect(maskText({ headMask: { "4": [3, 1], "0": [2] }, maskVaries: false, meanMaskedHeads: 3 })).toBe("block 1: head 2 · block 5: heads 1, 3");
    expect(maskText({ headMask: null, maskVaries: false, meanMaskedHeads: 0 })).toBe("none");
    expect(maskText({ headMask: null, maskVaries: true, meanMaskedHeads: 2.5 })).toBe("chosen per item (2.5 heads on average)");
  });

  it("lists each variant with its accuracy interval and its change in points against the baseline", () => {
    const lines = variantLines(a)!;
    expect(lines.map((l) => [l.variant, l.baseline, l.accuracy, l.delta])).toEqual([
      ["base", true, 1, null],
      ["mask", false, 0.5, -0.5],
    ]);
    expect(lines[1].masked).toBe("block 1: head 2 · block 5: heads 1, 3");
    expect(variantLines({ layers: 2, groups: a.groups })).toBeNull();
    expect(baselineOf(a)).toBe("base");
  });

  it("computes the interval again for aggregates written before it was", () => {
    const old: SweepAggregates = { layers: 2, groups: a.groups.map(({ accuracyInterval: _i, ...g }) => g) };
    expect(accuracyBars(old, "all").map((b) => b.interval)).toEqual(accuracyBars(a, "all").map((b) => b.interval));
    expect(accuracyBars(a, "all")[1].interval![1]).toBeCloseTo(0.9055, 4); // Wilson, 1 of 2
  });

  it("gives one difference series per other variant, labelled with its n", () => {
    const s = differenceSeries(a, "targetProb", "all");
    expect(s).toHaveLength(1);
    expect(s[0].label).toBe("mask − base (n=2)");
    expect(s[0].median).toEqual([0, -0.35]); // (0.2-0.9 + 0.9-0.9)/2 at the last layer
  });

  it("filters the items: wrong, right, one variant", () => {
    const items = comparisonItems(rows);
    expect(filterItems(items, "wrong").map((i) => i.id)).toEqual(["1"]);
    expect(filterItems(items, "right").map((i) => i.id)).toEqual(["0", "2", "3"]);
    expect(filterItems(items, "variant:mask").map((i) => i.id)).toEqual(["1", "3"]);
    expect(filterItems(items, "all")).toHaveLength(4);
  });
});
