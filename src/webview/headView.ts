/**
 * The picked head's card: its attention pattern for the selected query over the key tokens
 * (each token shaded by its weight, as CircuitsVis draws it; the image tokens as one chip with
 * their total, since the picture shows them patch by patch), a colour bar, and "Mask this head
 * and rerun", whose answer is a before/after view of the answer's rank, probability and entropy
 * per layer (three line charts with both runs, and a one-line summary).
 */
import type { LensRecord, NumericBlock } from "../shared/lensRecord";
import { ChartCard, type ChartExport } from "./chartCard";
import { lineChart } from "./charts";
import { rampIndex } from "./color";
import { button, el } from "./dom";
import { imageShare, type MaskComparison, patternRow, type PickedHead, strongestKeys } from "./headModel";
import { type LensView, visibleToken } from "./model";
import type { Palette } from "./theme";

export interface HeadViewCallbacks {
  onMask(head: PickedHead): void;
  onClose(): void;
}

export class HeadView {
  readonly element: HTMLElement;
  private readonly heading: HTMLElement;
  private readonly pattern: HTMLElement;
  private readonly bar: HTMLElement;
  private readonly note: HTMLElement;
  private readonly maskButton: HTMLElement;
  private readonly compare: HTMLElement;
  private readonly summary: HTMLElement;
  readonly cards: ChartCard[];
  private head: PickedHead | null = null;
  private rows: NumericBlock | null = null;

  constructor(
    private palette: Palette,
    onExport: ChartExport,
    callbacks: HeadViewCallbacks,
  ) {
    this.heading = el("h2", { class: "panel-title", text: "Head" });
    this.pattern = el("div", { id: "head-pattern", class: "head-pattern", attrs: { role: "list", "aria-label": "Attention over the key tokens" } });
    this.bar = el("div", { class: "head-bar", attrs: { "aria-hidden": "true" } });
    this.note = el("p", { class: "note", attrs: { "aria-live": "polite" } });
    this.maskButton = button("Mask this head and rerun", { id: "mask-rerun", title: "Run this panel's prompt again with this head's output zeroed (plus any heads the run already masked), and compare" });
    this.maskButton.addEventListener("click", () => {
      if (this.head) callbacks.onMask(this.head);
    });
    const close = button("Close", { class: "small", id: "head-close", title: "Close the head's view" });
    close.addEventListener("click", () => callbacks.onClose());
    this.summary = el("p", { id: "mask-summary", class: "mask-summary" });
    this.cards = [new ChartCard("mask-rank", "The answer's rank per layer, without and with the head", onExport), new ChartCard("mask-prob", "The answer's probability per layer, without and with the head", onExport), new ChartCard("mask-entropy", "Entropy per layer at the answer's position, without and with the head", onExport)];
    this.compare = el("div", { id: "mask-compare", class: "mask-compare" }, this.summary, el("div", { class: "cards" }, ...this.cards.map((c) => c.element)));
    this.compare.hidden = true;
    this.element = el(
      "section",
      { id: "head-view", class: "card head-view", attrs: { "aria-label": "The picked head" } },
      el("div", { class: "card-head" }, this.heading, el("div", { class: "export-buttons" }, this.maskButton, close)),
      this.bar,
      this.pattern,
      this.note,
      this.compare,
    );
    this.element.hidden = true;
  }

  setPalette(palette: Palette): void {
    this.palette = palette;
  }

  get picked(): PickedHead | null {
    return this.head;
  }

  /** A head was picked: its pattern is on its way. */
  pick(head: PickedHead): void {
    this.head = head;
    this.rows = null;
    this.element.hidden = false;
    this.heading.textContent = `Block ${head.block + 1} · head ${head.head}`;
    this.pattern.replaceChildren();
    this.bar.replaceChildren();
    this.note.textContent = "Reading the head's attention…";
    this.compare.hidden = true;
  }

  close(): void {
    this.head = null;
    this.rows = null;
    this.element.hidden = true;
  }

  /** The head's rows [P, T] arrived (kept when they are the picked head's); render() draws them. */
  setPattern(head: PickedHead, rows: NumericBlock): void {
    if (!this.head || this.head.block !== head.block || this.head.head !== head.head) return;
    this.rows = rows;
  }

  /** The head's row for the selected query (null before the pattern came). */
  row(p: number): Float32Array | null {
    return this.rows ? patternRow(this.rows, p) : null;
  }

