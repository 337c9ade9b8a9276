/**
 * The heatmap as standalone SVG text, for export (no DOM: built from the view and a palette's
 * concrete colours, so the file looks the same outside VS Code). Layers run bottom (embeddings)
 * to top (final), as on the canvas.
 */
import { rampIndex } from "./color";
import { type LensView, type Metric, METRIC_LABELS, metricScale, visibleToken } from "./model";

export interface HeatmapSvgOptions {
  ramp: string[];
  rampText: string[];
  foreground: string;
  background: string;
  /** Marker colour for cells whose top-1 is the generated token. */
  match: string;
  fontFamily?: string;
  cellWidth?: number;
  cellHeight?: number;
  title?: string;
}

/**
 * Characters XML 1.0 cannot hold at all, not even as a character reference: C0 controls other
 * than tab, LF and CR, U+FFFE, U+FFFF and lone surrogates (in a /u regex a surrogate range only
 * matches one that is not half of a pair).
 */
const XML_FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF\uD800-\uDFFF]/gu;

/** `s` with every character XML 1.0 forbids written out visibly as "\uXXXX", so a file that holds it stays well-formed. */
export const xmlSafe = (s: string): string => s.replace(XML_FORBIDDEN, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

/** The first character XML 1.0 forbids in `s`, as "U+000B at offset 12", or null. */
export function xmlForbidden(s: string): string | null {
  const m = new RegExp(XML_FORBIDDEN.source, "u").exec(s);
  return m ? `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")} at offset ${m.index}` : null;
}

export const escapeXml = (s: string): string => xmlSafe(s).replace(/&/gu, "&amp;").replace(/</gu, "&lt;").replace(/>/gu, "&gt;").replace(/"/gu, "&quot;").replace(/'/gu, "&apos;");

/** Text cut to fit about `chars` characters. */
export function clip(text: string, chars: number): string {
  if (chars <= 0) return "";
  const glyphs = [...text];
  return glyphs.length <= chars ? text : `${glyphs.slice(0, Math.max(1, chars - 1)).join("")}…`;
}

const f = (v: number): string => String(Math.round(v * 100) / 100);

export function heatmapSvg(view: LensView, metric: Metric, options: HeatmapSvgOptions): string {
  const cw = options.cellWidth ?? 40;
  const ch = options.cellHeight ?? 18;
  const { layers, positions: P, record } = view;
  const scale = metricScale(view, metric);
  const left = 90;
  const top = 36;
  const bottom = 90;
  const width = left + P * cw + 10;
  const height = top + layers * ch + bottom;
  const font = escapeXml(options.fontFamily ?? "sans-serif");
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${font}" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="${options.background}"/>`);
  const title = options.title ? `${options.title}: ` : "";
  out.push(`<text x="${left}" y="20" fill="${options.foreground}" font-size="13">${escapeXml(`${title}${METRIC_LABELS[metric]} (${scale.log ? "log, " : ""}${scale.min}–${Number(scale.max.toPrecision(3))})`)}</text>`);
  const chars = Math.floor((cw - 4) / 6.5);
  for (let l = 0; l < layers; l++) {
    const y = top + (layers - 1 - l) * ch;
    out.push(`<text x="${left - 6}" y="${f(y + ch / 2 + 4)}" text-anchor="end" fill="${options.foreground}">${escapeXml(record.layerLabels[l])}</text>`);
    for (let p = 0; p < P; p++) {
      const i = l * P + p;
      const k = rampIndex(scale.intensity[i], options.ramp.length);
      const x = left + p * cw;
      out.push(`<rect x="${x}" y="${y}" width="${cw}" height="${ch}" fill="${options.ramp[k]}"><title>${escapeXml(`${record.layerLabels[l]}, token ${record.positions[p]}: ${visibleToken(record.tokenTexts[String(view.top1Ids[i])] ?? `#${view.top1Ids[i]}`)} (${Number(scale.values[i].toPrecision(4))})`)}</title></rect>`);
      if (chars >= 2) {
        const text = clip(visibleToken(record.tokenTexts[String(view.top1Ids[i])] ?? `#${view.top1Ids[i]}`), chars);
        out.push(`<text x="${f(x + cw / 2)}" y="${f(y + ch / 2 + 4)}" text-anchor="middle" fill="${options.rampText[k]}">${escapeXml(text)}</text>`);
      }
      if (view.matches[i] === 1) out.push(`<circle cx="${f(x + cw - 3.5)}" cy="${f(y + 3.5)}" r="2.5" fill="${options.match}"/>`);
    }
  }
  const base = top + layers * ch + 6;
  for (let p = 0; p < P; p++) {
    const x = left + p * cw + cw / 2;
    const token = record.tokens[record.positions[p]];
    out.push(`<text transform="translate(${f(x)},${base}) rotate(-60)" text-anchor="end" fill="${options.foreground}">${escapeXml(clip(visibleToken(token?.text ?? ""), 14))}</text>`);
  }
  out.push("</svg>");
  return out.join("\n");
}
