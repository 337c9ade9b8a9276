/**
 * The sidecar as a JSON-RPC server on stdio (`logit-lens serve`): it holds one model, runs the
 * lens on request, and survives bad input — an input error is answered and the next request
 * is served as usual. Logs go out as lens/log notifications; stdout carries only JSON-RPC.
 *
 * The boundary is checked before anything runs: frames by rpcFraming.ts (a malformed one is
 * answered with -32700 and reading goes on at the next frame), then the method (unknown:
 * -32601), the handshake (nothing but lens/initialize before it) and each request's params
 * against its protocol type (shared/protocolValidation.ts: INPUT_ERROR naming the field).
 */
import { CancellationToken, createMessageConnection, ErrorCodes, type Message, ResponseError, StreamMessageWriter } from "vscode-jsonrpc/node";
import { encodeBlocks } from "../shared/blockTransport";
import type { LensRecord } from "../shared/lensRecord";
import {
  type DtypeChoice,
  ErrorCode,
  ExperimentProgressNotification,
  InitializeRequest,
  LogNotification,
  ModelChangedNotification,
  type ModelSummary,
  PLAN_LIST_MAX,
  ProgressNotification,
  PROTOCOL_VERSION,
} from "../shared/protocol";
import { InvalidParamsError, isRequestMethod, type RequestMethod, type RequestParamsByMethod, validateParams } from "../shared/protocolValidation";
import { createHash } from "node:crypto";
import * as path from "node:path";
import { InvalidExperimentError, type LensExperiment } from "../shared/experiment";
import { SUPPORTED_ARCHITECTURES } from "./arch";
import { defaultModelFolder } from "./defaults";
import { isLensInputError, LensInputError } from "./errors";
import { outputFolder, readExperimentFile } from "./experiment/paths";
import { itemRequest, planExperiment, runSweep } from "./experiment/sweep";
import { headPattern, type PatternSource, patternLayer } from "./lens/attentionPattern";
import { firstTokenOf, LensCancelledError, type LensRunHooks, type LensRunRequest, runLens } from "./lens/runLens";
import { LoadedModel } from "./model/loadedModel";
import { FramedMessageReader, type Rejection } from "./rpcFraming";
import { parseDevice, providerStatuses } from "./runtime/ort";
import { MAX_IMAGE_BYTES, readInputFile } from "./util/readInput";

const SERVER_VERSION = "0.1.0";
const REQUEST_CANCELLED = -32800;
/** Preview records kept, by (model and its dtype, image bytes, prompt, settings, mask). */
const PREVIEW_CACHE_SIZE = 64;
/** Heads whose attention patterns stay computed for the last run (each is layers x positions x tokens numbers). */
const PATTERNS_KEPT = 8;

