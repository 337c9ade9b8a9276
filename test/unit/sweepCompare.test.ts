/** Comparison statistics of sweep variants, on small rows whose figures are worked out by hand. */
import { describe, expect, it } from "vitest";
import { aggregateRows, groupValue, type SweepRow } from "../../src/shared/sweep";
import { baselineVariant, comparisonItems, pairKey, quantileSorted, summarizeVariants, variantDifferences, wilsonInterval } from "../../src/shared/sweepCompare";

function row(index: number, item: string, variant: string, over: Partial<SweepRow>): SweepRow {
  return {
    v: 1, id: `${item}-${variant}`, index, image: `${item}.png`, imageSha256: null, promptName: "q", prompt: "Q", variant, groups: { shape: item.startsWith("c") ? "circle" : "square" },
    expected: "red", generated: "red", correct: true, headMask: null, answerPosition: 5, targetId: 7, targetText: "red", finalId: 7, finalText: "red",
    entropy: [2, 1, 0], targetProb: [0.1, 0.5, 0.9], targetRank: [100, 10, 1], kl: [1, 0.5, 0], cosine: [1, 1, 1], top1: [7, 7, 7], finalRank: [1, 1, 1],
    convergenceLayer: 0, imageShare: [0, 0], seconds: 0, ...over,
  };
}

describe("Wilson interval", () => {
  it("matches the textbook figures and stays inside [0, 1]", () => {
    // 2 of 3: centre (2/3 + 1.92/3) / (1 + 3.84/3); the published interval is 0.208 to 0.939
    const [lo, hi] = wilsonInterval(2, 3)!;
    expect(lo).toBeCloseTo(0.2077, 4);
    expect(hi).toBeCloseTo(0.9385, 4);
    // 0 of 10: [0, 0.2775], never negative; 10 of 10 mirrors it
    expect(wilsonInterval(0, 10)![0]).toBe(0);
    expect(wilsonInterval(0, 10)![1]).toBeCloseTo(0.2775, 4);
    expect(wilsonInterval(10, 10)![0]).toBeCloseTo(0.7225, 4);
    expect(wilsonInterval(10, 10)![1]).toBe(1);
    expect(wilsonInterval(0, 0)).toBeNull();
  });

  it("narrows with n at the same proportion", () => {
    const w = (c: number, n: number) => wilsonInterval(c, n)![1] - wilsonInterval(c, n)![0];
    expect(w(50, 100)).toBeLessThan(w(5, 10));
    expect(w(50, 100)).toBeCloseTo(0.1919, 3); // 0.404 to 0.596
  });
});

