/**
 * The panel: one App per webview. It draws only from HostToWebview messages, keeps what it shows
 * and the user's choices in PanelState (vscode.setState), and redraws from that state after a
 * reload before the host answers "ready" again.
 *
 * Selection and hover: the heatmap (and the token strip) report a hovered cell and a selected
 * cell. The rank panel follows the hover, falling back to the selection; everything that depends
 * on a position (line charts, attention, overlay) follows the selection only, so moving the
 * pointer costs one rank-panel update.
 */
import { ChartCard } from "./chartCard";
import { lineChart, matrixChart, stackedBars } from "./charts";
import { ComparisonView } from "./comparison";
import { button, el, type Select, select, svgEl, type TextField, textField } from "./dom";
import { serializeSvg, svgToPng } from "./exporting";
import { exportBaseName } from "./fileNames";
import { HeatmapView } from "./heatmap";
import { COLOUR_BAR_HEIGHT, colourBar } from "./colourBar";
import { figureTitle, heatmapSvg } from "./heatmapSvg";
import {
  addTracked,
  answerPosition,
  attentionBreakdown,
  buildLensView,
  convergenceLayers,
  findTrackedIds,
  headShare,
  isMetric,
  type LayerRanks,
  layerSeries,
  type LensView,
  METRIC_LABELS,
  METRICS,
  metricScale,
  type PositionChoice,
  ranksAt,
  SERIES,
  SERIES_LABELS,
  settlesAt,
  type StripChip,
  trackedTokenRanks,
  trackedTokens,
  trackExplanation,
  trackLabel,
  tokenText,
  topkAt,
  visibleToken,
} from "./model";
import { ImageOverlay } from "./overlay";
import { previewLine } from "./previewNav";
import { headOverlay, maskComparison, type PickedHead } from "./headModel";
import { HeadView } from "./headView";
import { readUi, recordWeight, STATE_RECORD_LIMIT, type UiState } from "./panelState";
import { RankPanel } from "./rankPanel";
import { svgNodeElement } from "./svgNode";
import { type Palette, readPalette } from "./theme";
import { TokenStrip } from "./tokenStrip";
import type { ComparisonMessage, HostState, HostToWebview, PanelState, ProblemsMessage, ShowRecordMessage, StatusMessage, TrackedMessage, WebviewToHost } from "../shared/webviewProtocol";

/** What acquireVsCodeApi() returns, as far as the panel uses it. */
export interface VsCodeApi {
  postMessage(message: WebviewToHost): void;
  getState(): unknown;
  setState(state: PanelState): void;
}

const ZOOMS: readonly (readonly [string, string])[] = [
  ["0", "Fit"],
  ["6", "6 px"],
  ["12", "12 px"],
  ["24", "24 px"],
  ["44", "44 px (text)"],
  ["72", "72 px"],
];

export class App {
  private palette: Palette;
  private ui: UiState;
  private kind: PanelState["kind"] = "run";
  private last: ShowRecordMessage | ComparisonMessage | undefined;
  private host: HostState | undefined;
  private view: LensView | undefined;
  private showing: ShowRecordMessage | undefined;
  private hover: { layer: number; p: number } | null = null;
  /** [layers, positions] of the record shown last. */
  private shownShape: [number, number] | undefined;
  private saveTimer: ReturnType<typeof setTimeout> | undefined;
  private chartsFrame = 0;
  private hovers = 0;
  /** The status shows an export's failure, which the next click or key press clears. */
  private transientError = false;

  private readonly titleEl: HTMLElement;
  private readonly statusEl: HTMLElement;
  private readonly previewEl: HTMLElement;
  private readonly promptEl: HTMLElement;
  private readonly problemsEl: HTMLElement;
  /** The record's own warnings (values that stopped being finite, say): shown above it, never hidden by a later view. */
  private readonly warningsEl: HTMLElement;
  private readonly recordEl: HTMLElement;
  private readonly infoEl: HTMLElement;
  private readonly placeholder: HTMLElement;
  private readonly metricSelect: Select;
  private readonly zoomSelect: Select;
  private readonly scopeSelect: Select;
  private readonly trackInput: TextField;
  private readonly trackNote: HTMLElement;
  private readonly legend: HTMLElement;
  private readonly rangeToggle: HTMLInputElement;
  private readonly trackedList: HTMLElement;
  private readonly heatmap: HeatmapView;
  private readonly rankPanel: RankPanel;
  private readonly strip: TokenStrip;
  private readonly overlay: ImageOverlay;
  private readonly lineCards: Map<string, ChartCard>;
  private readonly attentionCard: ChartCard;
  private readonly headsCard: ChartCard;
  private readonly headView: HeadView;
  private readonly trackedCard: ChartCard;
  private readonly comparison: ComparisonView;

