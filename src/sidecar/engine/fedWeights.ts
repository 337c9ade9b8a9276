/**
 * The float32 copies of half-precision weights under the CPU's "float32" weight plan, made by
 * the sidecar itself and fed to every run (BuiltGraph.fedWeights), instead of a Cast per
 * weight that onnxruntime constant-folds at session creation: its folding took 25x (LLaVA-7B
 * width, float16) to 40x (Qwen2-VL-2B, bfloat16) the time to read the weights. onnxruntime-node
 * wraps a fed Float32Array without copying it, so each copy exists once, shared by every
 * session that reads the tensor (the lens and unembedding graphs share the unembedding).
 *
 * Loading streams the tensors in file order in chunks: the read of the next chunk (libuv's
 * thread pool) overlaps the widening of this one (the main thread), so the two cores work at
 * once. Each chunk is read straight into the upper half of its tensor's float32 buffer and
 * widened in place (engine/halfToFloat.ts), so no staging buffer exists.
 *
 * Most of the time goes to the kernel, not the arithmetic: the first touch of each fresh page
 * of the copies faults it in (allocating and filling 5.6 GB took 3.6-4.6 s on the 2-core
 * machines here, against 1.3 s to widen 2.8 GB of float16). The reads fault in the upper half
 * of each buffer on the thread pool; so that the lower half is not faulted in on the main
 * thread while it widens, the read-ahead also fills it from /dev/zero (where there is one),
 * the part of it that holds no half values yet (below byte 2n), before it is widened into.
 * Past WORKER_BYTES, a worker thread loads about half the tensors the same way (without the
 * read-ahead: its reads block only itself) and hands each buffer over without a copy, so the
 * widening, too, runs on both cores.
 *
 * Made in the background after an engine opened (engine.ts), the load waits between chunks
 * while the engine is in use: `gate` on this thread, `pausedFlag` (engine/activity.ts) on the
 * worker's.
 */
import * as fs from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { Worker } from "node:worker_threads";
import { LensInputError } from "../errors";
import type { FedWeight } from "../graph/onnxBuilder";
import { openForReading, readFully, type TensorEntry, type WeightIndex } from "../model/safetensors";
import type { HostTensor } from "../runtime/ort";
import { float16Table, type HalfDType, widen, widenKernel } from "./halfToFloat";

/** Half values per chunk: 16 MiB of file, small enough that reading and widening interleave finely. */
const CHUNK_VALUES = 8 << 20;
/** Half-precision bytes from which a worker thread takes part of the load (a worker starts in tens of ms). */
const WORKER_BYTES = 256 << 20;

export class FedWeights {
  private readonly arrays = new Map<string, Float32Array>();

  constructor(
    private readonly index: WeightIndex,
    /** Half values read and widened at a time (default CHUNK_VALUES); any size gives the same arrays. For tests. */
    private readonly chunkValues = CHUNK_VALUES,
    /** Half-precision bytes from which a worker thread shares the load (default WORKER_BYTES). For tests. */
    private readonly workerBytes = WORKER_BYTES,
  ) {}

  /** Bytes of float32 copies held. */
  get bytes(): number {
    let n = 0;
    for (const a of this.arrays.values()) n += a.byteLength;
    return n;
  }

  /** The tensors `load(weights)` would widen: each fed tensor once, those not yet held. */
  toLoad(weights: readonly FedWeight[]): TensorEntry[] {
    return [...new Set(weights.map((w) => w.tensor))].filter((t) => !this.arrays.has(t)).map((t) => this.index.get(t));
  }

