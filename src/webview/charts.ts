/**
 * The panel's small d3 charts. Each returns a fresh <svg> whose colours are concrete attribute
 * values from the Palette (and `color` for d3-axis's currentColor), so the element can be
 * serialized for export as it is. Sizes are the SVG's own; CSS scales them to their card.
 */
import { axisBottom, axisLeft } from "d3-axis";
import { scaleBand, scaleLinear, scaleLog } from "d3-scale";
import { select, type Selection } from "d3-selection";
import { line } from "d3-shape";
import { rampIndex } from "./color";
import { formatNumber, SVG_NS } from "./dom";
import { layerTicks } from "./model";
import type { Palette } from "./theme";

export type Svg = Selection<SVGSVGElement, unknown, null, undefined>;

export interface LineSeries {
  label: string;
  values: readonly number[];
  color: string;
  dashed?: boolean;
}

export interface LineChartOptions {
  title: string;
  series: LineSeries[];
  /** Label of each x index (layer labels), for point titles. */
  xLabels: readonly string[];
  palette: Palette;
  xTitle?: string;
  /** The value axis's title (rotated, left of the axis). */
  yTitle?: string;
  log?: boolean;
  /** Fixed y domain; otherwise from the data (from 0 for linear charts with non-negative data). */
  yDomain?: [number, number];
  /** An x index to mark with a vertical rule (the selected layer). */
  highlight?: number;
  width?: number;
  height?: number;
  /** First x value (1 for per-block series). */
  xStart?: number;
  legend?: boolean;
}

export function frame(title: string, width: number, height: number, palette: Palette): Svg {
  const svg = select(document.createElementNS(SVG_NS, "svg") as SVGSVGElement)
    .attr("width", width)
    .attr("height", height)
    .attr("viewBox", `0 0 ${width} ${height}`)
    .attr("role", "img")
    .attr("aria-label", title)
    .attr("font-family", palette.fontFamily)
    .attr("font-size", 10)
    .attr("color", palette.foreground)
    .attr("class", "chart");
  svg.append("title").text(title);
  return svg;
}

/** The first tick label starts at its tick and the last ends at it, so that long names stay inside the chart. */
export function endTicksInside(axis: Selection<SVGGElement, unknown, null, undefined>, count: number): void {
  if (count < 2) return;
  axis.selectAll<SVGTextElement, unknown>(".tick text").each(function (_, i) {
    if (i === 0) this.setAttribute("text-anchor", "start");
    else if (i === count - 1) this.setAttribute("text-anchor", "end");
  });
}

const finiteValues = (series: LineSeries[], log: boolean) => series.flatMap((s) => s.values.filter((v) => Number.isFinite(v) && (!log || v > 0)));

