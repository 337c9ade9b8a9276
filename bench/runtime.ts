/**
 * npm run bench:runtime [-- --model DIR] [--runs N] [--pairs P] [--threads N]
 *
 * Times, on one ~100M-parameter random LLaVA checkpoint (built here unless --model is given):
 *  - reading every weight file once (the floor for opening a model), against model open
 *    (config + compile + session creation);
 *  - one forward pass (vision tower + decoder prefill) on an image and prompt,
 *    against transformers' eager PyTorch on the very same input ids and pixel values when
 *    Python with transformers is available (a child process on the same machine, kept loaded):
 *    P pairs of single forwards, ours then transformers', each pair's ratio reported.
 * Prints ratios; the targets are forward <= 1.0x PyTorch eager and open <= 1.5x the read time.
 * --threads N runs both sides with N threads (on a shared machine, pin with taskset).
 */
import { spawn } from "node:child_process";
import * as readline from "node:readline";
import * as fs from "node:fs";
import * as path from "node:path";
import { LoadedModel } from "../src/sidecar/model/loadedModel";
import { BENCH_IMAGE, BENCH_PROMPT, benchCheckpoint, flag, median, readAllWeights, ROOT, WORK } from "./checkpoint";

const runs = Number(flag("--runs") ?? 5);
const pairs = Number(flag("--pairs") ?? 15);
// Threads for both sides (onnxruntime intra-op and torch); 0 = each library's default.
const threads = Number(flag("--threads") ?? 0);

async function main(): Promise<void> {
  const modelDir = flag("--model") ?? benchCheckpoint();
  const image = BENCH_IMAGE;
  const prompt = BENCH_PROMPT;

  readAllWeights(modelDir); // warm the page cache so both sides read from memory
  // This machine is shared and its load swings within a minute: every comparison here alternates
  // its two sides (read and open; our forward and transformers') and takes medians.
  const reads: number[] = [];
  const opens: number[] = [];
  let m: LoadedModel | undefined;
  for (let i = 0; i < 5; i++) {
    reads.push(readAllWeights(modelDir));
    await m?.dispose();
    const t0 = performance.now();
    m = await LoadedModel.open(modelDir, { device: "cpu", threads });
    opens.push(performance.now() - t0);
  }
  const model = m!;
  const readMs = median(reads);
  const openMs = median(opens);
  const prepared = await model.prepare({ prompt, image });
  const forwardOn = (lm: LoadedModel) => async () => {
    const t0 = performance.now();
    const features = await lm.imageFeaturesFor(prepared);
    await lm.forward(prepared.inputIds, { imageFeatures: features });
    return performance.now() - t0;
  };
  await forwardOn(model)();

  // onnxruntime's prepacked weights, to show the trade (slower open, faster forward).
  const packedOpen = performance.now();
  const packed = await LoadedModel.open(modelDir, { device: "cpu", prepackWeights: true, threads });
  const packedOpenMs = performance.now() - packedOpen;
  await forwardOn(packed)();
  const packedForwardMs = median(await sequential(runs, forwardOn(packed)));
  await packed.dispose();

  console.log(`model: ${modelDir} (${(model.info.weightBytes / 2 ** 20).toFixed(0)} MiB of ${model.info.dtype} weights, ${prepared.inputIds.length} tokens, provider ${model.info.provider})`);
  console.log(`read weights     ${readMs.toFixed(0).padStart(7)} ms   median of ${reads.length}, alternating with the opens`);
  console.log(`open model       ${openMs.toFixed(0).padStart(7)} ms   (last: compile ${model.timings.compileMs.toFixed(0)} ms + sessions ${model.timings.sessionMs.toFixed(0)} ms)   ratio to read: ${median(opens.map((o, i) => o / reads[i])).toFixed(2)}x (target <= 1.5x), the median of the pairs ${opens.map((o, i) => (o / reads[i]).toFixed(2)).join(", ")}`);
  console.log(`  with prepacked weights: open ${packedOpenMs.toFixed(0)} ms (${(packedOpenMs / readMs).toFixed(2)}x read), forward ${packedForwardMs.toFixed(0)} ms`);

  const inputs = path.join(WORK, "inputs");
  fs.mkdirSync(inputs, { recursive: true });
  fs.writeFileSync(path.join(inputs, "input_ids.json"), JSON.stringify(prepared.inputIds));
  fs.writeFileSync(path.join(inputs, "pixel_values.f32"), new Uint8Array(prepared.pixelValues!.data.buffer));
  const hf = await startTransformers(modelDir, inputs);
  if ("note" in hf) {
    console.log(`forward (ours)   ${median(await sequential(runs, forwardOn(model))).toFixed(0).padStart(7)} ms   median of ${runs}`);
    console.log(`transformers eager: not measured (${hf.note})`);
  } else {
    // Single forwards alternate (ours, then transformers'), with a pause between sides so
    // that neither library's threads are still busy when the other starts.
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < pairs; i++) {
      ours.push(await forwardOn(model)());
      await pause(30);
      theirs.push(await hf.forward());
      await pause(30);
    }
    hf.quit();
    const ratios = ours.map((o, i) => o / theirs[i]).sort((a, b) => a - b);
    const q = (f: number) => ratios[Math.min(ratios.length - 1, Math.floor(f * ratios.length))].toFixed(2);
    console.log(`transformers: torch threads ${hf.threads}, from_pretrained ${hf.loadMs.toFixed(0)} ms`);
    console.log(`forward (ours)   ${median(ours).toFixed(0).padStart(7)} ms   median of ${pairs}, alternating with transformers' one by one`);
    console.log(`forward (HF eager) ${median(theirs).toFixed(0).padStart(5)} ms   median of ${pairs}`);
    // The headline is the median of the pairs' ratios: each pair is measured within a second,
    // so a change in the machine's load between pairs cancels out.
    console.log(
      `forward ratio ours/HF: ${median(ratios).toFixed(2)}x (target <= 1.0x), the median of ${pairs} pairs (quartiles ${q(0.25)}-${q(0.75)}, ${ratios.filter((r) => r <= 1).length} pairs <= 1.0x); ratio of the medians ${(median(ours) / median(theirs)).toFixed(2)}x`,
    );
  }
  await model.dispose();
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** bench/hf_forward.py kept running: one forward per request, timed inside Python. */
async function startTransformers(modelDir: string, inputs: string): Promise<{ forward: () => Promise<number>; quit: () => void; threads: number; loadMs: number } | { note: string }> {
  const child = spawn("python3", [path.join(ROOT, "bench/hf_forward.py"), modelDir, inputs, String(threads)], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.on("error", (e) => (stderr += `${e.message}\n`)); // no python3: stdout just ends
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, number | boolean>> => {
    const line = await lines.next();
    if (line.done) throw new Error((stderr || "python3 ended").trim().split("\n").pop());
    return JSON.parse(line.value) as Record<string, number | boolean>;
  };
  try {
    const ready = await next();
    return {
      threads: Number(ready["threads"]),
      loadMs: Number(ready["load_ms"]),
      forward: async () => {
        child.stdin.write("run\n");
        return Number((await next())["forward_ms"]);
      },
      quit: () => child.stdin.end("quit\n"),
    };
  } catch (e) {
    child.kill();
    return { note: e instanceof Error ? e.message : String(e) };
  }
}

async function sequential(n: number, f: () => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await f());
  return out;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
