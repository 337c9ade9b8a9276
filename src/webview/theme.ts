/**
 * Colours from the VS Code theme. The webview's <html> carries the theme as --vscode-* custom
 * properties; canvas drawing and exported SVG need concrete colours, so they are read once per
 * render (and again when the theme changes) into a Palette. Fallbacks are VS Code's Dark+ values.
 */
import { DARK_PLUS } from "./darkPlus";
import { colorRamp, flatten, type MetricRamp, metricRamps, parseCssColor, type Rgba, toHex } from "./color";
import type { Metric } from "./model";
import type { Segment } from "../shared/lensRecord";

export interface Palette {
  foreground: string;
  background: string;
  muted: string;
  border: string;
  focus: string;
  selection: string;
  error: string;
  fontFamily: string;
  monoFamily: string;
  fontSize: number;
  /** Heatmap ramp, 256 colours from the background to the theme's blue. */
  ramp: string[];
  /** Text colour to use over ramp entry i (dark or light). */
  rampText: string[];
  /** The heatmap's colour map per metric (light = least confident, dark = most), with text colours. */
  ramps: Record<Metric, MetricRamp>;
  /** Overlay colour (the theme's orange) as RGB for alpha blending. */
  overlay: Rgba;
  segments: Record<Segment, string>;
  /** Distinct colours for series, in order. */
  series: string[];
}


let RAMPS: Record<Metric, MetricRamp> | undefined;

export function readPalette(root: Element = document.documentElement): Palette {
  const style = getComputedStyle(root);
  const bodyStyle = document.body ? getComputedStyle(document.body) : style;
  const raw = (name: string): string => style.getPropertyValue(name).trim() || bodyStyle.getPropertyValue(name).trim() || DARK_PLUS[name] || "";
  const background = parseCssColor(raw("--vscode-editor-background")) ?? (parseCssColor(DARK_PLUS["--vscode-editor-background"]) as Rgba);
  // Theme colours may carry alpha; canvas and export want them flat over the background.
  const color = (name: string): string => {
    const c = parseCssColor(raw(name)) ?? parseCssColor(DARK_PLUS[name] ?? "#888888");
    return c ? toHex(flatten(c, background)) : "#888888";
  };
  const rgb = (name: string): Rgba => parseCssColor(color(name)) as Rgba;
  const ramp = colorRamp(background, rgb("--vscode-charts-blue"), 256);
  const rampText = ramp.map((c) => {
    const v = parseCssColor(c) as Rgba;
    return (0.2126 * v.r + 0.7152 * v.g + 0.0722 * v.b) / 255 > 0.55 ? "#000000" : "#ffffff";
  });
  return {
    ramps: (RAMPS ??= metricRamps()),
    foreground: color("--vscode-foreground"),
    background: toHex(background),
    muted: color("--vscode-descriptionForeground"),
    border: color("--vscode-panel-border"),
    focus: color("--vscode-focusBorder"),
    selection: color("--vscode-editor-selectionBackground"),
    error: color("--vscode-errorForeground"),
    fontFamily: raw("--vscode-font-family"),
    monoFamily: raw("--vscode-editor-font-family"),
    fontSize: parseFloat(raw("--vscode-font-size")) || 13,
    ramp,
    rampText,
    overlay: rgb("--vscode-charts-orange"),
    segments: {
      bos: color("--vscode-charts-purple"),
      template: color("--vscode-descriptionForeground"),
      text: color("--vscode-charts-blue"),
      image: color("--vscode-charts-green"),
      generated: color("--vscode-charts-orange"),
    },
    series: ["--vscode-charts-blue", "--vscode-charts-orange", "--vscode-charts-green", "--vscode-charts-purple", "--vscode-charts-red", "--vscode-charts-yellow", "--vscode-charts-foreground"].map(color),
  };
}

/** Calls `onChange` when VS Code switches theme (it rewrites <html>'s style and <body>'s class). */
export function watchTheme(onChange: () => void): void {
  let pending = false;
  const observer = new MutationObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      onChange();
    });
  });
  observer.observe(document.documentElement, { attributes: true, attributeFilter: ["style", "class"] });
  if (document.body) observer.observe(document.body, { attributes: true, attributeFilter: ["class"] });
}
