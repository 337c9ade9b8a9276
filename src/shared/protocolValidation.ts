/**
 * Checks of every sidecar request's params against its type in protocol.ts, run before the
 * sidecar does anything with them. A JSON-RPC client can send any JSON, so `prompt: 5` or
 * `topK: 1e9` must be refused at the boundary with a one-line message that names the field and
 * what it must be ("lens/run: params.settings.topK must be an integer from 1 to 100, got
 * 1000000000"), rather than surface later as an internal error or a run nobody asked for.
 *
 * Unknown fields are ignored (as JSON-RPC peers usually do, and as the lens drops unknown
 * settings); missing required fields, wrong types and values out of range are errors. Ranges
 * follow package.json's settings and the .lens.json schema. Checks that need the open model (a
 * head outside it, an item past the experiment's plan) stay with the code that has the model.
 *
 * The table below has one entry per request type; test/unit/protocolValidation.test.ts checks it
 * against the request constants protocol.ts exports, so a new request cannot go unchecked.
 */
import type { RequestType, RequestType0 } from "vscode-jsonrpc";
import type { LensSettings } from "./lensRecord";
import type {
  AttentionPatternParams,
  AttentionPatternRequest,
  HeadMaskParams,
  InitializeParams,
  InitializeRequest,
  OpenModelParams,
  OpenModelRequest,
  PlanExperimentParams,
  PlanExperimentRequest,
  PreviewExperimentParams,
  PreviewExperimentRequest,
  RunExperimentParams,
  RunExperimentRequest,
  RunParams,
  RunRequest,
  ShutdownRequest,
  TrackTokensParams,
  TrackTokensRequest,
} from "./protocol";
import { DTYPE_CHOICES } from "./protocol";

/** Ranges of numeric params (package.json's logitLens.topK, logitLens.maxNewTokens, logitLens.threads). */
export const PARAM_LIMITS = {
  topK: { min: 1, max: 100 },
  maxNewTokens: { min: 0, max: 512 },
  /** 0 is onnxruntime's choice; more threads than this is a mistake on any machine we run on. */
  threads: { min: 0, max: 256 },
  /** Token strings per lens/trackTokens or settings.trackTokens. */
  trackTokens: { min: 1, max: 1000 },
  /** Heads named per layer, and mask counts: the model bounds them further. */
  headMaskCount: { min: 1, max: 1_000_000 },
  seed: { min: 0, max: 2 ** 32 - 1 },
} as const;

const DEVICES = ["auto", "cpu", "cuda", "webgpu"] as const satisfies readonly NonNullable<OpenModelParams["device"]>[];
const POSITIONS = ["afterImage", "image", "all"] as const satisfies readonly LensSettings["positions"][];

/** Params that do not match their request's type; the message is one line, prefixed with the method. */
export class InvalidParamsError extends Error {
  override readonly name = "InvalidParamsError";
  constructor(
    readonly method: string,
    /** The offending field, as a path: "params.settings.topK". */
    readonly field: string,
    message: string,
  ) {
    super(`${method}: ${message}`);
  }
}

/** Thrown by the checks below; the table entry adds the method name. */
class FieldError extends Error {
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/** How a value reads in a message: short, one line, never the whole of a long string. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return value.length === 0 ? "an empty array" : `an array of ${value.length}`;
  switch (typeof value) {
    case "string": {
      const s = JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
      return value.length > 40 ? `${s} (${value.length} characters)` : s;
    }
    case "number":
    case "boolean":
      return String(value);
    case "object":
      return "an object";
    default:
      return typeof value;
  }
}

const fail = (field: string, expected: string, got: unknown): never => {
  throw new FieldError(field, `${field} must be ${expected}, got ${describeValue(got)}`);
};

type Fields = Record<string, unknown>;

function object(value: unknown, field: string): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(field, "an object", value);
  return value as Fields;
}

function string(value: unknown, field: string): string {
  if (typeof value !== "string") fail(field, "a string", value);
  return value as string;
}

/** A path or another string that means nothing when empty. */
function nonEmptyString(value: unknown, field: string, what = "a non-empty string"): string {
  if (typeof value !== "string" || value.length === 0) fail(field, what, value);
  return value as string;
}

function boolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") fail(field, "true or false", value);
  return value as boolean;
}

function integer(value: unknown, field: string, range: { min: number; max: number }): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < range.min || value > range.max) fail(field, `an integer from ${range.min} to ${range.max}`, value);
  return value as number;
}

function oneOf<T extends string>(value: unknown, field: string, choices: readonly T[]): T {
  if (typeof value !== "string" || !(choices as readonly string[]).includes(value)) fail(field, `one of ${choices.join(", ")}`, value);
  return value as T;
}

