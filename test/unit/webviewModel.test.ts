// The webview's data transforms against the hand-made sample record: every expected number is
// read off SAMPLE_LENS and the sample's attention, image rows and patch lens by hand.
import { describe, expect, it } from "vitest";
import type { SweepAggregates } from "../../src/shared/sweep";
import type { TrackedMessage } from "../../src/shared/webviewProtocol";
import {
  attentionBreakdown,
  attentionOverlay,
  addTracked,
  answerPosition,
  buildLensView,
  colourBarTicks,
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
  layerTicks,
  ranksAt,
  settlesAt,
  tokenStrip,
  trackedTokenRanks,
  trackedTokens,
  trackExplanation,
  trackLabel,
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

  it("scales every metric so that 1 (darkest) is the most confident reading: probability on [0, 1], entropy and KL reversed on [0, max], the rank reversed on a log scale", () => {
    const v = view();
    const prob = metricScale(v, "prob");
    expect([prob.min, prob.max, prob.log, prob.reversed]).toEqual([0, 1, false, false]);
    expect(prob.intensity[6]).toBeCloseTo(0.9, 6);

    // Entropy over the blocks [[1.2, 1.1, 1.5], [0.4, 0.5, 0.1]]: max 1.5; the embeddings row (2.25...) is clamped.
    const entropy = metricScale(v, "entropy");
    expect([entropy.min, entropy.reversed, entropy.withEmbeddings]).toEqual([0, true, false]);
    expect(entropy.max).toBeCloseTo(1.5, 6);
    expect(entropy.intensity[3]).toBeCloseTo(1 - 1.2 / 1.5, 6); // layer 1, position 0
    expect(entropy.intensity[8]).toBeCloseTo(1 - 0.1 / 1.5, 6);
    expect(entropy.intensity[0]).toBe(0); // 2.25 nats, past the range
    // With the embeddings row in the range: max 2.4.
    const withEmbeddings = metricScale(v, "entropy", true);
    expect(withEmbeddings.max).toBeCloseTo(2.4, 6);
    expect(withEmbeddings.intensity[3]).toBeCloseTo(1 - 1.2 / 2.4, 6);
    expect(withEmbeddings.intensity[0]).toBeCloseTo(1 - 2.25 / 2.4, 6);

    // KL over the blocks [[0.75, 0.5, 0.6], [0, 0, 0]]: max 0.75; 0 nats is the darkest.
    const kl = metricScale(v, "kl");
    expect(kl.max).toBe(0.75);
    expect(kl.intensity[3]).toBe(0);
    expect(kl.intensity[4]).toBeCloseTo(1 - 0.5 / 0.75, 6);
    expect(kl.intensity[8]).toBe(1);
    expect(kl.intensity[0]).toBe(0); // 4.5 nats
    expect(metricScale(v, "kl", true).max).toBe(5);

    // Target ranks over the blocks [[4,1,2],[3,1,2]]: worst 4, so rank 2 sits half way on log 4; rank 1 is 1.
    const rank = metricScale(v, "targetRank");
    expect([rank.min, rank.max, rank.log, rank.reversed]).toEqual([1, 4, true, true]);
    expect(rank.intensity[4]).toBe(1);
    expect(rank.intensity[5]).toBeCloseTo(0.5, 6);
    expect(rank.intensity[3]).toBeCloseTo(0, 6);
    expect(rank.intensity[2]).toBe(0); // rank 9 at the embeddings, clamped
    // With the embeddings (worst 9): rank 3 is half way.
    const rankAll = metricScale(v, "targetRank", true);
    expect(rankAll.max).toBe(9);
    expect(rankAll.intensity[1]).toBeCloseTo(0.5, 6);
  });

  it("labels each colour bar light end first, with the range's end as a tick", () => {
    const v = view();
    const ticks = (m: Parameters<typeof metricScale>[1], e = false) => colourBarTicks(metricScale(v, m, e)).map((t) => [t.label, Number(t.at.toFixed(4))]);
    expect(ticks("prob")).toEqual([["0", 0], ["0.25", 0.25], ["0.5", 0.5], ["0.75", 0.75], ["1", 1]]);
    // entropy 0..1.5, reversed: 1.5 at the light end
    expect(ticks("entropy")).toEqual([["1.5", 0], ["1", 0.3333], ["0.5", 0.6667], ["0", 1]]);
    // 2.4 with the embeddings: steps of 1 (about 4 ticks), then the end itself
    expect(ticks("entropy", true)).toEqual([["2.4", 0], ["2", 0.1667], ["1", 0.5833], ["0", 1]]);
    expect(ticks("targetRank")).toEqual([["4", 0], ["1", 1]]);
    // ranks up to 532: 1, 10, 100 and the worst, on the log scale
    const big = { ...metricScale(v, "targetRank"), max: 532 };
    expect(colourBarTicks(big).map((t) => t.label)).toEqual(["532", "100", "10", "1"]);
    expect(colourBarTicks(big)[1].at).toBeCloseTo(1 - Math.log(100) / Math.log(532), 6);
  });

  it("opens on the position that predicts the first generated token", () => {
    // predictingPositions [1, 2]: analysed index 1 (token 5, "ASSISTANT:") predicts " red".
    expect(answerPosition(view())).toBe(1);
    const record = sampleRecord();
    record.generation.predictingPositions = [];
    // else the prompt's last token (8 tokens, 2 generated: token 5)
    expect(answerPosition(buildLensView(record))).toBe(1);
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

describe("where a token settles", () => {
  it("is the first layer from which it stays top-1 to the last layer", () => {
    expect(settlesAt([5, 1, 1])).toBe(1);
    expect(settlesAt([1, 1, 1])).toBe(0);
    // top-1 at block 1, then lost and regained: settles where it is top-1 for good
    expect(settlesAt([5, 1, 2, 1, 1])).toBe(3);
    // the "triangle" chip: top-1 at block 1, rank 11 at the last block: it never settles
    expect(settlesAt([9, 1, 1, 1, 1, 1, 1, 1, 11])).toBe(-1);
    expect(settlesAt([])).toBe(-1);
  });

  it("agrees with the position's convergence layer for its final top-1", () => {
    const v = view();
    const settle = convergenceLayers(v);
    for (let p = 0; p < v.positions; p++) {
      const final = v.top1Ids[(v.layers - 1) * v.positions + p];
      const ranks = ranksAt(v, final, p);
      if (ranks) expect(settlesAt(ranks.rank)).toBe(settle[p]);
    }
  });
});

describe("tracked tokens", () => {
  const answer = (ids: number[], rank: number[], extra: Partial<TrackedMessage> = {}): TrackedMessage => ({
    type: "tracked",
    ids,
    texts: ids.map((id) => `t${id}`),
    rank: { shape: [3, 3, ids.length], data: rank },
    prob: { shape: [3, 3, ids.length], data: rank.map((r) => 1 / r) },
    ...extra,
  });
  const nine = (base: number) => Array.from({ length: 9 }, (_, i) => base + i);

  it("keeps every token tracked in turn (the second is not lost when a third comes)", () => {
    let list = addTracked([], trackedTokens(answer([8], nine(10))));
    list = addTracked(list, trackedTokens(answer([2], nine(20))));
    list = addTracked(list, trackedTokens(answer([11], nine(30))));
    expect(list.map((t) => t.id)).toEqual([8, 2, 11]);
    expect(trackedTokenRanks(list[1], 2).rank).toEqual([22, 25, 28]);
    // tracked again: replaced, and moved to the end
    list = addTracked(list, trackedTokens(answer([2], nine(40))));
    expect(list.map((t) => t.id)).toEqual([8, 11, 2]);
    expect(trackedTokenRanks(list[2], 0).rank).toEqual([40, 43, 46]);
    // at most 8, the oldest go
    for (let id = 100; id < 108; id++) list = addTracked(list, trackedTokens(answer([id], nine(id))));
    expect(list.map((t) => t.id)).toEqual([100, 101, 102, 103, 104, 105, 106, 107]);
  });

  it("splits an answer with several tokens into one per token, each with its own column", () => {
    const tokens = trackedTokens(answer([8, 2], Array.from({ length: 18 }, (_, i) => i)));
    expect(tokens.map((t) => [t.id, t.rank.slice(0, 3)])).toEqual([
      [8, [0, 2, 4]],
      [2, [1, 3, 5]],
    ]);
  });

  it("says why the token tracked is not what was asked: a split word, an unknown one", () => {
    const pieces = [
      { id: 29871, piece: "▁", text: "" },
      { id: 289, piece: "b", text: "b" },
      { id: 1648, piece: "anana", text: "anana" },
    ];
    const [banana] = trackedTokens(answer([29871], nine(1), { texts: [""], asked: ["banana"], pieces: [pieces], unknown: [false] }));
    expect(trackExplanation(banana)).toBe("“banana” is not one token: it splits into 3, ▁ · b · anana; tracking the first, ▁ (a word-start marker alone, which reads as “∅”).");
    expect(trackLabel(banana)).toBe("banana → ▁ (1st of 3)");
    const [unknown] = trackedTokens(answer([0], nine(1), { texts: [""], asked: ["ж"], pieces: [[{ id: 0, piece: "<unk>", text: "" }]], unknown: [true] }));
    expect(trackExplanation(unknown)).toContain("“ж” is not in the model's vocabulary");
    const [red] = trackedTokens(answer([6], nine(1), { texts: [" red"], asked: [" red"], pieces: [[{ id: 6, piece: "▁red", text: " red" }]], unknown: [false] }));
    expect(trackExplanation(red)).toBeNull();
    expect(trackLabel(red)).toBe("·red");
  });
});

describe("layer ticks", () => {
  it("names the first and last layer and never puts two names closer than the room they need", () => {
    expect(layerTicks(9, 300, 58)).toEqual([0, 2, 4, 6, 8]);
    expect(layerTicks(33, 300, 58)).toEqual([0, 8, 16, 24, 32]);
    expect(layerTicks(1, 300)).toEqual([0]);
    expect(layerTicks(0, 300)).toEqual([]);
    for (let count = 2; count <= 81; count++)
      for (const width of [150, 240, 300, 420, 800]) {
        const ticks = layerTicks(count, width, 56);
        expect(ticks[0]).toBe(0);
        expect(ticks[ticks.length - 1]).toBe(count - 1);
        for (let i = 1; i < ticks.length; i++) expect(((ticks[i] - ticks[i - 1]) * width) / (count - 1), `${count} layers, ${width} px`).toBeGreaterThanOrEqual(56);
      }
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
