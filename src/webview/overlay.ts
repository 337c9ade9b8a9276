/**
 * The analysed image with a canvas over it: head-averaged attention of the selected query (or
 * the mean over queries) on each patch at one layer, or the patch lens (each patch's top-1 at
 * that layer). The patch grid covers the part of the image the processor kept: the largest
 * centred rectangle with the processed image's aspect ratio (all of it for a plain resize, the
 * centre square for CLIP's resize-and-crop).
 */
import { button, el, formatNumber, type Select, select } from "./dom";
import { attentionOverlay, type LensView, imageTokenLabel, type OverlayGrid, overlayLayout, patchLensOverlay, type PositionChoice, visibleToken } from "./model";
import type { OverlaySource } from "./panelState";
import { cellAt, keptRegion, type PatchIndex, type PatchRect, patchIndex } from "./patches";
import type { Palette } from "./theme";


export interface OverlayCallbacks {
  onSource(source: OverlaySource): void;
  onLayer(layer: number): void;
  /** The pointer is on the patch of this image token (its index in record.tokens), or left the picture (-1). */
  onPatchHover(token: number): void;
  /** "Run again with the image overlay": the record lacks per-patch attention or the patch lens. */
  onRerun(): void;
}

export class ImageOverlay {
  readonly element: HTMLElement;
  private readonly img: HTMLImageElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly stage: HTMLElement;
  private readonly caption: HTMLElement;
  private readonly source: Select;
  private readonly layerInput: HTMLInputElement;
  private readonly layerName: HTMLOutputElement;
  private readonly note: HTMLElement;
  private readonly rerun: HTMLElement;
  private view: LensView | undefined;
  private grid: OverlayGrid | null = null;
  private patches: PatchIndex | null = null;
  /** The lit patch (cells of the grid), from a hovered image token or the pointer. */
  private lit: PatchRect | null = null;
  private canRerun = false;
  private frame = 0;
  private state: { source: OverlaySource; layer: number; p: PositionChoice } = { source: "attention", layer: 1, p: "mean" };

  constructor(
    private palette: Palette,
    callbacks: OverlayCallbacks,
  ) {
    this.img = el("img", { class: "overlay-image", attrs: { alt: "Analysed image" } });
    this.canvas = el("canvas", { class: "overlay-canvas", attrs: { "aria-hidden": "true" } });
    this.stage = el("div", { class: "overlay-stage" }, this.img, this.canvas);
    this.caption = el("p", { class: "note overlay-caption", attrs: { "aria-live": "polite" } });
    this.note = el("p", { class: "note" });
    const src = select(
      "overlay-source",
      "Overlay",
      [
        ["attention", "Attention on patches"],
        ["patchLens", "Patch lens (top-1)"],
        ["off", "None"],
      ],
      "attention",
    );
    this.source = src.select;
    this.source.addEventListener("change", () => callbacks.onSource(this.source.value as OverlaySource));
    this.layerInput = el("input", { id: "layer", attrs: { type: "range", min: 0, max: 1, step: 1, value: 1, "aria-label": "Overlay layer" } });
    this.layerName = el("output", { attrs: { for: "layer" } });
    this.layerInput.addEventListener("input", () => callbacks.onLayer(Number(this.layerInput.value)));
    this.img.addEventListener("load", () => this.draw());
    this.canvas.addEventListener("mousemove", (e) => this.describe(e.offsetX, e.offsetY, callbacks));
    this.canvas.addEventListener("mouseleave", () => {
      this.caption.textContent = "";
      this.light(null);
      callbacks.onPatchHover(-1);
    });
    this.rerun = button("Run again with the image overlay", { id: "overlay-rerun", title: "Rerun this prompt keeping each position's attention on the patches and each patch's own lens" });
    this.rerun.hidden = true;
    this.rerun.addEventListener("click", () => callbacks.onRerun());
    new ResizeObserver(() => this.draw()).observe(this.stage);
    this.element = el(
      "section",
      { class: "card overlay-card", attrs: { "aria-label": "Image overlay" } },
      el("div", { class: "card-head" }, el("h3", { class: "card-title", text: "Image" })),
      el("div", { class: "controls" }, src.wrapper, el("label", { class: "control", attrs: { for: "layer" } }, el("span", { class: "control-label", text: "Layer" }), this.layerInput, this.layerName)),
      this.stage,
      this.caption,
      this.note,
      this.rerun,
    );
  }