export function lineChart(o: LineChartOptions): SVGSVGElement {
  const width = o.width ?? 360;
  const height = o.height ?? 190;
  const legendRows = o.legend === false ? 0 : Math.min(o.series.length, 6);
  const margin = { top: 8 + legendRows * 12, right: 12, bottom: 30, left: o.yTitle ? 52 : 46 };
  const svg = frame(o.title, width, height, o.palette);
  const n = Math.max(1, ...o.series.map((s) => s.values.length));
  const x0 = o.xStart ?? 0;
  const x = scaleLinear().domain([x0, x0 + Math.max(1, n - 1)]).range([margin.left, width - margin.right]);
  const values = finiteValues(o.series, !!o.log);
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  if (o.yDomain) [lo, hi] = o.yDomain;
  else if (!o.log && lo >= 0) lo = 0;
  if (hi === lo) hi = lo + (o.log ? 1 : 1e-6 + Math.abs(lo) * 0.1 || 1);
  const y = o.log
    ? scaleLog().domain([Math.max(1e-9, lo), Math.max(hi, lo * 10)]).range([height - margin.bottom, margin.top]).clamp(true)
    : scaleLinear().domain([lo, hi]).nice().range([height - margin.bottom, margin.top]);

  // The x axis names the layers as the heatmap does ("embeddings", "block 1", ...).
  const ticks = layerTicks(n, width - margin.left - margin.right, 58).map((i) => i + x0);
  const xAxis = axisBottom(x)
    .tickValues(ticks)
    .tickFormat((d) => o.xLabels[Number(d) - x0] ?? String(d));
  const xg = svg.append("g").attr("transform", `translate(0,${height - margin.bottom})`).call(xAxis);
  endTicksInside(xg, ticks.length);
  const yAxis = o.log ? axisLeft(y).ticks(4, "~s") : axisLeft(y).ticks(4).tickFormat((d) => formatNumber(Number(d), 3));
  svg.append("g").attr("transform", `translate(${margin.left},0)`).call(yAxis);
  svg.append("text").attr("x", (margin.left + width - margin.right) / 2).attr("y", height - 3).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(o.xTitle ?? "layer");
  if (o.yTitle) svg.append("text").attr("transform", `translate(9,${(margin.top + height - margin.bottom) / 2}) rotate(-90)`).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(o.yTitle);

  if (o.highlight !== undefined && o.highlight >= 0) {
    svg.append("line").attr("x1", x(o.highlight + x0)).attr("x2", x(o.highlight + x0)).attr("y1", margin.top).attr("y2", height - margin.bottom).attr("stroke", o.palette.focus).attr("stroke-dasharray", "2,2");
  }
  const path = line<number>()
    .defined((v) => Number.isFinite(v) && (!o.log || v > 0))
    .x((_, i) => x(i + x0))
    .y((v) => y(v));
  o.series.forEach((s, k) => {
    const g = svg.append("g").attr("class", "series");
    g.append("path").attr("d", path(s.values as number[]) ?? "").attr("fill", "none").attr("stroke", s.color).attr("stroke-width", 1.6).attr("stroke-dasharray", s.dashed ? "4,3" : null);
    // Points carry titles so a hover reads the value (also in the exported file).
    if (s.values.length <= 80)
      s.values.forEach((v, i) => {
        if (!Number.isFinite(v) || (o.log && v <= 0)) return;
        g.append("circle").attr("cx", x(i + x0)).attr("cy", y(v)).attr("r", 2).attr("fill", s.color).append("title").text(`${s.label}, ${o.xLabels[i] ?? i + x0}: ${formatNumber(v, 4)}`);
      });
    if (k < legendRows) {
      const ly = 8 + k * 12;
      g.append("line").attr("x1", margin.left).attr("x2", margin.left + 14).attr("y1", ly).attr("y2", ly).attr("stroke", s.color).attr("stroke-width", 2).attr("stroke-dasharray", s.dashed ? "4,3" : null);
      g.append("text").attr("x", margin.left + 18).attr("y", ly + 3).attr("fill", o.palette.foreground).text(s.label.length > 60 ? `${s.label.slice(0, 59)}…` : s.label);
    }
  });
  return svg.node() as SVGSVGElement;
}

export interface StackedBarsOptions {
  title: string;
  /** [bars][keys], each row summing to about 1. */
  rows: readonly (readonly number[])[];
  keys: readonly string[];
  colors: readonly string[];
  barLabels: readonly string[];
  palette: Palette;
  width?: number;
  height?: number;
}

export function stackedBars(o: StackedBarsOptions): SVGSVGElement {
  const width = o.width ?? 360;
  const height = o.height ?? 200;
  const margin = { top: 22, right: 10, bottom: 30, left: 36 };
  const svg = frame(o.title, width, height, o.palette);
  const x = scaleBand<number>().domain(o.rows.map((_, i) => i)).range([margin.left, width - margin.right]).padding(0.12);
  const y = scaleLinear().domain([0, 1]).range([height - margin.bottom, margin.top]);
  const barTicks = layerTicks(o.rows.length, width - margin.left - margin.right, 52);
  svg.append("g").attr("transform", `translate(0,${height - margin.bottom})`).call(axisBottom(x).tickValues(barTicks).tickFormat((i) => o.barLabels[i] ?? String(i + 1)));
  svg.append("g").attr("transform", `translate(${margin.left},0)`).call(axisLeft(y).ticks(4, "%"));
  svg.append("text").attr("x", (margin.left + width - margin.right) / 2).attr("y", height - 3).attr("text-anchor", "middle").attr("fill", o.palette.muted).text("decoder block");
  o.rows.forEach((row, i) => {
    let acc = 0;
    row.forEach((v, k) => {
      const g = svg.append("rect").attr("x", x(i) ?? 0).attr("width", x.bandwidth()).attr("y", y(Math.min(1, acc + v))).attr("height", Math.max(0, y(acc) - y(Math.min(1, acc + v)))).attr("fill", o.colors[k]);
      g.append("title").text(`${o.barLabels[i]}: ${o.keys[k]} ${(100 * v).toFixed(1)}%`);
      acc += v;
    });
  });
  o.keys.forEach((key, k) => {
    const lx = margin.left + k * ((width - margin.left) / o.keys.length);
    svg.append("rect").attr("x", lx).attr("y", 5).attr("width", 9).attr("height", 9).attr("fill", o.colors[k]);
    svg.append("text").attr("x", lx + 12).attr("y", 13).attr("fill", o.palette.foreground).text(key);
  });
  return svg.node() as SVGSVGElement;
}

