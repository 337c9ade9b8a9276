/**
 * The sidecar as a JSON-RPC server on stdio (`logit-lens serve`): it holds one model, runs the
 * lens on request, and survives bad input — an input error is answered and the next request
 * is served as usual. Logs go out as lens/log notifications; stdout carries only JSON-RPC.
 */
import { CancellationToken, createMessageConnection, ResponseError, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node";
import type { LensRecord } from "../shared/lensRecord";
import {
  ErrorCode,
  InitializeRequest,
  LogNotification,
  OpenModelRequest,
  ProgressNotification,
  PROTOCOL_VERSION,
  RunRequest,
  ShutdownRequest,
  TrackTokensRequest,
} from "../shared/protocol";
import { isLensInputError } from "./errors";
import { firstTokenOf, LensCancelledError, runLens } from "./lens/runLens";
import { LoadedModel } from "./model/loadedModel";
import { availableProviders, parseDevice } from "./runtime/ort";

const SERVER_VERSION = "0.1.0";
const REQUEST_CANCELLED = -32800;

export async function serve(input: NodeJS.ReadableStream = process.stdin, output: NodeJS.WritableStream = process.stdout): Promise<void> {
  const connection = createMessageConnection(new StreamMessageReader(input), new StreamMessageWriter(output));
  let initialized = false;
  let model: LoadedModel | undefined;
  let lastRun: { record: LensRecord; hidden: Float32Array } | undefined;
  // Requests that use the model run one at a time, in arrival order.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const next = queue.then(f, f);
    queue = next.catch(() => undefined);
    return next;
  };
  const log = (level: "info" | "warn" | "error", message: string) => void connection.sendNotification(LogNotification, { level, message });

  /** Maps what a handler throws to a response: input errors and cancellations are expected; the server carries on. */
  const guarded = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    if (!initialized && name !== "initialize") throw new ResponseError(ErrorCode.NOT_INITIALIZED, "send lens/initialize first");
    try {
      return await f();
    } catch (e) {
      if (e instanceof ResponseError) throw e;
      if (e instanceof LensCancelledError) throw new ResponseError(REQUEST_CANCELLED, "cancelled");
      if (isLensInputError(e)) {
        log("warn", e.message);
        throw new ResponseError(ErrorCode.INPUT_ERROR, e.message, { file: e.file });
      }
      const message = e instanceof Error ? e.message.split("\n")[0] : String(e);
      log("error", `${name} failed: ${e instanceof Error ? e.stack : message}`);
      throw new ResponseError(-32603, `internal error in ${name}: ${message}`);
    }
  };

  connection.onRequest(InitializeRequest, (params) =>
    guarded("initialize", async () => {
      if (params.protocolVersion !== PROTOCOL_VERSION) {
        throw new ResponseError(ErrorCode.VERSION_MISMATCH, `protocol version ${params.protocolVersion} is not supported (this sidecar speaks ${PROTOCOL_VERSION}): update the extension and the sidecar together`);
      }
      initialized = true;
      log("info", `initialized by ${params.clientName}`);
      return { protocolVersion: PROTOCOL_VERSION, serverVersion: SERVER_VERSION, providers: availableProviders() };
    }),
  );

  connection.onRequest(OpenModelRequest, (params) =>
    guarded("openModel", () =>
      serial(async () => {
        const t0 = performance.now();
        const next = await LoadedModel.open(params.folder, { device: parseDevice(params.device ?? "auto"), threads: params.threads, onProgress: (stage) => void connection.sendNotification(ProgressNotification, { stage }) });
        await model?.dispose();
        model = next;
        lastRun = undefined;
        const { info } = next;
        log("info", `opened ${info.folder} (${info.architecture}, ${info.dtype}) on ${info.provider}`);
        return {
          folder: info.folder,
          architecture: info.architecture,
          dtype: info.dtype,
          provider: info.provider,
          numLayers: info.numLayers,
          numHeads: info.numHeads,
          vocabSize: info.vocabSize,
          hasVision: next.hasVision,
          openMs: performance.now() - t0,
        };
      }),
    ),
  );

  connection.onRequest(RunRequest, (params, token: CancellationToken) =>
    guarded("run", () =>
      serial(async () => {
        if (!model) throw new ResponseError(ErrorCode.NO_MODEL, "no model is open: send lens/openModel first");
        let hidden: Float32Array = new Float32Array(0);
        const record = await runLens(model, { prompt: params.prompt, image: params.image, settings: params.settings, headMask: params.headMask }, {
          isCancelled: () => token.isCancellationRequested,
          onStage: (stage) => void connection.sendNotification(ProgressNotification, { stage }),
          keepHidden: (h) => (hidden = h),
        });
        lastRun = { record, hidden };
        return record;
      }),
    ),
  );

  connection.onRequest(TrackTokensRequest, (params) =>
    guarded("trackTokens", () =>
      serial(async () => {
        if (!model || !lastRun) throw new ResponseError(ErrorCode.NO_RUN, "no run to track tokens in: send lens/run first");
        const m = model;
        const ids = params.tokens.map((t) => firstTokenOf(m, t));
        const stats = await m.lens(lastRun.hidden, { topK: 1, tracked: ids });
        const shape = [lastRun.record.layerLabels.length, lastRun.record.positions.length, ids.length];
        return { ids, texts: ids.map((id) => m.text.tokenLabel(id)), rank: { shape, data: Array.from(stats.trackedRank, Number) }, prob: { shape, data: Array.from(stats.trackedProb) } };
      }),
    ),
  );

  // The server ends when the client shuts it down or closes the stream.
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  connection.onClose(() => finish());
  connection.onRequest(ShutdownRequest, () =>
    serial(async () => {
      await model?.dispose();
      model = undefined;
      lastRun = undefined;
      setImmediate(finish);
    }),
  );
  connection.listen();
  await finished;
  connection.dispose();
  await model?.dispose();
  // Stop reading stdin so that nothing keeps the process alive.
  (input as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
}
