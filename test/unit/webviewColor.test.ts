// Theme colours as the webview reads them, and the heatmap's colour ramp.
import { describe, expect, it } from "vitest";
import { colorRamp, flatten, luma, mix, parseCssColor, rampIndex, toHex } from "../../src/webview/color";

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
});