export interface MatrixOptions {
  title: string;
  /** [rows, cols] in [0, max]. */
  values: ArrayLike<number>;
  rows: number;
  cols: number;
  rowTitle: string;
  colTitle: string;
  rowLabel: (r: number) => string;
  colLabel: (c: number) => string;
  palette: Palette;
  width?: number;
  height?: number;
  /** Highlighted row (e.g. the overlay's block). */
  highlightRow?: number;
  /** The picked cell, outlined. */
  selected?: { row: number; col: number };
  /** Each cell carries data-row and data-col and can be focused and activated (a picker). */
  pickable?: boolean;
  /** The colour bar's title (default: share). */
  valueTitle?: string;
}

export function matrixChart(o: MatrixOptions): SVGSVGElement {
  const width = o.width ?? 360;
  const height = o.height ?? Math.min(420, Math.max(160, 40 + o.rows * 12));
  const margin = { top: 10, right: 72, bottom: 30, left: 62 };
  const svg = frame(o.title, width, height, o.palette);
  const cw = (width - margin.left - margin.right) / Math.max(1, o.cols);
  const ch = (height - margin.top - margin.bottom) / Math.max(1, o.rows);
  let max = 0;
  for (let i = 0; i < o.rows * o.cols; i++) if (o.values[i] > max) max = o.values[i];
  const g = svg.append("g");
  for (let r = 0; r < o.rows; r++)
    for (let c = 0; c < o.cols; c++) {
      const v = o.values[r * o.cols + c];
      const k = rampIndex(max > 0 ? v / max : 0, o.palette.ramp.length);
      const cell = g
        .append("rect")
        .attr("x", margin.left + c * cw)
        .attr("y", margin.top + (o.rows - 1 - r) * ch)
        .attr("width", Math.max(0.5, cw - 0.5))
        .attr("height", Math.max(0.5, ch - 0.5))
        .attr("fill", o.palette.ramp[k]);
      if (o.pickable) cell.attr("data-row", r).attr("data-col", c).attr("tabindex", (o.selected ? o.selected.row === r && o.selected.col === c : r === 0 && c === 0) ? 0 : -1).attr("role", "button").attr("class", "pick").attr("aria-label", `${o.rowLabel(r)}, ${o.colLabel(c)}: ${(100 * v).toFixed(1)}%`);
      cell.append("title").text(`${o.rowLabel(r)}, ${o.colLabel(c)}: ${(100 * v).toFixed(1)}%${o.pickable ? " (click: its pattern)" : ""}`);
    }
  if (o.highlightRow !== undefined && o.highlightRow >= 0 && o.highlightRow < o.rows)
    svg.append("rect").attr("x", margin.left - 1).attr("y", margin.top + (o.rows - 1 - o.highlightRow) * ch).attr("width", o.cols * cw + 1).attr("height", ch).attr("fill", "none").attr("stroke", o.palette.focus);
  if (o.selected && o.selected.row >= 0 && o.selected.row < o.rows && o.selected.col >= 0 && o.selected.col < o.cols) {
    const x = margin.left + o.selected.col * cw;
    const y = margin.top + (o.rows - 1 - o.selected.row) * ch;
    // a double outline that reads on the darkest and the lightest cell
    svg.append("rect").attr("x", x - 1).attr("y", y - 1).attr("width", cw + 1).attr("height", ch + 1).attr("fill", "none").attr("stroke", o.palette.background).attr("stroke-width", 3).attr("pointer-events", "none");
    svg.append("rect").attr("class", "selected-cell").attr("x", x - 1).attr("y", y - 1).attr("width", cw + 1).attr("height", ch + 1).attr("fill", "none").attr("stroke", o.palette.foreground).attr("stroke-width", 1.5).attr("pointer-events", "none");
  }
  // the colour bar: the ramp from 0 to the matrix's max, with ticks
  const barX = width - margin.right + 14;
  const barH = height - margin.top - margin.bottom;
  const steps = Math.min(32, o.palette.ramp.length);
  const bar = svg.append("g").attr("class", "colour-bar");
  for (let i = 0; i < steps; i++) bar.append("rect").attr("x", barX).attr("y", margin.top + barH - ((i + 1) * barH) / steps).attr("width", 10).attr("height", barH / steps + 0.5).attr("fill", o.palette.ramp[rampIndex((i + 0.5) / steps, o.palette.ramp.length)]);
  bar.append("rect").attr("x", barX).attr("y", margin.top).attr("width", 10).attr("height", barH).attr("fill", "none").attr("stroke", o.palette.muted).attr("stroke-width", 0.5);
  for (const f of [0, 0.5, 1])
    bar
      .append("text")
      .attr("x", barX + 13)
      .attr("y", margin.top + barH - f * barH + 3)
      .attr("fill", o.palette.foreground)
      .text(`${(100 * f * max).toFixed(max >= 0.1 ? 0 : 1)}%`);
  bar.append("text").attr("transform", `translate(${width - 4},${margin.top + barH / 2}) rotate(-90)`).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(o.valueTitle ?? "share");
  const rowEvery = Math.ceil(o.rows / 10);
  for (let r = 0; r < o.rows; r += rowEvery)
    svg.append("text").attr("x", margin.left - 4).attr("y", margin.top + (o.rows - 1 - r) * ch + ch / 2 + 3).attr("text-anchor", "end").attr("fill", o.palette.foreground).text(o.rowLabel(r));
  const colEvery = Math.ceil(o.cols / 12);
  for (let c = 0; c < o.cols; c += colEvery)
    svg.append("text").attr("x", margin.left + c * cw + cw / 2).attr("y", height - margin.bottom + 11).attr("text-anchor", "middle").attr("fill", o.palette.foreground).text(String(c));
  svg.append("text").attr("x", (margin.left + width - margin.right) / 2).attr("y", height - 3).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(`${o.colTitle} (max ${(100 * max).toFixed(1)}%)`);
  svg.append("text").attr("transform", `translate(10,${(margin.top + height - margin.bottom) / 2}) rotate(-90)`).attr("text-anchor", "middle").attr("fill", o.palette.muted).text(o.rowTitle);
  return svg.node() as SVGSVGElement;
}

