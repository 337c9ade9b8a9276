/**
 * The bundled model (media/models/lens-scenes-tiny, trained by tools/train) through this
 * project's runtime: held-out accuracy, real logit-lens dynamics, and the sweep aggregates
 * checked against the same figures computed here by hand from the whole records.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExperiment } from "../../src/shared/experiment";
import { at, type LensRecord } from "../../src/shared/lensRecord";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { defaultModelFolder } from "../../src/sidecar/defaults";
import { runSweep, type SweepResult } from "../../src/sidecar/experiment/sweep";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";

const SCENES = path.resolve(__dirname, "../fixtures/scenes");
const BUNDLED = path.resolve(__dirname, "../../media/models/lens-scenes-tiny");

let model: LoadedModel;
let result: SweepResult;
let records: Map<string, LensRecord>;

beforeAll(async () => {
  expect(defaultModelFolder()).toBe(BUNDLED);
  model = await LoadedModel.open(BUNDLED, { device: "cpu" });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-bundled-"));
  const file = path.join(dir, "heldout.lens.json");
  fs.writeFileSync(file, JSON.stringify({
    inputs: [{ manifest: path.join(SCENES, "questions.jsonl") }],
    prompts: ["{question}"],
    target: "{answer}",
    generation: { maxNewTokens: 4 },
    groupBy: ["group"],
    output: { folder: "out", records: true },
  }));
  result = await runSweep(model, parseExperiment(fs.readFileSync(file, "utf8"), file), file, { outDir: path.join(dir, "out") });
  records = new Map(
    fs.readFileSync(path.join(dir, "out", "records.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => {
      const { id, record } = JSON.parse(l) as { id: string; record: unknown };
      return [id, assertLensRecord(record)];
    }),
  );
}, 120_000);

afterAll(async () => {
  await model?.dispose();
});

describe("the bundled model", () => {
  it("is a small LLaVA in Hugging Face's format, within 25 MB", () => {
    const config = JSON.parse(fs.readFileSync(path.join(BUNDLED, "config.json"), "utf8")) as { architectures: string[]; text_config: { num_hidden_layers: number; num_key_value_heads: number; num_attention_heads: number } };
    expect(config.architectures).toEqual(["LlavaForConditionalGeneration"]);
    expect(config.text_config.num_hidden_layers).toBeGreaterThanOrEqual(6);
    expect(config.text_config.num_key_value_heads).toBeLessThan(config.text_config.num_attention_heads);
    const bytes = fs.readdirSync(BUNDLED).reduce((s, f) => s + fs.statSync(path.join(BUNDLED, f)).size, 0);
    expect(bytes).toBeLessThanOrEqual(25 * 1024 * 1024);
    expect(fs.existsSync(path.join(BUNDLED, "README.md"))).toBe(true);
  });

  it("answers at least 90% of the held-out scene questions", () => {
    const rows = result.rows;
    expect(rows.length).toBeGreaterThanOrEqual(50);
    const correct = rows.filter((r) => r.correct).length;
    expect(correct / rows.length, rows.filter((r) => !r.correct).map((r) => `${r.image}: ${r.prompt} -> ${r.generated} (expected ${r.expected})`).join("\n")).toBeGreaterThanOrEqual(0.9);
  });

  it("shows real lens dynamics: the answer starts below rank 1 and settles after the first block", () => {
    const correct = result.rows.filter((r) => r.correct);
    const L = model.info.numLayers;
    // the answer token reaches rank 1 by the last layer...
    for (const r of correct) expect(r.targetRank[L]).toBe(1);
    // ...is above rank 1 at the early layers in most samples...
    expect(correct.filter((r) => r.targetRank[0] > 1).length / correct.length).toBeGreaterThan(0.5);
    expect(correct.filter((r) => r.targetRank[1] > 1).length / correct.length).toBeGreaterThan(0.5);
    // ...and the median layer from which it stays at rank 1 is neither the embeddings nor block 1.
    const all = result.aggregates.groups.find((g) => g.key === "all")!;
    expect(all.medianConvergenceLayer).toBeGreaterThan(1);
  });

  it("aggregates equal the figures computed by hand from the records", () => {
    const L = model.info.numLayers;
    for (const g of result.aggregates.groups) {
      const rows = result.rows.filter((r) => g.key === "all" || r.groups[g.key] === g.value);
      expect(rows.length).toBe(g.n);
      const recs = rows.map((r) => records.get(r.id)!);
      // The answer position: the last prompt token, which predicts the first generated token.
      const answerIndex = recs.map((rec) => rec.positions.indexOf(rec.tokens.length - rec.generation.ids.length - 1));
      for (let l = 0; l <= L; l++) {
        const meanOf = (key: "entropy" | "targetProb" | "targetRank" | "kl") => recs.reduce((s, rec, i) => s + at(rec.lens[key], l, answerIndex[i]), 0) / recs.length;
        expect(g.meanEntropy[l]).toBeCloseTo(meanOf("entropy"), 10);
        expect(g.meanTargetProb[l]).toBeCloseTo(meanOf("targetProb"), 10);
        expect(g.meanTargetRank[l]).toBeCloseTo(meanOf("targetRank"), 10);
        expect(g.meanKl[l]).toBeCloseTo(meanOf("kl"), 10);
      }
      // Image share: mass on the image segment (index 3), mean over heads, then over items.
      for (let b = 0; b < L; b++) {
        let sum = 0;
        recs.forEach((rec, i) => {
          const heads = rec.model.numHeads;
          for (let h = 0; h < heads; h++) sum += at(rec.attention.mass, b, h, answerIndex[i], 3) / heads;
        });
        expect(g.meanImageShare[b]).toBeCloseTo(sum / recs.length, 10);
      }
      // Convergence: the first layer from which the final top-1 stays rank 1 (its rank from the tracked block).
      const hist = new Array<number>(L + 1).fill(0);
      recs.forEach((rec, i) => {
        const final = at(rec.lens.topkIds, L, answerIndex[i], 0);
        const m = rec.tracked.ids.indexOf(final);
        let first = L;
        for (let l = L; l >= 0 && at(rec.tracked.rank, l, answerIndex[i], m) === 1; l--) first = l;
        hist[first]++;
      });
      expect(g.convergenceHistogram).toEqual(hist);
      // Accuracy: generated text (EOS dropped) against the expected answer, ignoring case.
      const ok = rows.filter((r, i) => {
        const rec = recs[i];
        const ids = rec.generation.stoppedBy === "eos" ? rec.generation.ids.slice(0, -1) : rec.generation.ids;
        return model.text.decode(ids, true).trim().toLowerCase() === r.expected!.toLowerCase();
      }).length;
      expect(g.accuracy).toBeCloseTo(ok / rows.length, 12);
    }
  });
});