  constructor(
    private readonly api: VsCodeApi,
    root: HTMLElement,
  ) {
    this.palette = readPalette();
    const saved = api.getState() as PanelState | undefined;
    this.ui = readUi(saved?.ui);
    const onExport = (chart: string, format: "svg" | "png") => void this.exportChart(chart, format);

    this.titleEl = el("h1", { id: "title", text: "Logit Lens" });
    this.statusEl = el("span", { id: "status", class: "status idle", text: "Idle", attrs: { role: "status" } });
    this.previewEl = el("p", { id: "preview-info", class: "note" });
    this.promptEl = el("p", { id: "prompt", class: "prompt" });
    this.problemsEl = el("section", { id: "problems", class: "problems", attrs: { role: "alert", "aria-label": "Problems" } });
    this.problemsEl.hidden = true;
    this.warningsEl = el("section", { id: "record-warnings", class: "record-warnings", attrs: { role: "alert", "aria-label": "Warnings" } });
    this.warningsEl.hidden = true;
    this.placeholder = el("p", { class: "placeholder", text: "Waiting for a lens run…" });

    const metric = select("metric", "Colour", METRICS.map((m) => [m, METRIC_LABELS[m]] as const), this.ui.metric);
    this.metricSelect = metric.select;
    this.metricSelect.addEventListener("change", () => this.setMetric(this.metricSelect.value));
    const zoom = select("zoom", "Cell width", ZOOMS, String(this.ui.zoom));
    this.zoomSelect = zoom.select;
    this.zoomSelect.addEventListener("change", () => {
      this.ui.zoom = Number(this.zoomSelect.value) || 0;
      this.heatmap.setZoom(this.ui.zoom);
      this.save();
    });
    const scope = select(
      "scope",
      "Attention of",
      [
        ["position", "the selected position"],
        ["mean", "the mean over positions"],
      ],
      this.ui.scope,
    );
    this.scopeSelect = scope.select;
    this.scopeSelect.addEventListener("change", () => {
      this.ui.scope = this.scopeSelect.value === "mean" ? "mean" : "position";
      this.renderPositionCharts();
      this.save();
    });

    this.trackInput = textField("track-input", "Token text to track", "e.g.  red");
    const trackButton = button("Track", { id: "track-button" });
    const trackForm = el("form", { class: "control track-form", attrs: { role: "search", "aria-label": "Track a token" } }, el("label", { class: "control-label", text: "Track token", attrs: { for: "track-input" } }), this.trackInput, trackButton);
    trackForm.addEventListener("submit", (e) => {
      e.preventDefault();
      this.track(this.trackInput.value);
    });
    trackButton.addEventListener("click", () => this.track(this.trackInput.value));
    this.trackNote = el("p", { class: "note", attrs: { "aria-live": "polite" } });

    const exportCsv = button("Export CSV", { attrs: { "data-export": "csv", "data-chart": "record" } });
    const exportJson = button("Export JSON", { attrs: { "data-export": "json", "data-chart": "record" } });
    exportCsv.addEventListener("click", () => this.post({ type: "export", format: "csv", name: `${this.baseName()}.csv` }));
    exportJson.addEventListener("click", () => this.post({ type: "export", format: "json", name: `${this.baseName()}.lens.json` }));

    this.heatmap = new HeatmapView(this.palette, {
      onHover: (layer, p) => this.onHover(layer, p),
      onSelect: (layer, p) => this.onSelect(layer, p),
      onActivate: (layer) => this.setOverlayLayer(layer),
    });
    this.heatmap.setZoom(this.ui.zoom);
    this.rankPanel = new RankPanel(
      this.palette,
      onExport,
      this.ui.rankToken,
      (t) => {
        this.ui.rankToken = t;
        this.refreshRanks();
        this.save();
      },
      (id) => this.trackId(id),
    );
    this.strip = new TokenStrip({
      onHover: (token) => this.onTokenHover(token),
      onActivate: (chip) => this.onChip(chip),
      onToggleImages: () => {
        this.ui.collapseImages = !this.ui.collapseImages;
        this.renderStrip();
        this.save();
      },
    });
    this.overlay = new ImageOverlay(this.palette, {
      onSource: (s) => {
        this.ui.overlay = s;
        this.renderOverlay();
        this.save();
      },
      onLayer: (l) => this.setOverlayLayer(l),
      onPatchHover: (token) => this.onPatchHover(token),
      onRerun: () => this.post({ type: "rerunWithOverlay" }),
    });
    this.legend = el("div", { class: "legend", attrs: { "aria-hidden": "true" } });
    this.rangeToggle = el("input", { id: "range-embeddings", attrs: { type: "checkbox" } });
    this.rangeToggle.checked = this.ui.rangeWithEmbeddings;
    this.rangeToggle.addEventListener("change", () => {
      this.ui.rangeWithEmbeddings = this.rangeToggle.checked;
      this.heatmap.setRange(this.ui.rangeWithEmbeddings);
      this.renderLegend();
      this.save();
    });
    const rangeLabel = el("label", { class: "control range-toggle", attrs: { for: "range-embeddings", title: "Whether the colour range counts the embeddings row (its entropy and KL are often far above every block's)" } }, this.rangeToggle, el("span", { text: "colour range includes embeddings" }));
    this.trackedList = el("ul", { class: "tracked-list", attrs: { "aria-label": "Tracked tokens" } });
    const heatmapExport = el(
      "div",
      { class: "export-buttons", attrs: { role: "group", "aria-label": "Export heatmap" } },
      button("SVG", { class: "small", title: "Export the heatmap as SVG", attrs: { "data-export": "svg", "data-chart": "heatmap" } }),
      button("PNG", { class: "small", title: "Export the heatmap as PNG", attrs: { "data-export": "png", "data-chart": "heatmap" } }),
    );
    heatmapExport.addEventListener("click", (e) => {
      const format = (e.target as HTMLElement).closest<HTMLElement>("[data-export]")?.dataset["export"];
      if (format === "svg" || format === "png") onExport("heatmap", format);
    });
    const heatmapCard = el(
      "section",
      { class: "card heatmap-card", attrs: { "aria-label": "Logit lens heatmap" } },
      el("div", { class: "card-head" }, el("h2", { class: "panel-title", text: "Logit lens" }), metric.wrapper, zoom.wrapper, heatmapExport),
      el("div", { class: "legend-row" }, this.legend, rangeLabel),
      this.heatmap.element,
    );

    this.lineCards = new Map(SERIES.map((s) => [s, new ChartCard(`layers-${s}`, `${SERIES_LABELS[s]} per layer`, onExport)]));
    this.attentionCard = new ChartCard("attention", "Attention by segment per block", onExport);
    this.headsCard = new ChartCard("heads", "Attention share on the image, block × head (click a head: its pattern)", onExport);
    this.headsCard.element.id = "heads-matrix";
    this.headView = new HeadView(this.palette, onExport, {
      onMask: (head) => this.post({ type: "maskHead", block: head.block, head: head.head }),
      onClose: () => {
        this.headView.close();
        this.renderHeads();
        this.renderOverlay();
      },
    });
    this.wireHeadPicker();
    this.trackedCard = new ChartCard("tracked", "Tracked tokens: rank per layer", onExport);
    this.trackedCard.element.hidden = true;
    this.infoEl = el("p", { class: "note record-info" });

    this.recordEl = el(
      "section",
      { id: "record-view", attrs: { "aria-label": "Lens record" } },
      el("div", { class: "toolbar" }, scope.wrapper, trackForm, el("div", { class: "export-buttons" }, exportCsv, exportJson)),
      this.trackNote,
      this.trackedList,
      this.promptEl,
      this.infoEl,
      this.strip.element,
      // the image sits beside the heatmap, above the rank panel, so both are on the first screen
      el("div", { class: "main-grid" }, heatmapCard, el("div", { class: "side-column" }, this.overlay.element, this.rankPanel.element)),
      el("div", { class: "cards" }, this.trackedCard.element, ...[...this.lineCards.values()].map((c) => c.element), this.attentionCard.element, this.headsCard.element),
      this.headView.element,
    );
    this.recordEl.hidden = true;
    this.comparison = new ComparisonView(
      onExport,
      (key) => {
        this.ui.groupKey = key;
        if (this.last?.type === "comparison") this.comparison.render(this.last, key, this.palette);
        this.save();
      },
      (format) => this.post({ type: "export", format, name: `${this.baseName()}-aggregates.${format}` }),
      (id) => this.post({ type: "openItem", id }),
    );
    this.comparison.element.hidden = true;

    root.replaceChildren(el("header", { class: "app-header" }, this.titleEl, this.statusEl), this.previewEl, this.problemsEl, this.warningsEl, this.placeholder, this.recordEl, this.comparison.element);
    root.removeAttribute("aria-busy");
    const clearTransient = () => {
      if (this.transientError) this.onStatus({ type: "status", state: "idle" });
    };
    root.ownerDocument.addEventListener("pointerdown", clearTransient, true);
    root.ownerDocument.addEventListener("keydown", clearTransient, true);

    if (saved?.kind) this.kind = saved.kind;
    this.host = saved?.host;
    if (saved?.last) this.handle(saved.last, true);
  }

