// The webview's data transforms against the hand-made sample record: every expected number is
// read off SAMPLE_LENS and the sample's attention, image rows and patch lens by hand.
import { describe, expect, it } from "vitest";
import type { SweepAggregates } from "../../src/shared/sweep";
import type { TrackedMessage } from "../../src/shared/webviewProtocol";
import {
  attentionBreakdown,
  attentionOverlay,
  buildLensView,
  comparisonAccuracy,
  comparisonKeys,
  comparisonSeries,
  convergenceLayers,
  findTrackedIds,
  headShare,
  heatmapCell,
  heatmapCells,
  imageCells,
  overlayLayout,
  layerSeries,
  metricScale,
  patchLensOverlay,
  ranksAt,
  tokenStrip,
  topkAt,
  trackedRanks,
  visibleToken,
} from "../../src/webview/model";
import { sampleRecord } from "../helpers/sampleRecord";

const view = () => buildLensView(sampleRecord());

describe("buildLensView", () => {
  it("lays the top-1 of every cell out layer-major", () => {
    const v = view();
    expect([v.layers, v.positions, v.topK]).toEqual([3, 3, 2]);
    expect(Array.from(v.top1Ids)).toEqual([9, 11, 4, 5, 6, 7, 5, 6, 7]);
    expect(Array.from(v.top1Probs)).toEqual(Array.from(Float32Array.from([0.25, 0.5, 0.375, 0.3, 0.6, 0.4, 0.9, 0.875, 0.99])));
  });

  it("marks the cells of positions that predict a generated token", () => {
    const v = view();
    // " red" (6) is predicted at analysed index 1 (token 5), "</s>" (7) at index 2 (token 6).
    expect(Array.from(v.predicts)).toEqual([-1, 0, 1]);
    // Layer 0's top-1 there is "Red" (11) and 'say...' (4): no match; blocks 1 and 2 match.
    expect(Array.from(v.matches)).toEqual([-1, 0, 0, -1, 1, 1, -1, 1, 1]);
    expect(heatmapCell(v, "prob", 0, 0).matchesGenerated).toBeNull();
    expect(heatmapCell(v, "prob", 0, 1).matchesGenerated).toBe(false);
    expect(heatmapCell(v, "prob", 2, 2).matchesGenerated).toBe(true);
  });
});

describe("heatmap", () => {
  it("gives each cell its top-1 text, probability and the metric's value", () => {
    const v = view();
    const cell = heatmapCell(v, "entropy", 1, 1);
    expect(cell).toMatchObject({ layer: 1, p: 1, token: 5, top1Id: 6, top1Text: " red" });
    expect(cell.top1Prob).toBeCloseTo(0.6, 6);
    expect(cell.value).toBeCloseTo(1.1, 6);
    expect(heatmapCells(v, "prob")).toHaveLength(9);
    expect(heatmapCells(v, "prob")[5]).toMatchObject({ layer: 1, p: 2, top1Text: "</s>" });
  });

  it("scales probability on [0, 1], entropy and KL on [0, max], and the target rank on a reversed log scale", () => {
    const v = view();
    const prob = metricScale(v, "prob");
    expect([prob.min, prob.max, prob.log]).toEqual([0, 1, false]);
    expect(prob.intensity[6]).toBeCloseTo(0.9, 6);

    const entropy = metricScale(v, "entropy");
    expect(entropy.max).toBeCloseTo(2.4, 6);
    expect(entropy.intensity[3]).toBeCloseTo(1.2 / 2.4, 6); // layer 1, position 0

    const kl = metricScale(v, "kl");
    expect(kl.max).toBe(5);
    expect(kl.intensity[0]).toBeCloseTo(0.9, 6); // 4.5 / 5
    expect(kl.intensity[8]).toBe(0);

    // Target ranks [[5,3,9],[4,1,2],[3,1,2]]: the worst (9) is 0, rank 1 is 1, rank 3 sits half way on log9.
    const rank = metricScale(v, "targetRank");
    expect([rank.min, rank.max, rank.log, rank.reversed]).toEqual([1, 9, true, true]);
    expect(rank.intensity[2]).toBe(0);
    expect(rank.intensity[4]).toBe(1);
    expect(rank.intensity[1]).toBeCloseTo(0.5, 6);
    expect(rank.intensity[6]).toBeCloseTo(0.5, 6);
  });

  it("lists a cell's top-k and the layer where each position settles", () => {
    const v = view();
    expect(topkAt(v, 2, 1).map(({ id, text }) => [id, text])).toEqual([
      [6, " red"],
      [11, "Red"],
    ]);
    expect(topkAt(v, 2, 1)[1].prob).toBeCloseTo(0.0625, 6);
    // Every position's top-1 is settled from block 1: [9,5,5], [11,6,6], [4,7,7].
    expect(Array.from(convergenceLayers(v))).toEqual([1, 1, 1]);
  });
});

