// The webview benchmark's synthetic record must be a LensRecord the validator accepts, at any size.
import { describe, expect, it } from "vitest";
import { validateLensRecord } from "../../src/shared/validateRecord";
import { buildLensView, convergenceLayers } from "../../src/webview/model";
import { syntheticRecord } from "../../bench/syntheticRecord";

describe("syntheticRecord", () => {
  it("is valid at a small size, with the asked-for shape", () => {
    const record = syntheticRecord({ numLayers: 4, numHeads: 3, positions: 40, topK: 3, grid: [4, 5], generated: 3, pool: 30 });
    const v = validateLensRecord(record);
    expect(v.ok ? [] : v.errors).toEqual([]);
    expect(record.layerLabels).toHaveLength(5);
    expect(record.positions).toHaveLength(40);
    expect(record.tokens.filter((t) => t.segment === "image")).toHaveLength(20);
    expect(record.attention.imageRows?.shape).toEqual([4, 40, 20]);
  });

  it("settles each position on its final token, and marks where the answer was already the top-1", () => {
    const record = syntheticRecord({ numLayers: 6, numHeads: 2, positions: 30, grid: [3, 3], generated: 4, pool: 20, imageRows: false });
    const view = buildLensView(record);
    const settles = convergenceLayers(view);
    expect(Math.max(...settles)).toBeLessThanOrEqual(6);
    // The final layer's top-1 at each predicting position is the generated token.
    expect(record.generation.matches.data.slice(-4)).toEqual([1, 1, 1, 1]);
    expect(record.attention.imageRows).toBeUndefined();
  });

  it("runs from its own source text, as the benchmark runs it in the page", () => {
    const make = new Function(`return (${syntheticRecord.toString()})(arguments[0]);`) as typeof syntheticRecord;
    const record = make({ numLayers: 2, numHeads: 2, positions: 20, grid: [2, 2], generated: 2, pool: 10 });
    expect(validateLensRecord(record).ok).toBe(true);
  });
});
