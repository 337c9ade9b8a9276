/**
 * readTokenizerFiles on a worker thread, for the large vocabularies. Qwen2-VL's vocab.json +
 * merges.txt (151,643 tokens and 151,387 merges) took 220-290 ms of the main thread to read,
 * parse, check and assemble, while the same thread compiles the graphs and creates the sessions
 * (onnxruntime-node creates them on it, synchronously): on the worker it overlaps with them,
 * and the main thread only parses the assembled JSON (about 75 ms). Below OFF_THREAD_BYTES a
 * thread costs more than it saves (tens of ms to start), so small tokenizers are read in place.
 * Either way the result, and every error, is the same.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { LensInputError } from "../errors";
import { bundledEntry } from "../util/bundledEntry";
import { readTokenizerFiles, type TokenizerFiles } from "./tokenizerFiles";

/** Bytes of tokenizer.json, vocab.json and merges.txt from which a worker thread reads them. */
export const OFF_THREAD_BYTES = 1 << 20;

export type TokenizerWorkerReply = { json: string } | { inputError: { file: string | undefined; reason: string } } | { error: string };

/** readTokenizerFiles, on a worker thread when the folder's tokenizer is large (see the file's comment). */
export async function readTokenizerFilesOffThread(folder: string): Promise<TokenizerFiles> {
  return (await readsOffThread(folder)) ? readTokenizerFilesOnWorker(folder) : readTokenizerFiles(folder);
}

/** Whether the folder's tokenizer.json, vocab.json and merges.txt reach OFF_THREAD_BYTES. */
export async function readsOffThread(folder: string): Promise<boolean> {
  const sizes = await Promise.all(["tokenizer.json", "vocab.json", "merges.txt"].map((f) => fs.stat(path.join(folder, f)).then((s) => (s.isFile() ? s.size : 0), () => 0)));
  return sizes.reduce((a, b) => a + b, 0) >= OFF_THREAD_BYTES;
}

/** readTokenizerFiles on a worker thread of its own: the same result, the same errors. */
export async function readTokenizerFilesOnWorker(folder: string): Promise<TokenizerFiles> {
  const worker = new Worker(bundledEntry("tokenizerWorker", __dirname), { workerData: { folder } });
  try {
    const reply = await new Promise<TokenizerWorkerReply>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`the thread reading the tokenizer files exited (code ${code}) before it answered`)));
    });
    if ("json" in reply) return JSON.parse(reply.json) as TokenizerFiles;
    if ("inputError" in reply) throw new LensInputError(reply.inputError.file, reply.inputError.reason);
    throw new Error(reply.error);
  } finally {
    void worker.terminate();
  }
}
