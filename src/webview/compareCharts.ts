/**
 * Charts of the comparison view that the single-run panel does not need: accuracy with its
 * confidence interval, the per-layer change against the baseline as a median line over an
 * interquartile band, and grouped bars of where the answer settles. Like charts.ts, each returns
 * a fresh <svg> with concrete colours, ready to export as it is.
 */
import { axisBottom, axisLeft } from "d3-axis";
import { scaleBand, scaleLinear } from "d3-scale";
import { area, line } from "d3-shape";
import { endTicksInside, frame } from "./charts";
import { formatNumber } from "./dom";
import { layerTicks } from "./model";
import type { Palette } from "./theme";

export interface IntervalBar {
  label: string;
  /** The proportion, or null when nothing was scored. */
  value: number | null;
  interval: [number, number] | null;
  /** Text after the bar, e.g. "n=40". */
  note: string;
  color: string;
}

/** Horizontal bars over [0, 1] with a whisker for each bar's interval and its figures in text. */
export function intervalBars(o: { title: string; bars: IntervalBar[]; palette: Palette; width?: number; axisTitle: string }): SVGSVGElement {
  const width = o.width ?? 420;
  const rowHeight = 20;
  const margin = { top: 8, bottom: 32 };
  const height = margin.top + margin.bottom + o.bars.length * rowHeight;
  const svg = frame(o.title, width, height, o.palette);
  const labelWidth = Math.min(130, width * 0.3);
  // the figures go on the right: "91.7% [64.6%, 98.5%] n=12"
  const x = scaleLinear().domain([0, 1]).range([labelWidth + 6, width - 152]);
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  o.bars.forEach((b, i) => {
    const y = margin.top + i * rowHeight;
    svg.append("text").attr("x", labelWidth).attr("y", y + 13).attr("text-anchor", "end").attr("fill", o.palette.foreground).text(b.label.length > 24 ? `${b.label.slice(0, 23)}…` : b.label);
    if (b.value === null) {
      svg.append("text").attr("x", labelWidth + 8).attr("y", y + 13).attr("fill", o.palette.muted).text(`n/a (${b.note})`);
      return;
    }
    const text = `${pct(b.value)}${b.interval ? ` [${pct(b.interval[0])}, ${pct(b.interval[1])}]` : ""} ${b.note}`;
    svg.append("rect").attr("x", x(0)).attr("y", y + 3).attr("width", Math.max(0, x(b.value) - x(0))).attr("height", rowHeight - 7).attr("fill", b.color).attr("fill-opacity", 0.75).append("title").text(`${b.label}: ${text}`);
    if (b.interval) {
      const [lo, hi] = b.interval;
      const cy = y + rowHeight / 2 - 0.5;
      svg.append("line").attr("x1", x(lo)).attr("x2", x(hi)).attr("y1", cy).attr("y2", cy).attr("stroke", o.palette.foreground).attr("stroke-width", 1.2);
      for (const v of [lo, hi]) svg.append("line").attr("x1", x(v)).attr("x2", x(v)).attr("y1", cy - 4).attr("y2", cy + 4).attr("stroke", o.palette.foreground).attr("stroke-width", 1.2);
    }
    svg.append("text").attr("x", x(1) + 6).attr("y", y + 13).attr("fill", o.palette.foreground).attr("font-size", 9).text(text);
  });
  svg.append("g").attr("transform", `translate(0,${height - margin.bottom + 2})`).call(axisBottom(x).ticks(5, "%"));
  svg.append("text").attr("x", (x(0) + x(1)) / 2).attr("y", height - 3).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(o.axisTitle);
  return svg.node() as SVGSVGElement;
}

export interface BandSeries {
  label: string;
  median: readonly number[];
  q1: readonly number[];
  q3: readonly number[];
  color: string;
  dashed?: boolean;
}

/**
 * Per-layer medians as lines over their interquartile bands, with the zero line drawn: the
 * change against the baseline, where above or below zero is the point.
 */
