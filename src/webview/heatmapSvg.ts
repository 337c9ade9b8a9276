/**
 * The heatmap as standalone SVG text, for export (no DOM: built from the view and a palette's
 * concrete colours, so the file looks the same outside VS Code). Layers run bottom (embeddings)
 * to top (final), as on the canvas.
 */
import { rampIndex } from "./color";
import { COLOUR_BAR_HEIGHT, colourBar, svgText } from "./colourBar";
import { answerPosition, convergenceLayers, type LensView, type Metric, METRIC_LABELS, metricScale, visibleToken } from "./model";

/** The heatmap's axis titles, in the panel and in exported figures. */
export const HEATMAP_X_TITLE = "input position: the lens predicts the next token";
export const HEATMAP_Y_TITLE = "layer";

export interface HeatmapSvgOptions {
  /** The metric's colour map (light = least confident) and the text colour over each entry. */
  ramp: string[];
  rampText: string[];
  foreground: string;
  background: string;
  /** Axis titles and the colour bar's outline (default: foreground). */
  muted?: string;
  /** Marker colour for cells whose top-1 is the generated token. */
  match: string;
  fontFamily?: string;
  cellWidth?: number;
  cellHeight?: number;
  /** The figure's title; default: model, image and prompt from the record. */
  title?: string;
  /** Whether the colour range counts the embeddings row (as the panel's toggle). */
  withEmbeddings?: boolean;
}

const basename = (p: string): string => p.split(/[\\/]/u).pop() ?? p;