describe("ranks of one token", () => {
  it("reads a tracked token's rank at every layer from record.tracked", () => {
    const v = view();
    // " red" at token 5: the target at layer 0 (rank 3, p 0.02), top-1 at blocks 1 and 2.
    const red = ranksAt(v, 6, 1)!;
    expect(red.rank).toEqual([3, 1, 1]);
    expect(red.prob.map((p) => Number(p.toFixed(4)))).toEqual([0.02, 0.6, 0.875]);
    // " blue" at token 4: outside the top-k at layers 0 and 1, ranked after the top-k in id order
    // skipping the target's rank (7 and 6), second at block 2.
    expect(ranksAt(v, 8, 0)!.rank).toEqual([7, 6, 2]);
    expect(ranksAt(v, 3, 0)).toBeNull();
  });

  it("reads the same from a TrackedMessage", () => {
    const message: TrackedMessage = {
      type: "tracked",
      ids: [8, 2],
      texts: [" blue", "USER:"],
      // [3 layers, 3 positions, 2 tokens]
      rank: { shape: [3, 3, 2], data: [7, 50, 4, 51, 5, 52, 6, 60, 5, 61, 5, 62, 2, 70, 2, 71, 3, 72] },
      prob: { shape: [3, 3, 2], data: Array.from({ length: 18 }, (_, i) => i / 100) },
    };
    const r = trackedRanks(message, 1, 2);
    expect(r).toEqual({ id: 2, text: "USER:", rank: [52, 62, 72], prob: [0.05, 0.11, 0.17] });
  });

  it("finds tracked ids by text, exactly first, then trimmed", () => {
    const record = sampleRecord();
    expect(findTrackedIds(record, " blue")).toEqual([8]);
    expect(findTrackedIds(record, "blue")).toEqual([8]);
    expect(findTrackedIds(record, "Red")).toEqual([11]);
    expect(findTrackedIds(record, "red")).toEqual([6]);
    expect(findTrackedIds(record, "green")).toEqual([]);
    expect(findTrackedIds(record, "  ")).toEqual([9]);
  });
});

describe("per-layer series", () => {
  it("reads one position or the mean over positions", () => {
    const v = view();
    expect(layerSeries(v, "entropy", 1).map((x) => Number(x.toFixed(4)))).toEqual([2.375, 1.1, 0.5]);
    expect(layerSeries(v, "targetRank", 2)).toEqual([9, 2, 2]);
    const mean = layerSeries(v, "entropy", "mean");
    expect(mean[0]).toBeCloseTo((2.25 + 2.375 + 2.4) / 3, 5);
    expect(mean[1]).toBeCloseTo((1.2 + 1.1 + 1.5) / 3, 5);
    expect(mean[2]).toBeCloseTo((0.4 + 0.5 + 0.1) / 3, 5);
    expect(layerSeries(v, "cosine", "mean")[0]).toBeCloseTo((0.1 + 0.2 - 0.05) / 3, 5);
    expect(layerSeries(v, "entropy", "mean")).toBe(mean); // cached
  });
});

