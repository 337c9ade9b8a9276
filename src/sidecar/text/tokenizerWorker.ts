/**
 * The thread that reads a model folder's tokenizer files (entry point dist/tokenizerWorker.js;
 * started by tokenizerFilesOffThread.ts): readTokenizerFiles for workerData.folder, answered as
 * the JSON text of its result, or as the error it threw (file and reason of a LensInputError).
 */
import { parentPort, workerData } from "node:worker_threads";
import { isLensInputError } from "../errors";
import { readTokenizerFiles } from "./tokenizerFiles";
import type { TokenizerWorkerReply } from "./tokenizerFilesOffThread";

const reply = (r: TokenizerWorkerReply) => parentPort!.postMessage(r);

readTokenizerFiles((workerData as { folder: string }).folder).then(
  (files) => reply({ json: JSON.stringify(files) }),
  (e: unknown) => reply(isLensInputError(e) ? { inputError: { file: e.file, reason: e.reason } } : { error: e instanceof Error ? e.message : String(e) }),
);
