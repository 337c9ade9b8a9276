/**
 * The layers x positions heatmap on one <canvas id="heatmap">. Only the columns in view are
 * drawn: the canvas sticks to the left of a scroller whose width stands for every position, so
 * a 600-position record costs what the visible part costs. Hover and selection outlines live on
 * a second canvas above it (pointer-events: none), so moving the pointer never redraws cells.
 *
 * Keyboard: arrows move the selection (Up = a later layer; Shift moves 10 positions), Home/End go
 * to the first/last position, PageUp/PageDown to the final layer/embeddings, Enter or Space
 * activates the cell (it becomes the overlay's layer).
 */
import { rampIndex } from "./color";
import { el } from "./dom";
import { clip, HEATMAP_X_TITLE, HEATMAP_Y_TITLE } from "./heatmapSvg";
import { answerPosition, convergenceLayers, type LensView, type Metric, METRIC_LABELS, metricScale, topkAt, visibleToken } from "./model";
import type { Palette } from "./theme";

export interface HeatmapCallbacks {
  /** The pointer is over cell (layer, p), or left the cells (-1, -1). */
  onHover(layer: number, p: number): void;
  /** The selection moved (click or keys). */
  onSelect(layer: number, p: number): void;
  /** Enter, Space or double click on the selection. */
  onActivate(layer: number, p: number): void;
}

/** Room for the rotated "layer" title and the layer names. */
const GUTTER_LEFT = 100;
/** Room for the answer column's label above the cells. */
const PAD_TOP = 16;
/** Room for the rotated token labels and the position axis title. */
const GUTTER_BOTTOM = 86;

/** Room for the position axis's title (about 46 characters of 11 px text). */
const X_TITLE_WIDTH = 290;
/** Cell width below which cells touch (no 1px gap). */
const GAP_MIN = 6;

export class HeatmapView {
  readonly element: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  private readonly marks: HTMLCanvasElement;
  private readonly scroller: HTMLDivElement;
  private readonly stage: HTMLDivElement;
  private readonly sizer: HTMLDivElement;
  private readonly live: HTMLElement;
  private view: LensView | undefined;
  private metric: Metric = "prob";
  private withEmbeddings = false;
  /** The analysed position that predicts the first generated token (the column marked "answer"). */
  private answerP = -1;
  private settle: Int32Array = new Int32Array(0);
  private readonly tip: HTMLElement;
  private readonly tipHead: HTMLElement;
  private readonly tipValue: HTMLElement;
  private readonly tipList: HTMLOListElement;
  private zoom = 0;
  private cellW = 12;
  private cellH = 16;
  /** Whether the tooltip shows the keyboard's cell (it closes on blur) rather than the pointer's. */
  private keyboardTip = false;
  private width = 0;
  private height = 0;
  private selection = { layer: -1, p: -1 };
  private hover = { layer: -1, p: -1 };
  private labels: string[] = [];
  private frame = 0;
  /**
   * The scroller's width and scroll offset, kept from ResizeObserver and scroll events: reading
   * them from the element would force a layout of the whole page in the middle of a render.
   */
  private knownWidth = 0;
  private scrollLeft = 0;