  setPalette(palette: Palette): void {
    this.palette = palette;
    this.scheduleDraw();
  }

  /** `canRerun`: the panel can run its request again (a run panel, not an experiment's preview). */
  setRecord(view: LensView, imageUri: string | null, canRerun = false): void {
    this.view = view;
    this.canRerun = canRerun;
    this.patches = patchIndex(view.record);
    this.lit = null;
    this.layerInput.max = String(view.layers - 1);
    const hasImage = !!imageUri && !!view.record.input.image;
    this.element.hidden = !view.record.input.image;
    this.stage.hidden = !hasImage;
    if (hasImage && this.img.getAttribute("src") !== imageUri) this.img.src = imageUri;
    if (!hasImage) this.img.removeAttribute("src");
  }

  /** Lights the patch of an image token (a record.tokens index; -1 or a text token: none). */
  highlightToken(token: number): void {
    this.light(token >= 0 ? (this.patches?.rectOf.get(token) ?? null) : null);
  }

  private light(rect: PatchRect | null): void {
    const key = rect ? `${rect.row},${rect.col},${rect.rows},${rect.cols}` : "";
    if (key === (this.element.dataset["lit"] ?? "")) return;
    this.lit = rect;
    // for tests: which cells are lit (row,col,rows,cols)
    this.element.dataset["lit"] = key;
    this.scheduleDraw();
  }

  /** A picked head's weights on the patches, drawn instead of the chosen source until cleared (null). */
  setHeadGrid(grid: OverlayGrid | null, legend = ""): void {
    this.headGrid = grid ? { grid, legend } : null;
    this.element.dataset["head"] = grid ? "true" : "";
    this.update(this.state.source, this.state.layer, this.state.p);
  }

  private headGrid: { grid: OverlayGrid; legend: string } | null = null;

  update(source: OverlaySource, layer: number, p: PositionChoice): void {
    this.state = { source, layer, p };
    this.source.value = source;
    this.layerInput.value = String(layer);
    const v = this.view;
    if (!v) return;
    this.layerName.textContent = v.record.layerLabels[layer] ?? String(layer);
    if (this.headGrid) {
      this.grid = this.headGrid.grid;
      this.note.textContent = this.headGrid.legend;
      this.rerun.hidden = true;
      this.scheduleDraw();
      return;
    }
    this.grid = source === "attention" ? attentionOverlay(v, layer, p) : source === "patchLens" ? patchLensOverlay(v, layer) : null;
    const why = (): string => {
      if (!v.record.input.image) return "A text-only run: no image to overlay.";
      if (source === "attention" && !v.record.attention.imageRows) return `This record has no per-patch attention: ${this.canRerun ? "run it again with the image overlay" : 'set "imageAttention": true in the file\'s "lens" settings'} to see it.`;
      if (source === "attention" && layer === 0) return "The embeddings have no attention: pick a block (layer 1 or above).";
      if (source === "patchLens" && !v.record.patchLens) return `This record has no patch lens: ${this.canRerun ? "run it again with the image overlay" : 'set "patchLens": true in the file\'s "lens" settings'} to see it.`;
      return "";
    };
    this.note.textContent = source === "off" ? "" : this.grid ? this.legend() : why();
    const missing = !!v.record.input.image && (!v.record.attention.imageRows || !v.record.patchLens);
    this.rerun.hidden = !(this.canRerun && missing && source !== "off");
    this.scheduleDraw();
  }

