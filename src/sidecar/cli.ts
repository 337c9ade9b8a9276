/**
 * `logit-lens` command line. Reports go to stdout; progress and errors to stderr. Input
 * problems print one line (`error: <file>: <what to do>`) and exit 1; --verbose adds the stack.
 */
import * as path from "node:path";
import { isLensInputError, LensInputError } from "./errors";
import { LoadedModel } from "./model/loadedModel";
import { parseDevice } from "./runtime/ort";

const USAGE = `usage: logit-lens run --model DIR [--image FILE] --prompt TEXT [--json] [--top-k N] [--device auto|cpu|cuda|webgpu] [--threads N] [--verbose]

Runs the model on the image and prompt and prints, for the last prompt position, what each
layer predicts (logit lens: the layer's residual through the final norm and the unembedding).`;

interface RunArgs {
  model: string;
  image?: string;
  prompt: string;
  json: boolean;
  topK: number;
  device: string;
  threads: number;
  verbose: boolean;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): { command: string; args: RunArgs } {
  const [command, ...rest] = argv;
  const args: Partial<RunArgs> & { json: boolean; verbose: boolean } = { json: false, verbose: false };
  const value = (i: number, flag: string): string => {
    const v = rest[i + 1];
    if (v === undefined || v.startsWith("--")) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    switch (flag) {
      case "--model": args.model = value(i++, flag); break;
      case "--image": args.image = value(i++, flag); break;
      case "--prompt": args.prompt = value(i++, flag); break;
      case "--top-k": args.topK = positiveInt(value(i++, flag), flag); break;
      case "--device": args.device = value(i++, flag); break;
      case "--threads": args.threads = positiveInt(value(i++, flag), flag); break;
      case "--json": args.json = true; break;
      case "--verbose": args.verbose = true; break;
      default: throw new UsageError(`unknown option ${flag}`);
    }
  }
  if (command !== "run") throw new UsageError(command ? `unknown command ${command}` : "no command given");
  if (!args.model) throw new UsageError("--model is required");
  if (args.prompt === undefined) throw new UsageError("--prompt is required");
  return { command, args: { topK: 5, device: "auto", threads: 0, ...args } as RunArgs };
}

function positiveInt(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer, got ${v}`);
  return n;
}

export interface LayerPrediction {
  layer: number;
  label: string;
  top: { id: number; token: string; prob: number }[];
}

async function run(args: RunArgs): Promise<void> {
  // One updating line on a terminal; plain lines in logs and pipes.
  const progress = (s: string) => process.stderr.write(process.stderr.isTTY ? `\r\x1b[K${s}` : `${s}\n`);
  const clearProgress = () => process.stderr.isTTY && process.stderr.write("\r\x1b[K");
  const device = parseDevice(args.device);
  const t0 = performance.now();
  const model = await LoadedModel.open(args.model, { device, threads: args.threads, onProgress: (s) => progress(`${s}…`) });
  try {
    progress("preparing input…");
    const prepared = await model.prepare({ prompt: args.prompt, image: args.image ? path.resolve(args.image) : undefined });
    progress(`running ${prepared.inputIds.length} tokens on ${model.info.provider}…`);
    const features = await model.imageFeaturesFor(prepared);
    const forward = await model.forward(prepared.inputIds, { imageFeatures: features });
    const result = await model.lens(forward.hiddenStates, { topK: args.topK });
    clearProgress();
    process.stderr.write(`done in ${((performance.now() - t0) / 1000).toFixed(2)} s (${model.info.provider})\n`);

    const L = model.info.numLayers;
    const layers: LayerPrediction[] = [];
    for (let layer = 0; layer <= L; layer++) {
      const top = [];
      for (let j = 0; j < result.topK; j++) {
        const id = Number(result.topkIds[layer * result.topK + j]);
        top.push({ id, token: model.text.tokenLabel(id), prob: result.topkProbs[layer * result.topK + j] });
      }
      layers.push({ layer, label: layer === 0 ? "embeddings" : `block ${layer}`, top });
    }
    const position = prepared.inputIds.length - 1;
    if (args.json) {
      process.stdout.write(
        JSON.stringify(
          {
            model: { ...model.info },
            input: { prompt: args.prompt, image: args.image ?? null, renderedPrompt: prepared.renderedPrompt, tokens: prepared.inputIds.length },
            position,
            layers,
          },
          null,
          2,
        ) + "\n",
      );
    } else {
      process.stdout.write(`${model.info.architecture} · ${model.info.dtype} · ${model.info.provider} · ${prepared.inputIds.length} tokens\n`);
      process.stdout.write(`logit lens at the last prompt position (${position}, ${JSON.stringify(model.text.tokenLabel(prepared.inputIds[position]))})\n\n`);
      process.stdout.write(`${"layer".padEnd(12)} ${"top-1".padEnd(16)} ${"p".padStart(7)}   next\n`);
      for (const l of layers) {
        const rest = l.top.slice(1).map((t) => `${JSON.stringify(t.token)} ${t.prob.toFixed(3)}`).join("  ");
        process.stdout.write(`${l.label.padEnd(12)} ${JSON.stringify(l.top[0].token).padEnd(16)} ${l.top[0].prob.toFixed(4).padStart(7)}   ${rest}\n`);
      }
    }
  } finally {
    await model.dispose();
  }
}

export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes("--verbose");
  try {
    if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
      process.stdout.write(USAGE + "\n");
      return 0;
    }
    const { args } = parseArgs(argv);
    await run(args);
    return 0;
  } catch (e) {
    if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n${USAGE}\n`);
      return 2;
    }
    if (isLensInputError(e)) {
      process.stderr.write(`error: ${e.message}\n`);
      if (verbose) process.stderr.write(`${e.stack}\n`);
      return 1;
    }
    const message = e instanceof Error ? e.message.split("\n")[0] : String(e);
    process.stderr.write(`internal error: ${message} (run again with --verbose for details, and report it)\n`);
    if (verbose && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return 70;
  }
}

export { LensInputError };
