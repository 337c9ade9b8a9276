// The heatmap's SVG export, built from the sample record without a DOM.
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { buildLensView, visibleToken } from "../../src/webview/model";
import { clip, escapeXml, heatmapSvg, xmlForbidden, xmlSafe } from "../../src/webview/heatmapSvg";
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

  // Every character XML 1.0 forbids (C0 controls but tab/LF/CR, U+FFFE, U+FFFF, lone surrogates).
  const FORBIDDEN = [...Array.from({ length: 32 }, (_, c) => String.fromCharCode(c)).filter((c) => !"\t\n\r".includes(c)), "\uFFFE", "\uFFFF", "\uD800", "\uDFFF", "a\uDBFFb"];

  it("stays well-formed XML (sharp renders it) when token texts, labels and the title hold every character XML 1.0 forbids", async () => {
    const record = sampleRecord();
    const all = FORBIDDEN.join("");
    for (const id of Object.keys(record.tokenTexts)) record.tokenTexts[id] = `x${all}y`;
    for (const t of record.tokens) t.text = `t${all}`;
    record.layerLabels = record.layerLabels.map((l) => `${l}${all}`);
    const svg = heatmapSvg(buildLensView(record), "prob", { ...options, title: `title ${all}`, cellWidth: 400 });
    expect(svg).not.toMatch(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF\uD800-\uDFFF]/u);
    // shown visibly, as the panel shows them: U+000B in a token as "␋", elsewhere as "\u000b"
    expect(svg).toContain("x␀␁");
    expect(svg).toContain("␋");
    expect(svg).toContain("title \\u0000\\u0001");
    const png = await sharp(Buffer.from(svg, "utf8")).png().toBuffer();
    expect((await sharp(png).metadata()).format).toBe("png");
  });

  it("xmlSafe writes out each forbidden character alone and keeps everything else", async () => {
    for (const c of FORBIDDEN) {
      const safe = xmlSafe(c);
      expect(safe, JSON.stringify(c)).toMatch(/^(a)?(\\u[0-9a-f]{4})+(b)?$/u);
      await sharp(Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><text y="10">${escapeXml(c)}</text></svg>`)).png().toBuffer();
    }
    expect(xmlSafe("\u000b")).toBe("\\u000b");
    expect(xmlForbidden("ab\u000b")).toBe("U+000B at offset 2");
    expect(xmlForbidden(xmlSafe("ab\u000b\uD800"))).toBeNull();
    const kept = "tab\tLF\nCR\r é 😀 \u0085 \uFFFD";
    expect(xmlSafe(kept)).toBe(kept);
    expect(visibleToken("\u000b\u0000\u007f\uFFFF")).toBe("␋␀␡\\uffff");
  });
});
