/**
 * The KV cache on WebGPU stays in device memory between decoder calls (issue 16): present_key.i
 * and present_value.i come back as onnxruntime 'gpu-buffer' tensors and are fed back as past_*
 * unread, every output the host reads comes back on the CPU, each replaced cache is disposed as
 * the decode moves on, and the greedy tokens and lens numbers still match transformers'.
 *
 * Like test/parity/webgpu.test.ts, this file runs itself again in a child process whose WebGPU
 * runs on SwiftShader (test/helpers/webgpuEnv.ts); without SwiftShader it is skipped, in CI it
 * fails. In the child, onnxruntime's own Tensor class is watched: every read of a tensor's data
 * (the `data` getter, getData()) and every dispose() is recorded with the tensor's location at
 * that moment, so a download of a cache tensor cannot go unseen (getData() of a GPU tensor would
 * abort the process in onnxruntime-node 1.30: the watch refuses it instead).
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import type * as Ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { runLens } from "../../src/sidecar/lens/runLens";
import { type KvCache, LoadedModel } from "../../src/sidecar/model/loadedModel";
import { deviceTensorCount, type FeedTensor, isDeviceTensor } from "../../src/sidecar/runtime/ort";
import { maxAbsDiff } from "../helpers/fixtures";
import { attentionMassError, expectLensMatches, type LensFixtureBlob, type LensFixtureCase } from "../helpers/lensParity";
import { expectWebgpuChildPasses, webgpuSuiteEnv } from "../helpers/webgpuEnv";

const CHILD_ENV = "LOGIT_LENS_WEBGPU_KV_CACHE";
const ROOT = path.resolve(__dirname, "../..");
const CASE_FILE = path.resolve(__dirname, "../fixtures/lens/llama-f32/long.json");
const CHILD_TIMEOUT_MS = 300_000;

if (process.env[CHILD_ENV] !== "child") {
  const env = webgpuSuiteEnv("the WebGPU KV cache suite");
  describe.runIf(env !== undefined)("the KV cache on WebGPU (SwiftShader)", () => {
    it("passes in a child process whose WebGPU runs on SwiftShader", async () => {
      await expectWebgpuChildPasses(__filename, { env: env!, childEnv: CHILD_ENV, timeoutMs: CHILD_TIMEOUT_MS, minTests: 6, keep: /kv cache|Tests |Test Files |FAIL/, what: "WebGPU KV cache" });
    }, CHILD_TIMEOUT_MS + 30_000);
  });
} else {
  childSuite();
}

/** What onnxruntime's Tensor class saw: data reads and disposes, each with the tensor's location then. */
interface TensorWatch {
  reads: string[];
  disposed: Ort.Tensor[];
  disposedOnDevice: number;
}

/** Watches onnxruntime-node's Tensor prototype (the very module ort.ts loads: same require resolution, same cache). */
function watchTensors(): TensorWatch {
  const ort = createRequire(path.join(ROOT, "src/sidecar/runtime/ort.ts"))("onnxruntime-node") as typeof Ort;
  const proto = ort.Tensor.prototype as Ort.Tensor;
  const watch: TensorWatch = { reads: [], disposed: [], disposedOnDevice: 0 };
  const dataGetter = Object.getOwnPropertyDescriptor(proto, "data")!.get!;
  const getData = proto.getData;
  const dispose = proto.dispose;
  vi.spyOn(proto, "data", "get").mockImplementation(function (this: Ort.Tensor) {
    watch.reads.push(this.location);
    return dataGetter.call(this) as Ort.Tensor["data"];
  });
  vi.spyOn(proto, "getData").mockImplementation(function (this: Ort.Tensor, releaseData?: boolean) {
    watch.reads.push(this.location);
    if (this.location === "gpu-buffer") throw new Error("getData() of a GPU tensor: a KV cache tensor was downloaded");
    return getData.call(this, releaseData);
  });
  vi.spyOn(proto, "dispose").mockImplementation(function (this: Ort.Tensor) {
    watch.disposed.push(this);
    if (this.location === "gpu-buffer") watch.disposedOnDevice++;
    dispose.call(this);
  });
  return watch;
}

const tensorsOf = (cache: KvCache): FeedTensor[] => [...cache.keys, ...cache.values];

