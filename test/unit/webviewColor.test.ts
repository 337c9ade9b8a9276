// Theme colours as the webview reads them, and the heatmap's colour ramp.
import { describe, expect, it } from "vitest";
import { colorRamp, flatten, luma, metricRamps, mix, parseCssColor, rampIndex, toHex } from "../../src/webview/color";
import { METRICS } from "../../src/webview/model";

describe("colours", () => {
  it("parses the forms a theme variable takes", () => {
    expect(parseCssColor("#3794ff")).toEqual({ r: 0x37, g: 0x94, b: 0xff, a: 1 });
    expect(parseCssColor(" #FFF ")).toEqual({ r: 255, g: 255, b: 255, a: 1 });
    expect(parseCssColor("#00000080")).toEqual({ r: 0, g: 0, b: 0, a: 128 / 255 });
    expect(parseCssColor("rgba(10, 20, 30, 0.5)")).toEqual({ r: 10, g: 20, b: 30, a: 0.5 });
    expect(parseCssColor("rgb(10 20 30 / 25%)")).toEqual({ r: 10, g: 20, b: 30, a: 0.25 });
    expect(parseCssColor("var(--x)")).toBeNull();
    expect(parseCssColor("#12345")).toBeNull();
  });

  it("mixes, flattens alpha and ramps", () => {
    const black = { r: 0, g: 0, b: 0, a: 1 };
    const white = { r: 255, g: 255, b: 255, a: 1 };
    expect(toHex(mix(black, white, 0.5))).toBe("#808080");
    expect(toHex(flatten({ r: 255, g: 0, b: 0, a: 0.5 }, white))).toBe("#ff8080");
    expect(luma(white)).toBeCloseTo(1, 6);
    const ramp = colorRamp(black, white, 3);
    expect(ramp).toEqual(["#000000", "#808080", "#ffffff"]);
    expect(colorRamp(black, white, 3, { r: 255, g: 0, b: 0, a: 1 })).toEqual(["#000000", "#ff0000", "#ffffff"]);
    expect([rampIndex(0), rampIndex(Number.NaN), rampIndex(0.5), rampIndex(1), rampIndex(2)]).toEqual([0, 0, 128, 255, 255]);
  });

  it("gives each metric its own map, light at 0 and dark at 1 (dark = confident), with readable text over every entry", () => {
    const ramps = metricRamps();
    const ends = METRICS.map((m) => ramps[m].colors[255]);
    expect(new Set(ends).size).toBe(METRICS.length);
    for (const m of METRICS) {
      const { colors, text } = ramps[m];
      expect(colors).toHaveLength(256);
      const l = colors.map((c) => luma(parseCssColor(c)!));
      expect(l[0], m).toBeGreaterThan(0.9);
      expect(l[255], m).toBeLessThan(0.3);
      // lightness falls (almost) monotonically along the map
      for (let i = 8; i < 256; i += 8) expect(l[i], `${m} ${i}`).toBeLessThanOrEqual(l[i - 8] + 1e-3);
      // black text on the light half, white on the dark: at least 0.45 of luma apart
      colors.forEach((c, i) => expect(Math.abs(luma(parseCssColor(text[i])!) - l[i]), `${m} ${i}`).toBeGreaterThanOrEqual(0.45));
    }
    // probability's map is ColorBrewer's Blues
    expect(ramps.prob.colors[0]).toBe("#f7fbff");
    expect(ramps.prob.colors[255]).toBe("#08306b");
  });
});
