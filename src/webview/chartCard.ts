/** A titled card holding one chart, with its SVG and PNG export buttons (data-export, data-chart). */
import { button, el } from "./dom";

export type ChartExport = (chart: string, format: "svg" | "png") => void;

export class ChartCard {
  readonly element: HTMLElement;
  readonly body: HTMLDivElement;
  private readonly caption: HTMLElement;
  private svg: SVGSVGElement | undefined;

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

  set(svg: SVGSVGElement | null, note?: string): void {
    this.svg = svg ?? undefined;
    this.body.replaceChildren(...(svg ? [svg] : []), ...(note ? [el("p", { class: "note", text: note })] : []));
  }

  get chart(): SVGSVGElement | undefined {
    return this.svg;
  }
}