  constructor(
    private palette: Palette,
    private readonly callbacks: HeatmapCallbacks,
  ) {
    this.canvas = el("canvas", {
      id: "heatmap",
      class: "heatmap-canvas",
      attrs: { tabindex: 0, role: "application", "aria-roledescription": "heatmap", "aria-label": "Logit lens heatmap: layers by positions. Arrow keys move the selected cell; Enter uses its layer for the image overlay." },
    });
    this.marks = el("canvas", { class: "heatmap-marks", attrs: { "aria-hidden": "true" } });
    this.stage = el("div", { class: "heatmap-stage" }, this.canvas, this.marks);
    this.sizer = el("div", { class: "heatmap-sizer" });
    this.scroller = el("div", { class: "heatmap-scroll" }, this.stage, this.sizer);
    this.live = el("div", { class: "visually-hidden", attrs: { "aria-live": "polite", id: "heatmap-live" } });
    this.tipHead = el("div", { class: "tip-head" });
    this.tipValue = el("div", { class: "tip-value" });
    this.tipList = el("ol", { class: "tip-topk" });
    this.tip = el("div", { class: "heatmap-tip", attrs: { "aria-hidden": "true" } }, this.tipHead, this.tipValue, this.tipList);
    this.tip.hidden = true;
    this.element = el("div", { class: "heatmap" }, this.scroller, this.tip, this.live);
    this.canvas.setAttribute("aria-describedby", "heatmap-live");
    // Resolve the fonts while the panel waits for its first record, not during its first draw.
    const ctx = this.canvas.getContext("2d");
    if (ctx) {
      for (const font of [`11px ${palette.fontFamily}`, `11px ${palette.monoFamily}`]) {
        ctx.font = font;
        ctx.measureText("Ag·↵");
      }
    }

    this.scroller.addEventListener("scroll", () => {
      this.scrollLeft = this.scroller.scrollLeft;
      this.schedule();
    });
    this.canvas.addEventListener("mousemove", (e) => {
      this.keyboardTip = false;
      this.pointer(e.offsetX, e.offsetY);
      this.placeTip(e.offsetX, e.offsetY);
    });
    this.canvas.addEventListener("mouseleave", () => this.setHover(-1, -1));
    this.canvas.addEventListener("click", (e) => {
      const cell = this.cellAt(e.offsetX, e.offsetY);
      if (cell) this.select(cell.layer, cell.p, false);
    });
    this.canvas.addEventListener("dblclick", (e) => {
      const cell = this.cellAt(e.offsetX, e.offsetY);
      if (cell) this.callbacks.onActivate(cell.layer, cell.p);
    });
    this.canvas.addEventListener("keydown", (e) => this.key(e));
    this.canvas.addEventListener("focus", () => {
      if (this.view && this.selection.layer < 0) this.select(this.view.layers - 1, this.view.positions - 1, true);
      this.drawMarks();
    });
    this.canvas.addEventListener("blur", () => {
      // a tooltip the keyboard opened goes with the focus
      if (this.keyboardTip) this.setHover(-1, -1);
      this.drawMarks();
    });
    new ResizeObserver((entries) => {
      const width = Math.round(entries[entries.length - 1]?.contentRect.width ?? 0);
      if (width > 0 && width !== this.knownWidth) {
        this.knownWidth = width;
        this.schedule(true);
      }
    }).observe(this.scroller);
  }

  setPalette(palette: Palette): void {
    this.palette = palette;
    this.render();
  }

  setRecord(view: LensView, metric: Metric, layer: number, p: number, withEmbeddings = this.withEmbeddings): void {
    this.view = view;
    this.metric = metric;
    this.withEmbeddings = withEmbeddings;
    this.answerP = answerPosition(view);
    this.settle = convergenceLayers(view);
    this.canvas.dataset["answer"] = String(this.answerP);
    this.canvas.dataset["metric"] = metric;
    this.canvas.dataset["layers"] = String(view.layers);
    this.canvas.dataset["positions"] = String(view.positions);
    this.labels = [];
    this.selection = { layer: Math.min(layer, view.layers - 1), p: Math.min(p, view.positions - 1) };
    this.hover = { layer: -1, p: -1 };
    this.render();
  }

  setMetric(metric: Metric): void {
    this.metric = metric;
    this.canvas.dataset["metric"] = metric;
    this.render();
  }

  /** Whether the colour range counts the embeddings row. */
  setRange(withEmbeddings: boolean): void {
    this.withEmbeddings = withEmbeddings;
    this.render();
  }

  /** Cell width in CSS pixels; 0 fits the record to the panel's width. */
  setZoom(zoom: number): void {
    this.zoom = zoom;
    this.render();
    this.scrollTo(this.selection.p);
  }

  setSelection(layer: number, p: number): void {
    this.selection = { layer, p };
    this.scrollTo(p);
    this.drawMarks();
  }

  /** Marks a cell as hovered from outside the heatmap (a patch of the picture); -1, -1 clears it. */
  markHover(layer: number, p: number): void {
    if (layer === this.hover.layer && p === this.hover.p) return;
    this.hover = { layer, p };
    if (p >= 0) this.scrollTo(p);
    this.drawMarks();
  }

  /** Lays out and draws the visible cells; returns the milliseconds it took. */
  render(): number {
    const start = performance.now();
    this.layout();
    this.draw();
    this.drawMarks();
    const ms = performance.now() - start;
    performance.measure("logitLens:heatmap", { start, end: start + ms });
    return ms;
  }

  /** The cell under a point of the canvas (CSS pixels), if any. */
  cellAt(x: number, y: number): { layer: number; p: number } | null {
    const v = this.view;
    if (!v) return null;
    const p = Math.floor((x - GUTTER_LEFT + this.scrollLeft) / this.cellW);
    const row = Math.floor((y - PAD_TOP) / this.cellH);
    if (x < GUTTER_LEFT || p < 0 || p >= v.positions || row < 0 || row >= v.layers) return null;
    return { layer: v.layers - 1 - row, p };
  }

