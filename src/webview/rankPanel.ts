/**
 * The side panel (id "rank-panel"): for the hovered or selected cell or token, that token's rank
 * at every layer (a small log-scale chart and one list item per layer, data-layer=l) and the
 * layer's top-k. The list items are made once per record and only their text changes on hover,
 * so an update costs O(layers) DOM writes.
 */
import { axisBottom, axisLeft } from "d3-axis";
import { scaleLinear, scaleLog } from "d3-scale";
import { select } from "d3-selection";
import { ChartCard, type ChartExport } from "./chartCard";
import { el, formatNumber, option, type Select, svgEl } from "./dom";
import { type LayerRanks, layerTicks, visibleToken } from "./model";
import type { RankToken } from "./panelState";
import type { Palette } from "./theme";


export interface RankInfo {
  /** What the ranks are of, e.g. "·red at position 5 (ASSISTANT:)". */
  caption: string;
  ranks: LayerRanks | null;
  /** Why there are no ranks, when there are none. */
  missing?: string;
  /** The layer whose top-k is listed. */
  layer: number;
  topk: { id: number; text: string; prob: number }[];
  /** Per layer: the top-1 text there. */
  top1: string[];
  /** The layer where the position's top-1 settles, or -1. */
  settles: number;
}

export class RankPanel {
  readonly element: HTMLElement;
  private readonly head: HTMLElement;
  private readonly sub: HTMLElement;
  private readonly list: HTMLOListElement;
  private readonly topkTitle: HTMLElement;
  private readonly topk: HTMLOListElement;
  private readonly card: ChartCard;
  private items: { li: HTMLLIElement; rank: Text; prob: Text; top1: Text }[] = [];
  private labels: readonly string[] = [];
  private readonly choice: Select;
  private last: RankInfo | undefined;
  private chart: RankChart | undefined;
  private topkKey = "";

  constructor(
    private palette: Palette,
    onExport: ChartExport,
    rankToken: RankToken,
    onRankToken: (t: RankToken) => void,
    /** A token picked from the top-k list, to track. */
    private readonly onPick: (id: number) => void = () => undefined,
  ) {
    this.head = el("p", { class: "rank-caption", text: "Hover or select a cell." });
    this.sub = el("p", { class: "note" });
    this.choice = el("vscode-single-select", { id: "rank-token", attrs: { "aria-label": "Rank of" } });
    for (const [v, t] of [
      ["cell", "the cell's top-1"],
      ["final", "the final top-1"],
      ["target", "the target"],
    ] as const)
      this.choice.append(option(v, t));
    this.choice.value = rankToken;
    this.choice.addEventListener("change", () => onRankToken(this.choice.value as RankToken));
    this.card = new ChartCard("ranks", "Rank per layer", onExport);
    this.list = el("ol", { class: "rank-list", attrs: { "aria-label": "Rank at each layer" } });
    this.topkTitle = el("h3", { class: "card-title", text: "Top-k" });
    this.topk = el("ol", { class: "topk-list", attrs: { "aria-label": "Top-k tokens: click one to track it" } });
    this.topk.addEventListener("click", (e) => {
      const id = (e.target as HTMLElement).closest<HTMLElement>("[data-token-id]")?.dataset["tokenId"];
      if (id !== undefined) this.onPick(Number(id));
    });
    this.element = el(
      "aside",
      { id: "rank-panel", class: "card rank-panel", attrs: { "aria-label": "Token rank at every layer" } },
      el("h2", { class: "panel-title", text: "Token ranks" }),
      el("label", { class: "control", attrs: { for: "rank-token" } }, el("span", { class: "control-label", text: "Rank of" }), this.choice),
      this.head,
      this.sub,
      this.card.element,
      el("div", { class: "rank-list-head", attrs: { "aria-hidden": "true" } }, el("span", { text: "layer" }), el("span", { text: "rank" }), el("span", { text: "prob." }), el("span", { text: "top-1 there" })),
      this.list,
      this.topkTitle,
      this.topk,
    );
  }

  get chartCard(): ChartCard {
    return this.card;
  }

  setPalette(palette: Palette): void {
    this.palette = palette;
    this.chart = undefined;
    if (this.last) this.show(this.last);
  }

  /** Makes one list item per layer for a record's layer labels. */
  setLayers(labels: readonly string[]): void {
    this.labels = labels;
    this.items = labels.map((label, l) => {
      // Text nodes kept and rewritten only when their text changes: a hover then invalidates
      // only what differs from the previous one.
      const rank = document.createTextNode("");
      const prob = document.createTextNode("");
      const top1 = document.createTextNode("");
      const li = el("li", { attrs: { "data-layer": l } }, el("span", { class: "layer", text: label }), el("span", { class: "rank" }, rank), el("span", { class: "prob" }, prob), el("span", { class: "top1", attrs: { "aria-label": "top-1 there" } }, top1));
      return { li, rank, prob, top1 };
    });
    this.list.replaceChildren(...this.items.map((i) => i.li));
    this.last = undefined;
    this.chart = undefined;
  }

