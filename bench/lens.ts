/**
 * npm run bench:lens [-- --model DIR]
 *
 * The full LensRecord (lens at every layer for the prompt tail and 8 generated tokens, tracked
 * ranks, attention breakdown) against what the seed studies did in PyTorch on the same
 * checkpoint, image and prompt, on CPU:
 *  - the seeds' method: generation by repeated full forward passes with output_hidden_states
 *    and output_attentions, then lm_head over every layer at all positions, softmax, top-k,
 *    entropy;
 *  - transformers' generate with its KV cache, then the same lens over the returned states.
 *  - the same generate plus everything the record holds (KL, cosine, exact ranks of every
 *    top-k token by a full sort), for an equal-work comparison.
 * Each side runs in its own child process (same machine, same thread count), so peak RSS is
 * that side's alone. Prints wall-clock and peak-memory ratios. Targets: >= 3x faster than the
 * seeds' method, at least as fast as generate with its cache, at most half the peak memory.
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { runLens } from "../src/sidecar/lens/runLens";
import { LoadedModel } from "../src/sidecar/model/loadedModel";
import { BENCH_IMAGE, BENCH_PROMPT, benchCheckpoint, median, ROOT } from "./checkpoint";

const args = process.argv.slice(2);
const runs = 3;
// Threads for both sides (onnxruntime intra-op and torch); 0 = each library's default.
const threads = Number(args.includes("--threads") ? args[args.indexOf("--threads") + 1] : 0);

interface SideResult {
  ms: number;
  peakRssMiB: number;
  tokens: number[];
  /** Our side only: median milliseconds per stage of the record's timings. */
  stages?: Record<string, number>;
}

async function child(modelDir: string, threadCount: number): Promise<void> {
  const model = await LoadedModel.open(modelDir, { device: "cpu", threads: threadCount });
  const once = async () => {
    const t0 = performance.now();
    const r = await runLens(model, { prompt: BENCH_PROMPT, image: BENCH_IMAGE, settings: { positions: "afterImage", topK: 10, maxNewTokens: 8 } });
    return { ms: performance.now() - t0, tokens: r.generation.ids, timings: r.timings };
  };
  await once();
  const results: Awaited<ReturnType<typeof once>>[] = [];
  for (let i = 0; i < runs; i++) results.push(await once());
  const stages = Object.fromEntries(Object.keys(results[0].timings).map((k) => [k, median(results.map((r) => r.timings[k] ?? 0))]));
  const out: SideResult = { ms: median(results.map((r) => r.ms)), peakRssMiB: process.resourceUsage().maxRSS / 1024, tokens: results[0].tokens, stages };
  process.stdout.write(JSON.stringify(out) + "\n");
  await model.dispose();
}

function main(): void {
  const modelDir = args.includes("--model") ? args[args.indexOf("--model") + 1] : benchCheckpoint();
  const ours = spawnSync(process.execPath, [__filename, "--child", modelDir, String(threads)], { encoding: "utf8" });
  if (ours.status !== 0) throw new Error(`our side failed: ${ours.stderr}`);
  const o = JSON.parse(ours.stdout.trim().split("\n").pop()!) as SideResult;
  console.log(`model: ${modelDir}; 8 new tokens, lens at every layer for the prompt tail and each generated token`);
  console.log(`ours (full LensRecord)          ${o.ms.toFixed(0).padStart(7)} ms   peak RSS ${o.peakRssMiB.toFixed(0)} MiB`);
  console.log(`  stages (median ms): ${Object.entries(o.stages ?? {}).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ")}`);

  const py = spawnSync("python3", [path.join(ROOT, "bench/hf_lens.py"), modelDir, BENCH_IMAGE, BENCH_PROMPT, String(runs), String(threads)], { encoding: "utf8" });
  if (py.status !== 0) {
    console.log(`PyTorch baselines: not measured (${(py.stderr || "python3 failed").trim().split("\n").pop()})`);
    return;
  }
  const hf = JSON.parse(py.stdout.trim().split("\n").pop()!) as Record<"seeds" | "generate" | "generate_full", SideResult> & { same_tokens_as_each_other: boolean };
  for (const [name, r] of [
    ["seeds' method (repeated forward)", hf.seeds],
    ["HF generate with KV cache", hf.generate],
    ["HF generate + the record's stats", hf.generate_full],
  ] as const) {
    console.log(`${name.padEnd(32)} ${r.ms.toFixed(0).padStart(7)} ms   peak RSS ${r.peakRssMiB.toFixed(0)} MiB   -> ours is ${(r.ms / o.ms).toFixed(2)}x faster, ${(o.peakRssMiB / r.peakRssMiB).toFixed(2)}x the memory`);
  }
  const same = JSON.stringify(hf.seeds.tokens) === JSON.stringify(o.tokens);
  console.log(`generated tokens identical to PyTorch's: ${same}`);
  console.log(`targets: >= 3x faster than the seeds' method (${(hf.seeds.ms / o.ms).toFixed(2)}x), >= 1x vs generate (${(hf.generate.ms / o.ms).toFixed(2)}x), peak memory <= 0.5x (${(o.peakRssMiB / hf.seeds.peakRssMiB).toFixed(2)}x seeds, ${(o.peakRssMiB / hf.generate.peakRssMiB).toFixed(2)}x generate)`);
}

if (args[0] === "--child") {
  child(args[1], Number(args[2] ?? 0)).catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
} else {
  main();
}
