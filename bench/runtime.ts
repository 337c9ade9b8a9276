/**
 * npm run bench:runtime [-- --model DIR] [--runs N]
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
  const readMs = median([0, 1, 2].map(() => readAllWeights(modelDir)));
  // The default (no weight prepacking) and onnxruntime's prepacked weights, to show the trade.
  const measure = async (prepackWeights: boolean) => {
    const openMs: number[] = [];
    let model: LoadedModel | undefined;
    for (let i = 0; i < 3; i++) {
      await model?.dispose();
      const t0 = performance.now();
      model = await LoadedModel.open(modelDir, { device: "cpu", prepackWeights, threads });
      openMs.push(performance.now() - t0);
    }
    const m = model!;
    const prepared = await m.prepare({ prompt, image });
    const forwardOnce = async () => {
      const t0 = performance.now();
      const features = await m.imageFeaturesFor(prepared);
      await m.forward(prepared.inputIds, { imageFeatures: features });
      return performance.now() - t0;
    };
    await forwardOnce();
    return { m, prepared, openMs: median(openMs), forwardMs: median(await sequential(runs, forwardOnce)) };
  };
  const packed = await measure(true);
  await packed.m.dispose();
  const { m, prepared, openMs, forwardMs } = await measure(false);

  console.log(`model: ${modelDir} (${(m.info.weightBytes / 2 ** 20).toFixed(0)} MiB of ${m.info.dtype} weights, ${prepared.inputIds.length} tokens, provider ${m.info.provider})`);
  console.log(`read weights     ${readMs.toFixed(0).padStart(7)} ms`);
  console.log(`open model       ${openMs.toFixed(0).padStart(7)} ms   (compile ${m.timings.compileMs.toFixed(0)} ms + sessions ${m.timings.sessionMs.toFixed(0)} ms)   ratio to read: ${(openMs / readMs).toFixed(2)}x (target <= 1.5x)`);
  console.log(`forward (ours)   ${forwardMs.toFixed(0).padStart(7)} ms   median of ${runs}`);
  console.log(`  with prepacked weights: open ${packed.openMs.toFixed(0)} ms (${(packed.openMs / readMs).toFixed(2)}x read), forward ${packed.forwardMs.toFixed(0)} ms`);

  const inputs = path.join(WORK, "inputs");
  fs.mkdirSync(inputs, { recursive: true });
  fs.writeFileSync(path.join(inputs, "input_ids.json"), JSON.stringify(prepared.inputIds));
  fs.writeFileSync(path.join(inputs, "pixel_values.f32"), new Uint8Array(prepared.pixelValues!.data.buffer));
  const py = spawnSync("python3", [path.join(ROOT, "bench/hf_forward.py"), modelDir, inputs, String(runs), String(threads)], { encoding: "utf8" });
  if (py.status !== 0) {
    console.log(`transformers eager: not measured (${(py.stderr || py.error?.message || "python3 failed").trim().split("\n").pop()})`);
  } else {
    const hf = JSON.parse(py.stdout.trim().split("\n").pop()!) as { forward_ms: number; threads: number; load_ms: number };
    console.log(`forward (HF eager) ${hf.forward_ms.toFixed(0).padStart(5)} ms   median of ${runs}, torch threads ${hf.threads}; HF from_pretrained ${hf.load_ms.toFixed(0)} ms`);
    console.log(`forward ratio ours/HF: ${(forwardMs / hf.forward_ms).toFixed(2)}x (target <= 1.0x)`);
  }
  await m.dispose();
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
