import { it } from "vitest";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { listCases, readTensor, relativeError } from "../helpers/fixtures";

it("half smoke", async () => {
  for (const c of listCases().filter((c) => c.compute_dtype !== "float32")) {
    for (const dtype of ["float16", "float32"] as const) {
      const model = await LoadedModel.open(c.modelDir, { device: "cpu", dtype });
      const prepared = await model.prepare({ prompt: c.prompt, image: c.imagePath ?? undefined });
      const positions = c.input_ids.map((_, i) => i);
      const result = await model.forward(c.input_ids, { imageFeatures: await model.imageFeaturesFor(prepared), positions });
      const [layers, seq, hidden] = c.hidden_states.shape;
      const exp = readTensor(c, c.hidden_states);
      const per = Array.from({ length: layers }, (_, l) => relativeError(result.hiddenStates, exp, l * seq * hidden, seq * hidden));
      const le = relativeError(await model.logits(result), readTensor(c, c.logits));
      const gen = await model.generate(prepared, c.greedy_tokens.length);
      console.log(`${c.model}/${c.case} ours ${dtype} (${model.info.computeDtype}) vs HF ${c.compute_dtype}: hidden max ${Math.max(...per).toExponential(2)} logits ${le.toExponential(2)} tokens ${JSON.stringify(gen) === JSON.stringify(c.greedy_tokens)}`);
      await model.dispose();
    }
  }
}, 300000);