  /** Draws on the next frame: drawing reads the image's laid-out size, which would force a layout now. */
  private scheduleDraw(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private legend(): string {
    const { source, p } = this.state;
    if (!this.grid) return "";
    if (source === "patchLens") return `Each patch's top-1 token; opacity is its probability (max ${formatNumber(this.grid.max)}).`;
    const query = p === "mean" ? "the mean over analysed positions" : `position ${this.view?.record.positions[p] ?? p}`;
    return `Head-averaged attention of ${query} on each patch (max ${(100 * this.grid.max).toFixed(2)}%).`;
  }

  /** The kept region on the displayed image, in CSS pixels. */
  private region(): { x: number; y: number; width: number; height: number } | null {
    const record = this.view?.record;
    const image = record?.input.image;
    const w = this.img.clientWidth;
    const h = this.img.clientHeight;
    if (!record || !image || !w || !h) return null;
    // A tiled input's overlay covers the whole picture (its crops, or the global image).
    const r = overlayLayout(record)?.wholePicture ? { x: 0, y: 0, width: image.originalSize[0], height: image.originalSize[1] } : keptRegion(image.originalSize, image.processedSize);
    const sx = w / image.originalSize[0];
    const sy = h / image.originalSize[1];
    return { x: r.x * sx, y: r.y * sy, width: r.width * sx, height: r.height * sy };
  }

  private draw(): void {
    const w = this.img.clientWidth;
    const h = this.img.clientHeight;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(1, Math.round(w * dpr));
    this.canvas.height = Math.max(1, Math.round(h * dpr));
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${h}px`;
    const ctx = this.canvas.getContext("2d");
    const grid = this.grid;
    const region = this.region();
    if (!ctx || !region) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (grid) this.drawGrid(ctx, grid, region);
    const patches = this.patches;
    const lit = this.lit;
    if (patches && lit) {
      // the lit patch: a double outline that reads on any picture and any theme
      const cw = region.width / patches.cols;
      const ch = region.height / patches.rows;
      const x = region.x + lit.col * cw;
      const y = region.y + lit.row * ch;
      ctx.lineWidth = 3;
      ctx.strokeStyle = "rgba(0,0,0,0.85)";
      ctx.strokeRect(x, y, lit.cols * cw, lit.rows * ch);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#ffffff";
      ctx.strokeRect(x, y, lit.cols * cw, lit.rows * ch);
    }
  }

  private drawGrid(ctx: CanvasRenderingContext2D, grid: OverlayGrid, region: { x: number; y: number; width: number; height: number }): void {
    const cw = region.width / grid.cols;
    const ch = region.height / grid.rows;
    const { r, g, b } = this.palette.overlay;
    const labels = grid.labels;
    ctx.font = `${Math.min(11, ch * 0.45)}px ${this.palette.fontFamily}`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (let row = 0; row < grid.rows; row++)
      for (let col = 0; col < grid.cols; col++) {
        const v = grid.values[row * grid.cols + col];
        if (!Number.isFinite(v)) continue;
        const alpha = grid.max > 0 ? (0.8 * v) / grid.max : 0;
        ctx.fillStyle = `rgba(${r},${g},${b},${alpha.toFixed(3)})`;
        ctx.fillRect(region.x + col * cw, region.y + row * ch, cw, ch);
        if (labels && cw >= 22 && ch >= 12) {
          ctx.fillStyle = "#ffffff";
          ctx.fillText(visibleToken(labels[row * grid.cols + col]).slice(0, Math.floor(cw / 6)), region.x + (col + 0.5) * cw, region.y + (row + 0.5) * ch);
        }
      }
  }

  private describe(x: number, y: number, callbacks: OverlayCallbacks): void {
    const patches = this.patches;
    const region = this.region();
    const at = patches && region ? cellAt(patches, region, x - region.x, y - region.y) : null;
    if (!patches || !at) {
      this.caption.textContent = "";
      this.light(null);
      callbacks.onPatchHover(-1);
      return;
    }
    const cell = at.row * patches.cols + at.col;
    const token = patches.tokenAt.get(cell) ?? -1;
    this.light({ row: at.row, col: at.col, rows: 1, cols: 1 });
    callbacks.onPatchHover(token);
    const at0 = token >= 0 ? this.view?.record.tokens[token]?.image : undefined;
    const where = at0 && this.view ? `patch ${imageTokenLabel(this.view.record, at0)} (token ${token})` : `patch r${at.row} c${at.col}`;
    const grid = this.grid;
    const v = grid?.values[cell];
    this.caption.textContent =
      grid && v !== undefined && Number.isFinite(v)
        ? grid.labels
          ? `${where}: top-1 ${visibleToken(grid.labels[cell])} (p ${formatNumber(v)})`
          : `${where}: ${(100 * v).toFixed(2)}% of the attention`
        : where;
  }
}