function arrayOf<T>(value: unknown, field: string, range: { min: number; max: number }, item: (v: unknown, at: string) => T, what: string): T[] {
  if (!Array.isArray(value) || value.length < range.min || value.length > range.max) {
    fail(field, range.min > 0 ? `an array of ${range.min} to ${range.max} ${what}` : `an array of at most ${range.max} ${what}`, value);
  }
  return (value as unknown[]).map((v, i) => item(v, `${field}[${i}]`));
}

/** Params given by name (an object), or as the single positional param vscode-jsonrpc sends for a non-object. */
function byName(params: unknown): unknown {
  return Array.isArray(params) && params.length === 1 ? params[0] : params;
}

function validateInitialize(params: unknown): InitializeParams {
  const p = object(params, "params");
  // Any integer: a version this sidecar does not speak is answered with VERSION_MISMATCH, not here.
  if (typeof p.protocolVersion !== "number" || !Number.isInteger(p.protocolVersion)) fail("params.protocolVersion", "an integer", p.protocolVersion);
  return { protocolVersion: p.protocolVersion as number, clientName: string(p.clientName, "params.clientName") };
}

function validateOpenModel(params: unknown): OpenModelParams {
  const p = object(params, "params");
  // An empty folder is the default model, so it may be empty.
  const out: OpenModelParams = { folder: string(p.folder, "params.folder") };
  if (p.device !== undefined) out.device = oneOf(p.device, "params.device", DEVICES);
  if (p.threads !== undefined) out.threads = integer(p.threads, "params.threads", PARAM_LIMITS.threads);
  if (p.dtype !== undefined) out.dtype = oneOf(p.dtype, "params.dtype", DTYPE_CHOICES);
  return out;
}

function validateSettings(value: unknown, field: string): Partial<LensSettings> {
  const s = object(value, field);
  const out: Partial<LensSettings> = {};
  if (s.positions !== undefined) out.positions = oneOf(s.positions, `${field}.positions`, POSITIONS);
  if (s.topK !== undefined) out.topK = integer(s.topK, `${field}.topK`, PARAM_LIMITS.topK);
  if (s.maxNewTokens !== undefined) out.maxNewTokens = integer(s.maxNewTokens, `${field}.maxNewTokens`, PARAM_LIMITS.maxNewTokens);
  if (s.target !== undefined) out.target = string(s.target, `${field}.target`);
  if (s.answerProb !== undefined) out.answerProb = boolean(s.answerProb, `${field}.answerProb`);
  if (s.trackTokens !== undefined) out.trackTokens = arrayOf(s.trackTokens, `${field}.trackTokens`, { min: 0, max: PARAM_LIMITS.trackTokens.max }, (v, at) => nonEmptyString(v, at), "non-empty strings");
  if (s.imageAttention !== undefined) out.imageAttention = boolean(s.imageAttention, `${field}.imageAttention`);
  if (s.patchLens !== undefined) out.patchLens = boolean(s.patchLens, `${field}.patchLens`);
  return out;
}

function validateHeadMask(value: unknown, field: string): HeadMaskParams {
  const m = object(value, field);
  if (m.heads !== undefined) {
    const heads = object(m.heads, `${field}.heads`);
    const out: Record<string, number[]> = {};
    for (const layer of Object.keys(heads)) {
      // Layer keys are decimal numbers, which also keeps "__proto__" and friends out of `out`.
      if (!/^(0|[1-9]\d{0,5})$/.test(layer)) throw new FieldError(`${field}.heads`, `${field}.heads must map layer numbers (0, 1, ...) to head lists, got the key ${describeValue(layer)}`);
      out[layer] = arrayOf(heads[layer], `${field}.heads.${layer}`, { min: 0, max: PARAM_LIMITS.headMaskCount.max }, (v, at) => integer(v, at, { min: 0, max: PARAM_LIMITS.headMaskCount.max }), "head numbers");
    }
    return { heads: out };
  }
  const strategy = oneOf(m.strategy, `${field}.strategy`, ["random", "topImage"] as const);
  const count = integer(m.count, `${field}.count`, PARAM_LIMITS.headMaskCount);
  return strategy === "random" ? { strategy, count, seed: integer(m.seed, `${field}.seed`, PARAM_LIMITS.seed) } : { strategy, count };
}

function validateRun(params: unknown): RunParams {
  const p = object(params, "params");
  const out: RunParams = { prompt: string(p.prompt, "params.prompt") };
  if (p.image !== undefined) out.image = nonEmptyString(p.image, "params.image", "the path of an image file");
  if (p.settings !== undefined) out.settings = validateSettings(p.settings, "params.settings");
  if (p.headMask !== undefined) out.headMask = validateHeadMask(p.headMask, "params.headMask");
  return out;
}

