/**
 * Parity with transformers on WebGPU, in float32, within the CPU suites' bounds: one case of each
 * architecture's tiny fixture (LLaMA, LLaVA with grouped KV heads, Qwen2-VL, Idefics3) through
 * the same checks as test/parity/*.test.ts, with every session on the webgpu provider.
 *
 * WebGPU runs here on SwiftShader, which a process only picks up when it starts with Chromium's
 * Vulkan loader on LD_LIBRARY_PATH (test/helpers/webgpuEnv.ts). So this file runs twice: as
 * itself it starts vitest on this same file in a child process with that environment and
 * LOGIT_LENS_WEBGPU_PARITY=child, which runs the checks below and must pass. SwiftShader is slow
 * and has no shader-f16, so the suite stays on the float32 tiny fixtures. Without SwiftShader it
 * is skipped, and in CI it fails.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { webgpuAdapter } from "../../src/sidecar/runtime/webgpuAdapter";
import { maxAbsDiff, relativeError } from "../helpers/fixtures";
import { attentionMassError, expectLensMatches, type LensFixtureBlob, type LensFixtureCase } from "../helpers/lensParity";
import { forwardParityTests, lensRunTests, type VlmCase, type VlmFixture, vlmFixture } from "../helpers/vlmParity";
import { expectWebgpuChildPasses, webgpuSuiteEnv } from "../helpers/webgpuEnv";

const CHILD_ENV = "LOGIT_LENS_WEBGPU_PARITY";
const FIXTURES = path.resolve(__dirname, "../fixtures");
/** The whole child run (session creation and SwiftShader's shader compiles included) must end within this. */
const CHILD_TIMEOUT_MS = 540_000;

if (process.env[CHILD_ENV] !== "child") {
  const env = webgpuSuiteEnv("the WebGPU parity suite");
  describe.runIf(env !== undefined)("parity with transformers on WebGPU (SwiftShader)", () => {
    it("passes in a child process whose WebGPU runs on SwiftShader", async () => {
      await expectWebgpuChildPasses(__filename, { env: env!, childEnv: CHILD_ENV, timeoutMs: CHILD_TIMEOUT_MS, minTests: 20, keep: / error|Tests |Test Files |FAIL/, what: "WebGPU parity" });
    }, CHILD_TIMEOUT_MS + 30_000);
  });
} else {
  childSuites();
}

/** The checks the child runs, every model on WebGPU. */
function childSuites(): void {
  const models = new Map<string, Promise<LoadedModel>>();
  const open = (dir: string) => {
    let m = models.get(dir);
    if (!m) models.set(dir, (m = LoadedModel.open(dir, { device: "webgpu" })));
    return m;
  };
  afterAll(async () => {
    for (const m of models.values()) await (await m).dispose();
  });

  for (const lensCase of ["llama-f32/long.json", "llava-gqa-f32/square.json"]) lensFixtureChecks(path.join(FIXTURES, "lens", lensCase), open);

  describe("the adapter, as Dawn names it", () => {
    const llama = path.join(FIXTURES, "models", "llama-f16", "model");
    it("is SwiftShader, a fallback adapter without shader-f16", async () => {
      const answer = await webgpuAdapter();
      expect("adapter" in answer && answer.adapter).toMatchObject({ description: expect.stringMatching(/SwiftShader/), fallback: true, shaderF16: false });
    });
    it("device auto never takes it, and says why in the record's device note", async () => {
      const model = await LoadedModel.open(llama, { device: "auto" });
      try {
        expect(model.info.provider).toBe("cpu");
        expect(model.info.device?.note).toMatch(/^device auto took the CPU: .+; the WebGPU adapter, SwiftShader driver [\d.]+, is a software one$/);
      } finally {
        await model.dispose();
      }
    });
    it("a model on it names it, computes dtype auto in float32, and refuses float16 in one line", async () => {
      const model = await LoadedModel.open(llama, { device: "webgpu" });
      try {
        expect(model.info.device).toMatchObject({ provider: "webgpu", name: expect.stringMatching(/^SwiftShader driver/), software: true });
        expect(model.info.computeDtype).toBe("float32");
      } finally {
        await model.dispose();
      }
      await expect(LoadedModel.open(llama, { device: "webgpu", dtype: "float16" })).rejects.toThrow(
        /llama-f16\/model: dtype float16 on WebGPU needs an adapter with shader-f16, and SwiftShader driver [\d.]+ has none: use dtype float32 \(or auto\), or device cpu$/,
      );
    });
  });

  for (const [root, architecture] of [
    ["qwen2vl-tiny", "Qwen2VLForConditionalGeneration"],
    ["idefics3-tiny", "Idefics3ForConditionalGeneration"],
  ] as const) {
    const base = vlmFixture(path.join(FIXTURES, root));
    const fixture: VlmFixture = { ...base, open: () => open(base.modelDir) };
    const c: VlmCase = base.cases[0];
    describe(`${root}/${c.case} on WebGPU`, () => {
      it("opens on the webgpu provider", async () => {
        expect((await fixture.open()).info.provider).toBe("webgpu");
      });
      forwardParityTests(fixture, c, `${root}/${c.case} webgpu`, { features: "image features", greedy: "generates the same greedy tokens" });
      lensRunTests(fixture, c, `${root}/${c.case} webgpu`, architecture, {
        title: "produces a valid LensRecord over prompt + generated tokens, run on webgpu",
        check: (r) => expect(r.model.executionProvider).toBe("webgpu"),
      });
    });
  }
}

