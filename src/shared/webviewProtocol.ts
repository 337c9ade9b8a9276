/**
 * Messages between the extension host and a Logit Lens webview panel. Data reaches the webview
 * only through postMessage (the panel's CSP forbids every fetch); the webview never talks to the
 * sidecar itself.
 */
import type { LensRecord, NumericBlock } from "./lensRecord";
import type { SweepAggregates } from "./sweep";
import type { ComparisonItem } from "./sweepCompare";

export const WEBVIEW_PROTOCOL_VERSION = 1;

/** What a panel shows: one record (a run, or the previewed item of an experiment). */
export interface ShowRecordMessage {
  type: "show";
  record: LensRecord;
  /** A webview URI of the analysed image (asWebviewUri), or null for a text-only run. */
  imageUri: string | null;
  /** Panel heading, e.g. the image's file name and the prompt. */
  title: string;
  /** For a live preview: which planned item this is, and whether it came from the cache. */
  preview?: { file: string; index: number; total: number; variant: string; expected: string | null; cached: boolean; variants?: string[]; image?: string };
}

/** The panel is busy (a run or preview in flight), idle, or the last update failed. */
export interface StatusMessage {
  type: "status";
  state: "running" | "idle" | "error";
  message?: string;
}

/**
 * A live preview's source is invalid: the errors are shown in the panel, and the last good
 * record stays on screen.
 */
export interface ProblemsMessage {
  type: "problems";
  file: string;
  problems: { path: string; message: string; line?: number; column?: number }[];
}

/** The answer to a TrackMessage: ranks and probabilities [L+1, P, tokens] over record.positions. */
/** One token of a string's split: its id, its vocabulary piece ("▁ban") and how it reads alone. */
export interface TokenPiece {
  id: number;
  piece: string;
  text: string;
}

export interface TrackedMessage {
  type: "tracked";
  ids: number[];
  texts: string[];
  /** Per token: what was asked, the asked text's whole split (the first piece is tracked), whether that piece is the unknown token (TrackTokensResult). */
  asked?: string[];
  pieces?: TokenPiece[][];
  unknown?: boolean[];
  rank: NumericBlock;
  prob: NumericBlock;
}

/** A finished sweep's aggregates, for the comparison view (groups x mask variants). */
export interface ComparisonMessage {
  type: "comparison";
  title: string;
  aggregates: SweepAggregates;
  /** Layer labels of the model that ran the sweep ("embeddings", "block 1", ...). */
  layerLabels: string[];
  /** The sweep's items in plan order, for the per-item table (absent when its results.jsonl could not be read). */
  items?: ComparisonItem[];
}

/** Where the host keeps the panel's record, so that a panel restored after a reload can read it back. */
export interface HostState {
  recordFile?: string;
  imagePath?: string;
  title?: string;
  kind?: PanelState["kind"];
  /** A comparison view's results folder, read again when the panel is restored, and the experiment file that wrote it (null: unknown). */
  resultsFolder?: string;
  experimentFile?: string | null;
}

/** The page stores this in its state (PanelState.host) for the host's serializer. */
export interface HostStateMessage {
  type: "hostState";
  state: HostState;
}

/** The answer to a HeadPatternRequestMessage: that head's attention of each analysed query over every key token, [P, T]. */
export interface HeadPatternMessage {
  type: "headPattern";
  block: number;
  head: number;
  rows: NumericBlock;
}

/** The answer to a MaskHeadMessage: the panel's run again with that head masked too. */
export interface MaskedRunMessage {
  type: "maskedRun";
  block: number;
  head: number;
  record: LensRecord;
}

export type HostToWebview = ShowRecordMessage | StatusMessage | ProblemsMessage | TrackedMessage | ComparisonMessage | HostStateMessage | HeadPatternMessage | MaskedRunMessage;

/** The webview has loaded and wants its data (sent again after a reload). */
export interface ReadyMessage {
  type: "ready";
}

/** Track a token string that the record does not hold (the host asks the sidecar). */
export interface TrackMessage {
  type: "track";
  text: string;
  /** Token ids to track as they are (picked from a top-k list); `text` is then their label. */
  ids?: number[];
}

/**
 * Save something the panel made. For "csv" and "json" the host writes the record (the webview
 * sends no data); for "svg" and "png" the webview sends the chart (SVG text, or a PNG data URL).
 */
export interface ExportMessage {
  type: "export";
  format: "csv" | "json" | "svg" | "png";
  /** A suggested file name without folder, e.g. "heatmap.svg". */
  name: string;
  data?: string;
  /** The panel could not make the file (a PNG the browser would not draw, say): the host logs this reason and reports it. */
  error?: string;
}

/** A comparison view asks for one sweep item's full record in a run panel (a row of its per-item table). */
export interface OpenItemMessage {
  type: "openItem";
  id: string;
}

/** A live preview's navigation: show planned item `index` of its file, or list the items to choose one. */
export interface PreviewItemMessage {
  type: "previewItem";
  index: number;
}
export interface ChoosePreviewItemMessage {
  type: "choosePreviewItem";
}

/** A head picked in the block x head matrix: its attention pattern in the panel's run (decoder block from 0). */
export interface HeadPatternRequestMessage {
  type: "headPattern";
  block: number;
  head: number;
}

/** "Mask this head and rerun": the panel's run again with this head masked as well. */
export interface MaskHeadMessage {
  type: "maskHead";
  block: number;
  head: number;
}

/** Run the panel's request again with the image overlay's data (attention over the image patches, the patch lens). */
export interface RerunWithOverlayMessage {
  type: "rerunWithOverlay";
}

export type WebviewToHost = ReadyMessage | TrackMessage | ExportMessage | OpenItemMessage | RerunWithOverlayMessage | PreviewItemMessage | ChoosePreviewItemMessage | HeadPatternRequestMessage | MaskHeadMessage;

/** What the webview keeps with vscode.setState, so a panel comes back after a reload. */
export interface PanelState {
  kind: "run" | "preview" | "comparison";
  /** The last message that drew the panel (show or comparison). */
  last?: ShowRecordMessage | ComparisonMessage;
  /** UI choices: colour metric, selected position, chosen layer for overlays, tracked texts. */
  ui?: Record<string, unknown>;
  /** The last HostStateMessage's state, kept for the host's panel serializer. */
  host?: HostState;
}
