/**
 * npm run bench:runtime [-- --model DIR] [--runs N] [--rounds R] [--threads N]
 *
 * Times, on one ~100M-parameter random LLaVA checkpoint (built here unless --model is given):
 *  - reading every weight file once (the floor for opening a model), against model open
 *    (config + compile + session creation);
 *  - one forward pass (vision tower + decoder prefill) on an image and prompt,
 *    against transformers' eager PyTorch on the very same input ids and pixel values when
 *    Python with transformers is available (run in a child process on the same machine).
 * Prints ratios; the targets are forward <= 1.0x PyTorch eager and open <= 1.5x the read time.
 * --threads N runs both sides with N threads (on a shared machine, pin with taskset).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { LoadedModel } from "../src/sidecar/model/loadedModel";
import { BENCH_IMAGE, BENCH_PROMPT, benchCheckpoint, median, ROOT, WORK } from "./checkpoint";

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const runs = Number(flag("--runs") ?? 5);
const rounds = Number(flag("--rounds") ?? 3);
// Threads for both sides (onnxruntime intra-op and torch); 0 = each library's default.
const threads = Number(flag("--threads") ?? 0);

function readAllWeights(dir: string): number {
  const t0 = performance.now();
  const buf = Buffer.allocUnsafe(16 << 20);
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".safetensors"))) {
    const fd = fs.openSync(path.join(dir, f), "r");
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
    fs.closeSync(fd);
  }
  return performance.now() - t0;
}

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
  console.log(`open model       ${openMs.toFixed(0).padStart(7)} ms   (last: compile ${model.timings.compileMs.toFixed(0)} ms + sessions ${model.timings.sessionMs.toFixed(0)} ms)   ratio to read: ${(openMs / readMs).toFixed(2)}x (target <= 1.5x); per pair ${opens.map((o, i) => (o / reads[i]).toFixed(2)).join(", ")}`);
  console.log(`  with prepacked weights: open ${packedOpenMs.toFixed(0)} ms (${(packedOpenMs / readMs).toFixed(2)}x read), forward ${packedForwardMs.toFixed(0)} ms`);

  const inputs = path.join(WORK, "inputs");
  fs.mkdirSync(inputs, { recursive: true });
  fs.writeFileSync(path.join(inputs, "input_ids.json"), JSON.stringify(prepared.inputIds));
  fs.writeFileSync(path.join(inputs, "pixel_values.f32"), new Uint8Array(prepared.pixelValues!.data.buffer));
  const ours: number[] = [];
  const theirs: number[] = [];
  let hfNote = "";
  for (let round = 0; round < rounds; round++) {
    ours.push(median(await sequential(runs, forwardOn(model))));
    if (hfNote) continue;
    const py = spawnSync("python3", [path.join(ROOT, "bench/hf_forward.py"), modelDir, inputs, String(runs), String(threads)], { encoding: "utf8" });
    if (py.status !== 0) {
      hfNote = `transformers eager: not measured (${(py.stderr || py.error?.message || "python3 failed").trim().split("\n").pop()})`;
      continue;
    }
    const hf = JSON.parse(py.stdout.trim().split("\n").pop()!) as { forward_ms: number; threads: number; load_ms: number };
    theirs.push(hf.forward_ms);
    console.log(`round ${round + 1}: forward ours ${ours[round].toFixed(0)} ms, HF eager ${hf.forward_ms.toFixed(0)} ms (torch threads ${hf.threads}; from_pretrained ${hf.load_ms.toFixed(0)} ms) -> ${(ours[round] / hf.forward_ms).toFixed(2)}x`);
  }
  console.log(`forward (ours)   ${median(ours).toFixed(0).padStart(7)} ms   median of ${rounds} rounds of ${runs}`);
  if (theirs.length === 0) {
    console.log(hfNote);
  } else {
    console.log(`forward (HF eager) ${median(theirs).toFixed(0).padStart(5)} ms   median of ${rounds} rounds of ${runs}, alternating with ours`);
    console.log(`forward ratio ours/HF: ${(median(ours) / median(theirs)).toFixed(2)}x (target <= 1.0x); per round ${ours.map((o, i) => (o / theirs[i]).toFixed(2)).join(", ")}`);
  }
  await model.dispose();
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
