/**
 * The comparison view of a finished sweep: per grouping key, one line per (variant, group value)
 * for the per-layer means, the convergence-layer distribution, accuracy and the attention share
 * on the image. Colour follows the group value, the dash the mask variant, so "the same group
 * with and without a mask" reads as one colour, solid against dashed.
 */
import { ChartCard, type ChartExport } from "./chartCard";
import { barChart, type LineSeries, lineChart } from "./charts";
import { bandChart, groupedBars, intervalBars } from "./compareCharts";
import { accuracyBars, baselineOf, differenceSeries, filterItems, type ItemFilter, variantLines } from "./comparisonModel";
import { button, el, formatNumber, option, type Select, select } from "./dom";
import { type ComparisonField, comparisonKeys, comparisonSeries } from "./model";
import type { DifferenceField } from "../shared/sweepCompare";
import type { ComparisonMessage } from "../shared/webviewProtocol";
import type { Palette } from "./theme";

const CHARTS: { name: string; title: string; yTitle: string; field: ComparisonField; log?: boolean; blocks?: boolean; yDomain?: [number, number] }[] = [
  { name: "cmp-entropy", title: "Mean entropy per layer (nats)", yTitle: "entropy (nats)", field: "meanEntropy" },
  { name: "cmp-target-prob", title: "Mean target probability per layer", yTitle: "target probability", field: "meanTargetProb", yDomain: [0, 1] },
  { name: "cmp-target-rank", title: "Mean target rank per layer (log)", yTitle: "target rank (log)", field: "meanTargetRank", log: true },
  { name: "cmp-kl", title: "Mean KL(final ‖ layer) per layer", yTitle: "KL (nats)", field: "meanKl" },
  { name: "cmp-image-share", title: "Attention share on the image per block", yTitle: "image share", field: "meanImageShare", blocks: true },
];

/** The change against the baseline, per statistic: median over items with its interquartile band. */
const DIFFERENCES: { name: string; field: DifferenceField; title: string; yTitle: string }[] = [
  { name: "cmp-diff-target-prob", field: "targetProb", title: "Change in the answer's probability", yTitle: "Δ probability" },
  { name: "cmp-diff-rank", field: "logTargetRank", title: "Change in the answer's rank (log10)", yTitle: "Δ log10 rank" },
  { name: "cmp-diff-entropy", field: "entropy", title: "Change in entropy (nats)", yTitle: "Δ entropy" },
  { name: "cmp-diff-kl", field: "kl", title: "Change in KL(final ‖ layer)", yTitle: "Δ KL" },
];

/** Rows the per-item table draws at once; the rest come with "Show more". */
const ITEM_PAGE = 200;

export class ComparisonView {
  readonly element: HTMLElement;
  private readonly heading: HTMLElement;
  private readonly keySelect: Select;
  private readonly keyWrapper: HTMLElement;
  private readonly cards: Map<string, ChartCard>;
  private readonly differenceCards: Map<string, ChartCard>;
  private readonly accuracy: ChartCard;
  private readonly convergence: ChartCard;
  private readonly variantsEl: HTMLElement;
  private readonly differencesEl: HTMLElement;
  private readonly itemsEl: HTMLElement;
  private readonly itemFilter: Select;
  private readonly itemFilterWrapper: HTMLElement;
  private message: ComparisonMessage | null = null;
  private shownItems = ITEM_PAGE;