export function bandChart(o: { title: string; series: BandSeries[]; xLabels: readonly string[]; palette: Palette; yTitle: string; xTitle?: string; width?: number; height?: number }): SVGSVGElement {
  const width = o.width ?? 420;
  const legendRows = Math.min(o.series.length, 6);
  const height = (o.height ?? 220) + legendRows * 12;
  const margin = { top: 10 + legendRows * 12, right: 12, bottom: 30, left: 52 };
  const svg = frame(o.title, width, height, o.palette);
  const n = Math.max(1, ...o.series.map((s) => s.median.length));
  const x = scaleLinear().domain([0, Math.max(1, n - 1)]).range([margin.left, width - margin.right]);
  const all = o.series.flatMap((s) => [...s.q1, ...s.q3, ...s.median]).filter((v) => Number.isFinite(v));
  let lo = Math.min(0, ...all);
  let hi = Math.max(0, ...all);
  if (hi - lo < 1e-9) [lo, hi] = [lo - 1, hi + 1];
  const y = scaleLinear().domain([lo, hi]).nice().range([height - margin.bottom, margin.top]);
  // layer names on the axis, as many as fit
  const ticks = layerTicks(n, width - margin.left - margin.right, 58);
  const xg = svg.append("g").attr("transform", `translate(0,${height - margin.bottom})`).call(axisBottom(x).tickValues(ticks).tickFormat((d) => o.xLabels[Number(d)] ?? String(d)));
  endTicksInside(xg, ticks.length);
  svg.append("g").attr("transform", `translate(${margin.left},0)`).call(axisLeft(y).ticks(5).tickFormat((d) => formatNumber(Number(d), 3)));
  svg.append("text").attr("x", (margin.left + width - margin.right) / 2).attr("y", height - 3).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(o.xTitle ?? "layer");
  svg.append("text").attr("transform", `translate(11,${(margin.top + height - margin.bottom) / 2}) rotate(-90)`).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(o.yTitle);
  svg.append("line").attr("x1", margin.left).attr("x2", width - margin.right).attr("y1", y(0)).attr("y2", y(0)).attr("stroke", o.palette.muted).attr("stroke-width", 1);
  const ok = (i: number, s: BandSeries) => Number.isFinite(s.q1[i]) && Number.isFinite(s.q3[i]);
  o.series.forEach((s, k) => {
    const g = svg.append("g").attr("class", "series");
    const band = area<number>()
      .defined((i) => ok(i, s))
      .x((i) => x(i))
      .y0((i) => y(s.q1[i]))
      .y1((i) => y(s.q3[i]));
    const idx = Array.from({ length: s.median.length }, (_, i) => i);
    g.append("path").attr("d", band(idx) ?? "").attr("fill", s.color).attr("fill-opacity", 0.18).attr("stroke", "none");
    const mid = line<number>()
      .defined((i) => Number.isFinite(s.median[i]))
      .x((i) => x(i))
      .y((i) => y(s.median[i]));
    g.append("path").attr("d", mid(idx) ?? "").attr("fill", "none").attr("stroke", s.color).attr("stroke-width", 1.6).attr("stroke-dasharray", s.dashed ? "4,3" : null);
    idx.forEach((i) => {
      if (!Number.isFinite(s.median[i])) return;
      g.append("circle").attr("cx", x(i)).attr("cy", y(s.median[i])).attr("r", 2).attr("fill", s.color).append("title").text(`${s.label}, ${o.xLabels[i] ?? i}: median ${formatNumber(s.median[i], 4)}, IQR ${formatNumber(s.q1[i], 4)} to ${formatNumber(s.q3[i], 4)}`);
    });
    if (k < legendRows) {
      const ly = 8 + k * 12;
      g.append("rect").attr("x", margin.left).attr("y", ly - 4).attr("width", 14).attr("height", 8).attr("fill", s.color).attr("fill-opacity", 0.25);
      g.append("line").attr("x1", margin.left).attr("x2", margin.left + 14).attr("y1", ly).attr("y2", ly).attr("stroke", s.color).attr("stroke-width", 2).attr("stroke-dasharray", s.dashed ? "4,3" : null);
      g.append("text").attr("x", margin.left + 18).attr("y", ly + 3).attr("fill", o.palette.foreground).text(s.label.length > 64 ? `${s.label.slice(0, 63)}…` : s.label);
    }
  });
  return svg.node() as SVGSVGElement;
}

export interface BarGroupSeries {
  label: string;
  /** One share per layer. */
  values: readonly number[];
  color: string;
}

/** Grouped vertical bars: per layer, one bar per series (the share of its items that settle there). */
export function groupedBars(o: { title: string; series: BarGroupSeries[]; xLabels: readonly string[]; palette: Palette; yTitle: string; xTitle?: string; width?: number; height?: number }): SVGSVGElement {
  const width = o.width ?? 420;
  const legendRows = Math.min(o.series.length, 6);
  const height = (o.height ?? 200) + legendRows * 12;
  const margin = { top: 10 + legendRows * 12, right: 12, bottom: 30, left: 46 };
  const svg = frame(o.title, width, height, o.palette);
  const n = Math.max(1, ...o.series.map((s) => s.values.length));
  const x = scaleBand<number>().domain(Array.from({ length: n }, (_, i) => i)).range([margin.left, width - margin.right]).padding(0.15);
  const inner = scaleBand<number>().domain(o.series.map((_, k) => k)).range([0, x.bandwidth()]).padding(0.05);
  const max = Math.max(1e-9, ...o.series.flatMap((s) => s.values.filter((v) => Number.isFinite(v))));
  const y = scaleLinear().domain([0, max]).nice().range([height - margin.bottom, margin.top]);
  svg.append("g").attr("transform", `translate(0,${height - margin.bottom})`).call(axisBottom(x).tickValues(layerTicks(n, width - margin.left - margin.right, 58)).tickFormat((i) => o.xLabels[i] ?? String(i)));
  svg.append("g").attr("transform", `translate(${margin.left},0)`).call(axisLeft(y).ticks(4, "%"));
  svg.append("text").attr("x", (margin.left + width - margin.right) / 2).attr("y", height - 3).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(o.xTitle ?? "layer");
  svg.append("text").attr("transform", `translate(11,${(margin.top + height - margin.bottom) / 2}) rotate(-90)`).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(o.yTitle);
  o.series.forEach((s, k) => {
    const g = svg.append("g").attr("class", "series");
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v) || v <= 0) return;
      g.append("rect")
        .attr("x", (x(i) ?? 0) + (inner(k) ?? 0))
        .attr("width", Math.max(1, inner.bandwidth()))
        .attr("y", y(v))
        .attr("height", Math.max(0, y(0) - y(v)))
        .attr("fill", s.color)
        .append("title")
        .text(`${s.label}, ${o.xLabels[i] ?? i}: ${(100 * v).toFixed(1)}%`);
    });
    if (k < legendRows) {
      const ly = 8 + k * 12;
      g.append("rect").attr("x", margin.left).attr("y", ly - 4).attr("width", 9).attr("height", 9).attr("fill", s.color);
      g.append("text").attr("x", margin.left + 13).attr("y", ly + 4).attr("fill", o.palette.foreground).text(s.label.length > 64 ? `${s.label.slice(0, 63)}…` : s.label);
    }
  });
  return svg.node() as SVGSVGElement;
}
