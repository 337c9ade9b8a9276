/**
 * Charts out of the panel: SVG text (the chart's own element, with concrete colours already in
 * its attributes) and PNG data URLs (the SVG drawn onto a canvas through a blob: image, which
 * the CSP allows). The host saves what is posted; the webview never touches files.
 */
import { SVG_NS } from "./dom";
import { titleLines, xmlForbidden, xmlSafe } from "./heatmapSvg";

/**
 * A chart's SVG as a file: its own element with the background filled in and, above it, the
 * figure's title (model, image, prompt) and the chart's own (its aria-label), so an exported
 * chart says what it shows outside the panel too.
 */
export function serializeSvg(svg: SVGSVGElement, background: string, figure?: { title: string; foreground: string; muted: string; fontFamily?: string }): string {
  const copy = svg.cloneNode(true) as SVGSVGElement;
  copy.setAttribute("xmlns", SVG_NS);
  const width = Number(svg.getAttribute("width") ?? (svg.clientWidth || 400));
  const height = Number(svg.getAttribute("height") ?? (svg.clientHeight || 300));
  const chartTitle = svg.getAttribute("aria-label") ?? "";
  const lines = figure ? titleLines(figure.title, width) : [];
  const band = figure ? 8 + 15 * lines.length + (chartTitle ? 16 : 0) : 0;
  if (band) {
    // the chart's content moves down under the title band
    const g = document.createElementNS(SVG_NS, "g");
    g.setAttribute("transform", `translate(0,${band})`);
    for (const child of [...copy.childNodes]) if (!(child instanceof Element && child.tagName === "title")) g.append(child);
    copy.append(g);
    copy.setAttribute("viewBox", `0 0 ${width} ${height + band}`);
  }
  copy.setAttribute("width", String(width));
  copy.setAttribute("height", String(height + band));
  const fill = document.createElementNS(SVG_NS, "rect");
  fill.setAttribute("width", "100%");
  fill.setAttribute("height", "100%");
  fill.setAttribute("fill", background);
  copy.insertBefore(fill, copy.firstChild);
  if (figure) {
    const line = (text: string, y: number, size: number, colour: string, weight?: string) => {
      const t = document.createElementNS(SVG_NS, "text");
      t.setAttribute("x", "6");
      t.setAttribute("y", String(y));
      t.setAttribute("font-size", String(size));
      t.setAttribute("fill", colour);
      if (figure.fontFamily) t.setAttribute("font-family", figure.fontFamily);
      if (weight) t.setAttribute("font-weight", weight);
      t.textContent = text;
      copy.insertBefore(t, fill.nextSibling);
    };
    if (chartTitle) line(chartTitle, 15 * lines.length + 16, 11, figure.muted);
    for (let i = lines.length - 1; i >= 0; i--) line(lines[i], 15 * (i + 1), 12, figure.foreground, "600");
  }
  // XMLSerializer writes a text's control characters (a token's U+000B, say) as they are, which
  // no XML parser accepts: write them out visibly instead.
  return xmlSafe(new XMLSerializer().serializeToString(copy));
}

/** The size an SVG text declares (width/height attributes), or 800 x 600. */
export function svgSize(svgText: string): { width: number; height: number } {
  const w = /<svg[^>]*\swidth="([\d.]+)/u.exec(svgText);
  const h = /<svg[^>]*\sheight="([\d.]+)/u.exec(svgText);
  return { width: w ? Number(w[1]) : 800, height: h ? Number(h[1]) : 600 };
}

/** Largest canvas side we ask the browser for (Chromium's limit is 32767 and area ~268 M pixels). */
const MAX_SIDE = 16384;

export async function svgToPng(svgText: string, scale = 2): Promise<string> {
  const { width, height } = svgSize(svgText);
  const s = Math.max(0.1, Math.min(scale, MAX_SIDE / width, MAX_SIDE / height));
  // An image that is not well-formed XML fails to load with no reason given: say which character
  // broke it. (DOMParser would say more, but takes over a minute on a large heatmap.)
  const bad = xmlForbidden(svgText);
  if (bad) throw new Error(`the chart's SVG holds ${bad}, which XML does not allow; export it as SVG and report the file`);
  const url = URL.createObjectURL(new Blob([svgText], { type: "image/svg+xml" }));
  try {
    const image = new Image();
    image.decoding = "async";
    const loaded = new Promise<void>((resolve, reject) => {
      image.onload = () => resolve();
      image.onerror = () => reject(new Error(`the browser could not draw the chart's SVG (${width} x ${height} px) as an image; export it as SVG instead`));
    });
    image.src = url;
    await loaded;
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(width * s));
    canvas.height = Math.max(1, Math.round(height * s));
    const ctx = canvas.getContext("2d");
    if (!ctx) throw new Error(`the browser gave no canvas of ${canvas.width} x ${canvas.height} px to draw the PNG on; export it as SVG instead`);
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL("image/png");
  } finally {
    URL.revokeObjectURL(url);
  }
}
