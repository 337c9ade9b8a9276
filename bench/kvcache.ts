/**
 * npm run bench:kvcache [-- --model DIR] [--rounds R] [--steps N] [--text]
 *
 * Decode time per token on WebGPU with the KV cache kept in device memory (present_* as
 * 'gpu-buffer', the default) against the same model with the cache copied to the host and back
 * every step (kvCacheOnDevice false, the location before issue 16). Both models open on the
 * webgpu provider; after one prefill each (the bench checkpoint's image prompt, ~600 cached
 * tokens; --text: the prompt alone), every round times N decode steps on each side, alternating
 * which goes first, over the same token ids, from the kept prefill cache. Reported: the median
 * per-token time of the decoder call alone (Engine.decode) and of a lens run's step
 * (LoadedModel.forward: decoder + greedy readout), and the ratio device / host.
 *
 * Without a GPU, WebGPU runs on SwiftShader when the process starts with Chromium's Vulkan
 * loader (../shared/notes/gpu.md):
 *   LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json npm run bench:kvcache
 * SwiftShader's "device memory" is host memory, so the copies it saves are cheaper than a real
 * GPU's over PCIe: read its ratio as a lower bound.
 */
import { LoadedModel } from "../src/sidecar/model/loadedModel";
import type { KvCache } from "../src/sidecar/engine/engine";
import { BENCH_IMAGE, BENCH_PROMPT, benchCheckpoint, flag, median } from "./checkpoint";

const args = process.argv.slice(2);
const rounds = Number(flag("--rounds") ?? 5);
const steps = Number(flag("--steps") ?? 8);
const textOnly = args.includes("--text");

interface Side {
  name: string;
  model: LoadedModel;
  prefill: KvCache;
  decoderMs: number[];
  stepMs: number[];
}

async function openSide(name: string, dir: string, kvCacheOnDevice: boolean, prompt: string, image: string | undefined): Promise<{ side: Side; tokens: number[] }> {
  const model = await LoadedModel.open(dir, { device: "webgpu", kvCacheOnDevice });
  if (model.info.provider !== "webgpu") throw new Error(`${name}: opened on ${model.info.provider}, not webgpu`);
  const prepared = await model.prepare({ prompt, image });
  const prefill = await model.forward(prepared.inputIds, { imageFeatures: await model.imageFeaturesFor(prepared) });
  // the greedy continuation, so that both sides decode the same ids
  const tokens = [prefill.nextToken!];
  let cache = prefill.cache;
  for (let n = 1; n < steps; n++) {
    const s = await model.forward([tokens[n - 1]], { cache, consumeCache: cache !== prefill.cache });
    tokens.push(s.nextToken!);
    cache = s.cache;
  }
  model.releaseCache(cache);
  return { side: { name, model, prefill: prefill.cache, decoderMs: [], stepMs: [] }, tokens };
}

/** N decode steps from the prefill cache: per-token milliseconds of the decoder call and of the whole step. */
async function timeSteps(side: Side, tokens: number[]): Promise<void> {
  const { model } = side;
  let cache = side.prefill;
  let decoder = 0;
  for (const token of tokens) {
    const d0 = performance.now();
    const out = await model.engine.decode([token], { cache, positions: [0], segmentCount: 1, imageKeys: [], grids: [], consumeCache: cache !== side.prefill });
    decoder += performance.now() - d0;
    cache = out.cache;
  }
  model.releaseCache(cache);
  side.decoderMs.push(decoder / tokens.length);
  cache = side.prefill;
  const s0 = performance.now();
  for (const token of tokens) {
    const out = await model.forward([token], { cache, positions: [0], consumeCache: cache !== side.prefill });
    cache = out.cache;
  }
  model.releaseCache(cache);
  side.stepMs.push((performance.now() - s0) / tokens.length);
}

async function main(): Promise<void> {
  const dir = flag("--model") ?? benchCheckpoint();
  const image = textOnly ? undefined : BENCH_IMAGE;
  const device = await openSide("device cache", dir, true, BENCH_PROMPT, image);
  const host = await openSide("host cache", dir, false, BENCH_PROMPT, image);
  if (device.tokens.join() !== host.tokens.join()) throw new Error(`the two sides decode different tokens: ${device.tokens.join(",")} vs ${host.tokens.join(",")}`);
  const sides = [device.side, host.side];
  const tokens = device.tokens;
  const d = sides[0].model.engine.plan.decoder;
  process.stderr.write(
    `${dir}: ${d.numLayers} layers, ${d.numKvHeads} KV heads x ${d.headDim}, ${sides[0].prefill.length} cached tokens ` +
      `(${((sides[0].prefill.length * d.numLayers * 2 * d.numKvHeads * d.headDim * 4) / 2 ** 20).toFixed(1)} MiB of cache), ${steps} steps x ${rounds} rounds\n`,
  );
  // a warm-up round each (shader compiles), then alternating rounds
  for (const s of sides) await timeSteps(s, tokens);
  for (const s of sides) {
    s.decoderMs.length = 0;
    s.stepMs.length = 0;
  }
  for (let r = 0; r < rounds; r++) for (const s of r % 2 ? [...sides].reverse() : sides) await timeSteps(s, tokens);
  for (const s of sides) {
    process.stdout.write(`${s.name}: decoder ${median(s.decoderMs).toFixed(1)} ms/token [${s.decoderMs.map((x) => x.toFixed(1)).join(" ")}], step ${median(s.stepMs).toFixed(1)} ms/token [${s.stepMs.map((x) => x.toFixed(1)).join(" ")}]\n`);
  }
  const ratios = sides[0].decoderMs.map((x, i) => x / sides[1].decoderMs[i]);
  process.stdout.write(
    `device / host: decoder ${(median(sides[0].decoderMs) / median(sides[1].decoderMs)).toFixed(3)}x (per round ${ratios.map((x) => x.toFixed(2)).join(" ")}), step ${(median(sides[0].stepMs) / median(sides[1].stepMs)).toFixed(3)}x\n`,
  );
  for (const s of sides) {
    s.model.releaseCache(s.prefill);
    await s.model.dispose();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:kvcache failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
