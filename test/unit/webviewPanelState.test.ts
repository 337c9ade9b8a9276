// What a panel reads back from vscode.getState, and which records stay out of it.
import { describe, expect, it } from "vitest";
import { readUi, recordWeight, STATE_RECORD_LIMIT } from "../../src/webview/panelState";
import { sampleRecord } from "../helpers/sampleRecord";

describe("readUi", () => {
  it("falls back to defaults for a missing or foreign state", () => {
    for (const raw of [undefined, null, 3, "x"]) expect(readUi(raw)).toEqual({ metric: "prob", layer: -1, p: -1, scope: "position", overlay: "attention", overlayLayer: -1, zoom: 0, collapseImages: true, rankToken: "cell", groupKey: "all", trackedTexts: [], tracked: [], rangeWithEmbeddings: false });
  });

  it("keeps well-formed choices and drops the rest", () => {
    const ui = readUi({ metric: "kl", layer: 3, p: 2.5, scope: "mean", overlay: "patchLens", overlayLayer: 2, zoom: -4, collapseImages: false, rankToken: "target", groupKey: "shape", trackedTexts: [" red", 7, "blue"], tracked: { type: "nope" }, rangeWithEmbeddings: true });
    expect(ui).toEqual({ metric: "kl", layer: 3, p: -1, scope: "mean", overlay: "patchLens", overlayLayer: 2, zoom: 0, collapseImages: false, rankToken: "target", groupKey: "shape", trackedTexts: [" red", "blue"], tracked: [], rangeWithEmbeddings: true });
    expect(readUi({ rangeWithEmbeddings: "yes" }).rangeWithEmbeddings).toBe(false);
    expect(readUi({ metric: "logits" }).metric).toBe("prob");
  });

  it("reads an older panel's last tracked answer as tracked tokens", () => {
    const tracked = { type: "tracked", ids: [8], texts: [" blue"], rank: { shape: [3, 3, 1], data: new Array(9).fill(2) }, prob: { shape: [3, 3, 1], data: new Array(9).fill(0.1) } };
    expect(readUi({ tracked }).tracked).toEqual([{ id: 8, text: " blue", asked: " blue", pieces: [], unknown: false, rank: new Array(9).fill(2), prob: new Array(9).fill(0.1), layers: 3, positions: 3 }]);
  });

  it("keeps every tracked token of the right form, and drops the rest", () => {
    const token = { id: 8, text: " blue", asked: "blue", pieces: [{ id: 8, piece: "▁blue", text: " blue" }], unknown: false, rank: new Array(9).fill(2), prob: new Array(9).fill(0.1), layers: 3, positions: 3 };
    const ui = readUi({ tracked: [token, { ...token, id: 9 }, { ...token, rank: [1] }, { ...token, id: "x" }, null] });
    expect(ui.tracked.map((t) => t.id)).toEqual([8, 9]);
  });
});

describe("recordWeight", () => {
  it("counts the numbers in a record's blocks", () => {
    // Sample: top-k ids and probs 3x3x2 (18 each), five [3,3] blocks (9 each), tracked rank and
    // prob 3x3x8 (72 each), attention 2x2x3x5 (60), image rows 2x3x2 (12), patch lens 3x2 (6 each).
    expect(recordWeight(sampleRecord())).toBe(18 * 2 + 9 * 5 + 72 * 2 + 60 + 12 + 6 * 2);
    expect(STATE_RECORD_LIMIT).toBeGreaterThan(1e6);
  });
});
