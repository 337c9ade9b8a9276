/**
 * The sidecar protocol: JSON-RPC 2.0 over the sidecar's stdio (vscode-jsonrpc framing).
 * Every method is under `lens/`; each constant says who sends it and when. The first request
 * must be `lens/initialize` with a matching protocol version.
 *
 * Errors: input problems (a missing file, a bad model folder, a head outside the model) come
 * back as ResponseError code `INPUT_ERROR` with a one-line message naming the file and the fix,
 * and the sidecar keeps running. A cancelled request answers with code -32800. Params that do
 * not match the types below are refused before anything runs (protocolValidation.ts: INPUT_ERROR
 * naming the field, e.g. "lens/run: params.settings.topK must be an integer from 1 to 100, got 0");
 * any request but lens/initialize before the handshake gets NOT_INITIALIZED. A malformed frame
 * gets -32700 (id null), an invalid message -32600, an unknown method -32601; after each the
 * sidecar reads on from the next frame (sidecar/rpcFraming.ts).
 *
 * Answers carry their large numeric blocks as bytes (shared/blockTransport.ts: `{shape,
 * encoded: {dtype, base64}}` in place of `{shape, data}`); the client decodes them, so the types
 * below describe what a caller of SidecarClient.request gets.
 */
import { NotificationType, RequestType, RequestType0 } from "vscode-jsonrpc";
import type { DeviceDescription, LensRecord, LensSettings, NumericBlock } from "./lensRecord";
import type { SweepSummary } from "./sweep";
import type { TokenPiece } from "./webviewProtocol";

export const PROTOCOL_VERSION = 2;

/** ResponseError codes of the sidecar (JSON-RPC reserves -32768..-32000 for itself). */
export const ErrorCode = {
  INPUT_ERROR: 1001,
  NOT_INITIALIZED: 1002,
  NO_MODEL: 1003,
  NO_RUN: 1004,
  VERSION_MISMATCH: 1005,
} as const;

export interface InitializeParams {
  protocolVersion: number;
  clientName: string;
}
export interface InitializeResult {
  protocolVersion: number;
  serverVersion: string;
  /** Each execution provider the sidecar knows, and whether it really works on this machine. */
  providers: ProviderStatus[];
  /** Model classes (config.json "architectures") this sidecar can run. */
  architectures: string[];
  /** The folder opened when lens/openModel gets an empty folder (the bundled model). */
  defaultModel: string;
}
/**
 * An execution provider as the sidecar found it when it started: `works` only after a session
 * on it really ran (CUDA: its libraries present and loaded; WebGPU: an adapter found).
 */
export interface ProviderStatus {
  name: "cpu" | "cuda" | "webgpu";
  works: boolean;
  /** One line: the adapter when it works, else what is missing and how to get it. */
  detail: string;
  device?: DeviceDescription;
}
/** Extension -> sidecar, once, right after spawning it. */
export const InitializeRequest = new RequestType<InitializeParams, InitializeResult, void>("lens/initialize");

/**
 * The compute dtype a model opens with. auto: on the CPU float32 with half-precision weights as
 * float32 copies when they fit, else a float16 checkpoint in its own float16 and a bfloat16 one
 * in float32 with its weights kept half and converted per use; on a GPU the checkpoint's
 * half precision (float16, or bfloat16 on CUDA for a bfloat16 checkpoint; float32 on a WebGPU
 * adapter without shader-f16). float32: always float32 copies (refused when they cannot fit).
 * float16: on every provider, weights used as stored, activations and the KV cache half; softmax,
 * rotary tables and the lens statistics stay float32. bfloat16: CUDA only, refused elsewhere with
 * what to use instead.
 */
export const DTYPE_CHOICES = ["auto", "float32", "float16", "bfloat16"] as const;
export type DtypeChoice = (typeof DTYPE_CHOICES)[number];

export interface OpenModelParams {
  folder: string;
  device?: "auto" | "cpu" | "cuda" | "webgpu";
  threads?: number;
  /** Default auto. */
  dtype?: DtypeChoice;
}
export interface ModelSummary {
  folder: string;
  architecture: string;
  dtype: string;
  provider: string;
  numLayers: number;
  numHeads: number;
  vocabSize: number;
  hasVision: boolean;
  openMs: number;
  /** The dtype the graphs compute in, and how the weights are held (see the LensRecord's model). */
  computeDtype?: "float32" | "float16" | "bfloat16";
  weightPlan?: "float32" | "half-per-use" | "half";
  /** The device behind `provider`, with the adapter's name and memory where known. */
  device?: DeviceDescription;
  /** The memory the model was estimated to need before it opened, what was free, and why this weight plan. */
  memory?: { estimateBytes: number; availableBytes: number; reason: string };
}
/** Extension -> sidecar, when the configured model changes; replaces the open model. */
export const OpenModelRequest = new RequestType<OpenModelParams, ModelSummary, void>("lens/openModel");
/**
 * Sidecar -> extension, when the open model's summary changes without a request: the float32
 * copies of its half-precision weights, made in the background after it opened, are in use.
 */
export const ModelChangedNotification = new NotificationType<ModelSummary>("lens/modelChanged");

export type HeadMaskParams = { heads: Record<string, number[]> } | { strategy: "random"; count: number; seed: number } | { strategy: "topImage"; count: number };
export interface RunParams {
  prompt: string;
  /** Path of an image file on the sidecar's machine. */
  image?: string;
  settings?: Partial<LensSettings>;
  headMask?: HeadMaskParams;
}
/** Extension -> sidecar, for each run of the lens; cancellable. */
export const RunRequest = new RequestType<RunParams, LensRecord, void>("lens/run");