/** The figure's title from its record: model, image and prompt. */
export function figureTitle(record: LensView["record"]): string {
  const image = record.input.image?.path ? basename(record.input.image.path) : record.input.image ? `image ${record.input.image.sha256.slice(0, 8)}` : "no image";
  const prompt = record.input.prompt.length > 90 ? `${record.input.prompt.slice(0, 89)}…` : record.input.prompt;
  return `${record.model.id} · ${image} · “${prompt}”`;
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

/**
 * A figure title in lines that fit `width` px of 12 px text (about 6.8 px a character): whole if
 * it fits, else "model · image" and the prompt on a line of its own, cut to fit.
 */
export function titleLines(title: string, width: number): string[] {
  const fit = Math.max(10, Math.floor((width - 12) / 6.8));
  if ([...title].length <= fit) return [title];
  const cut = title.indexOf(" · “");
  const parts = cut > 0 ? [title.slice(0, cut), title.slice(cut + 3)] : [title];
  return parts.map((p) => clip(p, fit));
}

const f = (v: number): string => String(Math.round(v * 100) / 100);

export function heatmapSvg(view: LensView, metric: Metric, options: HeatmapSvgOptions): string {
  const cw = options.cellWidth ?? 40;
  const ch = options.cellHeight ?? 18;
  const { layers, positions: P, record } = view;
  const withEmbeddings = options.withEmbeddings ?? false;
  const scale = metricScale(view, metric, withEmbeddings);
  const muted = options.muted ?? options.foreground;
  const fg = options.foreground;
  const answer = answerPosition(view);
  const settle = convergenceLayers(view);
  // title (2 lines) and colour bar above, layer names and "layer" to the left, rotated token
  // labels and the position axis title below; no margin past the last column but a small pad
  const left = 104;
  const barWidth = 300;
  const top = 46 + COLOUR_BAR_HEIGHT + 18;
  // rotated labels of up to 14 characters, then the axis title
  const bottom = 96;
  const width = Math.max(left + P * cw + 12, left + barWidth + 250);
  const height = top + layers * ch + bottom;
  const font = escapeXml(options.fontFamily ?? "sans-serif");
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${font}" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="${options.background}"/>`);
  const title = options.title ?? figureTitle(record);
  out.push(`<text x="12" y="20" fill="${fg}" font-size="14" font-weight="600">${escapeXml(title)}</text>`);
  out.push(`<text x="12" y="37" fill="${muted}" font-size="12">${escapeXml(`Logit lens: ${METRIC_LABELS[metric]} of each layer's top-1 (cell text) at each input position`)}</text>`);
  out.push(`<g transform="translate(${left - 12},46)">${svgText(colourBar(scale, { colors: options.ramp, foreground: fg, muted, gradientId: "logit-lens-colour-bar", width: barWidth }))}</g>`);
  const legendX = left + barWidth + 10;
  if (width - legendX > 200) {
    out.push(`<circle cx="${legendX + 4}" cy="58" r="3" fill="${options.match}"/><text x="${legendX + 12}" y="62" fill="${fg}">top-1 is the generated token</text>`);
    out.push(`<rect x="${legendX}" y="71" width="9" height="3" fill="${fg}"/><text x="${legendX + 12}" y="76" fill="${fg}">settles: top-1 = final from here up</text>`);
    out.push(`<rect x="${legendX + 1}" y="82" width="7" height="9" fill="none" stroke="${fg}" stroke-width="2"/><text x="${legendX + 12}" y="90" fill="${fg}">answer: predicts the first generated token</text>`);
  }
  const chars = Math.floor((cw - 4) / 6.5);
  for (let l = 0; l < layers; l++) {
    const y = top + (layers - 1 - l) * ch;
    out.push(`<text x="${left - 6}" y="${f(y + ch / 2 + 4)}" text-anchor="end" fill="${fg}">${escapeXml(record.layerLabels[l])}</text>`);
    for (let p = 0; p < P; p++) {
      const i = l * P + p;
      const k = rampIndex(scale.intensity[i], options.ramp.length);
      const x = left + p * cw;
      const text = visibleToken(record.tokenTexts[String(view.top1Ids[i])] ?? `#${view.top1Ids[i]}`);
      out.push(`<rect x="${x}" y="${y}" width="${cw}" height="${ch}" fill="${options.ramp[k]}"><title>${escapeXml(`${record.layerLabels[l]}, token ${record.positions[p]}: ${text} (${Number(scale.values[i].toPrecision(4))})`)}</title></rect>`);
      if (chars >= 2) out.push(`<text x="${f(x + cw / 2)}" y="${f(y + ch / 2 + 4)}" text-anchor="middle" fill="${options.rampText[k]}">${escapeXml(clip(text, chars))}</text>`);
      if (view.matches[i] === 1) out.push(`<circle cx="${f(x + cw - 3.5)}" cy="${f(y + 3.5)}" r="2.5" fill="${options.match}"/>`);
      if (settle[p] === l) out.push(`<rect class="settles" x="${x}" y="${y + ch - 3}" width="${cw}" height="3" fill="${options.rampText[k]}"/>`);
    }
  }
  if (answer >= 0 && answer < P) {
    const x = left + answer * cw;
    out.push(`<rect class="answer" x="${x - 1}" y="${top - 1}" width="${cw + 2}" height="${layers * ch + 2}" fill="none" stroke="${fg}" stroke-width="2"/>`);
    out.push(`<text x="${f(x + cw / 2)}" y="${top - 5}" text-anchor="middle" fill="${fg}" font-weight="600">answer ▾</text>`);
  }
  const base = top + layers * ch + 6;
  for (let p = 0; p < P; p++) {
    const x = left + p * cw + cw / 2;
    const token = record.tokens[record.positions[p]];
    out.push(`<text transform="translate(${f(x)},${base}) rotate(-60)" text-anchor="end" fill="${token?.segment === "generated" ? options.match : fg}"${p === answer ? ' font-weight="600"' : ""}>${escapeXml(clip(visibleToken(token?.text ?? ""), 14))}</text>`);
  }
  out.push(`<text x="${f(left + (P * cw) / 2)}" y="${height - 8}" text-anchor="middle" fill="${muted}" font-size="12">${escapeXml(HEATMAP_X_TITLE)}</text>`);
  out.push(`<text transform="translate(16,${f(top + (layers * ch) / 2)}) rotate(-90)" text-anchor="middle" fill="${muted}" font-size="12">${escapeXml(HEATMAP_Y_TITLE)}</text>`);
  out.push("</svg>");
  return out.join("\n");
}
