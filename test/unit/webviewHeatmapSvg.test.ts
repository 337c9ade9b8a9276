// The heatmap's SVG export, built from the sample record without a DOM.
import { describe, expect, it } from "vitest";
import { buildLensView } from "../../src/webview/model";
import { clip, escapeXml, heatmapSvg } from "../../src/webview/heatmapSvg";
import { sampleRecord } from "../helpers/sampleRecord";

const ramp = Array.from({ length: 256 }, (_, i) => `#0000${i.toString(16).padStart(2, "0")}`);
const options = { ramp, rampText: ramp.map(() => "#ffffff"), foreground: "#cccccc", background: "#1e1e1e", match: "#d18616", title: 'a "b" <c>' };

describe("heatmapSvg", () => {
  it("draws one rect per cell, coloured by intensity, final layer on top", () => {
    const svg = heatmapSvg(buildLensView(sampleRecord()), "prob", options);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    const cells = [...svg.matchAll(/<rect x="(\d+)" y="(\d+)" width="40" height="18" fill="(#[0-9a-f]{6})">/gu)];
    expect(cells).toHaveLength(9);
    // Layer 2 (block 2) is the top row (y = 36); its first cell's top-1 is "ASSISTANT:" at 0.9 -> ramp[230].
    expect(cells[6].slice(1)).toEqual(["90", "36", ramp[Math.floor(0.9 * 256)]]);
    // Embeddings at the bottom row (y = 36 + 2 * 18), position 1 at p = 0.5.
    expect(cells[1].slice(1)).toEqual(["130", "72", ramp[128]]);
  });

  it("marks the cells whose top-1 is the generated token, and escapes every text", () => {
    const svg = heatmapSvg(buildLensView(sampleRecord()), "targetRank", options);
    // Blocks 1 and 2 at the two predicting positions.
    expect(svg.match(/<circle /gu)).toHaveLength(4);
    expect(svg).toContain("a &quot;b&quot; &lt;c&gt;: Target rank (log) (log, 1–9)");
    expect(svg).toContain("say·&quot;hi&quot;,↵ok");
    expect(svg).not.toMatch(/<[^>]*"hi"/u);
  });

  it("clips and escapes", () => {
    expect(clip("abcdef", 4)).toBe("abc…");
    expect(clip("abc", 4)).toBe("abc");
    expect(clip("abc", 0)).toBe("");
    expect(escapeXml(`<&>"'`)).toBe("&lt;&amp;&gt;&quot;&apos;");
  });
});
