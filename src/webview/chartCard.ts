/**
 * A titled card holding one chart, with its SVG and PNG export buttons (data-export, data-chart).
 * A chart given by `draw` is made at the card's own width in CSS pixels, and made again when
 * that width changes, so its text is always drawn at its size (a chart scaled to fit its card
 * would shrink its text with it).
 */
import { button, el } from "./dom";

export type ChartExport = (chart: string, format: "svg" | "png") => void;

export class ChartCard {
  readonly element: HTMLElement;
  readonly body: HTMLDivElement;
  private readonly caption: HTMLElement;
  private svg: SVGSVGElement | undefined;
  private drawer: ((width: number) => SVGSVGElement | null) | undefined;
  private note: string | undefined;
  private knownWidth = 0;
  private frame = 0;

  constructor(
    readonly name: string,
    title: string,
    onExport: ChartExport,
    extra?: HTMLElement,
  ) {
    const exportSvg = button("SVG", { class: "small", title: `Export "${title}" as SVG`, attrs: { "data-export": "svg", "data-chart": name } });
    const exportPng = button("PNG", { class: "small", title: `Export "${title}" as PNG`, attrs: { "data-export": "png", "data-chart": name } });
    exportSvg.addEventListener("click", () => onExport(name, "svg"));
    exportPng.addEventListener("click", () => onExport(name, "png"));
    this.caption = el("h3", { class: "card-title", text: title });
    this.body = el("div", { class: "chart-body" });
    this.element = el(
      "figure",
      { class: "card chart-card", attrs: { "data-card": name } },
      el("div", { class: "card-head" }, this.caption, extra ?? null, el("div", { class: "export-buttons", attrs: { role: "group", "aria-label": `Export ${title}` } }, exportSvg, exportPng)),
      this.body,
    );
  }

  setTitle(title: string): void {
    this.caption.textContent = title;
  }

  /** The card's width for a chart: its body's, once known, else `fallback`. */
  width(fallback = 360): number {
    return this.knownWidth > 0 ? this.knownWidth : fallback;
  }

  /** Draws the chart `make` returns for the card's width now, and again whenever that width changes. */
  draw(make: (width: number) => SVGSVGElement | null, note?: string): void {
    this.drawer = make;
    this.note = note;
    this.observe();
    this.show(make(this.width()), note);
  }

  set(svg: SVGSVGElement | null, note?: string): void {
    this.drawer = undefined;
    this.show(svg, note);
  }

  private observer: ResizeObserver | undefined;

  private observe(): void {
    if (this.observer || typeof ResizeObserver === "undefined") return;
    this.observer = new ResizeObserver((entries) => {
      const width = Math.floor(entries[entries.length - 1]?.contentRect.width ?? 0);
      // a few pixels either way (a scroll bar coming and going) is not worth a new chart
      if (width <= 0 || Math.abs(width - this.knownWidth) < 8) return;
      this.knownWidth = width;
      if (!this.drawer || this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        if (this.drawer) this.show(this.drawer(this.width()), this.note);
      });
    });
    this.observer.observe(this.body);
  }

  private show(svg: SVGSVGElement | null, note?: string): void {
    this.svg = svg ?? undefined;
    this.body.replaceChildren(...(svg ? [svg] : []), ...(note ? [el("p", { class: "note", text: note })] : []));
  }

  get chart(): SVGSVGElement | undefined {
    return this.svg;
  }
}