type Blob = LensFixtureBlob;

/** A lens fixture (tools/reference/make_lens_fixtures.py): the record of prompt + greedy tokens against transformers' hidden states and attentions. */
function lensFixtureChecks(file: string, open: (dir: string) => Promise<LoadedModel>): void {
  const c = JSON.parse(fs.readFileSync(file, "utf8")) as LensFixtureCase;
  const blob = (key: string): Float32Array | Int32Array => {
    const b = c[key] as Blob;
    const buf = fs.readFileSync(path.join(path.dirname(file), b.file));
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    return b.dtype === "int32" ? new Int32Array(ab) : new Float32Array(ab);
  };
  const sourceFile = path.resolve(path.dirname(file), c.source_case);
  const source = JSON.parse(fs.readFileSync(sourceFile, "utf8")) as { prompt: string; image: string | null };
  const modelDir = path.resolve(path.dirname(file), c.model_dir);
  const image = source.image ? path.resolve(path.dirname(sourceFile), source.image) : undefined;
  const label = `${c.model}/${c.case} webgpu`;
  const L = c.num_layers;
  let record: Promise<LensRecord> | undefined;
  const getRecord = () => (record ??= open(modelDir).then((m) => runLens(m, { prompt: source.prompt, image, settings: { positions: "all", topK: c.top_k, maxNewTokens: c.greedy_tokens.length } })));

  describe(`${c.model}/${c.case} on WebGPU`, () => {
    it("runs prompt + greedy generation on webgpu over the same tokens, and the record validates", async () => {
      const r = await getRecord();
      assertLensRecord(r);
      expect(r.model.executionProvider).toBe("webgpu");
      expect(r.tokens.map((t) => t.id)).toEqual([...c.ids, c.greedy_tokens[c.greedy_tokens.length - 1]]);
      expect(r.generation.ids).toEqual(c.greedy_tokens);
    });

    it("top-k (near ties aside), probabilities, entropy, KL and cosine match transformers' (1e-4)", async () => {
      const ref = { topK: c.top_k, topkIds: Float32Array.from(blob("topk_ids")), topkProbs: blob("topk_probs") as Float32Array, entropy: blob("entropy") as Float32Array, kl: blob("kl") as Float32Array, cosine: blob("cosine") as Float32Array };
      expectLensMatches(await getRecord(), ref, label, 1e-4);
    });

    it("targets with their probability and rank at every layer", async () => {
      const r = await getRecord();
      expect(r.lens.targetIds).toEqual(c.target_ids);
      expect(maxAbsDiff(r.lens.targetProb.data, blob("target_prob"))).toBeLessThanOrEqual(1e-4);
      const ranks = blob("target_rank");
      const margins = blob("target_rank_margin");
      r.lens.targetRank.data.forEach((rank, i) => expect(Math.abs(rank - ranks[i])).toBeLessThanOrEqual(margins[i] <= 1e-5 ? 1 : 0));
    });

    it("attention mass per layer, head, query and segment matches transformers' attentions (1e-5)", async () => {
      const r = await getRecord();
      const worst = attentionMassError(r, blob("attentions"), L, c.num_heads, c.prompt_length);
      console.log(`${label} attention segment mass max abs error: ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-5);
    });

    it("logits and hidden states with heads masked match transformers' o_proj hook (1e-4)", async () => {
      const m = await open(modelDir);
      const prepared = await m.prepare({ prompt: source.prompt, image });
      const mask = new Float32Array(L * c.num_heads).fill(1);
      for (const [layer, heads] of Object.entries(c.head_mask)) for (const h of heads) mask[Number(layer) * c.num_heads + h] = 0;
      const fwd = await m.forward(prepared.inputIds, { imageFeatures: await m.imageFeaturesFor(prepared), positions: prepared.inputIds.map((_, i) => i), headMask: mask });
      const logitsError = relativeError(await m.logits(fwd), blob("masked_logits") as Float32Array);
      const hiddenError = relativeError(fwd.hiddenStates, blob("masked_hidden_states") as Float32Array);
      console.log(`${label} masked: logits rel. error ${logitsError.toExponential(2)}, hidden states ${hiddenError.toExponential(2)}`);
      expect(logitsError).toBeLessThanOrEqual(1e-4);
      expect(hiddenError).toBeLessThanOrEqual(1e-4);
    });
  });
}