  /** Handles one message from the host. */
  handle(message: HostToWebview, restoring = false): void {
    switch (message.type) {
      case "show":
        this.onShow(message, restoring);
        break;
      case "status":
        this.onStatus(message);
        break;
      case "problems":
        this.onProblems(message);
        break;
      case "tracked":
        this.onTracked(message);
        break;
      case "comparison":
        this.onComparison(message);
        break;
      case "hostState":
        this.host = message.state;
        this.save();
        break;
      case "headPattern":
        this.headView.setPattern({ block: message.block, head: message.head }, message.rows);
        // draws the head's card and its overlay for the selected query
        this.renderOverlay();
        break;
      case "maskedRun": {
        const picked = this.headView.picked;
        if (this.view && picked && picked.block === message.block && picked.head === message.head) this.headView.setComparison(maskComparison(this.view, buildLensView(message.record), picked), this.view.record);
        break;
      }
      default: {
        const unknown: never = message;
        this.onStatus({ type: "status", state: "error", message: `unknown message ${JSON.stringify((unknown as { type?: unknown }).type)} from the extension: update the extension and the panel together` });
      }
    }
  }

  /** The theme changed: re-read colours and redraw what is on screen. */
  themeChanged(): void {
    this.palette = readPalette();
    this.heatmap.setPalette(this.palette);
    this.rankPanel.setPalette(this.palette);
    this.overlay.setPalette(this.palette);
    this.headView.setPalette(this.palette);
    this.renderLegend();
    this.renderPositionCharts();
    if (this.last?.type === "comparison") this.comparison.render(this.last, this.ui.groupKey, this.palette);
  }