function childSuite(): void {
  const c = JSON.parse(fs.readFileSync(CASE_FILE, "utf8")) as LensFixtureCase & { answer_token_probs: number[]; num_kv_heads: number; head_dim: number; hidden_size: number };
  const blob = (key: string): Float32Array | Int32Array => {
    const b = c[key] as LensFixtureBlob;
    const buf = fs.readFileSync(path.join(path.dirname(CASE_FILE), b.file));
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    return b.dtype === "int32" ? new Int32Array(ab) : new Float32Array(ab);
  };
  const sourceFile = path.resolve(path.dirname(CASE_FILE), c.source_case);
  const source = JSON.parse(fs.readFileSync(sourceFile, "utf8")) as { prompt: string };
  const modelDir = path.resolve(path.dirname(CASE_FILE), c.model_dir);
  const L = c.num_layers;
  const S = c.prompt_length;
  let watch: TensorWatch;
  let model: LoadedModel;
  let baseline: number;
  beforeAll(async () => {
    watch = watchTensors();
    model = await LoadedModel.open(modelDir, { device: "webgpu" });
    baseline = deviceTensorCount();
  }, 120_000);
  afterAll(async () => {
    await model?.dispose();
    vi.restoreAllMocks();
  });

  describe(`${c.model}/${c.case}: kv cache on WebGPU`, () => {
    it("keeps present_* on the device and feeds them back unread, while every output the host reads is on the CPU", async () => {
      expect(model.info.provider).toBe("webgpu");
      const reads = watch.reads.length;
      const prefill = await model.forward(c.ids.slice(0, S), { positions: [S - 1] });
      const hostReads = watch.reads.length - reads;
      for (const t of tensorsOf(prefill.cache)) {
        expect(isDeviceTensor(t)).toBe(true);
        expect(t.dims).toEqual([1, c.num_kv_heads, S, c.head_dim]);
      }
      expect(prefill.cache.keys).toHaveLength(L);
      expect(prefill.hiddenStates).toBeInstanceOf(Float32Array);
      expect(prefill.hiddenStates.length).toBe((L + 1) * c.hidden_size);
      expect(prefill.nextToken).toBe(c.greedy_tokens[0]);
      const step = await model.forward([c.greedy_tokens[0]], { cache: prefill.cache, consumeCache: true });
      expect(step.nextToken).toBe(c.greedy_tokens[1]);
      for (const t of tensorsOf(step.cache)) expect(t.dims).toEqual([1, c.num_kv_heads, S + 1, c.head_dim]);
      model.releaseCache(step.cache);
      // the watch is live (the host outputs were read through it), and it saw no read of a GPU tensor
      expect(hostReads).toBeGreaterThan(0);
      expect(watch.reads.length).toBeGreaterThan(reads);
      expect(watch.reads.filter((l) => l !== "cpu")).toEqual([]);
    });

    it("disposes each replaced cache as the decode moves on, keeps a cache that is branched from, and frees the rest on release", async () => {
      const before = watch.disposed.length;
      const prefill = await model.forward(c.ids.slice(0, S), { positions: [S - 1] });
      expect(deviceTensorCount()).toBe(baseline + 2 * L);
      // a step that does not consume: the prefill's cache is kept (a branch)
      const first = await model.forward([c.greedy_tokens[0]], { cache: prefill.cache });
      expect(tensorsOf(prefill.cache).every((t) => isDeviceTensor(t) && !t.disposed)).toBe(true);
      expect(watch.disposed.length).toBe(before);
      // steps that consume: each replaced cache is disposed, the new one lives
      let cache = first.cache;
      for (let n = 1; n < 4; n++) {
        const step = await model.forward([c.greedy_tokens[n]], { cache, consumeCache: true });
        expect(step.nextToken).toBe(c.greedy_tokens[n + 1]);
        expect(tensorsOf(cache).every((t) => isDeviceTensor(t) && t.disposed)).toBe(true);
        expect(tensorsOf(step.cache).every((t) => isDeviceTensor(t) && !t.disposed)).toBe(true);
        cache = step.cache;
      }
      // onnxruntime's own dispose ran on GPU tensors: 2L per replaced cache, 3 replaced
      expect(watch.disposed.length - before).toBe(3 * 2 * L);
      expect(deviceTensorCount()).toBe(baseline + 2 * (2 * L));
      // decoding from a released cache fails with a message, not a crash
      const released = first.cache;
      await expect(model.forward([1], { cache: released })).rejects.toThrow(/disposed device tensor/);
      model.releaseCache(cache);
      model.releaseCache(prefill.cache);
      expect(deviceTensorCount()).toBe(baseline);
      expect(model.engine.heldCacheTensors).toEqual([]);
    });

    it("a branch from a kept prefill cache, teacher-forced over the greedy tokens, matches transformers' token probabilities (1e-4)", async () => {
      const prefill = await model.forward(c.ids.slice(0, S), { positions: [S - 1] });
      // decode ahead first (as a lens run does before its answer probability), then branch
      let cache = (await model.forward([c.greedy_tokens[0]], { cache: prefill.cache })).cache;
      for (let n = 1; n < 3; n++) cache = (await model.forward([c.greedy_tokens[n]], { cache, consumeCache: true })).cache;
      const forced = c.greedy_tokens.slice(0, -1);
      const branch = await model.forward(forced, { cache: prefill.cache, positions: forced.map((_, i) => i) });
      const V = model.info.vocabSize;
      const rows = [await model.logits(prefill), await model.logits(branch)];
      const softmaxAt = (logits: Float32Array, id: number) => {
        let max = -Infinity;
        for (const v of logits) max = Math.max(max, v);
        let sum = 0;
        for (const v of logits) sum += Math.exp(v - max);
        return Math.exp(logits[id] - max) / sum;
      };
      const probs = c.greedy_tokens.map((id, i) => (i === 0 ? softmaxAt(rows[0], id) : softmaxAt(rows[1].subarray((i - 1) * V, i * V), id)));
      const worst = maxAbsDiff(probs, c.answer_token_probs);
      console.log(`${c.model}/${c.case} kv cache branch token probabilities max abs error: ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-4);
      for (const x of [cache, branch.cache, prefill.cache]) model.releaseCache(x);
      expect(deviceTensorCount()).toBe(baseline);
    });

    let record: Promise<LensRecord> | undefined;
    let disposedDuringRun = 0;
    let readsDuringRun: string[] = [];
    const getRecord = () =>
      (record ??= (async () => {
        const disposed = watch.disposedOnDevice;
        const reads = watch.reads.length;
        const r = await runLens(model, { prompt: source.prompt, settings: { positions: "all", topK: c.top_k, maxNewTokens: c.greedy_tokens.length } });
        disposedDuringRun = watch.disposedOnDevice - disposed;
        readsDuringRun = watch.reads.slice(reads);
        return r;
      })());

    it(`a lens run generates transformers' ${c.greedy_tokens.length} greedy tokens from the device cache, and frees it all at its end`, async () => {
      const r = await getRecord();
      assertLensRecord(r);
      expect(r.model.executionProvider).toBe("webgpu");
      expect(r.generation.ids).toEqual(c.greedy_tokens);
      // prefill + 7 decode steps made 8 caches of 2L device tensors, and the run disposed every one
      expect(disposedDuringRun).toBe((c.greedy_tokens.length) * 2 * L);
      expect(deviceTensorCount()).toBe(baseline);
      expect(readsDuringRun.length).toBeGreaterThan(0);
      expect(readsDuringRun.filter((l) => l !== "cpu")).toEqual([]);
    });

    it("its lens numbers match transformers' within the CPU suites' bounds (1e-4; attention mass 1e-5)", async () => {
      const r = await getRecord();
      const ref = { topK: c.top_k, topkIds: Float32Array.from(blob("topk_ids")), topkProbs: blob("topk_probs") as Float32Array, entropy: blob("entropy") as Float32Array, kl: blob("kl") as Float32Array, cosine: blob("cosine") as Float32Array };
      expectLensMatches(r, ref, `${c.model}/${c.case} kv cache`, 1e-4);
      expect(maxAbsDiff(r.lens.targetProb.data, blob("target_prob"))).toBeLessThanOrEqual(1e-4);
      expect(attentionMassError(r, blob("attentions"), L, c.num_heads, c.prompt_length)).toBeLessThanOrEqual(1e-5);
    });

    it("with kvCacheOnDevice false the cache comes back to the host, as on the CPU, and the decode gives the same states", async () => {
      const host = await LoadedModel.open(modelDir, { device: "webgpu", kvCacheOnDevice: false });
      try {
        const a = await host.forward(c.ids.slice(0, S), { positions: [S - 1] });
        expect(tensorsOf(a.cache).some(isDeviceTensor)).toBe(false);
        const b = await model.forward(c.ids.slice(0, S), { positions: [S - 1] });
        const sa = await host.forward([c.greedy_tokens[0]], { cache: a.cache, consumeCache: true });
        const sb = await model.forward([c.greedy_tokens[0]], { cache: b.cache, consumeCache: true });
        expect(maxAbsDiff(sa.hiddenStates, sb.hiddenStates)).toBeLessThanOrEqual(1e-5);
        model.releaseCache(sb.cache);
        expect(deviceTensorCount()).toBe(baseline);
      } finally {
        await host.dispose();
      }
    });

    it("disposing the model frees caches nobody released", async () => {
      const other = await LoadedModel.open(modelDir, { device: "webgpu" });
      const start = deviceTensorCount();
      await other.forward(c.ids.slice(0, 5), { positions: [4] });
      expect(deviceTensorCount()).toBe(start + 2 * L);
      await other.dispose();
      expect(deviceTensorCount()).toBe(start);
    });
  });
}