export interface TrackTokensParams {
  /** Token strings; each is tracked by its first token (as it would continue the text). */
  tokens: string[];
  /** Token ids tracked as they are (picked from a top-k list), after `tokens`. */
  ids?: number[];
}
export interface TrackTokensResult {
  /** Per tracked token (`tokens`, then `ids`): the id tracked and how it reads. */
  ids: number[];
  texts: string[];
  /** Per tracked token: what was asked (the string, or the id's text), its whole split (the first piece is the one tracked) and whether that piece is the unknown token. */
  asked?: string[];
  pieces?: TokenPiece[][];
  unknown?: boolean[];
  /** [L+1, P, tokens] over the last run's analysed positions. */
  rank: NumericBlock;
  prob: NumericBlock;
}
/** Extension -> sidecar, when the user asks for the ranks of a token the last run did not track. */
export const TrackTokensRequest = new RequestType<TrackTokensParams, TrackTokensResult, void>("lens/trackTokens");

export interface AttentionPatternParams {
  /** Decoder block, from 0 (the record's attention.mass layer axis). */
  layer: number;
  head: number;
}
export interface AttentionPatternResult {
  layer: number;
  head: number;
  /** That head's attention of each analysed query (the record's positions) over every key token: [P, T], each row summing to 1 over the keys it may see. */
  rows: NumericBlock;
}
/** Extension -> sidecar, when the user picks a head in a panel: its whole attention pattern in the last run (computed again for that head, then kept). */
export const AttentionPatternRequest = new RequestType<AttentionPatternParams, AttentionPatternResult, void>("lens/attentionPattern");

/** Extension -> sidecar, before it ends the process; the sidecar releases its sessions. */
export const ShutdownRequest = new RequestType0<void, void>("lens/shutdown");

export interface LogParams {
  level: "info" | "warn" | "error";
  message: string;
}
/** Sidecar -> extension, for the Output channel (stdout belongs to JSON-RPC, so no console output). */
export const LogNotification = new NotificationType<LogParams>("lens/log");

export interface ProgressParams {
  /** The request id this progress belongs to, when known. */
  stage: string;
}
/** Sidecar -> extension, as a run moves through its stages (prepare, vision, prefill, decode, lens). */
export const ProgressNotification = new NotificationType<ProgressParams>("lens/progress");

export interface RunExperimentParams {
  /** Path of the .lens.json file on the sidecar's machine. */
  file: string;
  /** Results folder; default: the file's output.folder, or "<name>.results" beside it. */
  outDir?: string;
  /** Delete earlier results in the folder first. */
  fresh?: boolean;
}
/** What a finished (or cancelled) sweep did, with aggregates.json's figures. */
export type RunExperimentResult = SweepSummary;
/**
 * Extension -> sidecar: run every item of an experiment, streaming results to its folder;
 * cancellable (finished items are kept, and a rerun continues). If the file names a model other
 * than the open one, that model is opened first.
 */
export const RunExperimentRequest = new RequestType<RunExperimentParams, RunExperimentResult, void>("lens/runExperiment");

export interface ExperimentProgressParams {
  file: string;
  done: number;
  total: number;
  resumed: number;
  /** Items per second over this run, and the estimated seconds left. */
  rate: number;
  etaSeconds: number;
}
/** Sidecar -> extension, after each finished item of lens/runExperiment. */
export const ExperimentProgressNotification = new NotificationType<ExperimentProgressParams>("lens/experimentProgress");

export interface PreviewExperimentParams {
  file: string;
  /** The file's current text (an unsaved editor); default: read the file. */
  text?: string;
  /** Which planned item to show (default 0, the first). */
  item?: number;
  /** Show the last planned item when `item` is past the plan (a preview whose file lost items), instead of refusing. */
  clampItem?: boolean;
  /** Compute the item even when the preview cache has it, so that it becomes the sidecar's last run (lens/trackTokens and lens/attentionPattern answer over it). */
  keepRun?: boolean;
}
export interface PreviewExperimentResult {
  record: LensRecord;
  /** The previewed planned item. `id`: the id its row gets in a sweep's results.jsonl; `image`: the image's path relative to the experiment's inputs (for display); `imagePath`: the absolute path on the sidecar's machine. */
  item: { id: string; index: number; total: number; image: string; imagePath: string; prompt: string; variant: string; expected: string | null };
  /** Whether the record came from the cache (same model, image bytes, prompt, settings and mask); a computed one is the sidecar's last run. */
  cached: boolean;
  /** The experiment's variants in plan order: item `index` is variant `index % variants.length` of its input and prompt. */
  variants: string[];
}
/** Extension -> sidecar, on each valid edit of a previewed .lens.json (debounced); cancellable. */
export const PreviewExperimentRequest = new RequestType<PreviewExperimentParams, PreviewExperimentResult, void>("lens/previewExperiment");

export interface PlanExperimentParams {
  file: string;
  /** The file's current text (an unsaved editor); default: read the file. */
  text?: string;
}
/** One planned item, as a list to pick a preview item from shows it. */
export interface PlannedItemSummary {
  id: string;
  index: number;
  /** The image's path relative to the experiment file. */
  image: string;
  prompt: string;
  variant: string;
  expected: string | null;
}
export interface PlanExperimentResult {
  /** The first PLAN_LIST_MAX planned items, in plan order (`total` says how many there are). */
  items: PlannedItemSummary[];
  total: number;
  variants: string[];
}
/** The most items lens/planExperiment lists. */
export const PLAN_LIST_MAX = 20_000;
/** Extension -> sidecar: the items an experiment plans (for choosing which one the preview shows); opens no model. */
export const PlanExperimentRequest = new RequestType<PlanExperimentParams, PlanExperimentResult, void>("lens/planExperiment");