  /**
   * Widens every tensor the graphs take as fed inputs that is not yet held. With `gate`, each
   * chunk waits for it first (a rejection ends the load, holding nothing of it); with
   * `pausedFlag`, so does the worker's (see Activity.pausedFlag).
   */
  async load(weights: readonly FedWeight[], background: { gate?: () => Promise<void>; pausedFlag?: Int32Array } = {}): Promise<void> {
    const wanted = this.toLoad(weights);
    wanted.sort((a, b) => (a.file === b.file ? a.byteOffset - b.byteOffset : a.file < b.file ? -1 : 1));
    for (const entry of wanted) if (entry.dtype !== "F16" && entry.dtype !== "BF16") throw new Error(`fed weight ${entry.name} is ${entry.dtype}, not a half-precision tensor`);
    // the worker's share: every other tensor by bytes, so both sides read through the files in order
    const total = wanted.reduce((n, e) => n + e.byteLength, 0);
    const mine: TensorEntry[] = [];
    const theirs: TensorEntry[] = [];
    let mineBytes = 0;
    let theirBytes = 0;
    for (const entry of wanted) {
      if (total >= this.workerBytes && theirBytes < mineBytes) {
        theirs.push(entry);
        theirBytes += entry.byteLength;
      } else {
        mine.push(entry);
        mineBytes += entry.byteLength;
      }
    }
    const fromWorker = theirs.length ? loadInWorker(theirs, this.chunkValues, background.pausedFlag) : undefined;
    fromWorker?.catch(() => undefined); // awaited below, after this thread's share
    const chunks: { entry: TensorEntry; out: Float32Array; from: number; to: number }[] = [];
    for (const entry of mine) {
      const count = entry.byteLength / 2;
      const out = new Float32Array(count);
      this.arrays.set(entry.name, out);
      for (let from = 0; from < count; from += this.chunkValues) chunks.push({ entry, out, from, to: Math.min(count, from + this.chunkValues) });
    }
    const handles = new Map<string, Promise<FileHandle>>();
    const handle = (file: string) => {
      let h = handles.get(file);
      if (!h) handles.set(file, (h = openForReading(file, "the safetensors file")));
      return h;
    };
    // where chunk k's half values land: the upper half of its tensor's buffer, at the same index
    const halfView = ({ out, from, to }: (typeof chunks)[number]) => new Uint16Array(out.buffer, out.byteOffset + 2 * out.length + 2 * from, to - from);
    const zero = await fs.open("/dev/zero", "r").catch(() => undefined);
    // faults in chunk k's float32 destination below the half values, on the thread pool
    const prefault = async (k: number): Promise<void> => {
      const { out, from, to } = chunks[k];
      const end = Math.min(4 * to, 2 * out.length);
      if (zero && 4 * from < end) await readFully(zero, new Uint8Array(out.buffer, out.byteOffset + 4 * from, end - 4 * from), 0);
    };
    const read = async (k: number): Promise<void> => {
      const c = chunks[k];
      const bytes = new Uint8Array(halfView(c).buffer, halfView(c).byteOffset, 2 * (c.to - c.from));
      const [got] = await Promise.all([handle(c.entry.file).then((h) => readFully(h, bytes, c.entry.byteOffset + 2 * c.from)), prefault(k)]);
      if (got !== bytes.length) {
        throw new LensInputError(c.entry.file, `the file ended while reading tensor ${JSON.stringify(c.entry.name)} (it changed after its header was read?): the file is truncated; re-download it`);
      }
    };
    try {
      let next = chunks.length ? read(0) : undefined;
      for (let k = 0; k < chunks.length; k++) {
        if (background.gate) await background.gate();
        await next;
        next = k + 1 < chunks.length ? read(k + 1) : undefined;
        // keep a failed read-ahead from being reported as unhandled while this chunk widens
        next?.catch(() => undefined);
        const c = chunks[k];
        widen(new Uint32Array(c.out.buffer, c.out.byteOffset + 4 * c.from, c.to - c.from), halfView(c), c.entry.dtype as HalfDType);
      }
      for (const [name, array] of (await fromWorker) ?? []) this.arrays.set(name, array);
    } catch (e) {
      for (const entry of wanted) this.arrays.delete(entry.name);
      throw e;
    } finally {
      await Promise.all([...handles.values(), ...(zero ? [Promise.resolve(zero)] : [])].map((h) => h.then((fh) => fh.close()).catch(() => undefined)));
    }
  }

  /** The float32 copy of a tensor, when loaded. */
  get(tensor: string): Float32Array | undefined {
    return this.arrays.get(tensor);
  }

  /** The feeds of a graph's fed weights (all loaded before). */
  feeds(weights: readonly FedWeight[]): Record<string, HostTensor> {
    const feeds: Record<string, HostTensor> = {};
    for (const w of weights) {
      const data = this.arrays.get(w.tensor);
      if (!data) throw new Error(`fed weight ${w.tensor} was not loaded`);
      feeds[w.input] = { data, dims: w.dims };
    }
    return feeds;
  }

