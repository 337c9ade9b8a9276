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