  /** Where a cell's centre is on the canvas (for tests and benchmarks that hover it). */
  cellCentre(layer: number, p: number): { x: number; y: number } {
    const v = this.view;
    const rows = v ? v.layers : 0;
    return { x: GUTTER_LEFT + (p + 0.5) * this.cellW - this.scrollLeft, y: PAD_TOP + (rows - 1 - layer + 0.5) * this.cellH };
  }

  private schedule(relayout = false): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (relayout) this.layout();
      this.draw();
      this.drawMarks();
    });
  }

  private layout(): void {
    const v = this.view;
    if (!v) return;
    // Before the first ResizeObserver report (the view was hidden), estimate from the window as
    // media/webview.css lays the page out; the observer corrects it on the next frame.
    const estimate = window.innerWidth - 32 - 22 - (window.innerWidth > 760 ? 332 : 0);
    const available = Math.max(200, this.knownWidth || estimate);
    this.cellH = Math.max(10, Math.min(24, Math.floor(520 / v.layers)));
    this.cellW = this.zoom > 0 ? this.zoom : Math.max(3, Math.min(64, Math.floor((available - GUTTER_LEFT) / Math.max(1, v.positions))));
    const total = GUTTER_LEFT + v.positions * this.cellW;
    // never narrower than the position axis's title needs
    this.width = Math.min(available, Math.max(total, GUTTER_LEFT + X_TITLE_WIDTH));
    this.scrollLeft = Math.min(this.scrollLeft, Math.max(0, total - this.width));
    this.height = PAD_TOP + v.layers * this.cellH + GUTTER_BOTTOM;
    const dpr = window.devicePixelRatio || 1;
    for (const c of [this.canvas, this.marks]) {
      c.width = Math.round(this.width * dpr);
      c.height = Math.round(this.height * dpr);
      c.style.width = `${this.width}px`;
      c.style.height = `${this.height}px`;
    }
    this.stage.style.width = `${this.width}px`;
    this.stage.style.height = `${this.height}px`;
    this.sizer.style.width = `${total}px`;
    // Geometry for tests and benchmarks that point at a cell.
    Object.assign(this.canvas.dataset, { cellWidth: String(this.cellW), cellHeight: String(this.cellH), left: String(GUTTER_LEFT), top: String(PAD_TOP) });
    this.canvas.setAttribute("aria-label", `Logit lens heatmap, ${METRIC_LABELS[this.metric]}: ${v.layers} layers by ${v.positions} positions. Arrow keys move the selected cell; Enter uses its layer for the image overlay.`);
  }

  private text(id: number): string {
    let t = this.labels[id];
    if (t === undefined) {
      t = visibleToken(this.view?.record.tokenTexts[String(id)] ?? `#${id}`);
      this.labels[id] = t;
    }
    return t;
  }

  private visibleRange(): [number, number] {
    const v = this.view;
    if (!v) return [0, 0];
    const left = this.scrollLeft;
    const from = Math.max(0, Math.floor(left / this.cellW));
    const to = Math.min(v.positions, Math.ceil((left + this.width - GUTTER_LEFT) / this.cellW) + 1);
    return [from, to];
  }

  private draw(): void {
    const v = this.view;
    const ctx = this.canvas.getContext("2d");
    if (!v || !ctx) return;
    const { palette } = this;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = palette.background;
    ctx.fillRect(0, 0, this.width, this.height);
    const scale = metricScale(v, this.metric, this.withEmbeddings);
    const { intensity } = scale;
    const ramp = palette.ramps[this.metric];
    const P = v.positions;
    const L = v.layers;
    const cw = this.cellW;
    const ch = this.cellH;
    const gap = cw >= GAP_MIN ? 1 : 0;
    const left = this.scrollLeft;
    const [from, to] = this.visibleRange();
    const steps = ramp.colors.length;
    const labelFont = `${Math.min(11, palette.fontSize)}px ${palette.fontFamily}`;

    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER_LEFT, 0, this.width - GUTTER_LEFT, this.height);
    ctx.clip();
    // Cells grouped by colour: one fillStyle change per colour used, not per cell.
    const byColour = new Map<number, number[]>();
    for (let l = 0; l < L; l++) {
      const y = PAD_TOP + (L - 1 - l) * ch;
      for (let p = from; p < to; p++) {
        const k = rampIndex(intensity[l * P + p], steps);
        let list = byColour.get(k);
        if (!list) byColour.set(k, (list = []));
        list.push(GUTTER_LEFT + p * cw - left, y);
      }
    }
    for (const [k, list] of byColour) {
      ctx.fillStyle = ramp.colors[k];
      for (let i = 0; i < list.length; i += 2) ctx.fillRect(list[i], list[i + 1], cw - gap, ch - gap);
    }
    const fontPx = Math.min(12, ch - 3);
    // A monospace glyph is about 0.6 em wide; 4 px of margin keeps neighbouring cells' text apart.
    const chars = Math.floor((cw - 4) / (fontPx * 0.62));
    if (chars >= 2 && fontPx >= 8) {
      ctx.font = `${fontPx}px ${palette.monoFamily}`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      for (let l = 0; l < L; l++) {
        const y = PAD_TOP + (L - 1 - l) * ch + ch / 2;
        for (let p = from; p < to; p++) {
          const i = l * P + p;
          ctx.fillStyle = ramp.text[rampIndex(intensity[i], steps)];
          ctx.fillText(clip(this.text(v.top1Ids[i]), chars), GUTTER_LEFT + p * cw - left + cw / 2, y);
        }
      }
    }
    // Where each column settles: a bar under the first layer from which the top-1 is the final
    // layer's, in the cell's text colour (it reads on light and dark cells alike).
    const bar = Math.max(1, Math.min(3, Math.floor(ch / 6)));
    for (let p = from; p < to; p++) {
      const l = this.settle[p];
      if (l === undefined || l < 0) continue;
      ctx.fillStyle = ramp.text[rampIndex(intensity[l * P + p], steps)];
      ctx.fillRect(GUTTER_LEFT + p * cw - left, PAD_TOP + (L - l) * ch - gap - bar, cw - gap, bar);
    }
    // Where a layer's top-1 already is the token the model went on to generate.
    ctx.fillStyle = palette.segments.generated;
    const r = Math.max(1.5, Math.min(3, cw / 5));
    for (let p = from; p < to; p++) {
      if (v.predicts[p] < 0) continue;
      for (let l = 0; l < L; l++) {
        if (v.matches[l * P + p] !== 1) continue;
        ctx.beginPath();
        ctx.arc(GUTTER_LEFT + (p + 1) * cw - left - r - 1, PAD_TOP + (L - 1 - l) * ch + r + 1, r, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    // The answer's column: outlined, and labelled above the cells.
    const a = this.answerP;
    if (a >= from && a < to) {
      const x = GUTTER_LEFT + a * cw - left;
      ctx.strokeStyle = palette.foreground;
      ctx.lineWidth = 2;
      ctx.strokeRect(x - 1, PAD_TOP - 1, cw + 1, L * ch + 1);
      ctx.fillStyle = palette.foreground;
      ctx.font = `600 ${labelFont}`;
      ctx.textBaseline = "alphabetic";
      ctx.textAlign = x + cw / 2 < GUTTER_LEFT + 30 ? "left" : x + cw / 2 > this.width - 30 ? "right" : "center";
      const tx = ctx.textAlign === "left" ? x : ctx.textAlign === "right" ? x + cw : x + cw / 2;
      ctx.fillText("answer ▾", tx, PAD_TOP - 4);
    }
    // Token labels under the columns, rotated 60°: one every `every` columns, so that neighbours
    // stay at least a line apart (11 px text needs 11 / sin 60° ≈ 13 px between columns).
    const every = Math.max(1, Math.ceil(13 / cw));
    ctx.font = labelFont;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const base = PAD_TOP + L * ch + 4;
    for (let p = from - (from % every); p < to; p += every) {
      const token = v.record.tokens[v.record.positions[p]];
      if (!token) continue;
      ctx.save();
      ctx.translate(GUTTER_LEFT + p * cw - left + cw / 2, base);
      ctx.rotate(-Math.PI / 3);
      ctx.fillStyle = token.segment === "generated" ? palette.segments.generated : palette.foreground;
      ctx.font = p === a ? `600 ${labelFont}` : labelFont;
      ctx.fillText(clip(visibleToken(token.text), 10), 0, 0);
      ctx.restore();
    }
    ctx.restore();

    // Axis titles: the position axis under the visible cells, "layer" up the gutter.
    ctx.fillStyle = palette.muted;
    ctx.font = labelFont;
    ctx.textBaseline = "alphabetic";
    const cellsRight = Math.min(this.width, GUTTER_LEFT + (P * cw - left));
    // centred under the cells when they are wide enough, else from their left edge
    const centred = cellsRight - GUTTER_LEFT >= X_TITLE_WIDTH;
    ctx.textAlign = centred ? "center" : "left";
    ctx.fillText(HEATMAP_X_TITLE, centred ? (GUTTER_LEFT + cellsRight) / 2 : GUTTER_LEFT, this.height - 6);
    ctx.save();
    ctx.translate(12, PAD_TOP + (L * ch) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(HEATMAP_Y_TITLE, 0, 0);
    ctx.restore();

    // Layer names in the left gutter (every `rowEvery` rows, so that 11 px labels never overlap).
    ctx.fillStyle = palette.foreground;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const rowEvery = Math.max(1, Math.ceil(12 / ch));
    for (let l = 0; l < L; l++) {
      if (l % rowEvery !== 0 && l !== L - 1) continue;
      // the final layer is always named; the one below it gives way when they would touch
      if (l !== L - 1 && L - 1 - l < rowEvery) continue;
      ctx.fillText(v.record.layerLabels[l] ?? String(l), GUTTER_LEFT - 6, PAD_TOP + (L - 1 - l) * ch + ch / 2);
    }
  }

  private drawMarks(): void {
    const v = this.view;
    const ctx = this.marks.getContext("2d");
    if (!ctx) return;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    if (!v) return;
    const cellX = (p: number) => GUTTER_LEFT + p * this.cellW - this.scrollLeft;
    const cellY = (layer: number) => PAD_TOP + (v.layers - 1 - layer) * this.cellH;
    // The crosshair: the hovered row and column, edged across the whole grid.
    const { layer: hl, p: hp } = this.hover;
    if (hl >= 0 && hp >= 0) {
      ctx.save();
      ctx.beginPath();
      ctx.rect(GUTTER_LEFT, 0, this.width - GUTTER_LEFT, this.height);
      ctx.clip();
      ctx.strokeStyle = this.palette.foreground;
      ctx.globalAlpha = 0.55;
      ctx.lineWidth = 1;
      const x = cellX(hp);
      const y = cellY(hl);
      const right = Math.min(this.width, GUTTER_LEFT + v.positions * this.cellW - this.scrollLeft);
      const bottom = PAD_TOP + v.layers * this.cellH;
      ctx.beginPath();
      ctx.moveTo(GUTTER_LEFT, y + 0.5);
      ctx.lineTo(right, y + 0.5);
      ctx.moveTo(GUTTER_LEFT, y + this.cellH - 0.5);
      ctx.lineTo(right, y + this.cellH - 0.5);
      ctx.moveTo(x + 0.5, PAD_TOP);
      ctx.lineTo(x + 0.5, bottom);
      ctx.moveTo(x + this.cellW - 0.5, PAD_TOP);
      ctx.lineTo(x + this.cellW - 0.5, bottom);
      ctx.stroke();
      ctx.restore();
    }
    const outline = (layer: number, p: number, colour: string, width: number) => {
      if (layer < 0 || p < 0) return;
      const x = cellX(p);
      const y = cellY(layer);
      if (x + this.cellW < GUTTER_LEFT || x > this.width) return;
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.strokeRect(x + width / 2, y + width / 2, Math.max(1, this.cellW - width), Math.max(1, this.cellH - width));
      // The row's label, marked in the gutter.
      ctx.fillStyle = colour;
      ctx.fillRect(GUTTER_LEFT - 3, y + 1, 2, this.cellH - 2);
    };
    outline(hl, hp, this.palette.foreground, 1.5);
    outline(this.selection.layer, this.selection.p, this.palette.focus, document.activeElement === this.canvas ? 2.5 : 1.5);
  }

  /** The hovered cell's tooltip: where, the metric's value, and the cell's top-k. */
  private fillTip(layer: number, p: number): void {
    const v = this.view;
    if (!v || layer < 0 || p < 0) {
      this.tip.hidden = true;
      return;
    }
    const token = v.record.positions[p];
    const i = layer * v.positions + p;
    const value = metricScale(v, this.metric, this.withEmbeddings).values[i];
    this.tipHead.textContent = `${v.record.layerLabels[layer] ?? layer} · position ${token} “${visibleToken(v.record.tokens[token]?.text ?? "")}”${p === this.answerP ? " (answer)" : ""}`;
    this.tipValue.textContent = `${METRIC_LABELS[this.metric]}: ${Number(value.toPrecision(3))}${this.settle[p] === layer ? " · settles here" : ""}`;
    const topk = topkAt(v, layer, p);
    const items = this.tipList.children;
    for (let j = 0; j < topk.length; j++) {
      let li = items[j] as HTMLLIElement | undefined;
      if (!li) {
        li = el("li", {}, el("span", { class: "token" }), el("span", { class: "prob" }));
        this.tipList.append(li);
      }
      (li.firstChild as HTMLElement).textContent = visibleToken(topk[j].text);
      (li.lastChild as HTMLElement).textContent = topk[j].prob >= 0.001 ? topk[j].prob.toFixed(3) : topk[j].prob.toExponential(1);
    }
    while (this.tipList.children.length > topk.length) this.tipList.lastChild?.remove();
    this.tip.hidden = false;
  }

  /** Puts the tooltip beside the pointer, on the side with room (the canvas's CSS size is known: no layout read). */
  private placeTip(x: number, y: number): void {
    if (this.tip.hidden) return;
    const flip = x > this.width - 240;
    const below = y < this.height / 2;
    this.tip.style.transform = `translate(${flip ? `calc(${x - 14}px - 100%)` : `${x + 14}px`}, ${below ? `${y + 14}px` : `calc(${y - 10}px - 100%)`})`;
  }

  private pointer(x: number, y: number): void {
    const cell = this.cellAt(x, y);
    if (cell) this.setHover(cell.layer, cell.p);
    else this.setHover(-1, -1);
  }

  private setHover(layer: number, p: number): void {
    if (layer === this.hover.layer && p === this.hover.p) return;
    this.hover = { layer, p };
    this.fillTip(layer, p);
    this.drawMarks();
    this.callbacks.onHover(layer, p);
  }

  private select(layer: number, p: number, announce: boolean): void {
    const v = this.view;
    if (!v) return;
    const l = Math.max(0, Math.min(v.layers - 1, layer));
    const q = Math.max(0, Math.min(v.positions - 1, p));
    this.selection = { layer: l, p: q };
    this.scrollTo(q);
    this.drawMarks();
    if (announce) {
      const i = l * v.positions + q;
      const token = v.record.tokens[v.record.positions[q]];
      this.live.textContent = `${v.record.layerLabels[l]}, position ${v.record.positions[q]} (${visibleToken(token?.text ?? "")}): top-1 ${this.text(v.top1Ids[i])}, ${METRIC_LABELS[this.metric]} ${Number(metricScale(v, this.metric, this.withEmbeddings).values[i].toPrecision(3))}${l === this.settle[q] ? ", settles here" : ""}${q === this.answerP ? " (the answer's column)" : ""}`;
    }
    this.callbacks.onSelect(l, q);
  }

  private scrollTo(p: number): void {
    const v = this.view;
    if (!v || p < 0) return;
    const x = p * this.cellW;
    const view = this.width - GUTTER_LEFT;
    const left = this.scrollLeft;
    const max = Math.max(0, v.positions * this.cellW - view);
    const next = x < left ? x : x + this.cellW > left + view ? x + this.cellW - view : left;
    if (next === left) return;
    this.scrollLeft = Math.min(max, Math.max(0, next));
    this.scroller.scrollLeft = this.scrollLeft;
    this.schedule();
  }

  private key(e: KeyboardEvent): void {
    const v = this.view;
    if (!v) return;
    const { layer, p } = this.selection.layer < 0 ? { layer: v.layers - 1, p: v.positions - 1 } : this.selection;
    const step = e.shiftKey ? 10 : 1;
    const moves: Record<string, [number, number]> = {
      ArrowLeft: [layer, p - step],
      ArrowRight: [layer, p + step],
      ArrowUp: [layer + 1, p],
      ArrowDown: [layer - 1, p],
      Home: [layer, 0],
      End: [layer, v.positions - 1],
      PageUp: [v.layers - 1, p],
      PageDown: [0, p],
    };
    const move = moves[e.key];
    if (move) {
      e.preventDefault();
      this.select(move[0], move[1], true);
      // the keyboard's cell gets the pointer's tooltip (its top-k) and crosshair
      const { layer: l, p: q } = this.selection;
      this.keyboardTip = true;
      this.setHover(l, q);
      const c = this.cellCentre(l, q);
      this.placeTip(c.x, c.y);
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      this.callbacks.onActivate(layer, p);
    } else if (e.key === "Escape") {
      this.setHover(-1, -1);
    }
  }
}