  release(): void {
    this.arrays.clear();
  }
}

type WorkerReply = { name: string; buffer: ArrayBuffer } | { truncated: { file: string; name: string } } | { failed: string } | { stopped: true };

/** Loads `entries` in a worker thread (see the file's comment); resolves to their float32 arrays by name. */
function loadInWorker(entries: readonly TensorEntry[], chunkValues: number, pausedFlag?: Int32Array): Promise<Map<string, Float32Array>> {
  const tensors = entries.map((e) => ({ name: e.name, file: e.file, byteOffset: e.byteOffset, byteLength: e.byteLength, bfloat16: e.dtype === "BF16" }));
  const worker = new Worker(`(${workerMain.toString()})(require, ${widenKernel.toString()})`, { eval: true, workerData: { tensors, table: float16Table(), chunkValues, pausedFlag } });
  const arrays = new Map<string, Float32Array>();
  return new Promise<Map<string, Float32Array>>((resolve, reject) => {
    worker.on("message", (reply: WorkerReply) => {
      if ("buffer" in reply) {
        arrays.set(reply.name, new Float32Array(reply.buffer));
        if (arrays.size === tensors.length) resolve(arrays);
      } else if ("stopped" in reply) {
        reject(new Error("widening half-precision weights was stopped: the engine was disposed"));
      } else if ("truncated" in reply) {
        const { file, name } = reply.truncated;
        reject(new LensInputError(file, `the file ended while reading tensor ${JSON.stringify(name)} (it changed after its header was read?): the file is truncated; re-download it`));
      } else {
        reject(new Error(`widening half-precision weights in a worker failed: ${reply.failed}`));
      }
    });
    worker.on("error", reject);
    worker.on("exit", (code) => {
      if (arrays.size < tensors.length) reject(new Error(`the worker widening half-precision weights exited (code ${code}) before it was done`));
    });
  }).finally(() => void worker.terminate());
}

/**
 * The worker's program. Its source runs as it is in the worker, so it uses nothing from outside
 * but what it is given: `require`, the widening kernel, and workerData.
 */
function workerMain(load: NodeJS.Require, kernel: typeof widenKernel): void {
  const { parentPort, workerData } = load("node:worker_threads") as typeof import("node:worker_threads");
  const fsSync = load("node:fs") as typeof import("node:fs");
  const { tensors, table, chunkValues, pausedFlag } = workerData as {
    tensors: { name: string; file: string; byteOffset: number; byteLength: number; bfloat16: boolean }[];
    table: Uint32Array;
    chunkValues: number;
    pausedFlag?: Int32Array;
  };
  const fds = new Map<string, number>();
  try {
    for (const t of tensors) {
      let fd = fds.get(t.file);
      if (fd === undefined) fds.set(t.file, (fd = fsSync.openSync(t.file, "r")));
      const count = t.byteLength / 2;
      const out = new Float32Array(count);
      for (let from = 0; from < count; from += chunkValues) {
        // waits while the engine is in use (1); ends once it is disposed (2)
        while (pausedFlag && Atomics.load(pausedFlag, 0) === 1) Atomics.wait(pausedFlag, 0, 1);
        if (pausedFlag && Atomics.load(pausedFlag, 0) === 2) {
          parentPort!.postMessage({ stopped: true });
          return;
        }
        const to = Math.min(count, from + chunkValues);
        const bytes = new Uint8Array(out.buffer, 2 * count + 2 * from, 2 * (to - from));
        let done = 0;
        for (let n = -1; done < bytes.length && n !== 0; done += n) n = fsSync.readSync(fd, bytes, done, bytes.length - done, t.byteOffset + 2 * from + done);
        if (done !== bytes.length) {
          parentPort!.postMessage({ truncated: { file: t.file, name: t.name } });
          return;
        }
        kernel(new Uint32Array(out.buffer, 4 * from, to - from), new Uint16Array(out.buffer, 2 * count + 2 * from, to - from), t.bfloat16, table);
      }
      parentPort!.postMessage({ name: t.name, buffer: out.buffer }, [out.buffer]);
    }
  } catch (e) {
    parentPort!.postMessage({ failed: e instanceof Error ? e.message : String(e) });
  } finally {
    for (const fd of fds.values()) fsSync.closeSync(fd);
  }
}
