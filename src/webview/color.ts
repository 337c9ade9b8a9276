/**
 * Colour arithmetic for the canvas and the exports (no DOM): the theme's colours arrive as CSS
 * strings ("#rrggbb", "#rgb", "#rrggbbaa", "rgb()/rgba()"), and the heatmap needs a lookup table
 * from intensity to colour so that drawing a cell is one array read.
 */
import { interpolateBlues, interpolateGreens, interpolateOranges, interpolatePurples } from "d3-scale-chromatic";
import type { Metric } from "./model";

export interface Rgba {
  r: number;
  g: number;
  b: number;
  a: number;
}

/** Parses a CSS colour the theme may hand us; null for anything else (names, var(), color-mix). */
export function parseCssColor(text: string): Rgba | null {
  const s = text.trim().toLowerCase();
  let m = /^#([0-9a-f]{3,8})$/u.exec(s);
  if (m) {
    const h = m[1];
    if (h.length === 3 || h.length === 4) {
      const v = [...h].map((c) => parseInt(c + c, 16));
      return { r: v[0], g: v[1], b: v[2], a: h.length === 4 ? v[3] / 255 : 1 };
    }
    if (h.length === 6 || h.length === 8) {
      const v = [0, 2, 4, 6].map((i) => parseInt(h.slice(i, i + 2), 16));
      return { r: v[0], g: v[1], b: v[2], a: h.length === 8 ? v[3] / 255 : 1 };
    }
    return null;
  }
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:[\s,/]+([\d.]+%?))?\s*\)$/u.exec(s);
  if (m) {
    const alpha = m[4] === undefined ? 1 : m[4].endsWith("%") ? parseFloat(m[4]) / 100 : parseFloat(m[4]);
    return { r: Number(m[1]), g: Number(m[2]), b: Number(m[3]), a: alpha };
  }
  return null;
}

const hex2 = (v: number): string => Math.round(Math.min(255, Math.max(0, v))).toString(16).padStart(2, "0");

/** #rrggbb, alpha dropped. */
export function toHex(c: Rgba): string {
  return `#${hex2(c.r)}${hex2(c.g)}${hex2(c.b)}`;
}

/** Linear mix from a (t = 0) to b (t = 1); alpha composited over nothing is ignored (colours are taken as opaque). */
export function mix(a: Rgba, b: Rgba, t: number): Rgba {
  const u = Math.min(1, Math.max(0, t));
  return { r: a.r + (b.r - a.r) * u, g: a.g + (b.g - a.g) * u, b: a.b + (b.b - a.b) * u, a: 1 };
}

/** A colour with its alpha composited over an opaque background. */
export function flatten(c: Rgba, background: Rgba): Rgba {
  return mix(background, { ...c, a: 1 }, c.a);
}

/** Perceived lightness in [0, 1] (Rec. 709 luma), for choosing text colour over a cell. */
export function luma(c: Rgba): number {
  return (0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b) / 255;
}

/** `steps` colours from `low` to `high` (through `mid` when given), as #rrggbb. */
export function colorRamp(low: Rgba, high: Rgba, steps = 256, mid?: Rgba): string[] {
  return Array.from({ length: steps }, (_, i) => {
    const t = steps > 1 ? i / (steps - 1) : 1;
    if (!mid) return toHex(mix(low, high, t));
    return toHex(t < 0.5 ? mix(low, mid, t * 2) : mix(mid, high, (t - 0.5) * 2));
  });
}

/** The index into a ramp of `steps` colours for an intensity in [0, 1] (NaN counts as 0). */
export function rampIndex(intensity: number, steps = 256): number {
  if (!(intensity > 0)) return 0;
  return intensity >= 1 ? steps - 1 : Math.floor(intensity * steps);
}

/**
 * One colour map per heatmap metric, light for the least confident reading and dark for the most
 * (intensity 1), whatever the theme: probability blue, entropy purple, KL orange, rank green
 * (ColorBrewer's sequential maps, as d3-scale-chromatic gives them). Text over a cell is black on
 * the light half and white on the dark half, by the colour's luma.
 */
export const METRIC_INTERPOLATORS: Record<Metric, (t: number) => string> = {
  prob: interpolateBlues,
  entropy: interpolatePurples,
  kl: interpolateOranges,
  targetRank: interpolateGreens,
};

export interface MetricRamp {
  colors: string[];
  /** Text colour over colors[i]. */
  text: string[];
}

export function metricRamp(metric: Metric, steps = 256): MetricRamp {
  const colors = Array.from({ length: steps }, (_, i) => {
    const c = parseCssColor(METRIC_INTERPOLATORS[metric](steps > 1 ? i / (steps - 1) : 1));
    return c ? toHex(c) : "#808080";
  });
  const text = colors.map((c) => (luma(parseCssColor(c) as Rgba) > 0.5 ? "#000000" : "#ffffff"));
  return { colors, text };
}

/** Every metric's ramp (they do not depend on the theme: made once). */
export function metricRamps(steps = 256): Record<Metric, MetricRamp> {
  return { prob: metricRamp("prob", steps), entropy: metricRamp("entropy", steps), kl: metricRamp("kl", steps), targetRank: metricRamp("targetRank", steps) };
}
