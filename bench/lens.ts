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
 * npm run bench:lens [-- --threads N] [--rounds R] [--model DIR]
 *   [--device cpu|webgpu|cuda|auto] [--dtype auto|float32|...] (ours; default cpu, auto)
 *   [--hf-device cpu|cuda] [--hf-dtype float32|float16|bfloat16] (PyTorch's; default cpu, float32)
 * On a GPU (bench/gpu.sh runs it so on a full-size LLaVA-1.5-7B), each side's peak GPU memory
 * is printed too: PyTorch's from torch, ours sampled from nvidia-smi while our child runs.
 */
import * as path from "node:path";
import { runLens } from "../src/sidecar/lens/runLens";
import { LoadedModel } from "../src/sidecar/model/loadedModel";
import { parseDevice } from "../src/sidecar/runtime/ort";
import type { DtypeChoice } from "../src/shared/protocol";
import { BENCH_IMAGE, BENCH_PROMPT, benchCheckpoint, flag, median, ROOT, runJsonChild } from "./checkpoint";

const args = process.argv.slice(2);
const runs = 3;
// Threads for both sides (onnxruntime intra-op and torch); 0 = each library's default.
const threads = Number(flag("--threads") ?? "0");
const device = flag("--device") ?? "cpu";
const dtype = flag("--dtype") ?? "auto";
const hfDevice = flag("--hf-device") ?? "cpu";
const hfDtype = flag("--hf-dtype") ?? "float32";

interface SideResult {
  ms: number;
  peakRssMiB: number;
  tokens: number[];
  /** Our side only: median milliseconds per stage of the record's timings. */
  stages?: Record<string, number>;
  /** Peak GPU memory (PyTorch: torch's peak allocation; ours: nvidia-smi's samples). */
  peakGpuMiB?: number;
  /** What ran: ours, the provider and adapter from the record; PyTorch's, its device and dtype. */
  ran?: string;
  device?: string;
  dtype?: string;
  gpu?: string;
}

async function child(modelDir: string, threadCount: number): Promise<void> {
  const model = await LoadedModel.open(modelDir, { device: parseDevice(device), threads: threadCount, dtype: dtype as DtypeChoice });
  const once = async () => {
    const t0 = performance.now();
    const r = await runLens(model, { prompt: BENCH_PROMPT, image: BENCH_IMAGE, settings: { positions: "afterImage", topK: 10, maxNewTokens: 8 } });
    return { ms: performance.now() - t0, tokens: r.generation.ids, timings: r.timings };
  };
  await once();
  const results: Awaited<ReturnType<typeof once>>[] = [];
  for (let i = 0; i < runs; i++) results.push(await once());
  const stages = Object.fromEntries(Object.keys(results[0].timings).map((k) => [k, median(results.map((r) => r.timings[k] ?? 0))]));
  const info = model.info;
  const ran = `${info.provider}${info.device?.name ? ` (${info.device.name}${info.device.software ? ", software" : ""})` : ""}, ${info.computeDtype} compute, ${info.dtype} weights`;
  const out: SideResult = { ms: median(results.map((r) => r.ms)), peakRssMiB: process.resourceUsage().maxRSS / 1024, tokens: results[0].tokens, stages, ran };
  process.stdout.write(JSON.stringify(out) + "\n");
  await model.dispose();
}

const gpuText = (r: SideResult) => (r.peakGpuMiB !== undefined ? `   peak GPU ${r.peakGpuMiB.toFixed(0)} MiB` : "");

/**
 * This machine is shared and noisy, so ours and HF generate (the close comparison) run in
 * alternating rounds, each a fresh child process taking the median of `runs`; the figures are
 * the medians over the rounds. The seeds' method (many times slower) runs once.
 */
async function main(): Promise<void> {
  const modelDir = args.includes("--model") ? args[args.indexOf("--model") + 1] : benchCheckpoint();
  const rounds = Number(flag("--rounds") ?? "3");
  const oursOnce = async (): Promise<SideResult> => {
    const r = await runJsonChild<SideResult>(process.execPath, [__filename, "--child", modelDir, String(threads), ...args], { sampleGpu: true }).catch((e: unknown) => {
      throw new Error(`our side failed: ${e instanceof Error ? e.message : String(e)}`);
    });
    return { ...r.value, ...(r.peakGpuMiB !== undefined ? { peakGpuMiB: r.peakGpuMiB } : {}) };
  };
  type HfResult = Partial<Record<"seeds" | "generate" | "generate_full", SideResult>>;
  const hfEnv = { ...process.env, LENS_HF_DEVICE: hfDevice, LENS_HF_DTYPE: hfDtype };
  const hfOnce = (methods: string): Promise<HfResult | string> =>
    runJsonChild<HfResult>("python3", [path.join(ROOT, "bench/hf_lens.py"), modelDir, BENCH_IMAGE, BENCH_PROMPT, String(runs), String(threads), methods], { env: hfEnv }).then(
      (r) => r.value,
      (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n").pop()!,
    );
  const ours: SideResult[] = [];
  const generate: SideResult[] = [];
  let missing: string | undefined;
  for (let round = 0; round < rounds; round++) {
    ours.push(await oursOnce());
    const hf = missing ? missing : await hfOnce("generate");
    if (typeof hf === "string") missing = hf;
    else generate.push(hf.generate!);
    console.log(`round ${round + 1}: ours ${ours[round].ms.toFixed(0)} ms${typeof hf === "string" ? "" : `, HF generate ${hf.generate!.ms.toFixed(0)} ms (${(hf.generate!.ms / ours[round].ms).toFixed(2)}x)`}`);
  }
  const mid = (xs: SideResult[]): SideResult => [...xs].sort((a, b) => a.ms - b.ms)[Math.floor(xs.length / 2)];
  const o = mid(ours);
  console.log(`model: ${modelDir}; 8 new tokens, lens at every layer for the prompt tail and each generated token`);
  console.log(`ours: ${o.ran ?? device}; PyTorch: ${hfDevice}, ${hfDtype}`);
  console.log(`ours (full LensRecord)          ${o.ms.toFixed(0).padStart(7)} ms   peak RSS ${Math.max(...ours.map((r) => r.peakRssMiB)).toFixed(0)} MiB${gpuText(o)}   (median of ${rounds} rounds)`);
  console.log(`  stages (median ms): ${Object.entries(o.stages ?? {}).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ")}`);
  if (missing) {
    console.log(`PyTorch baselines: not measured (${missing})`);
    return;
  }
  const rest = await hfOnce("seeds,generate_full");
  if (typeof rest === "string") throw new Error(`PyTorch baselines failed: ${rest}`);
  if (rest.seeds?.gpu) console.log(`PyTorch's GPU: ${rest.seeds.gpu}`);
  const peak = Math.max(...ours.map((r) => r.peakRssMiB));
  const hfGenerate = mid(generate);
  for (const [name, r] of [
    ["seeds' method (repeated forward)", rest.seeds!],
    [`HF generate with KV cache`, hfGenerate],
    ["HF generate + the record's stats", rest.generate_full!],
  ] as const) {
    console.log(`${name.padEnd(32)} ${r.ms.toFixed(0).padStart(7)} ms   peak RSS ${r.peakRssMiB.toFixed(0)} MiB${gpuText(r)}   -> ours is ${(r.ms / o.ms).toFixed(2)}x faster, ${(peak / r.peakRssMiB).toFixed(2)}x the memory`);
  }
  const same = JSON.stringify(rest.seeds!.tokens) === JSON.stringify(o.tokens) && JSON.stringify(hfGenerate.tokens) === JSON.stringify(o.tokens);
  console.log(`generated tokens identical to PyTorch's (seeds' method and generate): ${same}${same ? "" : ` (ours ${o.tokens.join(",")}; seeds ${rest.seeds!.tokens.join(",")}; generate ${hfGenerate.tokens.join(",")})`}`);
  console.log(`targets: >= 3x faster than the seeds' method (${(rest.seeds!.ms / o.ms).toFixed(2)}x), >= 1x vs generate (${(hfGenerate.ms / o.ms).toFixed(2)}x; per round ${generate.map((g, i) => (g.ms / ours[i].ms).toFixed(2)).join(", ")}), peak memory <= 0.5x (${(peak / rest.seeds!.peakRssMiB).toFixed(2)}x seeds, ${(peak / hfGenerate.peakRssMiB).toFixed(2)}x generate)`);
}

if (args[0] === "--child") {
  child(args[1], Number(args[2] ?? 0)).catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
} else {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  });
}