  // --- Messages ------------------------------------------------------------------------------

  private onShow(message: ShowRecordMessage, restoring: boolean): void {
    const start = performance.now();
    const record = message.record;
    this.kind = message.preview ? "preview" : "run";
    this.last = message;
    this.showing = message;
    const t = performance.now();
    const view = buildLensView(record);
    performance.measure("logitLens:show:view", { start: t, end: performance.now() });
    this.view = view;
    // a picked head belongs to the record it was read from
    this.headView.close();
    if (!restoring) this.problemsEl.hidden = true;
    const warnings = record.warnings ?? [];
    this.warningsEl.hidden = warnings.length === 0;
    this.warningsEl.replaceChildren(el("strong", { text: warnings.length === 1 ? "Warning" : `${warnings.length} warnings` }), el("ul", {}, ...warnings.map((w) => el("li", { text: w }))));
    this.placeholder.hidden = true;
    this.comparison.element.hidden = true;
    this.recordEl.hidden = false;
    this.titleEl.textContent = message.title;
    this.previewEl.replaceChildren(...(message.preview ? previewLine(message.preview, (m) => this.post(m)) : []));

    // Keep the selection where it fits the new record (a preview edit usually keeps the shape).
    const ui = this.ui;
    // A new run opens on the answer: the final layer at the position that predicts the first
    // generated token. A restored panel, or a preview edit of the same shape, keeps its cell.
    const previous = this.shownShape;
    const sameShape = previous !== undefined && previous[0] === view.layers && previous[1] === view.positions;
    this.shownShape = [view.layers, view.positions];
    if (!restoring && !(message.preview && sameShape)) {
      ui.layer = view.layers - 1;
      ui.p = answerPosition(view);
    }
    if (ui.layer < 0 || ui.layer >= view.layers) ui.layer = view.layers - 1;
    if (ui.p < 0 || ui.p >= view.positions) ui.p = answerPosition(view);
    if (ui.overlayLayer < 0 || ui.overlayLayer >= view.layers) ui.overlayLayer = ui.layer;
    ui.tracked = ui.tracked.filter((t) => t.layers === view.layers && t.positions === view.positions);
    this.hover = null;

    this.promptEl.textContent = `Prompt: ${record.input.prompt}`;
    const answer = record.generation.ids.map((id) => tokenText(record, id)).join("");
    const mask = record.headMask ? Object.entries(record.headMask).map(([b, heads]) => `block ${Number(b) + 1}: ${heads.join(",")}`).join("; ") : "";
    this.infoEl.textContent = `${record.model.id} (${record.model.architecture}, ${record.model.numLayers} blocks × ${record.model.numHeads} heads) · ${view.positions} analysed positions · answer “${visibleToken(answer)}” (${record.generation.stoppedBy})${mask ? ` · masked heads ${mask}` : ""}`;

    this.metricSelect.value = ui.metric;
    this.scopeSelect.value = ui.scope;
    this.zoomSelect.value = String(ui.zoom);
    // Each step is measured ("logitLens:show:<step>"), so a slow record says where the time goes.
    const step = (name: string, run: () => void) => {
      const t = performance.now();
      run();
      performance.measure(`logitLens:show:${name}`, { start: t, end: performance.now() });
    };
    step("heatmap", () => {
      this.rangeToggle.checked = ui.rangeWithEmbeddings;
      this.heatmap.setRecord(view, ui.metric, ui.layer, ui.p, ui.rangeWithEmbeddings);
      this.renderLegend();
    });
    step("ranks", () => {
      this.rankPanel.setLayers(record.layerLabels);
      this.refreshRanks();
    });
    step("strip", () => this.renderStrip());
    step("lines", () => this.renderLineCharts());
    step("attention", () => this.renderAttention());
    step("heads", () => this.renderHeads());
    step("overlay", () => {
      this.overlay.setRecord(view, message.imageUri, this.kind === "run");
      this.renderOverlay();
    });
    step("tracked", () => this.renderTracked());
    performance.measure("logitLens:show", { start, end: performance.now() });
    if (!restoring) this.save();
  }

  private onStatus(message: StatusMessage): void {
    // An export's failure is about that click: the next action clears it (see the constructor).
    this.transientError = message.state === "error" && (message.message ?? "").startsWith("could not export ");
    const text = message.state === "running" ? "Running…" : message.state === "error" ? "Error" : "Idle";
    this.statusEl.className = `status ${message.state}`;
    this.statusEl.textContent = message.message ? `${text}: ${message.message}` : text;
    this.statusEl.title = message.message ?? "";
    if (message.state === "running") this.statusEl.setAttribute("aria-busy", "true");
    else this.statusEl.removeAttribute("aria-busy");
  }

  private onProblems(message: ProblemsMessage): void {
    const n = message.problems.length;
    this.problemsEl.hidden = n === 0;
    // no record shown yet: the problems are the answer, not a wait for a run that will not come
    if (!this.view && this.last?.type !== "comparison") this.placeholder.hidden = n > 0;
    this.problemsEl.replaceChildren(
      el("h2", { class: "panel-title", text: `${message.file}: ${n} problem${n === 1 ? "" : "s"}${this.view ? " (showing the last good run)" : ""}` }),
      el(
        "ul",
        {},
        ...message.problems.map((p) => el("li", {}, el("span", { class: "where", text: `${p.line !== undefined ? `${p.line}:${p.column ?? 1} ` : ""}${p.path}` }), ` ${p.message}`)),
      ),
    );
  }

