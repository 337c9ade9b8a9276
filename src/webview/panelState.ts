/**
 * What a panel keeps with vscode.setState besides the message that drew it: the UI choices
 * (PanelState.ui), read back defensively since a state can come from an older panel, and the
 * rule that keeps very large records out of the state. No DOM: unit-tested in Node.
 */
import type { ShowRecordMessage, TrackedMessage } from "../shared/webviewProtocol";
import { isMetric, type Metric, type TrackedToken, trackedTokens } from "./model";

export type OverlaySource = "attention" | "patchLens" | "off";
export type RankToken = "cell" | "final" | "target";

/** The UI choices kept in PanelState.ui. */
export interface UiState {
  metric: Metric;
  /** Selected cell: lens layer and analysed-position index. */
  layer: number;
  p: number;
  /** Attention charts and overlay: the selected position or the mean over positions. */
  scope: "position" | "mean";
  overlay: OverlaySource;
  overlayLayer: number;
  /** Heatmap cell width in px; 0 fits the panel. */
  zoom: number;
  collapseImages: boolean;
  rankToken: RankToken;
  groupKey: string;
  /** Texts asked for with "Track token", and the tokens the host tracked for them (every answer kept, newest last). */
  trackedTexts: string[];
  tracked: TrackedToken[];
  /** Whether the heatmap's colour range counts the embeddings row. */
  rangeWithEmbeddings: boolean;
}

/** Reads PanelState.ui back, keeping only well-formed values. */
export function readUi(raw: unknown): UiState {
  const ui: UiState = { metric: "prob", layer: -1, p: -1, scope: "position", overlay: "attention", overlayLayer: -1, zoom: 0, collapseImages: true, rankToken: "cell", groupKey: "all", trackedTexts: [], tracked: [], rangeWithEmbeddings: false };
  if (!raw || typeof raw !== "object") return ui;
  const r = raw as Record<string, unknown>;
  const int = (v: unknown, min: number) => (typeof v === "number" && Number.isInteger(v) && v >= min ? v : undefined);
  if (isMetric(r["metric"])) ui.metric = r["metric"];
  ui.layer = int(r["layer"], -1) ?? ui.layer;
  ui.p = int(r["p"], -1) ?? ui.p;
  if (r["scope"] === "position" || r["scope"] === "mean") ui.scope = r["scope"];
  if (r["overlay"] === "attention" || r["overlay"] === "patchLens" || r["overlay"] === "off") ui.overlay = r["overlay"];
  ui.overlayLayer = int(r["overlayLayer"], -1) ?? ui.overlayLayer;
  ui.zoom = int(r["zoom"], 0) ?? ui.zoom;
  if (typeof r["collapseImages"] === "boolean") ui.collapseImages = r["collapseImages"];
  if (r["rankToken"] === "cell" || r["rankToken"] === "final" || r["rankToken"] === "target") ui.rankToken = r["rankToken"];
  if (typeof r["groupKey"] === "string") ui.groupKey = r["groupKey"];
  if (Array.isArray(r["trackedTexts"])) ui.trackedTexts = r["trackedTexts"].filter((t): t is string => typeof t === "string").slice(-8);
  if (typeof r["rangeWithEmbeddings"] === "boolean") ui.rangeWithEmbeddings = r["rangeWithEmbeddings"];
  const t = r["tracked"];
  // an older panel kept the host's last answer as a TrackedMessage
  if (isTrackedMessage(t)) ui.tracked = trackedTokens(t);
  else if (Array.isArray(t)) ui.tracked = t.filter(isTrackedToken).slice(-8);
  return ui;
}

function isTrackedMessage(t: unknown): t is TrackedMessage {
  const m = t as TrackedMessage | undefined;
  return !!m && m.type === "tracked" && Array.isArray(m.ids) && m.rank?.shape?.length === 3 && Array.isArray(m.rank.data) && Array.isArray(m.prob?.data);
}

function isTrackedToken(t: unknown): t is TrackedToken {
  const x = t as TrackedToken | undefined;
  return (
    !!x &&
    typeof x.id === "number" &&
    typeof x.text === "string" &&
    typeof x.asked === "string" &&
    Array.isArray(x.pieces) &&
    Number.isInteger(x.layers) &&
    Number.isInteger(x.positions) &&
    Array.isArray(x.rank) &&
    Array.isArray(x.prob) &&
    x.rank.length === x.layers * x.positions &&
    x.prob.length === x.rank.length
  );
}

/**
 * Past this many numbers in its blocks (about 20 MB of JSON), a record is left out of the saved
 * state: VS Code serializes the state on every setState, and a 600-position record with image
 * attention is hundreds of MB (seconds per save). Such a panel is restored by the host, which
 * keeps the record in a file (HostState.recordFile) and sends it again on "ready".
 */
export const STATE_RECORD_LIMIT = 2_000_000;

/** How many numbers a record's blocks hold. */
export function recordWeight(record: ShowRecordMessage["record"]): number {
  const blocks = [record.lens.topkIds, record.lens.topkProbs, record.lens.entropy, record.lens.kl, record.lens.cosine, record.lens.targetProb, record.lens.targetRank, record.tracked.rank, record.tracked.prob, record.attention.mass, record.attention.imageRows, record.patchLens?.topIds, record.patchLens?.topProbs];
  return blocks.reduce((n, b) => n + (b?.data.length ?? 0), 0);
}

