/**
 * The thread that holds a large tokenizer (entry point dist/tokenizerWorker.js; started by
 * tokenizerThread.ts): reads and assembles workerData.folder's tokenizer files, builds the
 * tokenizer, answers with the files' summary (or the error, as the file and reason of a
 * LensInputError), then answers the main thread's calls on workerData.port, raising the shared
 * flag after each answer.
 */
import { parentPort, workerData } from "node:worker_threads";
import { isLensInputError } from "../errors";
import { answer, LocalTokenizer, summaryOf, type TokenizerCall } from "./tokenizer";
import { readTokenizerFiles } from "./tokenizerFiles";
import { FLAG, type TokenizerAnswer, type TokenizerReady, type TokenizerWorkerData } from "./tokenizerThread";

const { folder, port, flag } = workerData as TokenizerWorkerData;
const state = new Int32Array(flag);
const ready = (r: TokenizerReady) => parentPort!.postMessage(r);
const raise = (value: number) => {
  Atomics.store(state, 0, value);
  Atomics.notify(state, 0);
};
// a caller waiting on the flag learns at once that nothing will answer it
process.on("exit", () => raise(FLAG.stopped));

readTokenizerFiles(folder)
  .then((files) => {
    const tokenizer = LocalTokenizer.build(files);
    port.on("message", (call: TokenizerCall) => {
      let reply: TokenizerAnswer;
      try {
        reply = { value: answer(tokenizer, call) };
      } catch (e) {
        reply = { error: e instanceof Error ? e.message : String(e) };
      }
      port.postMessage(reply);
      raise(FLAG.answered);
    });
    ready({ ready: summaryOf(files) });
  })
  .catch((e: unknown) => ready(isLensInputError(e) ? { inputError: { file: e.file, reason: e.reason } } : { error: e instanceof Error ? e.message : String(e) }));
