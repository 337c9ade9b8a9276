// A live preview's line: which item it shows, and where previous / next / another variant lead.
import { describe, expect, it } from "vitest";
import { type PreviewInfo, previewTargets, previewText } from "../../src/webview/previewItems";

const info = (over: Partial<PreviewInfo>): PreviewInfo => ({ file: "study.lens.json", index: 0, total: 6, variant: "baseline", expected: null, cached: false, ...over });

describe("previewTargets", () => {
  it("steps through the plan and stops at its ends", () => {
    expect(previewTargets(info({ index: 0 }))).toMatchObject({ previous: null, next: 1 });
    expect(previewTargets(info({ index: 3 }))).toMatchObject({ previous: 2, next: 4 });
    expect(previewTargets(info({ index: 5 }))).toMatchObject({ previous: 4, next: null });
    expect(previewTargets(info({ index: 0, total: 1 }))).toMatchObject({ previous: null, next: null });
  });

  it("offers the same input and prompt under each variant (variants are planned innermost)", () => {
    const variants = ["baseline", "mask-a", "mask-b"];
    const t = previewTargets(info({ index: 4, total: 9, variant: "mask-a", variants }));
    expect(t.variant).toBe(1);
    expect(t.variants).toEqual([
      { name: "baseline", index: 3 },
      { name: "mask-a", index: 4 },
      { name: "mask-b", index: 5 },
    ]);
    expect(previewTargets(info({ index: 8, total: 9, variant: "mask-b", variants })).variants.map((v) => v.index)).toEqual([6, 7, 8]);
  });

  it("has one variant when the host names none", () => {
    expect(previewTargets(info({ index: 2 })).variants).toEqual([{ name: "baseline", index: 2 }]);
  });
});

describe("previewText", () => {
  it("says which item, variant, image and answer it shows, and whether it came from the cache", () => {
    expect(previewText(info({ index: 1, variant: "mask-a", image: "scenes/a.png", expected: "red", cached: true }))).toBe("study.lens.json: item 2 of 6, variant mask-a, image scenes/a.png, expected “red” (cached)");
    expect(previewText(info({}))).toBe("study.lens.json: item 1 of 6, variant baseline");
    // the file by its name (the full path is the line's tooltip)
    expect(previewText(info({ file: "/work/exp/study.lens.json" }))).toMatch(/^study\.lens\.json: item 1/u);
    expect(previewText(info({ file: "C:\\exp\\study.lens.json" }))).toMatch(/^study\.lens\.json: item 1/u);
  });
});
