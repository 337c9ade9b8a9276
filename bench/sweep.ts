/**
 * npm run bench:sweep [-- --model DIR] [--threads N] [--items N]
 *
 * Sweep throughput: the held-out scene experiment (test/fixtures/scenes, one question per
 * image, target = the answer, up to 4 generated tokens, results streamed to a temporary folder
 * as the CLI does) on one loaded model, in images per second. The model is opened once and its
 * sessions reused for every item; the first pass warms up, the second is timed. Also prints
 * what one item costs when the model is opened for it (what a sweep that recompiled per item
 * would pay), as a ratio. Target (issue 6): at least 20 images/s with the bundled model on the
 * 2-core CPU.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseExperiment } from "../src/shared/experiment";
import { defaultModelFolder } from "../src/sidecar/defaults";
import { runSweep } from "../src/sidecar/experiment/sweep";
import { runLens } from "../src/sidecar/lens/runLens";
import { LoadedModel } from "../src/sidecar/model/loadedModel";
import { flag, ROOT } from "./checkpoint";

const modelDir = path.resolve(flag("--model") ?? defaultModelFolder());
const threads = Number(flag("--threads") ?? "0");
const limit = Number(flag("--items") ?? "0");

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-sweep-"));
  const file = path.join(dir, "bench.lens.json");
  const manifest = path.join(ROOT, "test/fixtures/scenes/questions.jsonl");
  fs.writeFileSync(file, JSON.stringify({
    name: "bench",
    inputs: [{ manifest, ...(limit ? { limit } : {}) }],
    prompts: ["{question}"],
    target: "{answer}",
    generation: { maxNewTokens: 4 },
    groupBy: ["group"],
  }));
  const experiment = parseExperiment(fs.readFileSync(file, "utf8"), file);

  const t0 = performance.now();
  const model = await LoadedModel.open(modelDir, { device: "cpu", threads });
  const openMs = performance.now() - t0;
  try {
    const warm = await runSweep(model, experiment, file, { outDir: path.join(dir, "warm") });
    const timed = await runSweep(model, experiment, file, { outDir: path.join(dir, "timed") });
    const perItemMs = (1000 * timed.seconds) / timed.ran;
    // One item with a model opened for it alone (graph compile + session creation included).
    const rows = fs.readFileSync(manifest, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { image: string; question: string });
    const t1 = performance.now();
    const fresh = await LoadedModel.open(modelDir, { device: "cpu", threads });
    await runLens(fresh, { prompt: rows[0].question, image: path.join(path.dirname(manifest), rows[0].image), settings: { maxNewTokens: 4 } });
    const coldMs = performance.now() - t1;
    await fresh.dispose();

    const accuracy = timed.aggregates.groups.find((g) => g.key === "all")?.accuracy;
    console.log(`model ${path.relative(ROOT, modelDir) || modelDir} (${model.info.provider}, threads ${threads || "default"}); opened in ${openMs.toFixed(0)} ms`);
    console.log(`warm-up pass: ${warm.ran} items in ${warm.seconds.toFixed(2)} s`);
    console.log(`timed pass:   ${timed.ran} items in ${timed.seconds.toFixed(2)} s = ${(timed.ran / timed.seconds).toFixed(1)} images/s (${perItemMs.toFixed(1)} ms per item; accuracy ${accuracy === null || accuracy === undefined ? "-" : (100 * accuracy).toFixed(1) + "%"})`);
    console.log(`one item with the model opened for it: ${coldMs.toFixed(0)} ms = ${(coldMs / perItemMs).toFixed(1)}x an item of the sweep`);
    console.log(`target: >= 20 images/s -> ${timed.ran / timed.seconds >= 20 ? "met" : "NOT met"}`);
  } finally {
    await model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
