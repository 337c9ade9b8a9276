/**
 * Half-precision checkpoints that do not fit as float32 keep their weights half in memory and
 * convert each where it is used (weightPlan "half-per-use"): the same float32 compute as the
 * copies made at open, so the same parity with transformers' float32 run over those weights,
 * and the same greedy tokens. Also: the plan is chosen from the memory that is free (a float16
 * checkpoint that does not fit as float32 computes in its own float16, whose parity
 * test/parity/halfCompute.test.ts holds), and a model that cannot fit at all is refused with one
 * line before any session allocates.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { listCases, readTensor, relativeError } from "../helpers/fixtures";

const halfCases = listCases().filter((c) => c.compute_dtype === "float32" && (c as { checkpoint_dtype?: string }).checkpoint_dtype !== "float32");
const opened: LoadedModel[] = [];
afterAll(async () => {
  for (const m of opened) await m.dispose();
});

it("has float32 reference runs over half-precision checkpoints", () => {
  expect(new Set(halfCases.map((c) => c.model))).toEqual(new Set(["llama-f16", "llava-gqa-bf16"]));
});

describe.each(halfCases.map((c) => [`${c.model}/${c.case}`, c] as const))("%s with its weights kept half", (_name, c) => {
  it("matches transformers' float32 run as the float32 copies do, with the same greedy tokens", async () => {
    const perUse = await LoadedModel.open(c.modelDir, { device: "cpu", weightPlan: "half-per-use" });
    const copies = await LoadedModel.open(c.modelDir, { device: "cpu", weightPlan: "float32" });
    opened.push(perUse, copies);
    expect(perUse.info.weightPlan).toBe("half-per-use");
    expect(copies.info.weightPlan).toBe("float32");
    const prepared = await perUse.prepare({ prompt: c.prompt, image: c.imagePath ?? undefined });
    const positions = c.input_ids.map((_, i) => i);
    const a = await perUse.forward(c.input_ids, { imageFeatures: await perUse.imageFeaturesFor(prepared), positions });
    const b = await copies.forward(c.input_ids, { imageFeatures: await copies.imageFeaturesFor(prepared), positions });
    // the same float32 arithmetic either way: a cast per use gives the very numbers the folded cast gives
    expect(relativeError(a.hiddenStates, b.hiddenStates)).toBeLessThanOrEqual(1e-6);
    expect(relativeError(a.hiddenStates, readTensor(c, c.hidden_states))).toBeLessThanOrEqual(1e-4);
    expect(relativeError(await perUse.logits(a), readTensor(c, c.logits))).toBeLessThanOrEqual(1e-4);
    expect(await perUse.generate(prepared, c.greedy_tokens.length)).toEqual(c.greedy_tokens);
  });
});

describe("the weight plan follows the memory that is free", () => {
  const dir = () => halfCases[0].modelDir;
  it("makes float32 copies when they fit; when only half fits, a float16 checkpoint computes in its own float16 and a bfloat16 one keeps its weights half", async () => {
    const roomy = await LoadedModel.open(dir(), { device: "cpu", availableMemory: 64e9 });
    opened.push(roomy);
    expect(roomy.info.weightPlan).toBe("float32");
    expect(roomy.info.memory.reason).toMatch(/^half-precision weights converted to float32 at open/);
    // one byte short of what the float32 copies need, beside the 512 MB kept free for the rest of the machine
    const short = roomy.info.memory.estimateBytes + 512e6 - 1;
    const own = await LoadedModel.open(dir(), { device: "cpu", availableMemory: short });
    opened.push(own);
    expect([own.info.computeDtype, own.info.weightPlan]).toEqual(["float16", "half"]);
    expect(own.engine.fedBytes).toBe(0);
    expect(own.info.memory.reason).toMatch(/^auto computes in the checkpoint's float16 \(as float32 they would need about \d+ MB and \d+ MB is free\), each weight product widened to float32 where it runs; needs about \d+ MB$/);
    expect(own.info.memory.estimateBytes).toBeLessThan(roomy.info.memory.estimateBytes);
    // the same squeeze with the float32 compute asked for by plan keeps the weights half
    const kept = await LoadedModel.open(dir(), { device: "cpu", availableMemory: short, weightPlan: "half-per-use" });
    opened.push(kept);
    expect([kept.info.computeDtype, kept.info.weightPlan]).toEqual(["float32", "half-per-use"]);
    // bfloat16 activations may not fit float16's range: a bfloat16 checkpoint keeps float32 compute
    const bf16 = halfCases.find((c) => c.model === "llava-gqa-bf16")!.modelDir;
    const bfRoomy = await LoadedModel.open(bf16, { device: "cpu", availableMemory: 64e9 });
    opened.push(bfRoomy);
    const bfKept = await LoadedModel.open(bf16, { device: "cpu", availableMemory: bfRoomy.info.memory.estimateBytes + 512e6 - 1 });
    opened.push(bfKept);
    expect([bfKept.info.computeDtype, bfKept.info.weightPlan]).toEqual(["float32", "half-per-use"]);
    expect(bfKept.info.memory.reason).toMatch(/^half-precision weights kept half and converted per use: as float32 they would need about/);
  });

  it("says, while it opens, that it converts the half weights to float32 copies, and how much, before it creates the sessions", async () => {
    const openWithStages = async (folder: string, availableMemory: number) => {
      const stages: string[] = [];
      const model = await LoadedModel.open(folder, { device: "cpu", availableMemory, onProgress: (s) => stages.push(s) });
      opened.push(model);
      return { model, stages, converting: stages.filter((s) => s.startsWith("converting")) };
    };
    const roomy = await openWithStages(dir(), 64e9);
    expect(roomy.stages.slice(-2)).toEqual([expect.stringMatching(/^converting \d+ MB of float16 weights to float32 copies \(\d+ MB\)$/), "creating sessions"]);
    const bf16 = halfCases.find((c) => c.model === "llava-gqa-bf16")!.modelDir;
    expect((await openWithStages(bf16, 64e9)).converting).toEqual([expect.stringMatching(/ of bfloat16 weights /)]);
    // kept half (here: float16 compute): nothing is converted at open
    const kept = await openWithStages(dir(), roomy.model.info.memory.estimateBytes + 512e6 - 1);
    expect(kept.model.info.weightPlan).toBe("half");
    expect(kept.converting).toEqual([]);
    expect(kept.stages).toContain("creating sessions");
  });

  it("refuses a model that cannot fit, with one line naming the folder, before opening anything", async () => {
    await expect(LoadedModel.open(dir(), { device: "cpu", availableMemory: 100e6 })).rejects.toThrow(
      /^\S+llama-f16\/model: needs about \d+ MB even with its weights kept in half precision \(\d+ MB as float32\) and 100 MB is free: close other programs, or use a machine or GPU with more memory$/,
    );
    await expect(LoadedModel.open(dir(), { device: "cpu", availableMemory: 100e6, weightPlan: "float32" })).rejects.toThrow(/needs about \d+ MB as float32 and 100 MB is free: use dtype auto to keep the weights in half precision/);
  });
});

describe("float32 copies made in the background (the sidecar's open)", () => {
  const bf16 = () => halfCases.find((c) => c.model === "llava-gqa-bf16")!;
  const settings = { positions: "all" as const, topK: 5, maxNewTokens: 3 };
  /** The record's numbers, without what differs between any two runs (timings) or says how the weights were held. */
  const numbers = (r: LensRecord) => ({ lens: r.lens, tracked: r.tracked, attention: r.attention, generated: r.generation.ids, tokens: r.tokens });
  const openInBackground = async (stages?: string[]) => {
    const model = await LoadedModel.open(bf16().modelDir, { device: "cpu", availableMemory: 64e9, float32Copies: "in-background", onProgress: (s) => stages?.push(s) });
    opened.push(model);
    return model;
  };

  it("opens with the weights kept half, converting nothing, then moves to the copies and gives the very same numbers", async () => {
    const c = bf16();
    const stages: string[] = [];
    const model = await openInBackground(stages);
    const end = model.busy(); // held, so that the copies wait while the first record runs
    expect([model.info.computeDtype, model.info.weightPlan, model.engine.pendingWeightPlan]).toEqual(["float32", "half-per-use", "float32"]);
    expect(stages.filter((s) => s.startsWith("converting"))).toEqual([]);
    expect(model.info.memory.reason).toMatch(/^half-precision weights kept half until their float32 copies are made, in the background; needs about \d+ MB$/);
    const before = await runLens(model, { prompt: c.prompt, image: c.imagePath ?? undefined, settings });
    expect(before.model.weightPlan).toBe("half-per-use");
    end();
    expect(await model.float32Copies()).toBe(true);
    expect([model.info.weightPlan, model.engine.pendingWeightPlan]).toEqual(["float32", undefined]);
    expect(model.engine.fedBytes).toBeGreaterThan(0);
    expect(model.info.memory.reason).toMatch(/^half-precision weights converted to float32 after the open, in the background; needs about \d+ MB$/);
    expect(model.engine.copiesTimings?.readyMs).toBeGreaterThan(0);
    const after = await runLens(model, { prompt: c.prompt, image: c.imagePath ?? undefined, settings });
    expect(after.model.weightPlan).toBe("float32");
    expect(numbers(after)).toEqual(numbers(before));
    // and the same as an open that made the copies at once
    const atOpen = await LoadedModel.open(c.modelDir, { device: "cpu", availableMemory: 64e9 });
    opened.push(atOpen);
    expect(atOpen.info.weightPlan).toBe("float32");
    expect(numbers(await runLens(atOpen, { prompt: c.prompt, image: c.imagePath ?? undefined, settings }))).toEqual(numbers(before));
  });

  it("waits while the model is in use, and goes on when hurried", async () => {
    const model = await openInBackground();
    const end = model.busy();
    let ready = false;
    void model.float32Copies().then(() => (ready = true));
    // a few hundred ms is many times what these small copies take when nothing holds them
    await new Promise((r) => setTimeout(r, 600));
    expect([ready, model.info.weightPlan]).toEqual([false, "half-per-use"]);
    expect(await model.float32Copies({ hurry: true })).toBe(true);
    expect(model.info.weightPlan).toBe("float32");
    end();
  });

  it("is dropped, holding nothing, when the model is disposed first", async () => {
    const model = await openInBackground();
    model.busy();
    await model.dispose();
    expect(await model.float32Copies()).toBe(false);
    expect(model.engine.copiesFailure).toBeUndefined();
    expect(model.engine.fedBytes).toBe(0);
  });

  it("is not planned where the copies would not be made at open: kept half for want of memory, or a float32 checkpoint", async () => {
    const c = bf16();
    const roomy = await openInBackground();
    const short = roomy.info.memory.estimateBytes + 512e6 - 1;
    const kept = await LoadedModel.open(c.modelDir, { device: "cpu", availableMemory: short, float32Copies: "in-background" });
    opened.push(kept);
    expect([kept.info.weightPlan, kept.engine.pendingWeightPlan, await kept.float32Copies()]).toEqual(["half-per-use", undefined, false]);
    const f32 = listCases().find((x) => x.model === "llava-gqa-f32")!;
    const plain = await LoadedModel.open(f32.modelDir, { device: "cpu", float32Copies: "in-background" });
    opened.push(plain);
    expect([plain.info.weightPlan, plain.engine.pendingWeightPlan, await plain.float32Copies()]).toEqual(["float32", undefined, false]);
  });
});