describe("attention", () => {
  it("averages the segment shares over heads, at a position or over positions", () => {
    const v = view();
    // Prompt queries: head 0 [.5,.125,.125,.25,0], head 1 [.25,.125,.125,.5,0].
    const at0 = attentionBreakdown(v, 0);
    expect(at0.segments).toEqual(["bos", "template", "text", "image", "generated"]);
    expect(at0.shares).toEqual([
      [0.375, 0.125, 0.125, 0.375, 0],
      [0.375, 0.125, 0.125, 0.375, 0],
    ]);
    // The generated query (token 6): head 0 [.5,.125,.125,.125,.125], head 1 [.25,.125,.125,.375,.125].
    expect(attentionBreakdown(v, 2).shares[1]).toEqual([0.375, 0.125, 0.125, 0.25, 0.125]);
    const mean = attentionBreakdown(v, "mean").shares[0];
    expect(mean[3]).toBeCloseTo((0.375 + 0.375 + 0.25) / 3, 6);
    expect(mean[4]).toBeCloseTo(0.125 / 3, 6);
    expect(mean.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
  });

  it("gives the image share per block and head", () => {
    const v = view();
    const one = headShare(v, 0);
    expect([one.blocks, one.heads]).toEqual([2, 2]);
    expect(Array.from(one.values)).toEqual([0.25, 0.5, 0.25, 0.5]);
    const mean = headShare(v, "mean");
    expect(mean.values[0]).toBeCloseTo((0.25 + 0.25 + 0.125) / 3, 6);
    expect(mean.values[1]).toBeCloseTo((0.5 + 0.5 + 0.375) / 3, 6);
    expect(Array.from(headShare(v, 0, "bos").values)).toEqual([0.5, 0.25, 0.5, 0.25]);
  });
});

describe("image overlay", () => {
  it("places the image tokens on the grid", () => {
    expect(imageCells(sampleRecord())).toEqual([
      { j: 0, token: 2, row: 0, col: 0 },
      { j: 1, token: 3, row: 0, col: 1 },
    ]);
  });

  it("lays a split image's crops out in their places on the picture, and an unsplit tiled one on its global image", () => {
    // two 1 x 1 crops side by side (SmolVLM / Idefics3 row-major crops), then the global image
    const split = sampleRecord();
    split.input.image!.grid = [1, 1];
    split.input.image!.tiles = { rows: 1, cols: 2, count: 3 };
    split.tokens[2].image = { index: 0, row: 0, col: 0 };
    split.tokens[3].image = { index: 1, row: 0, col: 0 };
    expect(overlayLayout(split)).toEqual({
      rows: 1,
      cols: 2,
      wholePicture: true,
      cells: [
        { j: 0, token: 2, row: 0, col: 0 },
        { j: 1, token: 3, row: 0, col: 1 },
      ],
    });
    // the sample's own layout: one image (an unsplit tiled input), on its grid over the whole picture
    expect(overlayLayout(sampleRecord())).toMatchObject({ rows: 1, cols: 2, wholePicture: true });
    const plain = sampleRecord();
    delete plain.input.image!.tiles;
    expect(overlayLayout(plain)?.wholePicture).toBe(false);
  });

  it("maps the head-averaged image rows of a block onto the patches", () => {
    const v = view();
    // imageRows row i (= block * 3 + position) is [0.25, 0.0625 * (1 + i % 3)].
    const one = attentionOverlay(v, 1, 1)!;
    expect([one.rows, one.cols, one.max]).toEqual([1, 2, 0.25]);
    expect(Array.from(one.values)).toEqual([0.25, 0.125]);
    const mean = attentionOverlay(v, 2, "mean")!;
    expect(mean.values[0]).toBeCloseTo(0.25, 6);
    expect(mean.values[1]).toBeCloseTo((0.0625 + 0.125 + 0.1875) / 3, 6);
    expect(attentionOverlay(v, 0, 1)).toBeNull(); // the embeddings have no attention
  });

  it("shows the patch lens top-1 of a layer", () => {
    const grid = patchLensOverlay(view(), 1)!;
    expect(grid.labels).toEqual([" blue", "Red"]);
    expect(Array.from(grid.values)).toEqual([0.25, 0.125]);
    expect(grid.max).toBe(0.25);
    expect(patchLensOverlay(view(), 3)).toBeNull();
  });

  it("is absent for a text-only record", () => {
    const record = sampleRecord();
    record.input.image = null;
    expect(attentionOverlay(buildLensView(record), 1, 0)).toBeNull();
    expect(patchLensOverlay(buildLensView(record), 1)).toBeNull();
  });
});

describe("token strip", () => {
  it("collapses the image run into one chip and links analysed tokens to their lens column", () => {
    const chips = tokenStrip(view(), true);
    expect(chips.map((c) => [c.segment, c.label, c.start, c.end, c.p])).toEqual([
      ["bos", "<s>", 0, 1, -1],
      ["template", "USER:", 1, 2, -1],
      ["image", "<image> × 2", 2, 4, -1],
      ["text", 'say·"hi",↵ok', 4, 5, 0],
      ["template", "ASSISTANT:", 5, 6, 1],
      ["generated", "·red", 6, 7, 2],
      ["generated", "</s>", 7, 8, -1],
    ]);
    expect(tokenStrip(view(), false)).toHaveLength(8);
    // expanded, each image token is labelled by its patch's row and column (the sample is one tile of a tiled input)
    expect(tokenStrip(view(), false).slice(2, 4).map((c) => c.label)).toEqual(["r0 c0", "r0 c1"]);
  });

  it("makes whitespace visible", () => {
    expect(visibleToken(" a\tb\r\n")).toBe("·a⇥b␍↵");
    expect(visibleToken("")).toBe("∅");
  });
});

describe("comparison", () => {
  const layers = 3;
  const group = (variant: string, key: string, value: string, n: number, accuracy: number | null, entropy: number[], histogram: number[]) => ({
    variant,
    key,
    value,
    n,
    scored: accuracy === null ? 0 : n,
    accuracy,
    meanEntropy: entropy,
    meanTargetProb: entropy.map((e) => 1 - e / 4),
    meanTargetRank: [10, 3, 1],
    meanKl: [2, 1, 0],
    convergenceHistogram: histogram,
    medianConvergenceLayer: 1,
    meanImageShare: [0.3, 0.2],
  });
  const aggregates: SweepAggregates = {
    layers,
    groups: [
      group("none", "all", "all", 4, 0.75, [2, 1, 0.5], [0, 3, 1]),
      group("none", "shape", "circle", 1, 1, [2, 1, 0.25], [0, 1, 0]),
      group("none", "shape", "square", 3, 2 / 3, [2, 1, 0.6], [0, 2, 1]),
      group("mask", "all", "all", 4, 0.5, [2, 1.5, 1], [0, 0, 4]),
      group("mask", "shape", "circle", 1, null, [2, 1.5, 1], [0, 0, 1]),
    ],
  };

  it("lists keys with 'all' first and one series per variant and value", () => {
    expect(comparisonKeys(aggregates)).toEqual(["all", "shape"]);
    const all = comparisonSeries(aggregates, "meanEntropy", "all");
    expect(all.map((s) => [s.label, s.values])).toEqual([
      ["none", [2, 1, 0.5]],
      ["mask", [2, 1.5, 1]],
    ]);
    const shape = comparisonSeries(aggregates, "convergenceShare", "shape");
    expect(shape.map((s) => s.label)).toEqual(["none · shape=circle", "none · shape=square", "mask · shape=circle"]);
    expect(shape[1].values).toEqual([0, 2 / 3, 1 / 3]);
  });

  it("reports accuracy per group, null where nothing was scored", () => {
    expect(comparisonAccuracy(aggregates, "shape").map((a) => [a.label, a.accuracy, a.scored])).toEqual([
      ["none · shape=circle", 1, 1],
      ["none · shape=square", 2 / 3, 3],
      ["mask · shape=circle", null, 0],
    ]);
  });
});

describe("tiled images", () => {
  it("overlays a split image's crops in their places", () => {
    const record = sampleRecord();
    // Two crops of one patch each, side by side, then the global image (which holds no token here).
    record.tokens[2].image = { index: 0, row: 0, col: 0 };
    record.tokens[3].image = { index: 1, row: 0, col: 0 };
    record.input.image!.grid = [1, 1];
    record.input.image!.tiles = { rows: 1, cols: 2, count: 3 };
    const v = buildLensView(record);
    // Block 1, position 1: imageRows row 1 is [0.25, 0.125]; crop 0 is image token j = 0, crop 1 is j = 1.
    expect(Array.from(attentionOverlay(v, 1, 1)!.values)).toEqual([0.25, 0.125]);
    // layer 1 of the patch lens: ids [8, 11] = " blue", "Red"
    expect(patchLensOverlay(v, 1)!.labels).toEqual([" blue", "Red"]);
  });
});
