/**
 * The comparison view of a finished sweep: per grouping key, one line per (variant, group value)
 * for the per-layer means, the convergence-layer distribution, accuracy and the attention share
 * on the image. Colour follows the group value, the dash the mask variant, so "the same group
 * with and without a mask" reads as one colour, solid against dashed.
 */
import { ChartCard, type ChartExport } from "./chartCard";
import { barChart, type LineSeries, lineChart } from "./charts";
import { button, el, option, type Select, select } from "./dom";
import { type ComparisonField, comparisonAccuracy, comparisonKeys, comparisonSeries } from "./model";
import type { ComparisonMessage } from "../shared/webviewProtocol";
import type { Palette } from "./theme";

const CHARTS: { name: string; title: string; yTitle: string; field: ComparisonField; log?: boolean; blocks?: boolean; yDomain?: [number, number] }[] = [
  { name: "cmp-entropy", title: "Mean entropy per layer (nats)", yTitle: "entropy (nats)", field: "meanEntropy" },
  { name: "cmp-target-prob", title: "Mean target probability per layer", yTitle: "target probability", field: "meanTargetProb", yDomain: [0, 1] },
  { name: "cmp-target-rank", title: "Mean target rank per layer (log)", yTitle: "target rank (log)", field: "meanTargetRank", log: true },
  { name: "cmp-kl", title: "Mean KL(final ‖ layer) per layer", yTitle: "KL (nats)", field: "meanKl" },
  { name: "cmp-convergence", title: "Where the answer settles (share of items per layer)", yTitle: "share of items", field: "convergenceShare", yDomain: [0, 1] },
  { name: "cmp-image-share", title: "Attention share on the image per block", yTitle: "image share", field: "meanImageShare", blocks: true },
];

export class ComparisonView {
  readonly element: HTMLElement;
  private readonly heading: HTMLElement;
  private readonly keySelect: Select;
  private readonly keyWrapper: HTMLElement;
  private readonly cards: Map<string, ChartCard>;
  private readonly accuracy: ChartCard;

  constructor(onExport: ChartExport, onKey: (key: string) => void, onExportData: (format: "csv" | "json") => void) {
    this.heading = el("p", { class: "note" });
    const s = select("group-key", "Group by", [["all", "all"]], "all");
    this.keySelect = s.select;
    this.keyWrapper = s.wrapper;
    this.keySelect.addEventListener("change", () => onKey(this.keySelect.value));
    this.cards = new Map(CHARTS.map((c) => [c.name, new ChartCard(c.name, c.title, onExport)]));
    this.accuracy = new ChartCard("cmp-accuracy", "Accuracy", onExport);
    // the aggregates themselves, as a sweep writes them (aggregates.csv / aggregates.json)
    const exportData = (format: "csv" | "json") => {
      const b = button(`Export ${format.toUpperCase()}`, { title: `Export the aggregates as ${format.toUpperCase()}`, attrs: { "data-export": format, "data-chart": "aggregates" } });
      b.addEventListener("click", () => onExportData(format));
      return b;
    };
    this.element = el(
      "section",
      { id: "comparison", class: "comparison", attrs: { "aria-label": "Sweep comparison" } },
      el("div", { class: "toolbar" }, this.heading, this.keyWrapper, el("div", { class: "export-buttons" }, exportData("csv"), exportData("json"))),
      el("div", { class: "cards" }, this.accuracy.element, ...[...this.cards.values()].map((c) => c.element)),
    );
  }

  card(name: string): ChartCard | undefined {
    return name === this.accuracy.name ? this.accuracy : this.cards.get(name);
  }

  render(message: ComparisonMessage, key: string, palette: Palette): void {
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
    const acc = comparisonAccuracy(aggregates, chosen);
    // a median between two layers reads "block 3–4" (or "embeddings–block 1")
    const layerName = (m: number) => {
      if (Number.isInteger(m)) return layerLabels[m] ?? String(m);
      const [lo, hi] = [layerLabels[Math.floor(m)] ?? String(Math.floor(m)), layerLabels[Math.ceil(m)] ?? String(Math.ceil(m))];
      return /^block \d+$/u.test(lo) && /^block \d+$/u.test(hi) ? `${lo}–${hi.slice(6)}` : `${lo}–${hi}`;
    };
    this.accuracy.draw((width) =>
      barChart({
        title: "Accuracy",
        bars: acc.map((a, i) => ({
          label: a.label,
          value: a.accuracy,
          note: a.scored ? `of ${a.scored}; median settles at ${layerName(a.medianConvergenceLayer)}` : "no expected answers",
          color: style(aggregates.groups.filter((g) => g.key === chosen)[i]?.variant ?? "", aggregates.groups.filter((g) => g.key === chosen)[i]?.value ?? "").color,
        })),
        palette,
        width,
        max: 1,
        format: (v) => `${(100 * v).toFixed(1)}%`,
      }),
    );
  }
}