  constructor(onExport: ChartExport, onKey: (key: string) => void, onExportData: (format: "csv" | "json") => void, private readonly onOpenItem: (id: string) => void = () => undefined) {
    this.heading = el("p", { class: "note" });
    const s = select("group-key", "Group by", [["all", "all"]], "all");
    this.keySelect = s.select;
    this.keyWrapper = s.wrapper;
    this.keySelect.addEventListener("change", () => onKey(this.keySelect.value));
    this.cards = new Map(CHARTS.map((c) => [c.name, new ChartCard(c.name, c.title, onExport)]));
    this.differenceCards = new Map(DIFFERENCES.map((d) => [d.name, new ChartCard(d.name, d.title, onExport)]));
    this.accuracy = new ChartCard("cmp-accuracy", "Accuracy, with 95% intervals", onExport);
    this.convergence = new ChartCard("cmp-convergence", "Where the answer settles (share of items per layer)", onExport);
    // the aggregates themselves, as a sweep writes them (aggregates.csv / aggregates.json)
    const exportData = (format: "csv" | "json") => {
      const b = button(`Export ${format.toUpperCase()}`, { title: `Export the aggregates as ${format.toUpperCase()}`, attrs: { "data-export": format, "data-chart": "aggregates" } });
      b.addEventListener("click", () => onExportData(format));
      return b;
    };
    this.variantsEl = el("section", { id: "cmp-variants", class: "card cmp-variants", attrs: { "aria-label": "Variants" } });
    this.differencesEl = el("section", { id: "cmp-differences", class: "cmp-differences", attrs: { "aria-label": "Change against the baseline" } });
    const f = select("item-filter", "Show", [["all", "all items"]], "all");
    this.itemFilter = f.select;
    this.itemFilterWrapper = f.wrapper;
    this.itemFilter.addEventListener("change", () => {
      this.shownItems = ITEM_PAGE;
      this.renderItems();
    });
    this.itemsEl = el("section", { id: "cmp-items", class: "card cmp-items", attrs: { "aria-label": "Items" } });
    this.element = el(
      "section",
      { id: "comparison", class: "comparison", attrs: { "aria-label": "Sweep comparison" } },
      el("div", { class: "toolbar" }, this.heading, this.keyWrapper, el("div", { class: "export-buttons" }, exportData("csv"), exportData("json"))),
      el("div", { class: "cards" }, this.accuracy.element, this.variantsEl),
      this.differencesEl,
      el("div", { class: "cards" }, this.convergence.element, ...[...this.cards.values()].map((c) => c.element)),
      this.itemsEl,
    );
  }

  card(name: string): ChartCard | undefined {
    if (name === this.accuracy.name) return this.accuracy;
    if (name === this.convergence.name) return this.convergence;
    return this.cards.get(name) ?? this.differenceCards.get(name);
  }