export async function serve(input: NodeJS.ReadableStream = process.stdin, output: NodeJS.WritableStream = process.stdout): Promise<void> {
  const writer = new StreamMessageWriter(output);
  // A refused frame or message: its error reply (when it has one) and a warning in the Output channel.
  const refused = (r: Rejection) => {
    if (r.reply) writer.write(r.reply as unknown as Message).catch(() => undefined);
    log("warn", `JSON-RPC input refused: ${r.reason}`);
  };
  const connection = createMessageConnection(new FramedMessageReader(input, refused), writer);
  let initialized = false;
  let model: LoadedModel | undefined;
  /** How the open model was opened: an experiment's model opens on the same device, and reopens for another dtype. */
  let openedWith: { device?: string; threads?: number; dtype: DtypeChoice } = { dtype: "auto" };
  /** The last lens/run: its record, hidden states (tracking) and what a head's attention pattern needs, with the patterns computed so far. */
  let lastRun: { record: LensRecord; hidden: Float32Array; source?: PatternSource; patterns: Map<number, Float32Array> } | undefined;
  // Requests that use the model run one at a time, in arrival order; while one runs, the model
  // is busy (its float32 copies, made in the background, wait).
  let queue: Promise<unknown> = Promise.resolve();
  /** Ends the busy marks of the request running now: the open model's, and that of one it opens. */
  let held: (() => void)[] = [];
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const run = async () => {
      held = model ? [model.busy()] : [];
      try {
        return await f();
      } finally {
        for (const end of held.splice(0)) end();
      }
    };
    const next = queue.then(run, run);
    queue = next.catch(() => undefined);
    return next;
  };
  const log = (level: "info" | "warn" | "error", message: string) => void connection.sendNotification(LogNotification, { level, message });
  const previews = new Map<string, LensRecord>();

  const summaryOf = (m: LoadedModel, openMs: number): ModelSummary => {
    const { info } = m;
    return {
      folder: info.folder,
      architecture: info.architecture,
      dtype: info.dtype,
      provider: info.provider,
      ...(info.device ? { device: info.device } : {}),
      numLayers: info.numLayers,
      numHeads: info.numHeads,
      vocabSize: info.vocabSize,
      hasVision: m.hasVision,
      openMs,
      computeDtype: info.computeDtype,
      weightPlan: info.weightPlan,
      memory: info.memory,
    };
  };

  const open = async (folder: string, how: { device?: string; threads?: number; dtype?: DtypeChoice } = {}): Promise<LoadedModel> => {
    const { device, threads, dtype = "auto" } = how;
    const t0 = performance.now();
    // float32 copies of half-precision weights are made after the open, while the model is not in use
    const next = await LoadedModel.open(folder, { device: parseDevice(device ?? "auto"), dtype, threads, float32Copies: "in-background", onProgress: (stage) => void connection.sendNotification(ProgressNotification, { stage }) });
    const openMs = performance.now() - t0;
    await model?.dispose();
    model = next;
    held.push(next.busy());
    openedWith = { device, threads, dtype };
    lastRun = undefined;
    log("info", `opened ${next.info.folder} (${next.info.architecture}, ${next.info.dtype} weights, ${next.info.computeDtype} compute) on ${next.info.provider}: ${next.info.memory.reason}`);
    void next.float32Copies().then((ready) => {
      if (model !== next) return;
      const t = next.engine.copiesTimings;
      if (ready) {
        log("info", `float32 copies of ${next.info.folder}'s weights are in use${t ? `, ${(t.readyMs / 1000).toFixed(1)} s after it opened (widening ${(t.widenMs / 1000).toFixed(1)} s, sessions ${(t.sessionMs / 1000).toFixed(1)} s)` : ""}: ${next.info.memory.reason}`);
        void connection.sendNotification(ModelChangedNotification, summaryOf(next, openMs));
      } else if (next.engine.copiesFailure) {
        log("warn", `the float32 copies of ${next.info.folder}'s weights could not be made (${next.engine.copiesFailure}): it keeps its weights half, converted per use (the same numbers, slower)`);
      }
    });
    return next;
  };

  /**
   * The model an experiment names: "default" is the open model (or the default one); a path is
   * opened unless it is open already. A dtype the file names that differs from the one the model
   * was opened with reopens it; without one, an open model is used as it is. The device and
   * threads stay those of the last lens/openModel.
   */
  const modelFor = async (experiment: LensExperiment, file: string): Promise<LoadedModel> => {
    const folder = experiment.model === "default" ? (model?.info.folder ?? defaultModelFolder()) : path.resolve(path.dirname(file), experiment.model);
    const dtype = experiment.dtype ?? (model ? openedWith.dtype : "auto");
    if (model && path.resolve(model.info.folder) === path.resolve(folder) && openedWith.dtype === dtype) return model;
    return open(folder, { device: openedWith.device, threads: openedWith.threads, dtype });
  };

  const readExperiment = async (file: string, text?: string): Promise<LensExperiment> => {
    try {
      return await readExperimentFile(file, text);
    } catch (e) {
      if (e instanceof InvalidExperimentError) throw new ResponseError(ErrorCode.INPUT_ERROR, e.message, { file, errors: e.errors });
      throw e;
    }
  };

  /** A lens run that becomes the last run: lens/trackTokens and lens/attentionPattern answer over its hidden states and attention inputs. */
  const runAsLast = async (m: LoadedModel, request: LensRunRequest, opts: Pick<LensRunHooks, "isCancelled" | "onStage">): Promise<LensRecord> => {
    let hidden: Float32Array = new Float32Array(0);
    let source: PatternSource | undefined;
    const record = await runLens(m, request, { ...opts, keepHidden: (h) => (hidden = h), keepPatternSource: (s) => (source = s) });
    lastRun = { record, hidden, source, patterns: new Map() };
    return record;
  };

  /** Maps what a handler throws to a response: input errors and cancellations are expected; the server carries on. */
  /** `inFile`: the experiment file a request works on, named by the input errors that name no file of their own (a target too long, say). */
  const guarded = async <T>(name: string, f: () => Promise<T>, inFile?: string): Promise<T> => {
    try {
      return encodeBlocks(await f(), "base64");
    } catch (caught) {
      let e = caught;
      if (e instanceof ResponseError) throw e;
      if (e instanceof LensCancelledError) throw new ResponseError(REQUEST_CANCELLED, "cancelled");
      if (isLensInputError(e) && e.file === undefined && inFile) e = new LensInputError(inFile, e.message);
      if (isLensInputError(e)) {
        log("warn", e.message);
        throw new ResponseError(ErrorCode.INPUT_ERROR, e.message, { file: e.file });
      }
      const message = e instanceof Error ? e.message.split("\n")[0] : String(e);
      log("error", `${name} failed: ${e instanceof Error ? e.stack : message}`);
      throw new ResponseError(-32603, `internal error in ${name}: ${message}`);
    }
  };

  // Every request goes through `dispatch` below, which checks the method, the handshake and the params first.
  type Handler = (params: never, token: CancellationToken) => Promise<unknown>;
  const handlers = new Map<RequestMethod, Handler>();
  const on = <M extends RequestMethod>(method: M, handler: (params: RequestParamsByMethod[M], token: CancellationToken) => Promise<unknown>) => {
    handlers.set(method, handler as Handler);
  };

  on("lens/initialize", (params) =>
    guarded("initialize", async () => {
      if (params.protocolVersion !== PROTOCOL_VERSION) {
        throw new ResponseError(ErrorCode.VERSION_MISMATCH, `protocol version ${params.protocolVersion} is not supported (this sidecar speaks ${PROTOCOL_VERSION}): update the extension and the sidecar together`);
      }
      initialized = true;
      log("info", `initialized by ${params.clientName}`);
      return { protocolVersion: PROTOCOL_VERSION, serverVersion: SERVER_VERSION, providers: await providerStatuses(), architectures: [...SUPPORTED_ARCHITECTURES], defaultModel: defaultModelFolder() };
    }),
  );

  on("lens/openModel", (params) =>
    guarded("openModel", () =>
      serial(async () => {
        const t0 = performance.now();
        // An empty folder is the default: $LOGIT_LENS_MODEL, else the bundled model.
        const next = await open(params.folder || defaultModelFolder(), { device: params.device, threads: params.threads, dtype: params.dtype });
        return summaryOf(next, performance.now() - t0);
      }),
    ),
  );

  on("lens/run", (params, token) =>
    guarded("run", () =>
      serial(async () => {
        if (!model) throw new ResponseError(ErrorCode.NO_MODEL, "no model is open: send lens/openModel first");
        return runAsLast(model, { prompt: params.prompt, image: params.image, settings: params.settings, headMask: params.headMask }, {
          isCancelled: () => token.isCancellationRequested,
          onStage: (stage) => void connection.sendNotification(ProgressNotification, { stage }),
        });
      }),
    ),
  );

  on("lens/trackTokens", (params) =>
    guarded("trackTokens", () =>
      serial(async () => {
        if (!model || !lastRun) throw new ResponseError(ErrorCode.NO_RUN, "no run to track tokens in: send lens/run first");
        const m = model;
        const splits = params.tokens.map((t) => {
          firstTokenOf(m, t); // the same error for a string that tokenizes to nothing
          return m.text.encodeContinuation(t);
        });
        const picked = params.ids ?? [];
        const vocab = m.info.vocabSize;
        const outside = picked.find((id) => id >= vocab);
        if (outside !== undefined) throw new LensInputError(undefined, `token id ${outside} is outside the model's vocabulary (0 to ${vocab - 1}): pick a token from this run's top-k`);
        const ids = [...splits.map((s) => s[0]), ...picked];
        const piece = (id: number) => ({ id, piece: m.text.idToToken(id) ?? `#${id}`, text: m.text.tokenLabel(id) });
        const unk = m.text.unkTokenId;
        const stats = await m.lens(lastRun.hidden, { topK: 1, tracked: ids });
        const shape = [lastRun.record.layerLabels.length, lastRun.record.positions.length, ids.length];
        // The lens reports its tracked tokens sorted and unique; answer in the order asked.
        const M = stats.tracked.length;
        const column = ids.map((id) => stats.tracked.indexOf(id));
        const inOrder = (x: ArrayLike<number | bigint>) => Array.from({ length: shape[0] * shape[1] * ids.length }, (_, i) => Number(x[Math.floor(i / ids.length) * M + column[i % ids.length]]));
        return {
          ids,
          texts: ids.map((id) => m.text.tokenLabel(id)),
          asked: [...params.tokens, ...picked.map((id) => m.text.tokenLabel(id))],
          pieces: [...splits.map((s) => s.map(piece)), ...picked.map((id) => [piece(id)])],
          unknown: ids.map((id) => unk !== undefined && id === unk),
          rank: { shape, data: inOrder(stats.trackedRank) },
          prob: { shape, data: inOrder(stats.trackedProb) },
        };
      }),
    ),
  );

  on("lens/attentionPattern", (params) =>
    guarded("attentionPattern", () =>
      serial(async () => {
        if (!model || !lastRun?.source) throw new ResponseError(ErrorCode.NO_RUN, "no run to read attention patterns from: send lens/run first");
        const { numLayers, numHeads } = model.info;
        if (params.layer >= numLayers) throw new LensInputError(undefined, `layer ${params.layer} is past the model's ${numLayers} blocks (0 to ${numLayers - 1})`);
        if (params.head >= numHeads) throw new LensInputError(undefined, `head ${params.head} is past the model's ${numHeads} heads (0 to ${numHeads - 1})`);
        const run = lastRun;
        const source = run.source!;
        let pattern = run.patterns.get(params.head);
        if (!pattern) {
          pattern = await headPattern(model, source, params.head);
          run.patterns.set(params.head, pattern);
          // [L, P, T] per head: keep the last few heads asked for
          if (run.patterns.size > PATTERNS_KEPT) run.patterns.delete(run.patterns.keys().next().value as number);
        }
        const P = source.positions.length;
        const T = source.ids.length;
        return { layer: params.layer, head: params.head, rows: { shape: [P, T], data: Array.from(patternLayer(pattern, params.layer, P, T)) } };
      }),
    ),
  );

  on("lens/runExperiment", (params, token) =>
    guarded("runExperiment", () =>
      serial(async () => {
        const file = path.resolve(params.file);
        const experiment = await readExperiment(file);
        const m = await modelFor(experiment, file);
        const result = await runSweep(m, experiment, file, {
          outDir: params.outDir ? path.resolve(params.outDir) : outputFolder(experiment, file),
          fresh: params.fresh,
          isCancelled: () => token.isCancellationRequested,
          onWarning: (w) => log("warn", `experiment ${file}: ${w}`),
          onProgress: (p) => void connection.sendNotification(ExperimentProgressNotification, { file, done: p.done, total: p.total, resumed: p.resumed, rate: p.rate, etaSeconds: p.etaSeconds }),
        });
        log("info", `experiment ${file}: ${result.ran} run, ${result.resumed} already done, ${result.total} planned${result.cancelled ? " (cancelled)" : ""}`);
        return { outDir: result.outDir, total: result.total, ran: result.ran, resumed: result.resumed, cancelled: result.cancelled, seconds: result.seconds, aggregates: result.aggregates };
      }),
      path.resolve(params.file),
    ),
  );

  on("lens/previewExperiment", (params, token) =>
    guarded("previewExperiment", () =>
      serial(async () => {
        const file = path.resolve(params.file);
        const experiment = await readExperiment(file, params.text);
        const items = await planExperiment(experiment, file);
        const asked = params.item ?? 0;
        const index = params.clampItem && items.length ? Math.min(asked, items.length - 1) : asked;
        const item = items[index];
        if (!item) throw new LensInputError(file, `the experiment plans ${items.length} items, so there is no item ${index}: pick one below ${items.length}`);
        const variants = experiment.variants.map((v) => v.name);
        // A regular file of bounded size only (a FIFO would block the sidecar), read before a model is opened for it.
        const bytes = await readInputFile(item.image, { maxBytes: MAX_IMAGE_BYTES, what: "image", fix: "fix the experiment's inputs" });
        const m = await modelFor(experiment, file);
        const request = itemRequest(item);
        // What decides the numbers: not the weight plan, since weights kept half and their float32
        // copies made in the background give the same ones (test/parity/halfWeights.test.ts), so a
        // preview made before the copies is still served after them.
        const key = createHash("sha256").update(JSON.stringify([m.info.configHash, m.info.provider, m.info.computeDtype, request.prompt, request.settings, request.headMask ?? null])).update(bytes).digest("hex");
        const summary = { id: item.id, index, total: items.length, image: item.imageRel, imagePath: item.image, prompt: item.prompt, variant: item.variant.name, expected: item.expected };
        const hit = params.keepRun ? undefined : previews.get(key);
        if (hit) {
          previews.delete(key); // most recently used goes last
          previews.set(key, hit);
          return { record: hit, item: summary, cached: true, variants };
        }
        // a computed preview is the last run: tracking a token or reading a head in the preview answers over it
        const record = await runAsLast(m, { ...request, image: bytes }, { isCancelled: () => token.isCancellationRequested });
        if (record.input.image) record.input.image.path = item.image;
        previews.set(key, record);
        if (previews.size > PREVIEW_CACHE_SIZE) previews.delete(previews.keys().next().value as string);
        return { record, item: summary, cached: false, variants };
      }),
      path.resolve(params.file),
    ),
  );

  on("lens/planExperiment", (params) =>
    guarded("planExperiment", () =>
      serial(async () => {
        const file = path.resolve(params.file);
        const experiment = await readExperiment(file, params.text);
        const items = await planExperiment(experiment, file);
        return {
          items: items.slice(0, PLAN_LIST_MAX).map((i) => ({ id: i.id, index: i.index, image: i.imageRel, prompt: i.prompt, variant: i.variant.name, expected: i.expected })),
          total: items.length,
          variants: experiment.variants.map((v) => v.name),
        };
      }),
      path.resolve(params.file),
    ),
  );

  // The server ends when the client shuts it down or closes the stream.
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  connection.onClose(() => finish());
  on("lens/shutdown", () =>
    serial(async () => {
      await model?.dispose();
      model = undefined;
      lastRun = undefined;
      setImmediate(finish);
    }),
  );

  const dispatch = async (method: string, params: unknown, token: CancellationToken): Promise<unknown> => {
    const handler = isRequestMethod(method) ? handlers.get(method) : undefined;
    if (!isRequestMethod(method) || !handler) {
      throw new ResponseError(ErrorCodes.MethodNotFound, `unknown method ${JSON.stringify(method.slice(0, 80))}: this sidecar answers ${[...handlers.keys()].join(", ")}`);
    }
    if (!initialized && method !== InitializeRequest.method) throw new ResponseError(ErrorCode.NOT_INITIALIZED, `${method} came before lens/initialize: send lens/initialize first`);
    let checked: unknown;
    try {
      checked = validateParams(method, params);
    } catch (e) {
      if (!(e instanceof InvalidParamsError)) throw e;
      log("warn", e.message);
      throw new ResponseError(ErrorCode.INPUT_ERROR, e.message, { field: e.field });
    }
    return handler(checked as never, token);
  };
  connection.onRequest((method, params, token) => dispatch(method, params, token));
  connection.listen();
  await finished;
  connection.dispose();
  await model?.dispose();
  // Stop reading stdin so that nothing keeps the process alive.
  (input as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
}