  private onTracked(message: TrackedMessage): void {
    const view = this.view;
    if (!view || message.rank.shape[0] !== view.layers || message.rank.shape[1] !== view.positions) {
      this.trackNote.textContent = "The tracked ranks are for another run than the one shown: track the token again.";
      return;
    }
    const added = trackedTokens(message);
    this.ui.tracked = addTracked(this.ui.tracked, added);
    const notes = added.map((t) => trackExplanation(t)).filter((n): n is string => n !== null);
    this.trackNote.textContent = added.length ? (notes.length ? notes.join(" ") : `Tracking ${added.map((t) => `“${visibleToken(t.text)}”`).join(", ")}.`) : "The extension found no token for that text.";
    this.renderTracked();
    this.save();
  }

  private onComparison(message: ComparisonMessage): void {
    this.kind = "comparison";
    this.last = message;
    this.problemsEl.hidden = true;
    this.titleEl.textContent = message.title;
    this.previewEl.textContent = "";
    this.placeholder.hidden = true;
    this.recordEl.hidden = true;
    this.warningsEl.hidden = true;
    this.comparison.element.hidden = false;
    this.comparison.render(message, this.ui.groupKey, this.palette);
    this.save();
  }

  // --- Interaction ---------------------------------------------------------------------------

  private setMetric(value: string): void {
    if (!isMetric(value)) return;
    this.ui.metric = value;
    this.heatmap.setMetric(value);
    this.renderLegend();
    this.save();
  }

  private onHover(layer: number, p: number): void {
    const start = performance.now();
    this.hover = layer < 0 ? null : { layer, p };
    this.refreshRanks();
    this.overlay.highlightToken(layer < 0 ? -1 : (this.view?.record.positions[p] ?? -1));
    // Measured for the benchmark; cleared now and then so a long session does not keep them all.
    if (++this.hovers % 1000 === 0) performance.clearMeasures("logitLens:hover");
    performance.measure("logitLens:hover", { start, end: performance.now() });
  }

  private onSelect(layer: number, p: number): void {
    const moved = p !== this.ui.p;
    this.ui.layer = layer;
    this.ui.p = p;
    // the overlay shows the selected cell's layer (its slider can still pick another one)
    if (layer !== this.ui.overlayLayer) {
      this.ui.overlayLayer = layer;
      if (!moved) {
        this.renderOverlay();
        this.renderHeads();
      }
    }
    if (!this.hover) this.refreshRanks();
    this.strip.markSelected(this.view?.record.positions[p] ?? -1);
    this.schedulePositionCharts(moved);
    this.save();
  }

  private setOverlayLayer(layer: number): void {
    this.ui.overlayLayer = layer;
    this.renderOverlay();
    this.renderHeads();
    this.save();
  }

  /** The pointer on a patch of the picture: its image token's column lights in the heatmap (when analysed) and in the token strip. */
  private onPatchHover(token: number): void {
    const view = this.view;
    if (!view) return;
    const p = token >= 0 ? view.analysedIndex.get(token) : undefined;
    this.heatmap.markHover(p === undefined ? -1 : this.ui.layer, p ?? -1);
    this.strip.markLit(token);
    this.hover = p === undefined ? null : { layer: this.ui.layer, p };
    this.refreshRanks();
  }

  private onTokenHover(token: number): void {
    const view = this.view;
    if (!view) return;
    this.overlay.highlightToken(token);
    if (token < 0) {
      this.hover = null;
      this.refreshRanks();
      return;
    }
    const record = view.record;
    const predicting = view.analysedIndex.get(token - 1);
    const id = record.tokens[token]?.id;
    const ranks = predicting !== undefined && id !== undefined ? ranksAt(view, id, predicting) : null;
    if (predicting !== undefined && ranks) {
      // How early the model saw this token coming: its rank where it was predicted.
      this.hover = { layer: view.layers - 1, p: predicting };
      this.showRanks(view.layers - 1, predicting, ranks, `${visibleToken(ranks.text)} (token ${token}) as predicted at position ${token - 1}`);
      return;
    }
    const own = view.analysedIndex.get(token);
    if (own !== undefined) {
      this.hover = { layer: view.layers - 1, p: own };
      this.refreshRanks();
      return;
    }
    this.rankPanel.show({ caption: `token ${token} (${visibleToken(record.tokens[token]?.text ?? "")})`, ranks: null, missing: "The lens did not run at this token or the one before it.", layer: view.layers - 1, topk: [], top1: [], settles: -1 });
  }

  private onChip(chip: StripChip): void {
    if (chip.end - chip.start > 1) {
      this.ui.collapseImages = false;
      this.renderStrip();
      this.save();
      return;
    }
    const view = this.view;
    const p = view?.analysedIndex.get(chip.start);
    if (!view || p === undefined) return;
    this.heatmap.setSelection(this.ui.layer, p);
    this.onSelect(this.ui.layer, p);
  }