  render(message: ComparisonMessage, key: string, palette: Palette): void {
    this.message = message;
    const { aggregates, layerLabels } = message;
    const variantsCount = new Set(aggregates.groups.map((g) => g.variant)).size;
    const items = aggregates.groups.filter((g) => g.key === "all").reduce((n, g) => n + g.n, 0);
    this.heading.textContent = `${items} items over ${variantsCount} variant${variantsCount === 1 ? "" : "s"}; solid and dashed lines are the same group under different variants.`;
    const keys = comparisonKeys(aggregates);
    const chosen = keys.includes(key) ? key : (keys[0] ?? "all");
    this.keySelect.replaceChildren(...keys.map((k) => option(k, k)));
    this.keySelect.value = chosen;
    this.keyWrapper.hidden = keys.length < 2;

    const variants = [...new Set(aggregates.groups.map((g) => g.variant))];
    const values = [...new Set(aggregates.groups.filter((g) => g.key === chosen).map((g) => g.value))];
    const style = (variant: string, value: string) => {
      const byValue = chosen === "all";
      const colourIndex = byValue ? variants.indexOf(variant) : values.indexOf(value);
      return { color: palette.series[colourIndex % palette.series.length], dashed: !byValue && variants.indexOf(variant) > 0 };
    };
    for (const c of CHARTS) {
      const series: LineSeries[] = comparisonSeries(aggregates, c.field, chosen).map((s) => ({ label: `${s.label} (n=${s.n})`, values: s.values, ...style(s.variant, s.value) }));
      const labels = c.blocks ? layerLabels.slice(1) : layerLabels;
      this.cards.get(c.name)?.draw(
        (width) =>
          series.length
            ? lineChart({ title: c.title, yTitle: c.yTitle, series, xLabels: labels, palette, log: c.log, yDomain: c.yDomain, xStart: c.blocks ? 1 : 0, xTitle: c.blocks ? "decoder block" : "layer", width, height: 220 + 12 * Math.min(6, series.length) })
            : null,
        series.length ? undefined : "No groups for this key.",
      );
    }
    const settle = comparisonSeries(aggregates, "convergenceShare", chosen);
    this.convergence.draw(
      (width) =>
        settle.length
          ? groupedBars({ title: "Where the answer settles", series: settle.map((s) => ({ label: `${s.label} (n=${s.n})`, values: s.values, color: style(s.variant, s.value).color })), xLabels: layerLabels, palette, yTitle: "share of items", width })
          : null,
      settle.length ? undefined : "No groups for this key.",
    );

    const acc = accuracyBars(aggregates, chosen);
    const scoredAny = acc.some((a) => a.scored > 0);
    this.accuracy.draw((width) =>
      scoredAny
        ? intervalBars({
            title: "Accuracy with 95% intervals (Wilson)",
            bars: acc.map((a) => ({ label: a.label, value: a.accuracy, interval: a.interval, note: a.scored ? `n=${a.scored}` : "no expected answers", color: style(a.variant, a.value).color })),
            palette,
            width,
            axisTitle: "share of scored items answered correctly",
          })
        : barChart({ title: "Accuracy", bars: acc.map((a) => ({ label: a.label, value: null, note: "no expected answers", color: style(a.variant, a.value).color })), palette, width }),
    );
    this.renderVariants(message);
    this.renderDifferences(message, chosen, palette, style);
    const filters: [string, string][] = [["all", "all items"], ["wrong", "wrong answers"], ["right", "right answers"], ...variants.map((v): [string, string] => [`variant:${v}`, `variant ${v}`])];
    const previous = this.itemFilter.value;
    this.itemFilter.replaceChildren(...filters.map(([v, t]) => option(v, t)));
    this.itemFilter.value = filters.some(([v]) => v === previous) ? previous : "all";
    this.renderItems();
  }

  private renderVariants(message: ComparisonMessage): void {
    const lines = variantLines(message.aggregates);
    if (!lines) {
      this.variantsEl.hidden = true;
      return;
    }
    this.variantsEl.hidden = false;
    const pct = (v: number | null) => (v === null ? "n/a" : `${(100 * v).toFixed(1)}%`);
    const head = el("tr", {}, ...["variant", "masked heads", "items", "accuracy (95% interval)", "change"].map((t) => el("th", { text: t, attrs: { scope: "col" } })));
    const body = lines.map((l) =>
      el(
        "tr",
        { attrs: { "data-variant": l.variant } },
        el("th", { text: l.baseline ? `${l.variant} (baseline)` : l.variant, attrs: { scope: "row" } }),
        el("td", { text: l.masked }),
        el("td", { class: "num", text: l.scored === l.n ? String(l.n) : `${l.n} (${l.scored} scored)` }),
        el("td", { class: "num", text: l.interval ? `${pct(l.accuracy)} (${pct(l.interval[0])} to ${pct(l.interval[1])})` : pct(l.accuracy) }),
        el("td", { class: "num", text: l.baseline ? "" : l.delta === null ? "n/a" : `${l.delta >= 0 ? "+" : "−"}${(100 * Math.abs(l.delta)).toFixed(1)} points` }),
      ),
    );
    this.variantsEl.replaceChildren(el("h3", { class: "card-title", text: "Variants" }), el("table", { class: "data-table" }, el("thead", {}, head), el("tbody", {}, ...body)));
  }

