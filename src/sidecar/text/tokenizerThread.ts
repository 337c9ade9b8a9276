/**
 * Large tokenizers live on a thread of their own. Building @huggingface/tokenizers' BPE for
 * Qwen2-VL's 151,643 tokens and 151,387 merges costs the thread that builds it 0.5-0.75 s (its
 * vocabulary and merge ranks become Maps; 2026-12-04, this 2-core machine), and reading and
 * assembling the files before that as much again, while the main thread creates the model's
 * sessions (onnxruntime-node does it on that thread, synchronously). So the tokenizer is read,
 * assembled and built on a worker thread, in parallel with the sessions, and stays there: the
 * main thread asks it synchronously (a call posts on a MessagePort, waits on a shared flag with
 * Atomics.wait, and takes the answer with receiveMessageOnPort; tens of microseconds a call).
 * Below OFF_THREAD_BYTES a thread costs more than it saves (tens of ms to start), so small
 * tokenizers are built in place. Either way the answers, and every error, are the same.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";
import { LensInputError } from "../errors";
import { bundledEntry } from "../util/bundledEntry";
import { LocalTokenizer, summaryOf, type TextTokenizer, type TokenizerCall, type TokenizerSummary } from "./tokenizer";
import { readTokenizerFiles } from "./tokenizerFiles";

/** Bytes of tokenizer.json, vocab.json and merges.txt from which the tokenizer gets a thread. */
export const OFF_THREAD_BYTES = 1 << 20;

/** The flag's states (an Int32Array over a SharedArrayBuffer, index 0). */
export const FLAG = { waiting: 0, answered: 1, stopped: 2 } as const;

/** The thread's first message: the summary of the files it built from, or why it could not. */
export type TokenizerReady = { ready: TokenizerSummary } | { inputError: { file: string | undefined; reason: string } } | { error: string };

/** The thread's answer to one call. */
export type TokenizerAnswer = { value: unknown } | { error: string };

export interface TokenizerWorkerData {
  folder: string;
  port: MessagePort;
  flag: SharedArrayBuffer;
}

/** How long a call may take before the thread is taken for lost (an encode of the longest prompt limits.ts allows takes well under a second). */
const CALL_TIMEOUT_MS = 60_000;

/** The folder's tokenizer, on its own thread when its files reach OFF_THREAD_BYTES (or when `thread` says so). */
export async function openTokenizer(folder: string, opts: { thread?: boolean } = {}): Promise<{ tokenizer: TextTokenizer; summary: TokenizerSummary }> {
  if (opts.thread ?? (await readsOffThread(folder))) return TokenizerThread.open(folder);
  const files = await readTokenizerFiles(folder);
  return { tokenizer: LocalTokenizer.build(files), summary: summaryOf(files) };
}

/** Whether the folder's tokenizer.json, vocab.json and merges.txt reach OFF_THREAD_BYTES. */
export async function readsOffThread(folder: string): Promise<boolean> {
  const sizes = await Promise.all(["tokenizer.json", "vocab.json", "merges.txt"].map((f) => fs.stat(path.join(folder, f)).then((s) => (s.isFile() ? s.size : 0), () => 0)));
  return sizes.reduce((a, b) => a + b, 0) >= OFF_THREAD_BYTES;
}

/** A tokenizer built and held by a worker thread (entry dist/tokenizerWorker.js), asked synchronously. */
export class TokenizerThread implements TextTokenizer {
  private closed = false;
  private readonly flag: Int32Array;

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    flag: SharedArrayBuffer,
  ) {
    this.flag = new Int32Array(flag);
  }

  static async open(folder: string): Promise<{ tokenizer: TokenizerThread; summary: TokenizerSummary }> {
    const { port1, port2 } = new MessageChannel();
    const flag = new SharedArrayBuffer(4);
    const data: TokenizerWorkerData = { folder, port: port2, flag };
    const worker = new Worker(bundledEntry("tokenizerWorker", __dirname), { workerData: data, transferList: [port2] });
    try {
      const reply = await new Promise<TokenizerReady>((resolve, reject) => {
        worker.once("message", resolve);
        worker.once("error", reject);
        worker.once("exit", (code) => reject(new Error(`the tokenizer's thread exited (code ${code}) before it answered`)));
      });
      if ("inputError" in reply) throw new LensInputError(reply.inputError.file, reply.inputError.reason);
      if ("error" in reply) throw new Error(reply.error);
      // the thread lives as long as the model, and does not keep the process alive
      worker.unref();
      worker.on("error", () => undefined);
      return { tokenizer: new TokenizerThread(worker, port1, flag), summary: reply.ready };
    } catch (e) {
      port1.close();
      void worker.terminate();
      throw e;
    }
  }

  encode(text: string, addSpecialTokens: boolean): number[] {
    return this.call({ op: "encode", text, addSpecialTokens }) as number[];
  }

  decode(ids: number[], skipSpecialTokens: boolean): string {
    return this.call({ op: "decode", ids, skipSpecialTokens }) as string;
  }

  tokenToId(token: string): number | undefined {
    return this.call({ op: "tokenToId", token }) as number | undefined;
  }

  idToToken(id: number): string | undefined {
    return this.call({ op: "idToToken", id }) as string | undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.port.close();
    void this.worker.terminate();
  }

  private call(call: TokenizerCall): unknown {
    if (this.closed) throw new Error("the tokenizer was closed with its model: open the model again");
    if (Atomics.load(this.flag, 0) === FLAG.stopped) throw new Error("the tokenizer's thread has stopped: open the model again");
    Atomics.store(this.flag, 0, FLAG.waiting);
    this.port.postMessage(call);
    const waited = Atomics.wait(this.flag, 0, FLAG.waiting, CALL_TIMEOUT_MS);
    const state = Atomics.load(this.flag, 0);
    if (state === FLAG.stopped) throw new Error("the tokenizer's thread stopped while it was asked: open the model again");
    const reply = receiveMessageOnPort(this.port)?.message as TokenizerAnswer | undefined;
    if (!reply) throw new Error(waited === "timed-out" ? `the tokenizer's thread did not answer in ${CALL_TIMEOUT_MS / 1000} s: open the model again` : "the tokenizer's thread answered nothing");
    if ("error" in reply) throw new Error(reply.error);
    return reply.value;
  }
}
