/**
 * A metric's colour bar (title, gradient, ticks) as a small tree of SVG nodes, so that the panel
 * (DOM) and the exported heatmap (text) draw the same bar from one layout. No DOM here.
 */
import { escapeXml } from "./heatmapSvg";
import { colourBarTicks, METRIC_BAR_TITLES, type MetricScale } from "./model";

export interface SvgNode {
  tag: string;
  attrs: Record<string, string | number>;
  text?: string;
  children?: SvgNode[];
}

export interface ColourBarOptions {
  /** The metric's colour map, light end first. */
  colors: readonly string[];
  foreground: string;
  muted: string;
  /** A document-unique id for the gradient. */
  gradientId: string;
  width?: number;
  fontFamily?: string;
}

export const COLOUR_BAR_HEIGHT = 56;

/** The bar's title: what the colour is, and which way is confident. */
export function colourBarTitle(scale: MetricScale): string {
  return `${METRIC_BAR_TITLES[scale.metric]}: darker = more confident`;
}

/** What the colour range spans (probability always 0-1). */
export function colourRangeNote(scale: MetricScale): string {
  if (scale.metric === "prob") return "range 0–1";
  return scale.withEmbeddings ? "range over all layers" : "range over the blocks; the embeddings row is clamped to it";
}

/** The bar as an SVG <g> at (0, 0), `width` wide and COLOUR_BAR_HEIGHT tall. */
export function colourBar(scale: MetricScale, o: ColourBarOptions): SvgNode {
  const width = o.width ?? 260;
  const barY = 16;
  const barH = 10;
  const pad = 12;
  const inner = width - 2 * pad;
  const stops: SvgNode[] = Array.from({ length: 11 }, (_, i) => {
    const t = i / 10;
    const c = o.colors[Math.min(o.colors.length - 1, Math.round(t * (o.colors.length - 1)))];
    return { tag: "stop", attrs: { offset: `${i * 10}%`, "stop-color": c } };
  });
  const ticks = colourBarTicks(scale);
  const children: SvgNode[] = [
    { tag: "defs", attrs: {}, children: [{ tag: "linearGradient", attrs: { id: o.gradientId, x1: 0, x2: 1, y1: 0, y2: 0 }, children: stops }] },
    { tag: "text", attrs: { x: pad, y: 11, fill: o.foreground, "font-size": 11 }, text: colourBarTitle(scale) },
    { tag: "rect", attrs: { x: pad, y: barY, width: inner, height: barH, fill: `url(#${o.gradientId})`, stroke: o.muted, "stroke-width": 0.5 } },
  ];
  for (const t of ticks) {
    const x = Math.round((pad + t.at * inner) * 10) / 10;
    children.push({ tag: "line", attrs: { x1: x, x2: x, y1: barY + barH, y2: barY + barH + 4, stroke: o.foreground } });
    const anchor = t.at <= 0.02 ? "start" : t.at >= 0.98 ? "end" : "middle";
    children.push({ tag: "text", attrs: { x, y: barY + barH + 15, fill: o.foreground, "font-size": 10, "text-anchor": anchor }, text: t.label });
  }
  children.push({ tag: "text", attrs: { x: pad, y: barY + barH + 28, fill: o.muted, "font-size": 10 }, text: colourRangeNote(scale) });
  return { tag: "g", attrs: { class: "colour-bar", "data-metric": scale.metric, ...(o.fontFamily ? { "font-family": o.fontFamily } : {}) }, children };
}

/** SVG text of a node tree. */
export function svgText(node: SvgNode): string {
  const attrs = Object.entries(node.attrs)
    .map(([k, v]) => ` ${k}="${escapeXml(String(v))}"`)
    .join("");
  const inner = (node.text !== undefined ? escapeXml(node.text) : "") + (node.children ?? []).map(svgText).join("");
  return `<${node.tag}${attrs}>${inner}</${node.tag}>`;
}

