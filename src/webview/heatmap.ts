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
import { clip } from "./heatmapSvg";
import { type LensView, type Metric, METRIC_LABELS, metricScale, visibleToken } from "./model";
import type { Palette } from "./theme";

export interface HeatmapCallbacks {
  /** The pointer is over cell (layer, p), or left the cells (-1, -1). */
  onHover(layer: number, p: number): void;
  /** The selection moved (click or keys). */
  onSelect(layer: number, p: number): void;
  /** Enter, Space or double click on the selection. */
  onActivate(layer: number, p: number): void;
}

const GUTTER_LEFT = 84;
const PAD_TOP = 4;
const GUTTER_BOTTOM = 64;
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
  private zoom = 0;
  private cellW = 12;
  private cellH = 16;
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
    this.element = el("div", { class: "heatmap" }, this.scroller, this.live);
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
    this.canvas.addEventListener("mousemove", (e) => this.pointer(e.offsetX, e.offsetY));
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
    this.canvas.addEventListener("blur", () => this.drawMarks());
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

  setRecord(view: LensView, metric: Metric, layer: number, p: number): void {
    this.view = view;
    this.metric = metric;
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
    this.width = Math.min(available, total);
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
    const scale = metricScale(v, this.metric);
    const { intensity } = scale;
    const P = v.positions;
    const L = v.layers;
    const cw = this.cellW;
    const ch = this.cellH;
    const gap = cw >= GAP_MIN ? 1 : 0;
    const left = this.scrollLeft;
    const [from, to] = this.visibleRange();
    const steps = palette.ramp.length;

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
      ctx.fillStyle = palette.ramp[k];
      for (let i = 0; i < list.length; i += 2) ctx.fillRect(list[i], list[i + 1], cw - gap, ch - gap);
    }
    const fontPx = Math.min(12, ch - 3);
    const chars = Math.floor((cw - 4) / (fontPx * 0.62));
    if (chars >= 2 && fontPx >= 8) {
      ctx.font = `${fontPx}px ${palette.monoFamily}`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      for (let l = 0; l < L; l++) {
        const y = PAD_TOP + (L - 1 - l) * ch + ch / 2;
        for (let p = from; p < to; p++) {
          const i = l * P + p;
          ctx.fillStyle = palette.rampText[rampIndex(intensity[i], steps)];
          ctx.fillText(clip(this.text(v.top1Ids[i]), chars), GUTTER_LEFT + p * cw - left + cw / 2, y);
        }
      }
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
    // Token labels under the columns, rotated, as often as they fit.
    const every = Math.max(1, Math.ceil(11 / cw));
    ctx.font = `${Math.min(11, palette.fontSize)}px ${palette.fontFamily}`;
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
      ctx.fillText(clip(visibleToken(token.text), 10), 0, 0);
      ctx.restore();
    }
    ctx.restore();

    // Layer labels in the left gutter.
    ctx.fillStyle = palette.foreground;
    ctx.font = `${Math.min(11, palette.fontSize)}px ${palette.fontFamily}`;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const rowEvery = Math.max(1, Math.ceil(11 / ch));
    for (let l = 0; l < L; l += rowEvery) ctx.fillText(v.record.layerLabels[l] ?? String(l), GUTTER_LEFT - 6, PAD_TOP + (L - 1 - l) * ch + ch / 2);
  }

  private drawMarks(): void {
    const v = this.view;
    const ctx = this.marks.getContext("2d");
    if (!ctx) return;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    if (!v) return;
    const outline = (layer: number, p: number, colour: string, width: number) => {
      if (layer < 0 || p < 0) return;
      const x = GUTTER_LEFT + p * this.cellW - this.scrollLeft;
      const y = PAD_TOP + (v.layers - 1 - layer) * this.cellH;
      if (x + this.cellW < GUTTER_LEFT || x > this.width) return;
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.strokeRect(x + width / 2, y + width / 2, Math.max(1, this.cellW - width), Math.max(1, this.cellH - width));
      // The row's label, marked in the gutter.
      ctx.fillStyle = colour;
      ctx.fillRect(GUTTER_LEFT - 3, y + 1, 2, this.cellH - 2);
    };
    outline(this.hover.layer, this.hover.p, this.palette.foreground, 1);
    outline(this.selection.layer, this.selection.p, this.palette.focus, document.activeElement === this.canvas ? 2.5 : 1.5);
  }

  private pointer(x: number, y: number): void {
    const cell = this.cellAt(x, y);
    if (cell) this.setHover(cell.layer, cell.p);
    else this.setHover(-1, -1);
  }

  private setHover(layer: number, p: number): void {
    if (layer === this.hover.layer && p === this.hover.p) return;
    this.hover = { layer, p };
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
      this.live.textContent = `${v.record.layerLabels[l]}, position ${v.record.positions[q]} (${visibleToken(token?.text ?? "")}): top-1 ${this.text(v.top1Ids[i])}, ${METRIC_LABELS[this.metric]} ${Number(metricScale(v, this.metric).values[i].toPrecision(3))}`;
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
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      this.callbacks.onActivate(layer, p);
    } else if (e.key === "Escape") {
      this.setHover(-1, -1);
    }
  }
}
