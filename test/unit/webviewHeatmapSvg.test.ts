// The heatmap's SVG export, built from the sample record without a DOM.
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { buildLensView, visibleToken } from "../../src/webview/model";
import { clip, escapeXml, figureTitle, heatmapSvg, titleLines, xmlForbidden, xmlSafe } from "../../src/webview/heatmapSvg";
import { sampleRecord } from "../helpers/sampleRecord";

const ramp = Array.from({ length: 256 }, (_, i) => `#0000${i.toString(16).padStart(2, "0")}`);
const options = { ramp, rampText: ramp.map(() => "#ffffff"), foreground: "#cccccc", background: "#1e1e1e", match: "#d18616", title: 'a "b" <c>' };

describe("heatmapSvg", () => {
  it("draws one rect per cell, coloured by intensity, final layer on top", () => {
    const svg = heatmapSvg(buildLensView(sampleRecord()), "prob", options);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    const cells = [...svg.matchAll(/<rect x="(\d+)" y="(\d+)" width="40" height="18" fill="(#[0-9a-f]{6})">/gu)];
    expect(cells).toHaveLength(9);
    // Layer 2 (block 2) is the top row (y = 120); its first cell's top-1 is "ASSISTANT:" at 0.9 -> ramp[230].
    expect(cells[6].slice(1)).toEqual(["104", "120", ramp[Math.floor(0.9 * 256)]]);
    // Embeddings at the bottom row (y = 120 + 2 * 18), position 1 at p = 0.5.
    expect(cells[1].slice(1)).toEqual(["144", "156", ramp[128]]);
  });

  it("colours entropy reversed over the blocks' range: 0 nats darkest, the embeddings row clamped", () => {
    const svg = heatmapSvg(buildLensView(sampleRecord()), "entropy", options);
    const fills = [...svg.matchAll(/<rect x="\d+" y="\d+" width="40" height="18" fill="(#[0-9a-f]{6})">/gu)].map((m) => m[1]);
    // layer-major: block 2's 0.1 nats at position 2 is 1 - 0.1 / 1.5 -> ramp[239]; the embeddings' 2.4 past the range -> ramp[0]
    expect(fills[8]).toBe(ramp[Math.floor((1 - 0.1 / 1.5) * 256)]);
    expect(fills[2]).toBe(ramp[0]);
    const all = heatmapSvg(buildLensView(sampleRecord()), "entropy", { ...options, withEmbeddings: true });
    expect([...all.matchAll(/width="40" height="18" fill="(#[0-9a-f]{6})">/gu)][0][1]).toBe(ramp[Math.floor((1 - 2.25 / 2.4) * 256)]);
  });

  it("is a figure: its title names model, image and prompt; axis titles; a titled colour bar with ticks; the answer column and settling layers marked", () => {
    const record = sampleRecord();
    const view = buildLensView(record);
    const svg = heatmapSvg(view, "targetRank", { ...options, title: undefined });
    expect(figureTitle(record)).toBe(`${record.model.id} · ${record.input.image?.path?.split("/").pop()} · “${record.input.prompt}”`);
    expect(svg).toContain(escapeXml(figureTitle(record)));
    expect(svg).toContain(">input position: the lens predicts the next token</text>");
    expect(svg).toMatch(/rotate\(-90\)[^>]*>layer<\/text>/u);
    expect(svg).toContain('class="colour-bar"');
    expect(svg).toContain(">target rank (log scale): darker = more confident</text>");
    expect(svg).toContain(">range over the blocks; the embeddings row is clamped to it</text>");
    // ticks of ranks 1..4 over the blocks: 4 at the light end, 1 at the dark end
    expect([...svg.matchAll(/<text x="[\d.]+" y="41" fill="#cccccc" font-size="10" text-anchor="(?:start|middle|end)">([^<]*)<\/text>/gu)].map((m) => m[1])).toEqual(["4", "1"]);
    // the answer column (analysed index 1) outlined, one settling bar per column (each at block 1)
    expect(svg).toMatch(/<rect class="answer" x="143" /u);
    expect(svg.match(/<rect class="settles" /gu)).toHaveLength(3);
    expect([...svg.matchAll(/<rect class="settles" x="(\d+)" y="(\d+)"/gu)].map((m) => [m[1], m[2]])).toEqual([
      ["104", "153"],
      ["144", "153"],
      ["184", "153"],
    ]);
  });

  it("renders as a PNG through a strict XML parser (sharp), colour bar and all", async () => {
    const svg = heatmapSvg(buildLensView(sampleRecord()), "kl", { ...options, title: undefined });
    const meta = await sharp(await sharp(Buffer.from(svg, "utf8")).png().toBuffer()).metadata();
    expect(meta.format).toBe("png");
    expect(meta.width).toBe(Number(/width="(\d+)"/u.exec(svg)?.[1]));
  });

  it("marks the cells whose top-1 is the generated token, and escapes every text", () => {
    const svg = heatmapSvg(buildLensView(sampleRecord()), "targetRank", options);
    // Blocks 1 and 2 at the two predicting positions, and one in the legend.
    expect(svg.match(/<circle /gu)).toHaveLength(5);
    expect(svg).toContain(">a &quot;b&quot; &lt;c&gt;</text>");
    expect(svg).toContain("say·&quot;hi&quot;,↵ok");
    expect(svg).not.toMatch(/<[^>]*"hi"/u);
  });

  it("wraps a figure title that does not fit: model and image, then the prompt, each cut to fit", () => {
    const title = "lens-scenes-tiny · color-of-shape.png · “Answer with one word. What color is the triangle?”";
    expect(titleLines(title, 800)).toEqual([title]);
    expect(titleLines(title, 420)).toEqual(["lens-scenes-tiny · color-of-shape.png", "“Answer with one word. What color is the triangle?”"]);
    const narrow = titleLines(title, 200);
    expect(narrow).toHaveLength(2);
    for (const line of narrow) expect([...line].length).toBeLessThanOrEqual(Math.floor((200 - 12) / 6.8));
    expect(narrow[1].endsWith("…")).toBe(true);
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