  private renderDifferences(message: ComparisonMessage, key: string, palette: Palette, style: (variant: string, value: string) => { color: string; dashed: boolean }): void {
    const base = baselineOf(message.aggregates);
    const any = (message.aggregates.differences ?? []).length > 0;
    if (!any) {
      const why = message.aggregates.variants ? "The sweep has one variant: there is no baseline to compare against." : "These aggregates were written before the change against the baseline was; run the sweep again to see it.";
      this.differencesEl.replaceChildren(el("p", { class: "note", text: why }));
      return;
    }
    this.differencesEl.replaceChildren(
      el("p", { class: "note", text: `Each line is the median over items of (variant − ${base ?? "baseline"}) for the same item, per layer; the band is the interquartile range.` }),
      el("div", { class: "cards" }, ...[...this.differenceCards.values()].map((c) => c.element)),
    );
    for (const d of DIFFERENCES) {
      const series = differenceSeries(message.aggregates, d.field, key);
      this.differenceCards.get(d.name)?.draw(
        (width) => (series.length ? bandChart({ title: `${d.title} against ${base ?? "the baseline"}`, series: series.map((s) => ({ ...s, ...style(s.variant, s.value) })), xLabels: message.layerLabels, palette, yTitle: d.yTitle, width }) : null),
        series.length ? undefined : "No groups for this key.",
      );
    }
  }

  private renderItems(): void {
    const items = this.message?.items;
    if (!items) {
      this.itemsEl.replaceChildren(el("h3", { class: "card-title", text: "Items" }), el("p", { class: "note", text: "The results folder's results.jsonl could not be read: no per-item table." }));
      return;
    }
    const layerLabels = this.message?.layerLabels ?? [];
    const shown = filterItems(items, this.itemFilter.value as ItemFilter);
    const groupKeys = [...new Set(items.flatMap((i) => Object.keys(i.groups)))].sort();
    const head = el("tr", {}, ...["#", "image", "prompt", "variant", ...groupKeys, "expected", "answer", "", "settles at", "p(answer)", ""].map((t) => el("th", { text: t, attrs: { scope: "col" } })));
    const rows = shown.slice(0, this.shownItems).map((i) => {
      const open = button("Open", { class: "small", title: `Open item ${i.index + 1}'s full record in a run panel`, attrs: { "data-open-item": i.id } });
      open.addEventListener("click", () => this.onOpenItem(i.id));
      return el(
        "tr",
        { class: i.correct === false ? "wrong" : "", attrs: { "data-item": i.id } },
        el("td", { class: "num", text: String(i.index + 1) }),
        el("td", { text: i.image ?? "(text only)" }),
        el("td", { text: i.promptName }),
        el("td", { text: i.variant }),
        ...groupKeys.map((k) => el("td", { text: i.groups[k] ?? "" })),
        el("td", { text: i.expected ?? "" }),
        el("td", { class: "answer", text: i.generated === "" ? "(nothing)" : i.generated }),
        el("td", { text: i.correct === null ? "" : i.correct ? "✓" : "✗", attrs: { "aria-label": i.correct === null ? "not scored" : i.correct ? "right" : "wrong" } }),
        el("td", { text: layerLabels[i.convergenceLayer] ?? String(i.convergenceLayer) }),
        el("td", { class: "num", text: formatNumber(i.finalTargetProb, 3) }),
        el("td", {}, open),
      );
    });
    const more = shown.length > this.shownItems ? button(`Show more (${shown.length - this.shownItems} left)`, { class: "small" }) : null;
    more?.addEventListener("click", () => {
      this.shownItems += ITEM_PAGE;
      this.renderItems();
    });
    this.itemsEl.replaceChildren(
      el("div", { class: "card-head" }, el("h3", { class: "card-title", text: `Items (${shown.length} of ${items.length})` }), this.itemFilterWrapper),
      el("div", { class: "table-scroll" }, el("table", { class: "data-table" }, el("thead", {}, head), el("tbody", {}, ...rows))),
      ...(more ? [more] : []),
    );
  }
}