export interface BarChartOptions {
  title: string;
  bars: { label: string; value: number | null; note?: string; color: string }[];
  palette: Palette;
  width?: number;
  /** Maximum of the value axis (1 for shares). */
  max?: number;
  format?: (v: number) => string;
}

/** Horizontal bars with their labels; a null value is drawn as "n/a". */
export function barChart(o: BarChartOptions): SVGSVGElement {
  const width = o.width ?? 360;
  const rowHeight = 18;
  const height = 20 + o.bars.length * rowHeight;
  const svg = frame(o.title, width, height, o.palette);
  const labelWidth = Math.min(180, width * 0.3);
  const max = o.max ?? Math.max(1e-9, ...o.bars.map((b) => b.value ?? 0));
  const format = o.format ?? ((v: number) => formatNumber(v));
  // room right of the longest bar for its value and note (about 5.6 px a character at 10 px)
  const text = Math.max(0, ...o.bars.map((b) => (b.value === null ? 0 : `${format(b.value)}${b.note ? ` ${b.note}` : ""}`.length)));
  const reserve = Math.min(width * 0.5, 10 + 5.6 * text);
  const x = scaleLinear().domain([0, max]).range([labelWidth + 6, Math.max(labelWidth + 40, width - reserve)]);
  o.bars.forEach((b, i) => {
    const y = 10 + i * rowHeight;
    svg.append("text").attr("x", labelWidth).attr("y", y + 12).attr("text-anchor", "end").attr("fill", o.palette.foreground).text(b.label.length > 34 ? `${b.label.slice(0, 33)}…` : b.label);
    if (b.value === null) {
      svg.append("text").attr("x", labelWidth + 8).attr("y", y + 12).attr("fill", o.palette.muted).text(`n/a${b.note ? ` (${b.note})` : ""}`);
      return;
    }
    svg.append("rect").attr("x", x(0)).attr("y", y + 2).attr("width", Math.max(0, x(b.value) - x(0))).attr("height", rowHeight - 5).attr("fill", b.color).append("title").text(`${b.label}: ${format(b.value)}${b.note ? ` (${b.note})` : ""}`);
    svg.append("text").attr("x", x(b.value) + 4).attr("y", y + 12).attr("fill", o.palette.foreground).text(`${format(b.value)}${b.note ? ` ${b.note}` : ""}`);
  });
  return svg.node() as SVGSVGElement;
}