  /** Draws the pattern of query `p` (after a new selection too). */
  render(view: LensView, p: number): void {
    const head = this.head;
    const row = this.row(p);
    if (!head || !row) return;
    const record = view.record;
    const query = record.positions[p];
    this.heading.textContent = `Block ${head.block + 1} · head ${head.head}: attention of position ${query} “${visibleToken(record.tokens[query]?.text ?? "")}” over the tokens`;
    let max = 0;
    for (const v of row) if (v > max) max = v;
    const ramp = this.palette.ramp;
    const chip = (text: string, weight: number, title: string, attrs: Record<string, string>) => {
      const k = rampIndex(max > 0 ? Math.min(1, weight / max) : 0, ramp.length);
      return el("span", { class: "key-chip", text, title, attrs: { role: "listitem", style: `background:${ramp[k]};color:${this.palette.rampText[k]}`, ...attrs } });
    };
    const chips: HTMLElement[] = [];
    let imageRun: number[] = [];
    const flushImage = () => {
      if (!imageRun.length) return;
      let s = 0;
      let top = 0;
      for (const t of imageRun) {
        s += row[t];
        top = Math.max(top, row[t]);
      }
      chips.push(chip(`<image> × ${imageRun.length}: ${(100 * s).toFixed(1)}%`, top, `${imageRun.length} image tokens (${imageRun[0]}-${imageRun[imageRun.length - 1]}): ${(100 * s).toFixed(2)}% in all, at most ${(100 * top).toFixed(2)}% on one patch (see the picture)`, { "data-image": "true" }));
      imageRun = [];
    };
    for (let t = 0; t < row.length && t < record.tokens.length; t++) {
      const token = record.tokens[t];
      if (token.segment === "image") {
        imageRun.push(t);
        continue;
      }
      flushImage();
      const text = visibleToken(token.text);
      chips.push(chip(text || "∅", row[t], `token ${t} “${text}”: ${(100 * row[t]).toFixed(2)}%${t > query ? " (after the query: masked)" : ""}`, { "data-token": String(t), ...(t === query ? { "data-query": "true" } : {}) }));
    }
    flushImage();
    this.pattern.replaceChildren(...chips);
    // the colour bar: from 0 to the row's max
    const stops = [0, 0.25, 0.5, 0.75, 1].map((f) => `${ramp[rampIndex(f, ramp.length)]} ${100 * f}%`).join(", ");
    this.bar.replaceChildren(
      el("span", { class: "control-label", text: "attention weight" }),
      el("span", { class: "head-bar-tick", text: "0" }),
      el("span", { class: "head-bar-ramp", attrs: { style: `background:linear-gradient(to right, ${stops})` } }),
      el("span", { class: "head-bar-tick", text: `${(100 * max).toFixed(1)}%` }),
    );
    const strongest = strongestKeys(row, 3)
      .map((k) => `“${visibleToken(record.tokens[k.token]?.text ?? "")}” (token ${k.token}) ${(100 * k.weight).toFixed(1)}%`)
      .join(", ");
    this.note.textContent = `${(100 * imageShare(record, row)).toFixed(1)}% on the image (drawn on the picture); strongest keys: ${strongest || "none"}.`;
  }

  /** The masked run came back: the before/after view. */
  setComparison(cmp: MaskComparison | null, base: LensRecord): void {
    this.compare.hidden = false;
    if (!cmp) {
      this.summary.textContent = "The masked run has another shape than this one (or does not rank the answer), so the two cannot be compared layer by layer.";
      for (const c of this.cards) c.set(null);
      return;
    }
    this.summary.textContent = cmp.summary;
    const labels = base.layerLabels;
    const [withColour, withoutColour] = [this.palette.series[1] ?? this.palette.focus, this.palette.series[0] ?? this.palette.foreground];
    const series = (a: number[], b: number[] | null) => [
      { label: "this run", values: a, color: withoutColour },
      ...(b ? [{ label: "head masked", values: b, color: withColour, dashed: true }] : []),
    ];
    const answer = `“${visibleToken(cmp.answerText)}”`;
    this.cards[0].draw((width) => lineChart({ width, title: `The rank of ${answer} per layer, without and with the head`, series: series(cmp.rank.base, cmp.rank.masked), xLabels: labels, palette: this.palette, log: true, yTitle: "rank (log)" }));
    this.cards[1].draw((width) => lineChart({ width, title: `The probability of ${answer} per layer, without and with the head`, series: series(cmp.prob.base, cmp.prob.masked), xLabels: labels, palette: this.palette, yDomain: [0, 1], yTitle: "probability" }));
    this.cards[2].draw((width) => lineChart({ width, title: "Entropy per layer at the answer's position, without and with the head", series: series(cmp.entropy.base, cmp.entropy.masked), xLabels: labels, palette: this.palette, yTitle: "nats" }));
  }
}