  /** Tracks what the field holds: one token text, or several separated by commas ("red, blue"; a lone "," is the comma itself). */
  private track(input: string): void {
    const texts = input.trim() === "," ? [input] : input.split(",").filter((t) => t.trim() !== "");
    if (!texts.length) {
      this.trackNote.textContent = "Type the token's text (with its leading space, if it has one) to track it; separate several with commas.";
      return;
    }
    for (const text of texts) {
      // "red, blue": the space after a comma separates, it is not the token's leading space
      const t = texts.length > 1 ? text.trim() : text;
      this.ui.trackedTexts = [...this.ui.trackedTexts.filter((x) => x !== t), t].slice(-8);
      this.post({ type: "track", text: t });
    }
    const list = texts.map((t) => `“${visibleToken(texts.length > 1 ? t.trim() : t)}”`).join(", ");
    this.trackNote.textContent = `Asking the extension to track ${list}…`;
    this.renderTracked();
    this.save();
  }

  /** Tracks a token picked from a top-k list, by its id (its text may not tokenize back to it). */
  private trackId(id: number): void {
    const view = this.view;
    if (!view) return;
    const text = tokenText(view.record, id);
    if (this.ui.tracked.some((t) => t.id === id)) return;
    this.trackNote.textContent = `Asking the extension to track “${visibleToken(text)}” (token ${id})…`;
    this.post({ type: "track", text, ids: [id] });
  }

  private untrack(id: number): void {
    const view = this.view;
    this.ui.tracked = this.ui.tracked.filter((t) => t.id !== id);
    if (view) this.ui.trackedTexts = this.ui.trackedTexts.filter((text) => !findTrackedIds(view.record, text).includes(id));
    this.renderTracked();
    this.save();
  }

  // --- Rendering -----------------------------------------------------------------------------

  /** The rank panel for the hovered cell, or the selected one. O(layers). */
  private refreshRanks(): void {
    const view = this.view;
    if (!view) return;
    const { layer, p } = this.hover ?? { layer: this.ui.layer, p: this.ui.p };
    if (p < 0 || layer < 0) return;
    const P = view.positions;
    const L = view.layers - 1;
    let ranks: LayerRanks | null;
    if (this.ui.rankToken === "target") {
      const id = view.record.lens.targetIds[p];
      ranks = {
        id,
        text: tokenText(view.record, id),
        rank: Array.from({ length: view.layers }, (_, l) => view.targetRank[l * P + p]),
        prob: Array.from({ length: view.layers }, (_, l) => view.targetProb[l * P + p]),
      };
    } else {
      const id = view.top1Ids[(this.ui.rankToken === "final" ? L : layer) * P + p];
      ranks = ranksAt(view, id, p);
    }
    const token = view.record.positions[p];
    this.showRanks(layer, p, ranks, `${ranks ? visibleToken(ranks.text) : "?"} at position ${token} (${visibleToken(view.record.tokens[token]?.text ?? "")})`);
  }

  private showRanks(layer: number, p: number, ranks: LayerRanks | null, caption: string): void {
    const view = this.view;
    if (!view) return;
    const P = view.positions;
    const top1 = new Array<string>(view.layers);
    for (let l = 0; l < view.layers; l++) top1[l] = tokenText(view.record, view.top1Ids[l * P + p]);
    // where this token stays top-1 to the end (the position's own settling when it is the final top-1)
    this.rankPanel.show({ caption, ranks, missing: "The record does not track this token.", layer, topk: topkAt(view, layer, p), top1, settles: ranks ? settlesAt(ranks.rank) : convergenceLayers(view)[p] });
  }

  private renderLegend(): void {
    const view = this.view;
    if (!view) return;
    const scale = metricScale(view, this.ui.metric, this.ui.rangeWithEmbeddings);
    const width = 300;
    const bar = svgEl("svg", { width, height: COLOUR_BAR_HEIGHT, viewBox: `0 0 ${width} ${COLOUR_BAR_HEIGHT}`, class: "colour-bar-svg", role: "img", "font-family": this.palette.fontFamily });
    const node = colourBar(scale, { colors: this.palette.ramps[this.ui.metric].colors, foreground: this.palette.foreground, muted: this.palette.muted, gradientId: "heatmap-colour-bar", width });
    bar.append(svgNodeElement(node));
    bar.setAttribute("aria-label", node.children?.[1]?.text ?? "colour bar");
    const dot = el("span", { class: "legend-dot" });
    dot.style.background = this.palette.segments.generated;
    this.legend.replaceChildren(
      bar,
      el("span", { class: "legend-keys" }, el("span", {}, dot, " top-1 is the generated token"), el("span", {}, el("span", { class: "legend-settle" }), " settles: top-1 = final from here up"), el("span", {}, el("span", { class: "legend-answer" }), " answer: predicts the first generated token")),
    );
  }

  private renderStrip(): void {
    const view = this.view;
    if (!view) return;
    this.strip.render(view, this.ui.collapseImages, view.record.positions[this.ui.p] ?? -1);
  }

  private scope(): PositionChoice {
    return this.ui.scope === "mean" ? "mean" : this.ui.p;
  }