function validateTrackTokens(params: unknown): TrackTokensParams {
  const p = object(params, "params");
  // token ids picked from a top-k list may come instead of strings: at least one of either
  const ids = p.ids === undefined ? undefined : arrayOf(p.ids, "params.ids", { min: 0, max: PARAM_LIMITS.trackTokens.max }, (v, at) => integer(v, at, { min: 0, max: 2 ** 31 - 1 }), "token ids");
  const tokens = arrayOf(p.tokens, "params.tokens", ids?.length ? { min: 0, max: PARAM_LIMITS.trackTokens.max } : PARAM_LIMITS.trackTokens, (v, at) => nonEmptyString(v, at), "non-empty strings");
  return ids ? { tokens, ids } : { tokens };
}

function validateAttentionPattern(params: unknown): AttentionPatternParams {
  const p = object(params, "params");
  // the model's layer and head counts are checked against the open model by the sidecar
  return { layer: integer(p.layer, "params.layer", { min: 0, max: 10_000 }), head: integer(p.head, "params.head", { min: 0, max: 10_000 }) };
}

function validateShutdown(params: unknown): undefined {
  const empty = params === undefined || params === null || (Array.isArray(params) && params.length === 0) || (typeof params === "object" && !Array.isArray(params) && Object.keys(params).length === 0);
  if (!empty) fail("params", "absent (lens/shutdown takes none)", params);
  return undefined;
}

function validateRunExperiment(params: unknown): RunExperimentParams {
  const p = object(params, "params");
  const out: RunExperimentParams = { file: nonEmptyString(p.file, "params.file", "the path of a .lens.json file") };
  if (p.outDir !== undefined) out.outDir = nonEmptyString(p.outDir, "params.outDir", "the path of a results folder");
  if (p.fresh !== undefined) out.fresh = boolean(p.fresh, "params.fresh");
  return out;
}

function validatePreviewExperiment(params: unknown): PreviewExperimentParams {
  const p = object(params, "params");
  const out: PreviewExperimentParams = { file: nonEmptyString(p.file, "params.file", "the path of a .lens.json file") };
  if (p.text !== undefined) out.text = string(p.text, "params.text");
  if (p.item !== undefined) out.item = integer(p.item, "params.item", { min: 0, max: Number.MAX_SAFE_INTEGER });
  if (p.clampItem !== undefined) out.clampItem = boolean(p.clampItem, "params.clampItem");
  if (p.keepRun !== undefined) out.keepRun = boolean(p.keepRun, "params.keepRun");
  return out;
}

function validatePlanExperiment(params: unknown): PlanExperimentParams {
  const p = object(params, "params");
  const out: PlanExperimentParams = { file: nonEmptyString(p.file, "params.file", "the path of a .lens.json file") };
  if (p.text !== undefined) out.text = string(p.text, "params.text");
  return out;
}

type ParamsOf<T> = T extends RequestType<infer P, unknown, unknown> ? P : T extends RequestType0<unknown, unknown> ? undefined : never;

/** Each request's params type, by method name, taken from the request constants themselves. */
export interface RequestParamsByMethod {
  "lens/initialize": ParamsOf<typeof InitializeRequest>;
  "lens/openModel": ParamsOf<typeof OpenModelRequest>;
  "lens/run": ParamsOf<typeof RunRequest>;
  "lens/trackTokens": ParamsOf<typeof TrackTokensRequest>;
  "lens/attentionPattern": ParamsOf<typeof AttentionPatternRequest>;
  "lens/shutdown": ParamsOf<typeof ShutdownRequest>;
  "lens/runExperiment": ParamsOf<typeof RunExperimentRequest>;
  "lens/previewExperiment": ParamsOf<typeof PreviewExperimentRequest>;
  "lens/planExperiment": ParamsOf<typeof PlanExperimentRequest>;
}
export type RequestMethod = keyof RequestParamsByMethod;

const VALIDATORS: { readonly [M in RequestMethod]: (params: unknown) => RequestParamsByMethod[M] } = {
  "lens/initialize": validateInitialize,
  "lens/openModel": validateOpenModel,
  "lens/run": validateRun,
  "lens/trackTokens": validateTrackTokens,
  "lens/attentionPattern": validateAttentionPattern,
  "lens/shutdown": validateShutdown,
  "lens/runExperiment": validateRunExperiment,
  "lens/previewExperiment": validatePreviewExperiment,
  "lens/planExperiment": validatePlanExperiment,
};

/** The methods that have a check here (every request in protocol.ts). */
export const VALIDATED_METHODS: readonly RequestMethod[] = Object.keys(VALIDATORS) as RequestMethod[];

export function isRequestMethod(method: string): method is RequestMethod {
  return Object.prototype.hasOwnProperty.call(VALIDATORS, method);
}

/**
 * The params of `method`, checked against its type: a copy holding only the known fields.
 * Throws InvalidParamsError with a one-line message naming the field and what it must be.
 */
export function validateParams<M extends RequestMethod>(method: M, params: unknown): RequestParamsByMethod[M] {
  try {
    return VALIDATORS[method](byName(params));
  } catch (e) {
    if (e instanceof FieldError) throw new InvalidParamsError(method, e.field, e.detail);
    throw e;
  }
}