  show(info: RankInfo): void {
    this.last = info;
    if (this.head.textContent !== info.caption) this.head.textContent = info.caption;
    const { ranks } = info;
    this.sub.textContent = ranks
      ? info.settles >= 0
        ? `settles at ${this.labels[info.settles] ?? info.settles}: top-1 from there to the last layer`
        : "does not settle: not the top-1 at the last layer"
      : (info.missing ?? "");
    for (let l = 0; l < this.items.length; l++) {
      const item = this.items[l];
      item.li.classList.toggle("current", l === info.layer);
      setText(item.rank, ranks ? `rank ${ranks.rank[l]}` : "rank –");
      setText(item.prob, ranks ? `p ${formatNumber(ranks.prob[l])}` : "");
      setText(item.top1, visibleToken(info.top1[l] ?? ""));
    }
    if (ranks) {
      this.chart ??= new RankChart(this.labels.length, this.palette, this.labels);
      this.chart.update(ranks, info.layer);
      if (this.card.chart !== this.chart.svg) this.card.set(this.chart.svg);
    } else {
      this.card.set(null, info.missing);
    }
    this.topkTitle.textContent = `Top-${info.topk.length} at ${this.labels[info.layer] ?? info.layer}`;
    const key = info.topk.map((t) => `${t.id}:${t.prob}`).join();
    if (key === this.topkKey) return;
    this.topkKey = key;
    this.topk.replaceChildren(
      ...info.topk.map((t) =>
        el(
          "li",
          {},
          el("button", { class: "pick", title: `Track ${visibleToken(t.text)} (token ${t.id}) across layers`, attrs: { type: "button", "data-token-id": t.id } }, el("span", { class: "token", text: visibleToken(t.text) }), el("span", { class: "prob", text: formatNumber(t.prob) })),
        ),
      ),
    );
  }
}

function setText(node: Text, value: string): void {
  if (node.data !== value) node.data = value;
}

/**
 * The rank-per-layer chart, updated in place on every hover: one path, one dot per layer, and
 * the y axis redrawn only when its domain changes. (Rebuilding the SVG per hover cost more than
 * everything else the hover does.)
 */
class RankChart {
  readonly svg: SVGSVGElement;
  private readonly path: SVGPathElement;
  private readonly dots: SVGCircleElement[];
  private readonly rule: SVGLineElement;
  private readonly yAxis: SVGGElement;
  private readonly title: SVGTitleElement;
  private readonly x: (l: number) => number;
  private top = 0;
  private static readonly W = 300;
  private static readonly H = 150;
  private static readonly M = { top: 8, right: 12, bottom: 34, left: 44 };

  constructor(
    layers: number,
    private readonly palette: Palette,
    labels: readonly string[] = [],
  ) {
    const { W, H, M } = RankChart;
    this.svg = svgEl("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart", "font-family": palette.fontFamily, "font-size": 10, color: palette.foreground });
    this.title = svgEl("title");
    this.svg.append(this.title);
    const x = scaleLinear().domain([0, Math.max(1, layers - 1)]).range([M.left, W - M.right]);
    this.x = (l) => x(l);
    const xAxis = svgEl("g", { transform: `translate(0,${H - M.bottom})` });
    const ticks = layerTicks(layers, W - M.left - M.right, 60);
    select(xAxis).call(
      axisBottom(x)
        .tickValues(ticks)
        .tickFormat((d) => labels[Number(d)] ?? String(d)),
    );
    select(xAxis)
      .selectAll<SVGTextElement, unknown>(".tick text")
      .each(function (_, i) {
        if (ticks.length > 1 && i === 0) this.setAttribute("text-anchor", "start");
        else if (ticks.length > 1 && i === ticks.length - 1) this.setAttribute("text-anchor", "end");
      });
    this.yAxis = svgEl("g", { transform: `translate(${M.left},0)` });
    this.rule = svgEl("line", { y1: M.top, y2: H - M.bottom, stroke: palette.focus, "stroke-dasharray": "2,2" });
    this.path = svgEl("path", { fill: "none", stroke: palette.series[0], "stroke-width": 1.6 });
    this.svg.append(xAxis, this.yAxis, svgEl("text", { x: (M.left + W - M.right) / 2, y: H - 2, "text-anchor": "middle", fill: palette.muted }, "layer"), this.rule, this.path);
    // The list beside the chart reads every value out; the dots carry no titles of their own.
    this.dots = [];
    for (let l = 0; l < layers; l++) {
      const dot = svgEl("circle", { r: 2, fill: palette.series[0] });
      this.svg.append(dot);
      this.dots.push(dot);
    }
  }

  update(ranks: LayerRanks, layer: number): void {
    const { H, M } = RankChart;
    let worst = 10;
    for (const r of ranks.rank) if (r > worst) worst = r;
    const top = 10 ** Math.ceil(Math.log10(worst * 1.2));
    const y = scaleLog().domain([1, top]).range([H - M.bottom, M.top]).clamp(true);
    if (top !== this.top) {
      this.top = top;
      select(this.yAxis).call(axisLeft(y).ticks(4, "~s"));
    }
    const text = visibleToken(ranks.text);
    this.title.textContent = `Rank of ${text} per layer`;
    this.svg.setAttribute("aria-label", `Rank of ${text} per layer`);
    let d = "";
    for (let l = 0; l < this.dots.length; l++) {
      const r = ranks.rank[l];
      const px = this.x(l).toFixed(1);
      const py = y(Math.max(1, r)).toFixed(1);
      d += `${l ? "L" : "M"}${px},${py}`;
      this.dots[l].setAttribute("cx", px);
      this.dots[l].setAttribute("cy", py);
    }
    this.path.setAttribute("d", d);
    const rx = this.x(layer).toFixed(1);
    this.rule.setAttribute("x1", rx);
    this.rule.setAttribute("x2", rx);
  }
}