describe("quantiles", () => {
  it("interpolate between ranks as numpy does", () => {
    expect(quantileSorted([1, 2, 3, 4], 0.25)).toBe(1.75);
    expect(quantileSorted([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantileSorted([1, 2, 3, 4], 0.75)).toBe(3.25);
    expect(quantileSorted([5], 0.25)).toBe(5);
    expect(quantileSorted([], 0.5)).toBeNaN();
  });
});

describe("variants against the baseline", () => {
  // three items under "base", then under "mask" (heads 0 and 2 of block 1 masked): the masked run
  // loses probability at the last layer by 0.1, 0.3 and 0.5, and one answer turns wrong
  const rows: SweepRow[] = [
    row(0, "c1", "base", {}),
    row(1, "c1", "mask", { targetProb: [0.1, 0.4, 0.8], headMask: { "1": [2, 0] } }),
    row(2, "c2", "base", {}),
    row(3, "c2", "mask", { targetProb: [0.1, 0.3, 0.6], targetRank: [100, 100, 10], headMask: { "1": [0, 2] }, correct: false, generated: "blue" }),
    row(4, "s1", "base", { entropy: [3, 2, 1] }),
    row(5, "s1", "mask", { targetProb: [0.1, 0.5, 0.4], entropy: [3, 3, 3], headMask: { "1": [0, 2] } }),
  ];

  it("the baseline is the first planned item's variant, whatever order the rows were written in", () => {
    expect(baselineVariant([...rows].reverse())).toBe("base");
    expect(baselineVariant([])).toBeNull();
  });

  it("summarises each variant: accuracy with its interval, and the heads it masked", () => {
    const [base, mask] = summarizeVariants(rows);
    expect(base).toMatchObject({ variant: "base", n: 3, scored: 3, correct: 3, accuracy: 1, headMask: null, maskVaries: false, meanMaskedHeads: 0 });
    expect(mask).toMatchObject({ variant: "mask", n: 3, correct: 2, accuracy: 2 / 3, maskVaries: false, meanMaskedHeads: 2 });
    // the same heads in another order are the same mask
    expect(mask.headMask).toEqual({ "1": [2, 0] });
    expect(mask.interval![0]).toBeCloseTo(0.2077, 4);
    const varied = summarizeVariants([...rows, row(7, "s2", "mask", { headMask: { "0": [1] } })])[1];
    expect(varied).toMatchObject({ maskVaries: true, headMask: null, meanMaskedHeads: 7 / 4 });
  });

  it("pairs each item with its baseline run and gives the median and quartiles of the change per layer", () => {
    const d = variantDifferences(rows, ["shape"], groupValue);
    const all = d.find((x) => x.field === "targetProb" && x.key === "all")!;
    expect(all).toMatchObject({ variant: "mask", baseline: "base", n: 3 });
    // last layer: 0.8-0.9, 0.6-0.9, 0.4-0.9 = -0.1, -0.3, -0.5 -> median -0.3, quartiles -0.4 and -0.2
    expect(all.median.map((v) => +v.toFixed(12))).toEqual([0, -0.1, -0.3]);
    expect(all.q1[2]).toBeCloseTo(-0.4, 12);
    expect(all.q3[2]).toBeCloseTo(-0.2, 12);
    // rank as log10: c2's rank at layer 1 went 10 -> 100 (+1), at layer 2 1 -> 10 (+1)
    const rank = d.find((x) => x.field === "logTargetRank" && x.key === "all")!;
    expect(rank.median).toEqual([0, 0, 0]);
    expect(rank.q3[2]).toBeCloseTo(0.5, 12); // values 0, 0, 1
    const circles = d.find((x) => x.field === "targetProb" && x.key === "shape" && x.value === "circle")!;
    expect(circles.n).toBe(2);
    expect(circles.median[2]).toBeCloseTo(-0.2, 12);
    const squares = d.find((x) => x.field === "entropy" && x.value === "square")!;
    expect(squares.median).toEqual([0, 1, 2]);
  });

  it("leaves out items the baseline did not run, and a sweep with one variant has no differences", () => {
    const extra = [...rows, row(6, "c9", "mask", { targetProb: [1, 1, 1] })];
    expect(variantDifferences(extra, [], groupValue).find((x) => x.field === "targetProb")!.n).toBe(3);
    expect(variantDifferences(rows.filter((r) => r.variant === "base"), ["shape"], groupValue)).toEqual([]);
  });

  it("pairs by item identity, not by the row id that holds the variant", () => {
    expect(pairKey(rows[0])).toBe(pairKey(rows[1]));
    expect(pairKey(rows[0])).not.toBe(pairKey(rows[2]));
  });

  it("is part of the aggregates a sweep writes, and lists its items in plan order", () => {
    const a = aggregateRows([...rows].reverse(), ["shape"]);
    expect(a.variants?.map((v) => v.variant)).toEqual(["base", "mask"]);
    expect(a.differences?.length).toBe(3 * 4); // all, circle, square x four statistics
    expect(a.groups.find((g) => g.variant === "mask" && g.key === "all")?.accuracyInterval?.[1]).toBeCloseTo(0.9385, 4);
    const items = comparisonItems([...rows].reverse());
    expect(items.map((i) => i.index)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(items[3]).toMatchObject({ id: "c2-mask", correct: false, generated: "blue", finalTargetProb: 0.6 });
  });
});