  private schedulePositionCharts(now: boolean): void {
    if (!now) {
      // Only the highlighted layer moved: the line charts' marker.
      if (this.chartsFrame) return;
      this.chartsFrame = requestAnimationFrame(() => {
        this.chartsFrame = 0;
        this.renderLineCharts();
      });
      return;
    }
    if (this.chartsFrame) cancelAnimationFrame(this.chartsFrame);
    this.chartsFrame = requestAnimationFrame(() => {
      this.chartsFrame = 0;
      this.renderPositionCharts();
    });
  }

  private renderPositionCharts(): void {
    this.renderLineCharts();
    this.renderAttention();
    this.renderHeads();
    this.renderOverlay();
    this.renderTracked();
  }

  private renderLineCharts(): void {
    const view = this.view;
    if (!view) return;
    const token = view.record.positions[this.ui.p];
    for (const metric of SERIES) {
      const card = this.lineCards.get(metric);
      if (!card) continue;
      card.draw((width) =>
        lineChart({
          width,
          title: `${SERIES_LABELS[metric]} per layer`,
          yTitle: SERIES_LABELS[metric],
          series: [
            { label: `position ${token} (${visibleToken(view.record.tokens[token]?.text ?? "")})`, values: layerSeries(view, metric, this.ui.p), color: this.palette.series[0] },
            { label: "mean over analysed positions", values: layerSeries(view, metric, "mean"), color: this.palette.series[1], dashed: true },
          ],
          xLabels: view.record.layerLabels,
          palette: this.palette,
          log: metric === "targetRank",
          yDomain: metric === "targetProb" ? [0, 1] : undefined,
          highlight: this.ui.layer,
        }),
      );
    }
  }

  private renderAttention(): void {
    const view = this.view;
    if (!view) return;
    const b = attentionBreakdown(view, this.scope());
    this.attentionCard.setTitle(`Attention by segment per block (${this.ui.scope === "mean" ? "mean over positions" : `position ${view.record.positions[this.ui.p]}`})`);
    this.attentionCard.draw(
      (width) =>
        b.shares.length
          ? stackedBars({ width, title: "Attention by key segment per decoder block", rows: b.shares, keys: b.segments, colors: b.segments.map((s) => this.palette.segments[s]), barLabels: view.record.layerLabels.slice(1), palette: this.palette })
          : null,
      b.shares.length ? undefined : "No attention in this record.",
    );
  }

  private renderHeads(): void {
    const view = this.view;
    if (!view) return;
    const m = headShare(view, this.scope());
    this.headsCard.draw((width) =>
      m.blocks && m.heads
        ? matrixChart({
            width,
            title: "Attention share on the image, block × head",
            values: m.values,
            rows: m.blocks,
            cols: m.heads,
            rowTitle: "layer",
            colTitle: "head",
            rowLabel: (r) => view.record.layerLabels[r + 1] ?? `block ${r + 1}`,
            colLabel: (c) => `head ${c}`,
            palette: this.palette,
            highlightRow: this.ui.overlayLayer - 1,
            pickable: true,
            selected: this.headView.picked ? { row: this.headView.picked.block, col: this.headView.picked.head } : undefined,
            valueTitle: "share on the image",
          })
        : null,
    );
  }

  private renderOverlay(): void {
    const view = this.view;
    if (!view) return;
    // a picked head's pattern of the selected query is what the picture shows while it is open
    const head = this.headView.picked;
    const row = head ? this.headView.row(this.ui.p) : null;
    if (head && row) {
      this.headView.render(view, this.ui.p);
      const grid = headOverlay(view.record, row);
      const legend = grid ? `Block ${head.block + 1} head ${head.head}: attention of position ${view.record.positions[this.ui.p]} on each patch (max ${(100 * grid.max).toFixed(2)}%). Close the head's view to go back.` : "";
      this.overlay.setHeadGrid(grid, legend);
      return;
    }
    this.overlay.setHeadGrid(null);
    this.overlay.update(this.ui.overlay, this.ui.overlayLayer, this.scope());
  }

  /** Clicks and keys on the block × head matrix pick a head (the chart is drawn again on resizes: listen on its card). */
  private wireHeadPicker(): void {
    const card = this.headsCard.element;
    const cellOf = (target: EventTarget | null) => (target instanceof Element ? target.closest<SVGElement>("[data-row][data-col]") : null);
    const pick = (cell: SVGElement) => this.pickHead({ block: Number(cell.dataset["row"]), head: Number(cell.dataset["col"]) });
    card.addEventListener("click", (e) => {
      const cell = cellOf(e.target);
      if (cell) pick(cell);
    });
    card.addEventListener("keydown", (e) => {
      const cell = cellOf(e.target);
      if (!cell) return;
      const row = Number(cell.dataset["row"]);
      const col = Number(cell.dataset["col"]);
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        pick(cell);
        return;
      }
      const to: Record<string, [number, number]> = { ArrowUp: [row + 1, col], ArrowDown: [row - 1, col], ArrowLeft: [row, col - 1], ArrowRight: [row, col + 1] };
      const next = to[e.key] ? card.querySelector<SVGElement>(`[data-row="${to[e.key][0]}"][data-col="${to[e.key][1]}"]`) : null;
      if (!next) return;
      e.preventDefault();
      cell.setAttribute("tabindex", "-1");
      next.setAttribute("tabindex", "0");
      next.focus();
    });
  }

  private pickHead(head: PickedHead): void {
    if (!this.view) return;
    this.headView.pick(head);
    this.post({ type: "headPattern", block: head.block, head: head.head });
    this.renderHeads();
    this.headView.element.scrollIntoView({ block: "nearest" });
  }

  private renderTracked(): void {
    const view = this.view;
    if (!view) return;
    const lines: LayerRanks[] = [];
    const chips: { id: number; label: string; note: string | null }[] = [];
    const seen = new Set<number>();
    for (const t of this.ui.tracked) {
      if (seen.has(t.id)) continue;
      seen.add(t.id);
      lines.push(trackedTokenRanks(t, this.ui.p));
      chips.push({ id: t.id, label: trackLabel(t), note: trackExplanation(t) });
    }
    for (const text of this.ui.trackedTexts)
      for (const id of findTrackedIds(view.record, text)) {
        if (seen.has(id)) continue;
        seen.add(id);
        const r = ranksAt(view, id, this.ui.p);
        if (r) {
          lines.push(r);
          chips.push({ id, label: visibleToken(r.text), note: null });
        }
      }
    this.trackedList.replaceChildren(
      ...chips.map((c, i) => {
        const swatch = el("span", { class: "swatch" });
        swatch.style.background = this.palette.series[i % this.palette.series.length];
        const remove = el("button", { class: "untrack", text: "×", title: `Stop tracking ${c.label}`, attrs: { type: "button", "aria-label": `Stop tracking ${c.label}` } });
        remove.addEventListener("click", () => this.untrack(c.id));
        return el("li", { attrs: { "data-token-id": c.id }, title: c.note ?? `token ${c.id}` }, swatch, el("span", { class: "token", text: c.label }), remove);
      }),
    );
    this.trackedList.hidden = chips.length === 0;
    this.trackedCard.element.hidden = lines.length === 0;
    if (!lines.length) return;
    const token = view.record.positions[this.ui.p];
    this.trackedCard.draw((width) =>
      lineChart({
        width,
        title: `Tracked tokens: rank per layer at position ${token}`,
        yTitle: "rank (log)",
        series: lines.map((r, i) => ({ label: chips[i]?.label ?? visibleToken(r.text), values: r.rank, color: this.palette.series[i % this.palette.series.length] })),
        xLabels: view.record.layerLabels,
        palette: this.palette,
        log: true,
        highlight: this.ui.layer,
      }),
    );
  }

  // --- Export and state ----------------------------------------------------------------------

  private baseName(): string {
    return exportBaseName(this.last?.type === "show" ? this.last.record : undefined, this.last?.title);
  }

  private chartSvg(chart: string): string | null {
    if (chart === "heatmap") {
      const view = this.view;
      if (!view) return null;
      const p = this.palette;
      const ramp = p.ramps[this.ui.metric];
      return heatmapSvg(view, this.ui.metric, { ramp: ramp.colors, rampText: ramp.text, foreground: p.foreground, muted: p.muted, background: p.background, match: p.segments.generated, fontFamily: p.fontFamily, withEmbeddings: this.ui.rangeWithEmbeddings });
    }
    const card = chart === "ranks" ? this.rankPanel.chartCard : chart === "attention" ? this.attentionCard : chart === "heads" ? this.headsCard : chart.startsWith("mask-") ? this.headView.cards.find((c) => c.name === chart) : chart === "tracked" ? this.trackedCard : (this.lineCards.get(chart.replace(/^layers-/u, "")) ?? this.comparison.card(chart));
    const svg = card?.chart;
    const p = this.palette;
    const title = this.last?.type === "show" ? figureTitle(this.last.record) : (this.last?.title ?? "");
    return svg ? serializeSvg(svg, p.background, { title, foreground: p.foreground, muted: p.muted, fontFamily: p.fontFamily }) : null;
  }

  private async exportChart(chart: string, format: "svg" | "png"): Promise<void> {
    const svg = this.chartSvg(chart);
    if (!svg) {
      this.onStatus({ type: "status", state: "error", message: `could not export the ${chart} chart: there is none yet; run the lens first` });
      return;
    }
    const name = `${this.baseName()}-${chart}.${format}`;
    try {
      const data = format === "svg" ? svg : await svgToPng(svg, chart === "heatmap" ? 1 : 2);
      this.post({ type: "export", format, name, data });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      this.onStatus({ type: "status", state: "error", message: `could not export ${name}: ${reason}` });
      // the host logs it in the output channel (and reports it), so the reason is not lost with the page
      this.post({ type: "export", format, name, error: reason });
    }
  }

  private post(message: WebviewToHost): void {
    this.api.postMessage(message);
  }

  /**
   * Saves PanelState. Debounced: the state holds the whole record, and VS Code serializes it on
   * every call, so a burst of UI changes (arrow keys held down) saves once.
   */
  private save(): void {
    if (this.saveTimer !== undefined) clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      const last = this.last;
      const omit = last?.type === "show" && recordWeight(last.record) > STATE_RECORD_LIMIT;
      this.api.setState({ kind: this.kind, ...(last && !omit ? { last } : {}), ui: { ...this.ui, ...(omit ? { recordOmitted: true } : {}) }, ...(this.host ? { host: this.host } : {}) });
    }, 400);
  }
}
